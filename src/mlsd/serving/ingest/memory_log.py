"""An in-process event log: the ingestion contract without durability.

For a single-process service started without ``--event-log`` and for tests: events are
deduplicated and tailed like the durable logs' but live only as long as the process.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from mlsd.serving.ingest.log import AppendResult, Position, ReadResult, Record, check_batches


class MemoryEventLog:
    """A list of records; positions are record counts (``"0"`` is the start)."""

    description = "memory (not durable)"

    def __init__(self) -> None:
        self.records: list[Record] = []
        self._ids: set[str] = set()
        self._lock = threading.Lock()

    def append(self, batches: Sequence[Sequence[Record]]) -> list[AppendResult]:
        check_batches(batches)
        out = []
        with self._lock:
            for batch in batches:
                stored = 0
                for r in batch:
                    if r["event_id"] in self._ids:
                        continue
                    self._ids.add(r["event_id"])
                    self.records.append(dict(r))
                    stored += 1
                out.append(AppendResult(stored, len(batch) - stored, str(len(self.records))))
        return out

    def read(self, after: Position | None, limit: int) -> ReadResult:
        start = int(after) if after is not None else 0
        with self._lock:
            rows = self.records[start : start + limit]
        return ReadResult([dict(r) for r in rows], str(start + len(rows)), 0)

    def end(self) -> Position:
        with self._lock:
            return str(len(self.records))

    def close(self) -> None:
        pass
