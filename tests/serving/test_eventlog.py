"""The compatibility readers of a file event log (``read_events``, ``events_table``): torn
tails and corrupt lines skipped (and logged), never fatal; kill -9 loses nothing acknowledged.
The log itself is tested in ``tests/serving/ingest``."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlsd.serving.eventlog import EventLog, events_table, read_events
from mlsd.serving.ingest import FileEventLog


def test_append_and_read_back(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    assert EventLog is FileEventLog
    log = EventLog(p)
    (res,) = log.append([[{"event_id": "a", "user_id": 1}, {"event_id": "b", "user_id": 3}]])
    assert (res.stored, res.duplicates) == (2, 0)
    log.close()
    assert list(read_events(p)) == [
        {"event_id": "a", "user_id": 1},
        {"event_id": "b", "user_id": 3},
    ]
    assert events_table(p).column("user_id").to_pylist() == [1, 3]
    assert list(read_events(tmp_path / "missing.jsonl")) == []
    assert events_table(tmp_path / "missing.jsonl").num_rows == 0


def test_torn_tail_is_ignored_and_repaired(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    p.write_bytes(b'{"event_id":"1"}\n{"event_id":"2"}\n{"event_id":')
    assert [r["event_id"] for r in read_events(p)] == ["1", "2"]
    log = EventLog(p)  # reopening cuts the torn record so the next append starts cleanly
    log.append([[{"event_id": "3"}]])
    log.close()
    assert [r["event_id"] for r in read_events(p)] == ["1", "2", "3"]
    assert p.read_bytes().count(b"\n") == 3


def test_corrupt_middle_line_is_skipped_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = tmp_path / "events.jsonl"
    p.write_bytes(b'{"a":1}\nnot json\n{"a":2}\n[3]\n')  # also: lines written before event ids
    caplog.set_level(logging.WARNING)
    assert list(read_events(p)) == [{"a": 1}, {"a": 2}]
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2 and str(p) in warned[0]
    assert "byte 8" in warned[0] and "byte 25" in warned[1]


WRITER = r"""
import sys
from mlsd.serving.eventlog import EventLog
log = EventLog(sys.argv[1])
i = 0
while True:
    log.append([[{"event_id": str(i), "seq": i}]])
    print(i, flush=True)  # acknowledged only after append returned (fsync done)
    i += 1
"""


def test_acknowledged_appends_survive_kill_9(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(p)], stdout=subprocess.PIPE, text=True
    )
    acked = -1
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    while acked < 200 and time.monotonic() < deadline:
        acked = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    seqs = [r["seq"] for r in read_events(p)]
    assert acked >= 200
    assert seqs[: acked + 1] == list(range(acked + 1))
    assert len(seqs) == len(set(seqs))
