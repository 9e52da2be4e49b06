"""Durable ingestion of user events: an append-only, deduplicating event log shared by processes.

Two backends behind one :class:`EventLogBackend` protocol, which pass the same contract tests:
:class:`FileEventLog` (JSON lines, ``flock`` + ``fsync``; the embedded default) and
:class:`RedisStreamLog` (a Redis stream shared by several service instances).
:class:`GroupCommit` batches concurrent requests into one durable commit.
:func:`open_log` picks the backend from a target string.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlsd.serving.ingest.file_log import FileEventLog, iter_records, read_file
from mlsd.serving.ingest.group_commit import GroupCommit, Overloaded
from mlsd.serving.ingest.log import (
    AppendResult,
    EventLogBackend,
    LogUnavailable,
    Position,
    ReadResult,
    Record,
)
from mlsd.serving.ingest.redis_log import RedisStreamLog

__all__ = [
    "AppendResult",
    "EventLogBackend",
    "FileEventLog",
    "GroupCommit",
    "LogUnavailable",
    "Overloaded",
    "Position",
    "ReadResult",
    "Record",
    "RedisStreamLog",
    "iter_records",
    "open_log",
    "read_file",
]

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def open_log(target: str | Path, **options: Any) -> EventLogBackend:
    """The event log at ``target``: ``redis://host:port/db[?stream=name]`` (also ``rediss://``,
    ``unix://``) opens a :class:`RedisStreamLog`, anything else a :class:`FileEventLog` at
    that path. ``options`` go to the backend's constructor (a wrong one is a ``TypeError``).

    Defined here rather than in ``log.py``: it imports both backends, which import ``log``.
    """
    if isinstance(target, str) and target.startswith(_REDIS_SCHEMES):
        return RedisStreamLog(target, **options)
    return FileEventLog(target, **options)
