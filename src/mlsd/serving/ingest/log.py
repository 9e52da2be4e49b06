"""The event-log contract shared by the ingestion backends (file, Redis Streams).

A log stores JSON records, each carrying a non-empty string ``event_id``, durably and at most
once per ``event_id``: a retried request is stored once (within the backend's dedup window).
Positions are opaque strings defined by each backend; a reader passes the ``next`` of one
:class:`ReadResult` as ``after`` of the following :meth:`EventLogBackend.read`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from mlsd.errors import DataError, LogUnavailable

__all__ = [
    "AppendResult",
    "EventLogBackend",
    "LogUnavailable",
    "Position",
    "ReadResult",
    "Record",
    "check_batches",
]

#: A JSON-serialisable event; every record carries ``"event_id"``: a non-empty str.
Record = dict[str, Any]
#: An opaque log position (the file backend: a byte offset; Redis: a stream entry id).
Position = str


@dataclass(frozen=True)
class AppendResult:
    """The outcome of one batch of an :meth:`EventLogBackend.append` call.

    ``stored``: records of the batch newly written; ``duplicates``: records whose event_id was
    already in the log (or earlier in the same call) and were not written again; ``end``: the
    log position just after this batch's records (reading after it returns later records
    only).
    """

    stored: int
    duplicates: int
    end: Position


@dataclass(frozen=True)
class ReadResult:
    """One read: ``records`` complete, in log order; ``next`` to pass as ``after`` to
    continue; ``corrupt``: unreadable records skipped by this read (each logged once)."""

    records: list[Record]
    next: Position
    corrupt: int


@runtime_checkable
class EventLogBackend(Protocol):
    """A durable, deduplicating, append-only log of event records shared by processes."""

    #: Where the log lives, for messages: "file /path/events.jsonl", "redis stream ... on ...".
    description: str

    def append(self, batches: Sequence[Sequence[Record]]) -> list[AppendResult]:
        """Store ``batches`` with ONE durable commit; one result per batch, in order.

        Deduplicates by ``event_id`` across batches, calls, processes and restarts (race
        free). Raises :class:`LogUnavailable` when storage fails: then nothing of the call is
        acknowledged. A record without a non-empty str ``event_id`` raises
        :class:`~mlsd.errors.DataError` before anything is written.
        """
        ...

    def read(self, after: Position | None, limit: int) -> ReadResult:
        """At most ``limit`` complete records after ``after`` (None: from the start).

        Never returns an incomplete record and never blocks waiting for new ones.
        """
        ...

    def end(self) -> Position:
        """The position just after the last complete record now."""
        ...

    def close(self) -> None:
        """Release the log's file descriptor or connections (idempotent)."""
        ...


def check_batches(batches: Sequence[Sequence[Record]]) -> None:
    """Raise :class:`~mlsd.errors.DataError` naming the first record (batch and index) whose
    ``event_id`` is missing, not a str or empty; checks types only, writes nothing."""
    for b, batch in enumerate(batches):
        for i, r in enumerate(batch):
            eid = r.get("event_id") if isinstance(r, dict) else None
            if not isinstance(eid, str) or not eid:
                raise DataError(
                    f"batch {b}, record {i}: event_id {eid!r}; expected a non-empty str "
                    "(every logged event carries the id that makes retries idempotent)"
                )
