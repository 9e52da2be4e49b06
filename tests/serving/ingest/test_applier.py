"""The tailer, replay and snapshots over an in-memory log, with a model that records what it
is given (the real model's apply is tested in tests/pipeline); admission's arithmetic."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from mlsd.serving.ingest.admission import Admission, TokenBucket
from mlsd.serving.ingest.applier import (
    Replayed,
    SnapshotStore,
    Tailer,
    position_order,
    replay,
)
from mlsd.serving.ingest.memory_log import MemoryEventLog
from mlsd.serving.ingest.records import event_ids, out_of_range, records_table
from mlsd.serving.service import ModelHolder


class Recording:
    """The part of a Servable the tailer uses: apply, snapshot, restore, store checks."""

    def __init__(self, version: str = "v1") -> None:
        self.version = version
        self.users: list[int] = []
        self.tables = 0
        self.problem: str | None = None
        self.repopulated = 0

    def apply_events(self, events: pa.Table) -> None:
        self.users += events["user_id"].to_pylist()
        self.tables += 1

    def online_snapshot(self) -> bytes:
        return ",".join(map(str, self.users)).encode()

    def restore_online(self, blob: bytes) -> None:
        self.users = [int(x) for x in blob.decode().split(",") if x]

    def online_store_problem(self) -> str | None:
        return self.problem

    def refresh_candidates(self, limit: int = 64) -> int:
        return 0

    def repopulate_online_store(self) -> int:
        self.problem = None
        self.repopulated += 1
        return len(self.users)


def rec(i: int, t: int = 1_750_000_000_000) -> dict[str, Any]:
    return {
        "event_id": f"e{i}",
        "user_id": i,
        "video_id": 1,
        "event_type": "play",
        "timestamp": t,
        "received_ms": int(time.time() * 1000),
    }


def until(cond: Any, timeout_s: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return False


def test_tailer_applies_other_processes_appends_in_log_order_in_chunks() -> None:
    log = MemoryEventLog()
    model = Recording()
    t = Tailer(log, ModelHolder(model), None, poll_s=0.01, chunk=7).start()  # type: ignore[arg-type]
    try:
        log.append([[rec(i) for i in range(20)]])
        assert until(lambda: len(model.users) == 20)
        assert model.users == list(range(20)) and model.tables == 3  # 7 + 7 + 6
        assert t.problem() is None and t.lag_s() == 0.0
        log.append([[rec(i) for i in range(20, 25)]])
        assert t.wait_caught_up(3.0) and model.users == list(range(25))
    finally:
        t.stop()


def test_the_tailer_runs_kernels_on_one_thread() -> None:
    # the tailer's applies and candidate refreshes call FAISS (OpenMP); OpenMP counts are per
    # thread, so the tailer must set its own to 1, else a spinning second OpenMP thread takes
    # a core's worth of CPU from the requests
    import faiss

    seen: list[int] = []

    class Counting(Recording):
        def refresh_candidates(self, limit: int = 64) -> int:
            seen.append(faiss.omp_get_max_threads())
            return 0

    # (a new thread starts from OpenMP's default, one thread per core: on one core this test
    # cannot tell, on two or more it can)
    t = Tailer(MemoryEventLog(), ModelHolder(Counting()), None, poll_s=0.01).start()  # type: ignore[arg-type]
    try:
        assert until(lambda: len(seen) >= 2)
    finally:
        t.stop()
    assert set(seen) == {1}


def test_replay_resumes_from_the_newest_snapshot_of_the_same_version(tmp_path: Path) -> None:
    log = MemoryEventLog()
    log.append([[rec(i) for i in range(10)]])
    store = SnapshotStore(tmp_path / "snap")
    first = replay(Recording(), log, snapshots=store)  # type: ignore[arg-type]
    assert first.position == "10" and first.events == 10 and not first.from_snapshot
    store.save("v1", "6", b"0,1,2,3,4,5")
    again = replay(Recording(), log, snapshots=store)  # type: ignore[arg-type]
    assert again.from_snapshot and again.events == 4
    assert again.model.users == list(range(10))  # type: ignore[attr-defined]
    other = replay(Recording("v2"), log, snapshots=store)  # type: ignore[arg-type]
    assert not other.from_snapshot and other.events == 10  # another version's is not used
    # a torn snapshot (crash mid-write) is ignored, not trusted
    p = store.path("v1")
    p.write_bytes(p.read_bytes()[:-3])
    assert not replay(Recording(), log, snapshots=store).from_snapshot  # type: ignore[arg-type]


def test_a_re_forked_tailer_jumps_to_a_newer_snapshot(tmp_path: Path) -> None:
    log = MemoryEventLog()
    log.append([[rec(i) for i in range(8)]])
    store = SnapshotStore(tmp_path)
    store.save("v1", "5", b"0,1,2,3,4")
    model = Recording()
    t = Tailer(log, ModelHolder(model), None, poll_s=0.01, snapshots=store).start()  # type: ignore[arg-type]
    try:
        assert until(lambda: len(model.users) == 8)
        assert model.users == list(range(8)) and model.tables == 1  # 5 restored, 3 applied
    finally:
        t.stop()


def test_snapshot_writer_and_replace() -> None:
    log = MemoryEventLog()
    model = Recording()
    holder = ModelHolder(model)  # type: ignore[arg-type]
    t = Tailer(log, holder, None, poll_s=0.01).start()
    try:
        log.append([[rec(i) for i in range(3)]])
        assert t.wait_caught_up()
        new = replay(Recording("v2"), log)  # type: ignore[arg-type]
        assert t.replace(new) is model and holder.get() is new.model
        log.append([[rec(3)]])
        assert until(lambda: new.model.users == [0, 1, 2, 3])  # type: ignore[attr-defined]
        assert model.users == [0, 1, 2]  # the old one no longer changes
    finally:
        t.stop()


def test_an_online_store_found_empty_is_repopulated_and_unready_meanwhile() -> None:
    log = MemoryEventLog()
    model = Recording()
    t = Tailer(log, ModelHolder(model), None, poll_s=0.01, store_check_s=0.01).start()  # type: ignore[arg-type]
    try:
        assert t.wait_caught_up()
        model.problem = "online store redis://x is empty"
        assert until(lambda: model.repopulated == 1)
        assert until(lambda: t.problem() is None)
    finally:
        t.stop()


def test_positions_sort_numerically() -> None:
    assert position_order(None) < position_order("0") < position_order("10")
    assert position_order("9") < position_order("10")
    assert position_order("1700000000000-2") < position_order("1700000000000-10")
    assert position_order("1700000000000-99") < position_order("1700000000001-0")


def test_records_keep_the_time_their_client_sent() -> None:
    # 1970-01-20T12:00:00Z is 1,684,800,000 ms: a unit guess from the value would read it as
    # seconds (2023); the table's type says milliseconds, so nothing is guessed
    t, bad = records_table([rec(1, t=1_684_800_000)])
    assert bad == 0
    assert t["timestamp"][0].as_py().isoformat() == "1970-01-20T12:00:00+00:00"
    t, bad = records_table([rec(1), {**rec(2), "user_id": "u2"}, rec(3)])
    assert bad == 1 and t["user_id"].to_pylist() == [1, 3]  # the bad one is left out, alone


def test_event_ids_and_time_range() -> None:
    assert event_ids(3, ["a", None, None], "K") == ["a", "K:1", "K:2"]
    random_ids = event_ids(2, [None, None], None)
    assert len(set(random_ids)) == 2
    now = 1_750_000_000_000
    assert out_of_range([now, now - 1000], now) is None
    assert out_of_range([now, 1_684_800_000], now) == 1  # 1970: before the contract's range
    assert out_of_range([now + 400 * 86_400_000], now) == 0  # over a year ahead


def test_token_bucket_goes_into_debt_by_one_batch_then_refuses() -> None:
    b = TokenBucket(rate=100, burst=100)
    assert b.available()
    b.take(250)  # a batch larger than what is banked is admitted...
    assert not b.available() and b.wait_s() == pytest.approx(1.5, abs=0.05)  # ...then none


def test_admission_reasons() -> None:
    pending, lag = [0], [0.0]
    a = Admission(
        rate=0, pending=lambda: pending[0], max_pending=10, lag_s=lambda: lag[0], max_lag_s=2
    )
    assert a.check() is None
    pending[0] = 10
    r = a.check()
    assert r is not None and (r.status, r.reason) == (503, "log_queue")
    pending[0], lag[0] = 0, 3.0
    r = a.check()
    assert r is not None and (r.status, r.reason) == (503, "apply_lag")
    lag[0] = 0.0
    a.max_in_flight = 1
    a.enter()
    r = a.check()
    assert r is not None and r.reason == "in_flight"
    a.done()
    limited = Admission(rate=10, pending=lambda: 0, max_pending=10, lag_s=lambda: 0.0, max_lag_s=2)
    limited.charge(30)
    r = limited.check()
    assert r is not None and (r.status, r.reason, r.retry_after_s) == (429, "rate", 2)


def test_replayed_is_a_plain_record() -> None:
    r = Replayed(Recording(), "3")  # type: ignore[arg-type]
    assert r.position == "3" and r.events == 0


class Picky(Recording):
    """Refuses any batch holding user 13 (a record the model cannot apply)."""

    def apply_events(self, events: pa.Table) -> None:
        if 13 in events["user_id"].to_pylist():
            raise ValueError("user 13 breaks this model")
        super().apply_events(events)


def test_a_record_the_model_cannot_apply_is_left_out_not_retried_forever() -> None:
    log = MemoryEventLog()
    model = Picky()
    t = Tailer(log, ModelHolder(model), None, poll_s=0.01).start()  # type: ignore[arg-type]
    try:
        log.append([[rec(i) for i in range(10, 17)]])
        assert until(lambda: len(model.users) == 6)
        assert model.users == [10, 11, 12, 14, 15, 16] and t.skipped == 1
        assert t.wait_caught_up() and t.problem() is None
        log.append([[rec(20)]])
        assert until(lambda: model.users[-1:] == [20])
    finally:
        t.stop()
    again = replay(Picky(), log)  # type: ignore[arg-type]
    assert again.model.users == [10, 11, 12, 14, 15, 16, 20]  # type: ignore[attr-defined]
