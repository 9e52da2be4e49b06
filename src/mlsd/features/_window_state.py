"""The online path's incremental state: window sums in hourly buckets per stored entity.

:class:`EntityState` holds, for one entity kind (see :data:`~mlsd.features.registry.WINDOWS`),
per window the sum of every counted signal over the hours ``[h - W, h]`` (``h`` the current
hour, whose bucket fills in real time), the per-hour buckets of the last 30 days so that hours
can leave windows, and for users the topic decay sums. :class:`KeyIndex` interns its keys as
dense row numbers. :class:`~mlsd.features.stream.OnlineFeatures` drives both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlsd.features._asof import sorted_by_key
from mlsd.features.registry import WINDOWS
from mlsd.features.signals import decay_weight

__all__ = ["EntityState", "KeyIndex", "unique_first_inverse"]


class KeyIndex:
    """Dense row numbers for keys (int64 ids, or id pairs packed into one int64)."""

    def __init__(self, arity: int) -> None:
        self.ids = np.zeros((0, arity), dtype=np.int64)
        self._packed = np.zeros(0, dtype=np.int64)
        self._index: pd.Index | None = pd.Index(self._packed)

    def __len__(self) -> int:
        return len(self._packed)

    def lookup(self, packed: np.ndarray, ids: np.ndarray | None = None) -> np.ndarray:
        """Rows of ``packed`` keys; with ``ids`` (``[n, arity]``), unseen keys are added."""
        if ids is not None and len(self._packed) == 0 and len(packed):
            # bulk load (materialize): every key is new; one sort gives rows and their order
            new, first, inv = unique_first_inverse(packed)
            self._packed, self.ids = new, ids[first]
            self._index = pd.Index(new)
            return np.asarray(inv, dtype=np.int64).reshape(-1)
        if self._index is None:
            self._index = pd.Index(self._packed)
        idx = np.asarray(self._index.get_indexer(packed), dtype=np.int64)
        miss = idx < 0
        if ids is not None and miss.any():
            new, first = np.unique(packed[miss], return_index=True)
            self._packed = np.concatenate([self._packed, new])
            self.ids = np.concatenate([self.ids, ids[miss][first]])
            self._index = pd.Index(self._packed)
            idx[miss] = self._index.get_indexer(packed[miss])
        return idx


def unique_first_inverse(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(keys, return_index=True, return_inverse=True)`` of int64 ``keys``, through
    the as-of engine's stable sort (~4x faster than numpy's argsort at 25M keys)."""
    lo, hi = int(keys.min()), int(keys.max())
    if hi - lo >= 1 << 62:  # the shifted keys would not fit: numpy's own
        u, first, inv = np.unique(keys, return_index=True, return_inverse=True)
        return u, first, np.asarray(inv, dtype=np.int64).reshape(-1)
    order, sk = sorted_by_key(keys - lo)
    head = np.ones(len(sk), dtype=bool)
    head[1:] = sk[1:] != sk[:-1]
    inv = np.empty(len(keys), dtype=np.int64)
    inv[order] = np.cumsum(head) - 1
    return sk[head] + lo, order[head], inv


class EntityState:
    """Window sums in hourly buckets (and, for users, topic decay sums) of one entity kind."""

    def __init__(self, entity: str, counters: dict[str, tuple[str, ...]], n_topics: int) -> None:
        self.entity = entity
        self.counters = counters
        self.windows = list(counters)
        self.hours = [WINDOWS[w] for w in self.windows]
        self.signals = sorted({s for sigs in counters.values() for s in sigs})
        self.keys = KeyIndex(2 if entity == "user_creator" else 1)
        self.sums = np.zeros((len(self.windows), 0, len(self.signals)))
        self.hist: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        self.n_topics = n_topics
        self.anchor = np.zeros(0)  # first valid watch (ms), NaN: none yet
        self.topic = np.zeros((0, n_topics))
        self.touched: list[np.ndarray] = []

    def grow(self) -> None:
        n = len(self.keys)
        cap = self.sums.shape[1]
        if n <= cap:
            return
        new = max(n, 2 * cap, 1024)
        sums = np.zeros((len(self.windows), new, len(self.signals)))
        sums[:, :cap] = self.sums
        self.sums = sums
        if self.entity == "user":
            anchor = np.full(new, np.nan)
            anchor[:cap] = self.anchor
            topic = np.zeros((new, self.n_topics))
            topic[:cap] = self.topic
            self.anchor, self.topic = anchor, topic

    def add(self, idx: np.ndarray, vals: np.ndarray, hour: int, now: int) -> None:
        """Add events of one ``hour`` (rows ``idx``, values ``[m, signals]``) at clock ``now``."""
        if len(idx) == 0 or not self.windows:
            return
        u, inv = np.unique(idx, return_inverse=True)
        # per-signal bincount: the same sums, in the same order, as np.add.at, several times
        # faster (it decides materialize's time over a large log)
        agg = np.empty((len(u), len(self.signals)))
        for j in range(len(self.signals)):
            agg[:, j] = np.bincount(inv, weights=vals[:, j], minlength=len(u))
        for wi, w_hours in enumerate(self.hours):
            if hour >= now - w_hours:  # late events count only in windows still covering them
                self.sums[wi, u] += agg
        if hour >= now - max(self.hours):
            self.hist.setdefault(hour, []).append((u, agg))
        self.touched.append(u)

    def roll(self, old: int, new: int) -> None:
        """Move the clock from hour ``old`` to ``new``: subtract the hours leaving each window
        (window ``W`` at hour ``h`` covers hours ``[h - W, h]``)."""
        if not self.windows or new <= old:
            return
        for wi, w_hours in enumerate(self.hours):
            span = range(old - w_hours, new - w_hours)
            for k in span if len(span) <= len(self.hist) else sorted(self.hist):
                if k in self.hist and old - w_hours <= k < new - w_hours:
                    for u, agg in self.hist[k]:
                        self.sums[wi, u] -= agg
                        self.touched.append(u)
        for k in [k for k in self.hist if k < new - max(self.hours)]:
            del self.hist[k]

    def add_topics(self, idx: np.ndarray, ts: np.ndarray, topic: np.ndarray) -> None:
        """Valid watches of known topic (time-sorted): decay weights into the topic sums."""
        if len(idx) == 0:
            return
        u, first = np.unique(idx, return_index=True)
        fresh = np.isnan(self.anchor[u])
        self.anchor[u[fresh]] = ts[first[fresh]]
        np.add.at(self.topic, (idx, topic), decay_weight(ts, self.anchor[idx]))
        self.touched.append(u)

    def raw(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Raw feature inputs of rows ``idx`` (window counters, topic sums)."""
        out: dict[str, np.ndarray] = {}
        for wi, w in enumerate(self.windows):
            for s in self.counters[w]:
                out[f"{s}_{w}"] = self.sums[wi, idx, self.signals.index(s)]
        if self.entity == "user":
            out["topic_decay"] = self.topic[idx]
        return out

    def take_touched(self) -> np.ndarray:
        idx = np.unique(np.concatenate(self.touched)) if self.touched else np.zeros(0, np.int64)
        self.touched = []
        return idx
