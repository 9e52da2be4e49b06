"""MostPop: every user gets the items most users interacted with in training."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mlsd.evaluation.baselines._base import BaseRecommender

__all__ = ["MostPop"]


class MostPop(BaseRecommender):
    """Ranks items by the number of distinct training users who interacted with them (ties:
    smaller item id first); scores are those counts. No hyperparameters; the floor every
    personalised model must beat."""

    def __init__(self) -> None:
        pass

    def _fit(self, x: sp.csr_matrix) -> None:
        pass

    def _top(self, rows: np.ndarray, k: int, exclude_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        # One global ranking: only its first k + (most items any of these users has seen)
        # entries can reach a list, so seen items are masked on that prefix, not the catalog.
        order = self._pop_order
        extra = int(np.diff(self._x.indptr)[rows].max()) if exclude_seen and len(rows) else 0
        head = order[: min(len(order), k + extra)]
        blocked = np.zeros((len(rows), len(head)), dtype=bool)
        if exclude_seen:
            blocked = np.asarray(self._x[rows][:, head].toarray() != 0)
        # stable sort of the blocked flags keeps allowed items in popularity order
        pick = np.argsort(blocked, axis=1, kind="stable")[:, :k]
        ok = ~np.take_along_axis(blocked, pick, axis=1)
        idx = np.where(ok, head[pick], -1).astype(np.int64)
        vals = np.where(ok, self.popularity_[head[pick]], -np.inf).astype(np.float32)
        if idx.shape[1] < k:
            pad = k - idx.shape[1]
            idx = np.pad(idx, ((0, 0), (0, pad)), constant_values=-1)
            vals = np.pad(vals, ((0, 0), (0, pad)), constant_values=-np.inf)
        return idx, vals
