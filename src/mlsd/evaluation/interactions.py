"""What an evaluated model is trained on, and the interface it must offer.

:class:`Interactions` holds positive interactions as parallel numpy arrays
``(user_ids, item_ids, weights)`` (it unpacks like that tuple), optionally with their times and
the raw event log of the training period for models that need more than positives (the full
pipeline builds features from it). :class:`Model` is the two-method interface every evaluated
model offers: the baselines here, and the full ``Recommender`` wrapped in a factory.

Item id ``-1`` is reserved: recommendation lists are padded with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlsd.errors import DataError

__all__ = ["PAD", "Interactions", "Model", "as_interactions"]

PAD = -1  # the item id that pads recommendation lists shorter than k


@runtime_checkable
class Model(Protocol):
    """A model the evaluation protocols can train and query.

    ``fit`` learns from positive interactions (its return value is ignored). ``recommend``
    returns ``int64[len(user_ids), k]`` item ids, best first, padded with ``-1`` when fewer than
    ``k`` items can be recommended; with ``exclude_seen`` a user's training items are never
    returned. It must answer for users absent from training (a fallback such as popularity).
    """

    def fit(self, interactions: Interactions) -> Any: ...

    def recommend(self, user_ids: np.ndarray, k: int, exclude_seen: bool = True) -> np.ndarray: ...


@dataclass(frozen=True, eq=False)
class Interactions:
    """Positive interactions, one row per (user, item) event, as parallel arrays.

    - ``user_ids``, ``item_ids``: ``int64[n]``, arbitrary ids (item id ``-1`` is reserved);
    - ``weights``: ``float32[n]``, finite and > 0 (1 for plain positives, a count such as
      plays otherwise; the baselines count a row as ``log2(1 + w)``,
      :func:`mlsd.data.labels.confidence`, and sum repeated pairs);
    - ``timestamps``: ``int64[n]`` epoch milliseconds, or None when unknown;
    - ``events``: the raw event table of the training period (mlsd events schema), or None. Only
      models that build their own features read it; it never holds rows of the test period.

    Construction validates shapes and values and raises :class:`DataError` naming the first
    offending row.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    weights: np.ndarray
    timestamps: np.ndarray | None = None
    events: pa.Table | None = None

    def __post_init__(self) -> None:
        u = np.asarray(self.user_ids)
        i = np.asarray(self.item_ids)
        n = len(u)
        w = np.ones(n, np.float32) if self.weights is None else np.asarray(self.weights)
        for name, arr in (("user_ids", u), ("item_ids", i), ("weights", w)):
            if arr.ndim != 1 or len(arr) != n:
                raise DataError(
                    f"interactions: {name} has shape {arr.shape}; expected ({n},) like user_ids"
                )
        for name, arr in (("user_ids", u), ("item_ids", i)):
            if n and not np.issubdtype(arr.dtype, np.integer):
                raise DataError(f"interactions: {name} has dtype {arr.dtype}; expected integers")
        bad = np.flatnonzero(i == -1)
        if bad.size:
            raise DataError(
                f"interactions: item_ids row {bad[0]}: value -1 ({bad.size:,} rows); "
                "expected an id other than -1 (reserved for padding)"
            )
        bad = np.flatnonzero(~(np.isfinite(w) & (w > 0)))
        if bad.size:
            raise DataError(
                f"interactions: weights row {bad[0]}: value {w[bad[0]]!r} ({bad.size:,} rows); "
                "expected a finite weight > 0"
            )
        object.__setattr__(self, "user_ids", u.astype(np.int64, copy=False))
        object.__setattr__(self, "item_ids", i.astype(np.int64, copy=False))
        object.__setattr__(self, "weights", w.astype(np.float32, copy=False))
        if self.timestamps is not None:
            t = np.asarray(self.timestamps, dtype=np.int64)
            if t.shape != (n,):
                raise DataError(f"interactions: timestamps has shape {t.shape}; expected ({n},)")
            object.__setattr__(self, "timestamps", t)

    def __iter__(self) -> Iterator[np.ndarray]:
        """``user_ids, item_ids, weights = interactions``."""
        return iter((self.user_ids, self.item_ids, self.weights))

    def __len__(self) -> int:
        return len(self.user_ids)

    @classmethod
    def from_table(
        cls, table: pa.Table, *, weight: str | None = None, events: pa.Table | None = None
    ) -> Interactions:
        """From a table with ``user_id`` and ``video_id`` (e.g. :func:`mlsd.data.labels.positives`);
        ``timestamp`` is read when present, weights from column ``weight`` (default all 1)."""
        for c in ("user_id", "video_id"):
            if c not in table.column_names:
                present = ", ".join(table.column_names) or "none"
                raise DataError(f"interactions table: no '{c}' column (columns present: {present})")
        n = table.num_rows
        w = np.ones(n, np.float32) if weight is None else _numpy(table, weight, np.float32)
        ts = None
        if "timestamp" in table.column_names:
            col = pc.cast(table.column("timestamp"), pa.timestamp("ms", tz="UTC"), safe=False)
            ts = _numpy(pa.table({"t": pc.cast(col, pa.int64())}), "t", np.int64)
        return cls(
            _numpy(table, "user_id", np.int64), _numpy(table, "video_id", np.int64), w, ts, events
        )

    def per_user(self, user_ids: np.ndarray) -> np.ndarray:
        """``int64[len(user_ids)]``: how many rows each given user has (0 when absent)."""
        uniq, counts = np.unique(self.user_ids, return_counts=True)
        q = np.asarray(user_ids, dtype=np.int64)
        if len(uniq) == 0:
            return np.zeros(len(q), np.int64)
        pos = np.searchsorted(uniq, q).clip(max=len(uniq) - 1)
        return np.where(uniq[pos] == q, counts[pos], 0).astype(np.int64)


def _numpy(table: pa.Table, column: str, dtype: type) -> np.ndarray:
    col = table.column(column)
    if col.null_count:
        raise DataError(f"interactions table: column '{column}' has {col.null_count:,} nulls")
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=dtype)


def as_interactions(data: Interactions | tuple[np.ndarray, ...]) -> Interactions:
    """Accept an :class:`Interactions` or a ``(user_ids, item_ids[, weights])`` tuple."""
    if isinstance(data, Interactions):
        return data
    parts = tuple(data)
    if len(parts) not in (2, 3):
        raise DataError(
            f"interactions: a tuple of {len(parts)} arrays; expected (user_ids, item_ids, weights)"
        )
    u, i = parts[0], parts[1]
    w = parts[2] if len(parts) == 3 else np.ones(len(np.asarray(u)), np.float32)
    return Interactions(np.asarray(u), np.asarray(i), np.asarray(w))
