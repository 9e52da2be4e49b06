"""Small helpers on event tables shared by the stages, and :func:`as_dataset`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlsd.data.dataset import Dataset
from mlsd.data.schema import conform
from mlsd.retrieval.base import row_keys

__all__ = ["as_dataset", "events_of", "ids", "in_pairs", "pair_set"]


def ids(table: pa.Table, column: str) -> np.ndarray:
    """``int64[n]``: an id column of ``table``."""
    return np.asarray(table.column(column).to_numpy(zero_copy_only=False), dtype=np.int64)


def events_of(table: pa.Table, *types: str) -> np.ndarray:
    """``bool[n]``: which rows of an events table have one of the event ``types``."""
    return np.asarray(
        pc.is_in(table.column("event_type"), pa.array(list(types))).to_numpy(zero_copy_only=False),
        dtype=bool,
    )


def pair_set(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Sorted unique keys of the (user, item) pairs (see :func:`in_pairs`)."""
    return np.unique(row_keys(u, v, 0) if len(u) else np.zeros(0, np.int64))


def in_pairs(keys_sorted: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``bool[n]``: which (user, item) pairs are in ``keys_sorted`` (from :func:`pair_set`)."""
    if len(keys_sorted) == 0 or len(u) == 0:
        return np.zeros(len(u), bool)
    k = row_keys(u, v, 0)
    pos = np.minimum(np.searchsorted(keys_sorted, k), len(keys_sorted) - 1)
    return np.asarray(keys_sorted[pos] == k)


def as_dataset(
    data: Dataset | Any, videos: pa.Table | None = None, users: pa.Table | None = None
) -> Dataset:
    """A :class:`Dataset` from a dataset or an evaluation
    :class:`~mlsd.evaluation.Interactions` (its raw ``events``, or, for pure positives,
    synthetic ``play`` events whose unknown watch time counts as positive). A catalog or users
    table not given is the distinct ids of the events."""
    if isinstance(data, Dataset):
        return data
    events = getattr(data, "events", None)
    if events is None:
        u, v = np.asarray(data.user_ids), np.asarray(data.item_ids)
        ts = data.timestamps if data.timestamps is not None else np.arange(len(u))
        events = pa.table(
            {
                "user_id": pa.array(u, pa.int64()),
                "video_id": pa.array(v, pa.int64()),
                "timestamp": pa.array(np.asarray(ts, np.int64)).cast(pa.timestamp("ms", "UTC")),
                "event_type": pa.array(["play"] * len(u), pa.string()),
            }
        )
    events = conform(events, "events")[0]
    if videos is None:
        videos = conform(pa.table({"video_id": pc.unique(events.column("video_id"))}), "videos")[0]
    if users is None:
        users = conform(pa.table({"user_id": pc.unique(events.column("user_id"))}), "users")[0]
    return Dataset(events=events, videos=videos, users=users)
