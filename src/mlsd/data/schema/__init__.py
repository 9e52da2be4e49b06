"""Data contracts: the Arrow schemas of users, creators, videos and events, and ``validate``.

Tables are stored as Parquet (CSV is accepted on input). Only the id columns and, for events,
``timestamp`` and ``event_type`` are required; other columns are optional and, when absent,
are added as nulls so that every block downstream sees one fixed schema.

Event types (one row per event, the log is long, not wide):

- ``impression``: the video was shown (``request_id``, ``position`` 1-based, ``surface``);
- ``play``: the user started it; ``watch_seconds`` is how long they watched (null if unknown);
- ``like``, ``share``, ``dislike`` (dislike also stands for "not interested");
- ``rating``: explicit rating data (``rating``), e.g. MovieLens.

``validate`` checks types, required columns, referential integrity, value ranges and duplicate
ids, and reports every problem with the file, the column, the first offending row and what was
expected. With ``repair=True`` it drops offending rows instead, and reports how many and why.

Modules: :mod:`.tables` (the schemas and limits), :mod:`.checks` (conforming a table and the
row-level checks), :mod:`.validation` (``validate`` and its report).
"""

from mlsd.data.schema.checks import conform
from mlsd.data.schema.tables import (
    CREATORS,
    EVENT_TYPES,
    EVENTS,
    ID_COLUMN,
    MAX_FUTURE,
    MIN_TIME,
    REQUIRED,
    SCHEMAS,
    USERS,
    VIDEOS,
    WATCH_TOLERANCE_ABS_S,
    WATCH_TOLERANCE_REL,
)
from mlsd.data.schema.validation import ValidationReport, validate

__all__ = [
    "CREATORS",
    "EVENTS",
    "EVENT_TYPES",
    "ID_COLUMN",
    "MAX_FUTURE",
    "MIN_TIME",
    "REQUIRED",
    "SCHEMAS",
    "USERS",
    "VIDEOS",
    "WATCH_TOLERANCE_ABS_S",
    "WATCH_TOLERANCE_REL",
    "ValidationReport",
    "conform",
    "validate",
]
