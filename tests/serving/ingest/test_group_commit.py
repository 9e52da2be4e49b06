"""Group commit: concurrent submits share commits, each future gets its own batch's result
from the writer thread, back-pressure refuses at once, and a failed commit fails exactly its
own futures."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, wait
from pathlib import Path

import pytest

from mlsd.errors import DataError
from mlsd.serving.ingest import (
    AppendResult,
    FileEventLog,
    GroupCommit,
    LogUnavailable,
    Overloaded,
    Position,
    ReadResult,
    Record,
)
from tests.serving.ingest.conftest import ids_in, records, wait_for


class CountingLog:
    """An in-memory backend that counts its commits; ``gate`` (when set) holds each commit
    until released; ``fail_calls``: the 1-based commits that raise LogUnavailable."""

    description = "counting (memory)"

    def __init__(self, *, delay_s: float = 0.0, gate: threading.Event | None = None) -> None:
        self.delay_s = delay_s
        self.gate = gate
        self.fail_calls: set[int] = set()
        self.calls: list[int] = []  # batches per commit
        self.threads: set[str] = set()
        self.rows: list[Record] = []

    def append(self, batches: Sequence[Sequence[Record]]) -> list[AppendResult]:
        self.threads.add(threading.current_thread().name)
        self.calls.append(len(batches))
        if self.gate is not None:
            assert self.gate.wait(10)
        time.sleep(self.delay_s)  # an fsync
        if len(self.calls) in self.fail_calls:
            raise LogUnavailable(f"{self.description}: commit {len(self.calls)} failed")
        seen = {r["event_id"] for r in self.rows}
        out = []
        for batch in batches:
            new = [r for r in batch if r["event_id"] not in seen]
            seen |= {r["event_id"] for r in new}
            self.rows += new
            out.append(AppendResult(len(new), len(batch) - len(new), str(len(self.rows))))
        return out

    def read(self, after: Position | None, limit: int) -> ReadResult:
        start = int(after or 0)
        return ReadResult(self.rows[start : start + limit], str(len(self.rows)), 0)

    def end(self) -> Position:
        return str(len(self.rows))

    def close(self) -> None:
        pass


def test_concurrent_submits_share_commits_and_get_their_own_results() -> None:
    log = CountingLog(delay_s=0.005)
    gc = GroupCommit(log)
    futures: dict[int, tuple[list[Record], Future[AppendResult]]] = {}
    lock = threading.Lock()

    def client(t: int) -> None:
        for k in range(20):
            n = 1 + (t + k) % 3  # batches of different sizes: a mix-up would show
            batch = records([f"t{t}-{k}-{j}" for j in range(n)])
            fut = gc.submit(batch)
            with lock:
                futures[t * 100 + k] = (batch, fut)

    threads = [threading.Thread(target=client, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wait([f for _, f in futures.values()], timeout=30)
    assert gc.commits == len(log.calls) < len(futures) == 160  # shared commits
    for batch, fut in futures.values():
        res = fut.result(0)
        assert (res.stored, res.duplicates) == (len(batch), 0)
        before_end = {r["event_id"] for r in log.rows[: int(res.end)]}
        assert {r["event_id"] for r in batch} <= before_end
    assert log.threads == {"mlsd-group-commit"}
    assert gc.pending_events == 0
    assert gc.committed_events == len(log.rows) == sum(len(b) for b, _ in futures.values())
    assert gc.last_commit_s >= 0.005
    (dup,) = [gc.submit(records(["t0-0-0", "new"]))]
    assert dup.result(5) == AppendResult(1, 1, str(len(log.rows)))
    gc.close()


def test_futures_are_resolved_by_the_writer_thread_and_work_with_asyncio() -> None:
    gate = threading.Event()
    gc = GroupCommit(CountingLog(gate=gate))
    fut = gc.submit(records(["a"]))
    resolved_in: list[str] = []
    fut.add_done_callback(lambda f: resolved_in.append(threading.current_thread().name))
    gate.set()

    async def request() -> AppendResult:
        return await asyncio.wrap_future(gc.submit(records(["b"])))

    assert asyncio.run(request()).stored == 1
    assert fut.result(5).stored == 1
    assert resolved_in == ["mlsd-group-commit"]
    gc.close()


def test_overloaded_is_raised_at_once_when_pending_events_exceed_the_limit() -> None:
    gate = threading.Event()
    log = CountingLog(gate=gate)
    gc = GroupCommit(log, max_pending_events=5)
    first = gc.submit(records(["a", "b", "c"]))
    wait_for(lambda: len(log.calls) == 1)  # being committed: still pending
    second = gc.submit(records(["d", "e"]))  # 5: at the limit
    assert gc.pending_events == 5
    t0 = time.monotonic()
    with pytest.raises(Overloaded) as e:
        gc.submit(records(["f"]))
    assert time.monotonic() - t0 < 0.1
    assert e.value.retry_after_s > 0 and e.value.pending == 5 and e.value.limit == 5
    assert not isinstance(e.value, DataError)
    with pytest.raises(Overloaded):
        gc.submit(records([f"big{i}" for i in range(6)]))  # over the limit on its own
    gate.set()
    assert first.result(5).stored == 3 and second.result(5).stored == 2
    wait_for(lambda: gc.pending_events == 0)
    assert gc.submit(records(["f"])).result(5).stored == 1
    gc.close()


def test_a_failed_commit_fails_exactly_its_own_futures() -> None:
    gate = threading.Event()
    log = CountingLog(gate=gate)
    log.fail_calls = {2}
    gc = GroupCommit(log)
    a = gc.submit(records(["a"]))
    wait_for(lambda: len(log.calls) == 1)
    b, c = gc.submit(records(["b"])), gc.submit(records(["c", "d"]))  # the second commit
    gate.set()
    assert a.result(5).stored == 1
    for f in (b, c):
        with pytest.raises(LogUnavailable, match="commit 2 failed"):
            f.result(5)
    d = gc.submit(records(["b"]))  # the writer lives on; the retry is stored
    assert d.result(5).stored == 1
    assert log.calls == [1, 2, 1]
    assert (gc.commits, gc.failed_commits, gc.pending_events) == (2, 1, 0)
    assert [r["event_id"] for r in log.rows] == ["a", "b"]
    gc.close()


def test_cancelled_submits_are_not_written_and_close_drains_then_refuses() -> None:
    gate = threading.Event()
    log = CountingLog(gate=gate)
    gc = GroupCommit(log)
    a = gc.submit(records(["a"]))
    wait_for(lambda: len(log.calls) == 1)
    b, c = gc.submit(records(["b"])), gc.submit(records(["c"]))
    assert b.cancel()  # its client went away before its commit started
    gate.set()
    gc.close()
    assert a.result(0).stored == 1 and c.result(0).stored == 1
    assert [r["event_id"] for r in log.rows] == ["a", "c"]
    assert gc.pending_events == 0
    with pytest.raises(RuntimeError, match="closed"):
        gc.submit(records(["d"]))
    other = GroupCommit(log)
    with pytest.raises(DataError, match="event_id"):
        other.submit([{"user_id": 1}])
    other.close()


def test_group_commit_on_the_file_log_writes_each_event_once(tmp_path: Path) -> None:
    log = FileEventLog(tmp_path / "events.jsonl")
    gc = GroupCommit(log)
    futures: list[Future[AppendResult]] = []

    def client(t: int) -> None:
        for k in range(15):
            futures.append(gc.submit(records([f"{t}-{k}", f"{t}-{k}", f"{(t + 1) % 4}-{k}"])))

    threads = [threading.Thread(target=client, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    results = [f.result(30) for f in futures]
    gc.close()
    assert gc.commits < len(futures) == 60
    got = ids_in(log)
    assert sorted(got) == sorted({f"{t}-{k}" for t in range(4) for k in range(15)})
    assert sum(r.stored for r in results) == 60 and sum(r.duplicates for r in results) == 120
    log.close()
