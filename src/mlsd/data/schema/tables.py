"""The Arrow schemas of the four tables (users, creators, videos, events), the columns each
requires, and the value ranges :func:`mlsd.data.schema.validate` enforces.

Only the id columns and, for events, ``timestamp`` and ``event_type`` are required; other
columns are optional (validation adds them as nulls when absent). Timestamps are UTC, in
``TS_TYPE`` (see :mod:`mlsd.data._coerce`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from mlsd.data._coerce import TS_TYPE

EVENT_TYPES: tuple[str, ...] = ("impression", "play", "like", "share", "dislike", "rating")

USERS = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("signup_time", TS_TYPE),
        pa.field("country", pa.string()),
        pa.field("language", pa.string()),
        pa.field("age_bucket", pa.string()),
        pa.field("device", pa.string()),
        pa.field("allows_explicit", pa.bool_()),
    ]
)

CREATORS = pa.schema(
    [
        pa.field("creator_id", pa.int64(), nullable=False),
        pa.field("language", pa.string()),
        pa.field("created_time", TS_TYPE),
    ]
)

VIDEOS = pa.schema(
    [
        pa.field("video_id", pa.int64(), nullable=False),
        pa.field("creator_id", pa.int64()),
        pa.field("duration_s", pa.float32()),
        pa.field("upload_time", TS_TYPE),
        pa.field("topic", pa.string()),  # primary topic
        pa.field("topics", pa.list_(pa.string())),  # all topics, primary first
        pa.field("language", pa.string()),
        pa.field("is_explicit", pa.bool_()),
        pa.field("title", pa.string()),
    ]
)

EVENTS = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("video_id", pa.int64(), nullable=False),
        pa.field("timestamp", TS_TYPE, nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("watch_seconds", pa.float32()),
        pa.field("request_id", pa.int64()),
        pa.field("position", pa.int16()),
        pa.field("surface", pa.string()),
        pa.field("device", pa.string()),
        pa.field("rating", pa.float32()),
        pa.field("weight", pa.float32()),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "users": USERS,
    "creators": CREATORS,
    "videos": VIDEOS,
    "events": EVENTS,
}
ID_COLUMN = {"users": "user_id", "creators": "creator_id", "videos": "video_id"}
REQUIRED: dict[str, tuple[str, ...]] = {
    "users": ("user_id",),
    "creators": ("creator_id",),
    "videos": ("video_id",),
    "events": ("user_id", "video_id", "timestamp", "event_type"),
}

# Timestamps outside [MIN_TIME, now + MAX_FUTURE] are treated as corrupt (a seconds/ms mix-up,
# a zero default...). MovieLens 100k starts in 1997, so 1990 leaves room for older public logs.
MIN_TIME = datetime(1990, 1, 1, tzinfo=UTC)
MAX_FUTURE = timedelta(days=366)
# Watch time may exceed duration slightly (player heartbeats, rounding): 5% + 2 s tolerance.
WATCH_TOLERANCE_REL = 0.05
WATCH_TOLERANCE_ABS_S = 2.0
