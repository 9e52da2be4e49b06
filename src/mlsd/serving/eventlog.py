"""A durable, append-only event log (JSON lines) for events received by the service.

``append`` writes a whole batch with one ``write`` and calls ``fsync`` before returning, so an
event the service acknowledged survives a crash or ``kill -9`` of the process (and, given a
disk that honours fsync, a power cut). A batch interrupted mid-write leaves at most one
incomplete last line, which was never acknowledged; ``read`` ignores it and reports it.

Several processes (uvicorn workers) may share one log: appends and the start-up tail repair
take an exclusive ``flock`` on the file, so a repair never cuts another process's write.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from mlsd.errors import DataError


class EventLog:
    """Append-only JSON-lines file; thread-safe ``append`` with fsync before return."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._repair_tail()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.appended = 0

    def _repair_tail(self) -> None:
        """Cut an incomplete last line left by a crash mid-append (it was never acknowledged)."""
        if not self.path.exists():
            return
        size = self.path.stat().st_size
        if size == 0:
            return
        with open(self.path, "rb+") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # released when f closes
            size = os.fstat(f.fileno()).st_size
            f.seek(max(0, size - 1))
            if f.read(1) == b"\n":
                return
            # find the last newline and truncate after it
            pos = size
            chunk = 65536
            while pos > 0:
                start = max(0, pos - chunk)
                f.seek(start)
                buf = f.read(pos - start)
                i = buf.rfind(b"\n")
                if i >= 0:
                    f.truncate(start + i + 1)
                    return
                pos = start
            f.truncate(0)

    def append(self, records: Sequence[dict[str, Any]]) -> int:
        """Durably append ``records`` (JSON-serialisable dicts); returns how many were written."""
        if not records:
            return 0
        data = b"".join(
            json.dumps(r, separators=(",", ":"), sort_keys=True).encode() + b"\n" for r in records
        )
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                view = memoryview(data)
                while view:
                    n = os.write(self._fd, view)
                    view = view[n:]
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.fsync(self._fd)  # outside the flock: other processes' writes need not wait
            self.appended += len(records)
        return len(records)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_events(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the complete records of a log; an incomplete last line is skipped.

    A corrupt line in the middle (not valid JSON) raises :class:`DataError` naming the line.
    """
    p = Path(path)
    if not p.exists():
        return
    with open(p, "rb") as f:
        lines = f.read().split(b"\n")
    # the element after the last "\n" is b"" for a complete file, or a torn record otherwise
    for i, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{p}: line {i} is not valid JSON: {e}") from e


def events_table(path: str | Path) -> pa.Table:
    """The log's records as a raw Arrow table (validate with :func:`mlsd.data.schema.validate`)."""
    rows = list(read_events(path))
    return pa.Table.from_pylist(rows) if rows else pa.table({})
