"""Compatibility: the readers of a file event log, for tests and tools.

The log itself is :class:`mlsd.serving.ingest.FileEventLog` (group commit, dedup by
``event_id``, shared by processes); ``EventLog`` is kept as its old name.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from mlsd.serving.ingest.file_log import FileEventLog, iter_records

__all__ = ["EventLog", "events_table", "read_events"]

EventLog = FileEventLog


def read_events(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the complete records of a log file in order; a missing file yields nothing.

    An incomplete last line (a writer died mid-append) is not returned; a corrupt line
    anywhere is skipped and logged (a warning naming the file and its byte offset).
    """
    return iter_records(path)


def events_table(path: str | Path) -> pa.Table:
    """The log's records as a raw Arrow table (validate with :func:`mlsd.data.schema.validate`)."""
    rows = list(read_events(path))
    return pa.Table.from_pylist(rows) if rows else pa.table({})
