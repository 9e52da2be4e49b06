"""What both feature paths read: per-event signals, the video catalog and category vocabularies.

:func:`event_signals` turns an event log into numpy columns (one entry per event: is it an
impression, a play, a valid watch, a like; the completion share of a play; the video's creator
and topic). It is the one place where events are interpreted, used by the offline builder and
by the online updater alike, so the two cannot disagree about what a valid watch is (the rule is
:func:`mlsd.data.labels.valid_watch`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlsd.config import LabelConfig
from mlsd.data.dataset import Dataset
from mlsd.data.labels import valid_watch
from mlsd.data.schema import EVENT_TYPES
from mlsd.errors import DataError

__all__ = [
    "HALF_LIFE_MS",
    "HOUR_MS",
    "SIGNALS",
    "Catalog",
    "Signals",
    "Vocab",
    "decay_weight",
    "event_signals",
    "timestamps_ms",
    "upload_minute",
]

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
#: Half-life of the time decay of topic affinity: a valid watch 14 days old weighs half as much
#: as one just now.
HALF_LIFE_MS = 14 * DAY_MS
#: Upload times are kept as whole minutes since this epoch: a float32 holds every integer below
#: 2^24, so minutes in [1988, 2051] survive the online store's float32 records exactly.
UPLOAD_EPOCH_MS = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp() * 1000)

#: The per-event signals windowed features count. ``comp`` is a sum (completion share of plays
#: whose watch time and duration are known; ``cplay`` counts those plays), the others are 0/1.
SIGNALS: tuple[str, ...] = ("imp", "play", "valid", "like", "share", "dislike", "cplay", "comp")
_TYPE_SIGNAL = {"impression": "imp", "play": "play", "like": "like", "share": "share",
                "dislike": "dislike"}  # fmt: skip


def timestamps_ms(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A timestamp column as int64 epoch milliseconds (UTC)."""
    ts = pc.cast(col, pa.timestamp("ms", tz="UTC"), safe=False)
    return np.asarray(pc.cast(ts, pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def upload_minute(upload_ms: np.ndarray) -> np.ndarray:
    """Whole minutes from ``UPLOAD_EPOCH_MS`` to each upload (float64; NaN stays NaN)."""
    return np.floor((np.asarray(upload_ms, dtype=np.float64) - UPLOAD_EPOCH_MS) / 60_000.0)


def decay_weight(ts_ms: np.ndarray, anchor_ms: np.ndarray) -> np.ndarray:
    """Weight ``2 ** ((ts - anchor) / HALF_LIFE)`` of events at ``ts_ms`` (float64).

    Time-decayed shares only depend on weight *ratios*, so any per-user anchor gives the same
    share as the textbook ``2 ** (-(t - ts) / HALF_LIFE)`` at request time ``t``; anchoring at
    the user's first valid watch keeps weights >= 1 and exactly reproducible by both paths
    (overflow would need 1023 half-lives, about 39 years, between a user's first and last watch).
    """
    d = np.asarray(ts_ms, dtype=np.float64) - np.asarray(anchor_ms, dtype=np.float64)
    return np.exp2(d / HALF_LIFE_MS)


def _sorted_unique_strings(*cols: pa.ChunkedArray | pa.Array | None) -> tuple[str, ...]:
    vals: set[str] = set()
    for c in cols:
        if c is not None:
            vals.update(v for v in pc.unique(c.cast(pa.string())).to_pylist() if v is not None)
    return tuple(sorted(vals))


@dataclass(frozen=True)
class Vocab:
    """Category vocabularies: a category's code is its index in the sorted tuple, -1 unknown.

    Fitted from a dataset (:meth:`from_dataset`), saved with a materialization (JSON), so that
    offline and online code the same string the same way.
    """

    topics: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    surfaces: tuple[str, ...] = ()

    @classmethod
    def from_dataset(cls, ds: Dataset) -> Vocab:
        ev = ds.events
        return cls(
            topics=_sorted_unique_strings(ds.videos.column("topic")),
            devices=_sorted_unique_strings(ds.users.column("device"), ev.column("device")),
            surfaces=_sorted_unique_strings(ev.column("surface")),
        )

    def codes(
        self, kind: str, values: pa.Array | pa.ChunkedArray | np.ndarray | list[Any]
    ) -> np.ndarray:
        """Codes (int32, -1 for null or unseen values) of ``values`` in vocabulary ``kind``."""
        vocab = getattr(self, kind)
        arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
        if len(arr) == 0:
            return np.zeros(0, dtype=np.int32)
        idx = pc.index_in(arr.cast(pa.string()), pa.array(list(vocab), pa.string()))
        return np.asarray(idx.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int32)

    def code(self, kind: str, value: str | None) -> int:
        vocab = getattr(self, kind)
        return vocab.index(value) if value in vocab else -1

    def to_json(self) -> str:
        return json.dumps({k: list(getattr(self, k)) for k in ("topics", "devices", "surfaces")})

    @classmethod
    def from_json(cls, text: str) -> Vocab:
        d = json.loads(text)
        return cls(**{k: tuple(d.get(k, ())) for k in ("topics", "devices", "surfaces")})


@dataclass
class Catalog:
    """Static video attributes as numpy columns, looked up by video id (vectorised).

    ``creator`` is -1 and ``topic`` is -1 when unknown; ``duration_s``, ``upload_minute`` are
    NaN when unknown; ``is_explicit`` is 0/1 (unknown: 0).
    """

    video_id: np.ndarray  # int64, sorted
    creator: np.ndarray  # int64
    topic: np.ndarray  # int32 codes
    duration_s: np.ndarray  # float64
    upload_minute: np.ndarray  # float64
    is_explicit: np.ndarray  # float64
    vocab: Vocab = field(default_factory=Vocab)

    @classmethod
    def from_dataset(cls, ds: Dataset, vocab: Vocab | None = None) -> Catalog:
        vocab = vocab or Vocab.from_dataset(ds)
        v = ds.videos
        ids = np.asarray(v.column("video_id").to_numpy(zero_copy_only=False), dtype=np.int64)
        order = np.argsort(ids, kind="stable")

        def floats(col: str, fill: float) -> np.ndarray:
            c = pc.cast(v.column(col), pa.float64()).fill_null(fill)
            return np.asarray(c.to_numpy(zero_copy_only=False), dtype=np.float64)[order]

        zero = pa.scalar(0, pa.timestamp("ms", "UTC"))
        up = timestamps_ms(v.column("upload_time").fill_null(zero))
        up_min = np.where(_present(v.column("upload_time")), upload_minute(up), np.nan)
        explicit = pc.cast(v.column("is_explicit").fill_null(False), pa.float64())
        return cls(
            video_id=ids[order],
            creator=floats("creator_id", -1).astype(np.int64),
            topic=vocab.codes("topics", v.column("topic"))[order],
            duration_s=floats("duration_s", np.nan),
            upload_minute=up_min[order],
            is_explicit=np.asarray(explicit.to_numpy(zero_copy_only=False))[order],
            vocab=vocab,
        )

    def __len__(self) -> int:
        return len(self.video_id)

    def rows(self, video_ids: np.ndarray) -> np.ndarray:
        """Catalog row of each id (int64, -1 for ids not in the catalog)."""
        ids = np.asarray(video_ids, dtype=np.int64)
        n = len(self.video_id)
        if n == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        lo = int(self.video_id[0])
        if int(self.video_id[-1]) - lo == n - 1:  # contiguous ids: direct indexing
            pos = ids - lo
            pos[(pos < 0) | (pos >= n)] = -1
            return pos
        pos = np.searchsorted(self.video_id, ids)
        np.minimum(pos, n - 1, out=pos)
        pos[self.video_id[pos] != ids] = -1
        return pos

    def attributes(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The raw inputs of catalog-sourced video features at catalog ``rows`` (from
        :meth:`rows`), float64 ``[len(rows)]`` each: ``duration_s``, ``upload_minute`` (NaN
        unknown), ``is_explicit`` (0 unknown), ``topic`` (code, -1 unknown). Both feature paths
        read them here, so that an unknown video gets the same values offline and online."""
        return {
            "duration_s": self.take("duration_s", rows, np.nan),
            "is_explicit": self.take("is_explicit", rows, 0.0),
            "topic": self.take("topic", rows, -1).astype(np.float64),
            "upload_minute": self.take("upload_minute", rows, np.nan),
        }

    def take(self, column: str, rows: np.ndarray, fill: float) -> np.ndarray:
        """``column`` at catalog ``rows`` (from :meth:`rows`), ``fill`` where the row is -1."""
        col = getattr(self, column)
        if len(col) == 0:
            return np.full(len(rows), fill)
        out = col[rows]  # -1 reads the last row: overwritten below
        out[rows < 0] = fill
        return out


def _present(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(pc.is_valid(col).to_numpy(zero_copy_only=False), dtype=bool)


@dataclass
class Signals:
    """Per-event numpy columns (all of one length, in the events' order).

    ``ts`` int64 ms; ``user``, ``video``, ``creator`` int64 ids (creator -1: video not in the
    catalog); ``topic`` int32 code (-1 unknown); every name of :data:`SIGNALS` an array of
    float32 0/1 (float64 for the ``comp`` sums).
    """

    ts: np.ndarray
    user: np.ndarray
    video: np.ndarray
    creator: np.ndarray
    topic: np.ndarray
    values: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, idx: np.ndarray | slice) -> Signals:
        return Signals(
            self.ts[idx], self.user[idx], self.video[idx], self.creator[idx], self.topic[idx],
            {k: v[idx] for k, v in self.values.items()},
        )  # fmt: skip


def event_signals(
    events: pa.Table, catalog: Catalog, videos: pa.Table | None, label_cfg: LabelConfig
) -> Signals:
    """Interpret an event log: see :class:`Signals`. Vectorised; raises DataError on a log
    without the required columns. ``videos`` supplies durations for the label rule."""
    for c in ("user_id", "video_id", "timestamp", "event_type"):
        if c not in events.column_names:
            raise DataError(f"events: missing column {c!r}; expected the mlsd events schema")
    n = events.num_rows
    code = pc.index_in(events.column("event_type").cast(pa.string()), pa.array(EVENT_TYPES))
    etype = np.asarray(code.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int8)
    vals: dict[str, np.ndarray] = {}
    for name, sig in _TYPE_SIGNAL.items():
        vals[sig] = (etype == EVENT_TYPES.index(name)).astype(np.float32)
    # The label rule only ever holds for plays and ratings: apply it to those rows alone.
    maybe = np.flatnonzero(
        (etype == EVENT_TYPES.index("play")) | (etype == EVENT_TYPES.index("rating"))
    )
    vals["valid"] = np.zeros(n, dtype=np.float32)
    if len(maybe):
        sub = events.take(pa.array(maybe))
        vals["valid"][maybe] = valid_watch(sub, videos, label_cfg)
    video = np.asarray(events.column("video_id").to_numpy(zero_copy_only=False), dtype=np.int64)
    rows = catalog.rows(video)
    dur = catalog.take("duration_s", rows, np.nan)
    if "watch_seconds" in events.column_names:
        ws = pc.cast(events.column("watch_seconds"), pa.float64())
        watch = np.asarray(ws.to_numpy(zero_copy_only=False), dtype=np.float64)
    else:
        watch = np.full(n, np.nan)
    known = (vals["play"] > 0) & (dur > 0) & ~np.isnan(watch)
    vals["cplay"] = known.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        vals["comp"] = np.where(known, np.clip(watch / np.where(known, dur, 1.0), 0.0, 1.0), 0.0)
    return Signals(
        ts=timestamps_ms(events.column("timestamp")),
        user=np.asarray(events.column("user_id").to_numpy(zero_copy_only=False), dtype=np.int64),
        video=video,
        creator=catalog.take("creator", rows, -1).astype(np.int64),
        topic=catalog.take("topic", rows, -1).astype(np.int32),
        values=vals,
    )
