"""Fit inputs shared by the sources: positives, the video catalog, user attributes.

Every source's ``fit`` accepts either a :class:`~mlsd.data.dataset.Dataset` (positives are
derived with the book's label rules, :func:`mlsd.data.labels.positives`) or a positives table
(``user_id``, ``video_id``, ``timestamp``) with the ``videos``/``users`` tables passed apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlsd.config import LabelConfig
from mlsd.data.dataset import Dataset
from mlsd.data.labels import positives as label_positives
from mlsd.errors import DataError
from mlsd.retrieval.history import table_ms

__all__ = ["Catalog", "Positives", "fit_inputs"]

_UNKNOWN_TOPIC = "<unknown>"


@dataclass(frozen=True)
class Positives:
    """Training positives as arrays sorted by (user, time): the one layout sources train on.
    ``weights``: each positive's weight (a count, :func:`mlsd.data.labels.positives`), None
    when the log has none (every positive weighs 1)."""

    user_ids: np.ndarray  # int64[n]
    video_ids: np.ndarray  # int64[n]
    times_ms: np.ndarray  # int64[n]
    weights: np.ndarray | None = None  # float32[n]

    @classmethod
    def from_table(cls, table: pa.Table) -> Positives:
        missing = [c for c in ("user_id", "video_id", "timestamp") if c not in table.column_names]
        if missing:
            raise DataError(
                f"positives: missing column(s) {', '.join(missing)} (columns present: "
                f"{', '.join(table.column_names) or 'none'}); expected user_id, video_id, "
                "timestamp"
            )
        u = np.asarray(table.column("user_id").to_numpy(zero_copy_only=False), dtype=np.int64)
        v = np.asarray(table.column("video_id").to_numpy(zero_copy_only=False), dtype=np.int64)
        t = table_ms(table)
        order = np.lexsort((t, u))
        w = None
        if "weight" in table.column_names:
            col = pc.fill_null(table.column("weight"), 1.0)
            w = np.asarray(col.to_numpy(zero_copy_only=False), np.float32)[order]
        return cls(u[order], v[order], t[order], w)

    def __len__(self) -> int:
        return len(self.user_ids)

    def to_table(self) -> pa.Table:
        cols = {
            "user_id": self.user_ids,
            "video_id": self.video_ids,
            "timestamp": pa.array(self.times_ms).cast(pa.timestamp("ms", tz="UTC")),
        }
        if self.weights is not None:
            cols["weight"] = pa.array(self.weights, pa.float32())
        return pa.table(cols)


@dataclass(frozen=True)
class Catalog:
    """The videos table as arrays indexed by position in the sorted ``video_ids``.

    ``topic`` holds codes into ``topic_names`` (code 0 is ``<unknown>``); ``creator_ids`` is -1
    when unknown, ``duration_s`` NaN when unknown, ``upload_ms`` the int64 minimum when unknown
    (an unknown upload time counts as "always available").
    """

    video_ids: np.ndarray
    topic: np.ndarray
    topic_names: tuple[str, ...]
    creator_ids: np.ndarray
    duration_s: np.ndarray
    upload_ms: np.ndarray

    @classmethod
    def from_videos(cls, videos: pa.Table) -> Catalog:
        if "video_id" not in videos.column_names:
            raise DataError("videos: no 'video_id' column; expected the mlsd videos schema")
        ids = np.asarray(videos.column("video_id").to_numpy(zero_copy_only=False), np.int64)
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
        if len(ids) > 1 and (ids[1:] == ids[:-1]).any():
            dup = int(ids[1:][ids[1:] == ids[:-1]][0])
            raise DataError(f"videos: duplicate video_id {dup}; expected unique ids")

        def col(name: str) -> pa.ChunkedArray | None:
            return videos.column(name) if name in videos.column_names else None

        n = len(ids)
        topic_col = col("topic")
        if topic_col is not None:
            enc = pc.dictionary_encode(pc.fill_null(topic_col, _UNKNOWN_TOPIC)).combine_chunks()
            names = [str(x) for x in enc.dictionary.to_pylist()]
            codes = np.asarray(enc.indices.to_numpy(zero_copy_only=False), np.int64)
            # Re-code so that code 0 is <unknown> and the rest are sorted names (stable order).
            known = sorted(x for x in names if x != _UNKNOWN_TOPIC)
            topic_names = (_UNKNOWN_TOPIC, *known)
            remap = np.array([topic_names.index(x) for x in names], dtype=np.int64)
            topic = remap[codes][order] if len(codes) else np.zeros(0, np.int64)
        else:
            topic_names, topic = (_UNKNOWN_TOPIC,), np.zeros(n, np.int64)
        creator_col = col("creator_id")
        creators = (
            np.asarray(pc.fill_null(creator_col, -1).to_numpy(zero_copy_only=False), np.int64)[
                order
            ]
            if creator_col is not None
            else np.full(n, -1, np.int64)
        )
        dur_col = col("duration_s")
        dur = (
            np.asarray(pc.cast(dur_col, pa.float64()).to_numpy(zero_copy_only=False))[order]
            if dur_col is not None
            else np.full(n, np.nan)
        ).astype(np.float32)
        up_col = col("upload_time")
        lo = np.iinfo(np.int64).min
        if up_col is not None:
            ms = pc.cast(pc.cast(up_col, pa.timestamp("ms", tz="UTC"), safe=False), pa.int64())
            upload = np.asarray(pc.fill_null(ms, lo).to_numpy(zero_copy_only=False), np.int64)
            upload = upload[order]
        else:
            upload = np.full(n, lo, np.int64)
        return cls(ids, topic.astype(np.int64), tuple(topic_names), creators, dur, upload)

    @classmethod
    def from_ids(cls, video_ids: np.ndarray) -> Catalog:
        """A catalog with ids only (interactions-only data)."""
        ids = np.unique(np.asarray(video_ids, dtype=np.int64))
        n = len(ids)
        return cls(
            ids,
            np.zeros(n, np.int64),
            (_UNKNOWN_TOPIC,),
            np.full(n, -1, np.int64),
            np.full(n, np.nan, np.float32),
            np.full(n, np.iinfo(np.int64).min, np.int64),
        )

    def __len__(self) -> int:
        return len(self.video_ids)

    def index(self, video_ids: np.ndarray) -> np.ndarray:
        """Positions of ``video_ids`` in the catalog, -1 where unknown (any shape)."""
        v = np.asarray(video_ids, dtype=np.int64)
        if len(self.video_ids) == 0:
            return np.full(v.shape, -1, np.int64)
        pos = np.minimum(np.searchsorted(self.video_ids, v), len(self.video_ids) - 1)
        return np.where(self.video_ids[pos] == v, pos, -1)


def fit_inputs(
    data: Dataset | pa.Table,
    videos: pa.Table | None = None,
    users: pa.Table | None = None,
    label_cfg: LabelConfig | None = None,
    now_ms: int | None = None,
) -> tuple[Positives, Catalog, pa.Table | None]:
    """Normalise a source's ``fit`` arguments to (positives, catalog, users table).

    With ``now_ms``, positives after it are left out: a source fitted "as of" a time never
    learns from that time's future.
    """
    if isinstance(data, Dataset):
        table = label_positives(data.events, data.videos, label_cfg or LabelConfig())
        videos = data.videos if videos is None else videos
        users = data.users if users is None else users
    elif isinstance(data, pa.Table):
        table = data
    else:
        raise DataError(
            f"fit: got {type(data).__name__}; expected a Dataset or a positives table "
            "(user_id, video_id, timestamp)"
        )
    pos = Positives.from_table(table)
    if now_ms is not None:
        keep = pos.times_ms <= now_ms
        w = None if pos.weights is None else pos.weights[keep]
        pos = Positives(pos.user_ids[keep], pos.video_ids[keep], pos.times_ms[keep], w)
    catalog = Catalog.from_videos(videos) if videos is not None else Catalog.from_ids(pos.video_ids)
    return pos, catalog, users
