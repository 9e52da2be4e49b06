"""The event-log contract, run on every backend (a JSON-lines file and a Redis stream with an
fsync'd AOF): order, positions, idempotency by event_id (in one call, across calls, across
processes racing), durability under kill -9, corrupt records skipped and counted."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from mlsd.errors import DataError, MlsdError
from mlsd.serving.ingest import (
    AppendResult,
    EventLogBackend,
    FileEventLog,
    LogUnavailable,
    RedisStreamLog,
    file_log,
    open_log,
)
from tests.serving.ingest.conftest import AofRedis, Target, child, ids_in, records


def test_append_then_read_in_order_and_positions(target: Target) -> None:
    log = target.open()
    assert isinstance(log, EventLogBackend)
    first, second = log.append([records(["a", "b"]), records(["c"])])
    assert (first.stored, first.duplicates, second.stored, second.duplicates) == (2, 0, 1, 0)
    got = log.read(None, 100)
    assert [r["event_id"] for r in got.records] == ["a", "b", "c"]
    assert got.records[1] == {"event_id": "b", "user_id": 1}
    assert got.corrupt == 0
    assert got.next == second.end == log.end()
    assert log.read(second.end, 100).records == []  # nothing after the end
    assert [r["event_id"] for r in log.read(first.end, 100).records] == ["c"]
    (third,) = log.append([records(["d"])])
    assert [r["event_id"] for r in log.read(got.next, 100).records] == ["d"]
    assert log.read(third.end, 100).records == []
    assert log.append([]) == []
    (empty,) = log.append([[]])
    assert (empty.stored, empty.duplicates, empty.end) == (0, 0, third.end)


def test_reading_in_limit_sized_steps_returns_everything_once(target: Target) -> None:
    log = target.open()
    ids = [f"e{i}" for i in range(23)]
    log.append([records(ids[:10]), records(ids[10:])])
    got: list[str] = []
    pos = None
    for _ in range(10):
        res = log.read(pos, 5)
        assert len(res.records) <= 5
        if not res.records:
            break
        got += [r["event_id"] for r in res.records]
        pos = res.next
    assert got == ids
    assert log.read(None, 0).records == []


def test_duplicates_in_one_call_are_stored_once(target: Target) -> None:
    log = target.open()
    a, b = log.append([records(["x", "y", "x"]), records(["y", "z"])])
    assert (a.stored, a.duplicates) == (2, 1)
    assert (b.stored, b.duplicates) == (1, 1)
    assert ids_in(log) == ["x", "y", "z"]
    assert log.read(None, 10).records[0]["user_id"] == 0  # the first copy is the one kept


def test_duplicates_across_calls_log_objects_and_reopening(target: Target) -> None:
    one, two = target.open(), target.open()
    assert one.append([records(["p", "q"])])[0].stored == 2
    # another object on the same storage (as another process would) sees one's ids
    again = two.append([records(["q", "r"])])[0]
    assert (again.stored, again.duplicates) == (1, 1)
    assert one.append([records(["r"])])[0] == AppendResult(0, 1, one.end())
    one.close()
    reopened = target.open()  # a restart
    assert (reopened.append([records(["p", "s"])])[0].stored) == 1
    assert ids_in(reopened) == ["p", "q", "r", "s"]


def test_a_record_without_event_id_is_refused_before_anything_is_written(target: Target) -> None:
    log = target.open()
    for bad in ({"user_id": 1}, {"event_id": ""}, {"event_id": 7}):
        with pytest.raises(DataError, match="batch 1, record 0: event_id"):
            log.append([records(["ok"]), [bad]])
    with pytest.raises(DataError, match="position"):
        log.read("not a position", 10)
    assert ids_in(log) == []


RACER = r"""
import sys
from mlsd.serving.ingest import open_log
log = open_log(sys.argv[1])
ids = sys.argv[2].split(",")
print("ready", flush=True)
sys.stdin.readline()  # both processes start appending at once
stored = 0
for i in range(0, len(ids), 2):
    stored += log.append([[{"event_id": e, "pid": sys.argv[3]} for e in ids[i : i + 2]]])[0].stored
log.close()
print(stored, flush=True)
"""


def test_two_processes_appending_the_same_ids_store_each_once(target: Target) -> None:
    a_ids = [f"id{i}" for i in range(300)]
    b_ids = [f"id{i}" for i in range(40, 340)]  # 260 ids in common, appended in the same order
    procs = [
        child(RACER, target.target, ",".join(ids), name)
        for ids, name in ((a_ids, "a"), (b_ids, "b"))
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    stored = [int(p.communicate(timeout=60)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    got = ids_in(target.open())
    assert sorted(got) == sorted(set(a_ids) | set(b_ids))  # each id exactly once
    assert sum(stored) == len(got) == 340


WRITER = r"""
import sys
from mlsd.serving.ingest import open_log
log = open_log(sys.argv[1], **({"timeout_s": 0.5} if sys.argv[1].startswith("redis") else {}))
i = 0
while True:
    batch = [{"event_id": f"k{i + j}", "seq": i + j} for j in range(3)]
    try:
        log.append([batch, batch[:1]])
    except Exception as e:
        print("error", type(e).__name__, flush=True)
        sys.stdin.readline()  # wait to be killed
        continue
    print(" ".join(r["event_id"] for r in batch), flush=True)  # acknowledged: append returned
    i += 3
"""


def _acked_until(
    proc: subprocess.Popen[str], n: int, then: Callable[[], None] | None = None
) -> list[str]:
    """The writer's acknowledged ids, read until there are ``n`` (or, with ``then``: call it
    at ``n`` and read on until the writer's first error)."""
    assert proc.stdout is not None
    acked: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, "the writer died"
        if line.startswith("error"):
            return acked
        acked += line.split()
        if len(acked) >= n:
            if then is None:
                return acked
            then()
            then, n = None, 10**9
    pytest.fail("the writer neither acknowledged enough nor failed within 30 s")


def test_acknowledged_records_survive_kill_9_of_the_writer(target: Target) -> None:
    proc = child(WRITER, target.target)
    acked = _acked_until(proc, 90)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    if target.kind == "file":  # as if it died mid-write: a torn record at the end
        with open(target.target, "ab") as f:
            f.write(b'{"event_id":"torn","se')
    log = target.open()  # reopening cuts the torn tail
    got = Counter(ids_in(log))
    assert all(got[i] == 1 for i in acked)
    assert max(got.values()) == 1 and "torn" not in got
    if target.kind == "file":
        assert Path(target.target).read_bytes().endswith(b"}\n")
    assert log.append([records(acked[:5])])[0].duplicates == 5


@pytest.mark.redis
def test_acknowledged_records_survive_kill_9_of_redis(own_redis: AofRedis) -> None:
    t = Target("redis", f"{own_redis.url}?stream=crash")
    proc = child(WRITER, t.target)
    try:
        # kill -9 the server while the writer appends: every id acknowledged before must be
        # in the AOF, fsync'd before the reply
        acked = _acked_until(proc, 60, then=own_redis.kill9)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert len(acked) >= 60
    own_redis.start()  # same directory and port: replays the AOF
    log = t.open()
    got = Counter(ids_in(log))
    assert all(got[i] == 1 for i in acked)
    assert max(got.values()) == 1
    assert log.append([records(acked)])[0].duplicates == len(acked)  # the dedup keys too
    log.close()


def test_file_torn_line_in_the_middle_is_skipped_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = tmp_path / "events.jsonl"
    one, two = FileEventLog(p), FileEventLog(p)
    one.append([records(["before"])])
    offset = p.stat().st_size
    with open(p, "ab") as f:  # a third process died mid-write
        f.write(b'{"event_id":"lost","user')
    (after,) = two.append([records(["after"])])
    caplog.set_level(logging.WARNING)
    res = one.read(None, 10)
    assert [r["event_id"] for r in res.records] == ["before", "after"]
    assert res.corrupt == 1 and res.next == after.end
    warned = [r.getMessage() for r in caplog.records if "corrupt" in r.getMessage()]
    assert len(warned) == 1 and str(p) in warned[0] and f"byte {offset}" in warned[0]
    assert one.append([records(["before", "after", "new"])])[0].stored == 1
    one.close()
    two.close()


def test_file_read_never_returns_an_incomplete_line(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    with FileEventLog(p) as log:
        (res,) = log.append([records(["a"])])
        with open(p, "ab") as f:  # a record being written by another process
            f.write(b'{"event_id":"b"')
            f.flush()
            assert log.read(None, 10).records == [{"event_id": "a", "user_id": 0}]
            assert log.read(res.end, 10).next == res.end == log.end()
            f.write(b"}\n")
        assert log.read(res.end, 10).records == [{"event_id": "b"}]


def test_file_dedup_window_and_index_across_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(file_log, "_CHUNK", 64)  # lines straddle every read
    p = tmp_path / "events.jsonl"
    ids = [f"event-{i}" for i in range(40)]
    with FileEventLog(p) as log:
        log.append([records(ids[:5], pad="x" * 100), records(ids[5:])])
    with FileEventLog(p) as log:  # indexed backwards from the end, 64 bytes at a time
        assert log.append([records(ids)])[0].duplicates == 40
        assert ids_in(log) == ids
    with FileEventLog(p, dedup_window=3) as log:  # older retries are stored again
        (res,) = log.append([records(ids[-3:] + ids[:1])])
        assert (res.stored, res.duplicates) == (1, 3)


def test_file_log_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(LogUnavailable, match="cannot open") as e:
        FileEventLog(tmp_path / "dir")
    assert isinstance(e.value, MlsdError)


@pytest.mark.redis
def test_redis_down_or_stalled_is_unavailable_within_the_timeout(own_redis: AofRedis) -> None:
    log = RedisStreamLog(own_redis.url, stream="down", timeout_s=0.3)
    log.append([records(["a"])])
    own_redis.kill9()
    for call in (lambda: log.append([records(["b"])]), lambda: log.read(None, 5), log.end):
        t0 = time.monotonic()
        with pytest.raises(LogUnavailable, match="redis stream down"):
            call()
        assert time.monotonic() - t0 < 1.0
    own_redis.start()
    assert log.append([records(["a", "b"])])[0].stored == 1  # reconnects; AOF replayed
    assert own_redis.proc is not None
    own_redis.proc.send_signal(signal.SIGSTOP)  # up but not answering
    try:
        t0 = time.monotonic()
        with pytest.raises(LogUnavailable, match="Timeout"):
            log.append([records(["c"])])
        assert 0.25 < time.monotonic() - t0 < 1.5
    finally:
        own_redis.proc.send_signal(signal.SIGCONT)
    log.close()
    own_redis.kill9()
    with pytest.raises(LogUnavailable):
        RedisStreamLog(own_redis.url, timeout_s=0.3)


@pytest.mark.redis
def test_redis_without_fsyncd_aof_is_warned_about(
    tmp_path: Path, aof_redis: AofRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    RedisStreamLog(aof_redis.url, stream="warn").close()
    assert not caplog.records
    plain = AofRedis(aof_redis.exe, tmp_path, aof=False).start()
    try:
        RedisStreamLog(plain.url, stream="warn").close()
    finally:
        plain.kill9()
    assert "appendonly no" in caplog.text and "may be lost" in caplog.text


@pytest.mark.redis
def test_redis_corrupt_entries_are_skipped_counted_and_logged(
    aof_redis: AofRedis, caplog: pytest.LogCaptureFixture
) -> None:
    with RedisStreamLog(aof_redis.url, stream="corrupt-test") as log:
        log.append([records(["a"])])
        r = redis.Redis.from_url(aof_redis.url)
        bad = r.xadd("corrupt-test", {"r": b"{not json"})
        r.xadd("corrupt-test", {"other": b"1"})
        r.close()
        log.append([records(["b"])])
        caplog.set_level(logging.WARNING)
        res = log.read(None, 10)
    assert [x["event_id"] for x in res.records] == ["a", "b"] and res.corrupt == 2
    assert "redis stream corrupt-test" in caplog.text and bad.decode() in caplog.text


@pytest.mark.redis
def test_open_log_picks_the_backend_from_the_target(tmp_path: Path, aof_redis: AofRedis) -> None:
    with open_log(f"{aof_redis.url}?stream=named") as r:  # type: ignore[attr-defined]
        assert isinstance(r, RedisStreamLog) and r.stream == "named"
        assert r.description == f"redis stream named on 127.0.0.1:{aof_redis.port}/0"
    with open_log(tmp_path / "e.jsonl", dedup_window=5) as f:  # type: ignore[attr-defined]
        assert isinstance(f, FileEventLog) and f.dedup_window == 5
        assert f.description == f"file {tmp_path / 'e.jsonl'}"
