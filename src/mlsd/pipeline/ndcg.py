"""NDCG@k of rows grouped by user, the measure the pipeline's choices at fit are made by."""

from __future__ import annotations

import numpy as np

__all__ = ["ndcg_by_user"]


def ndcg_by_user(score: np.ndarray, y: np.ndarray, users: np.ndarray, k: int = 20) -> float:
    """Mean over users of NDCG@k of ``y`` (binary, ``(n,)``) ordered by ``score`` within each
    user's rows (ties: row order); users without a positive are left out."""
    o = np.lexsort((-score, users))
    u, yy = users[o], y[o].astype(np.float64)
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    pos = np.arange(len(u)) - np.repeat(starts, np.diff(np.r_[starts, len(u)]))
    gain = np.where(pos < k, yy / np.log2(pos + 2), 0.0)
    dcg = np.add.reduceat(gain, starts) if len(u) else np.zeros(0)
    n_pos = np.add.reduceat(yy, starts) if len(u) else np.zeros(0)
    disc = np.cumsum(1 / np.log2(np.arange(2, k + 2)))
    ideal = np.where(n_pos > 0, disc[np.minimum(n_pos, k).astype(int) - 1], 0.0)
    ok = n_pos > 0
    return float(np.mean(dcg[ok] / ideal[ok])) if ok.any() else float("nan")
