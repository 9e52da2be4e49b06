"""The durable event log: fsync'd appends, torn-tail repair, clear errors on corruption."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlsd.errors import DataError
from mlsd.serving.eventlog import EventLog, events_table, read_events


def test_append_and_read_back(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    assert log.append([{"user_id": 1, "video_id": 2}, {"user_id": 3, "video_id": 4}]) == 2
    assert log.append([]) == 0
    log.close()
    assert list(read_events(tmp_path / "events.jsonl")) == [
        {"user_id": 1, "video_id": 2},
        {"user_id": 3, "video_id": 4},
    ]
    assert events_table(tmp_path / "events.jsonl").num_rows == 2


def test_torn_tail_is_ignored_and_repaired(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    p.write_bytes(b'{"a":1}\n{"a":2}\n{"a":')
    assert [r["a"] for r in read_events(p)] == [1, 2]
    log = EventLog(p)  # reopening cuts the torn record so the next append starts cleanly
    log.append([{"a": 3}])
    log.close()
    assert [r["a"] for r in read_events(p)] == [1, 2, 3]


def test_corrupt_middle_line_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    p.write_bytes(b'{"a":1}\nnot json\n{"a":2}\n')
    with pytest.raises(DataError, match="line 2"):
        list(read_events(p))


WRITER = r"""
import sys
from mlsd.serving.eventlog import EventLog
log = EventLog(sys.argv[1])
i = 0
while True:
    log.append([{"seq": i}])
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
