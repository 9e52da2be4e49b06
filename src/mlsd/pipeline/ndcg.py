"""NDCG@k of rows grouped by user, the measure the pipeline's choices at fit are made by, and
the row orders those choices compare (the ranker's, or one source's rank)."""

from __future__ import annotations

import numpy as np

__all__ = ["dcg_by_user", "ndcg_by_user", "ndcg_full", "served_rows", "source_scores"]


def dcg_by_user(
    score: np.ndarray, y: np.ndarray, users: np.ndarray, k: int = 20
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(each user once, sorted; their DCG@k of binary ``y`` ordered by ``score`` within their
    rows, ties in row order; their number of positive rows)."""
    o = np.lexsort((-score, users))
    u, yy = users[o], y[o].astype(np.float64)
    if len(u) == 0:
        return u, np.zeros(0), np.zeros(0)
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    pos = np.arange(len(u)) - np.repeat(starts, np.diff(np.r_[starts, len(u)]))
    gain = np.where(pos < k, yy / np.log2(pos + 2), 0.0)
    return u[starts], np.add.reduceat(gain, starts), np.add.reduceat(yy, starts)


def _ideal(n_pos: np.ndarray, k: int) -> np.ndarray:
    """Ideal DCG@k of ``n_pos`` (> 0) positives each."""
    disc = np.cumsum(1 / np.log2(np.arange(2, k + 2)))
    return disc[np.minimum(n_pos, k).astype(int) - 1]


def ndcg_by_user(score: np.ndarray, y: np.ndarray, users: np.ndarray, k: int = 20) -> float:
    """Mean over users of NDCG@k of ``y`` (binary, ``(n,)``) ordered by ``score`` within each
    user's rows (ties: row order); users without a positive are left out."""
    _, dcg, n_pos = dcg_by_user(score, y, users, k)
    ok = n_pos > 0
    return float(np.mean(dcg[ok] / _ideal(n_pos[ok], k))) if ok.any() else float("nan")


def ndcg_full(
    score: np.ndarray, y: np.ndarray, users: np.ndarray, n_pos: dict[int, int], k: int = 20
) -> float:
    """Mean NDCG@k over the users of ``n_pos`` (user -> number of label positives, all of
    them, retrieved or not: a user without rows scores 0) of their rows ordered by
    ``score``; ``y`` the rows' labels."""
    u, dcg, _ = dcg_by_user(score, y, users, k)
    got = dict(zip(u.tolist(), dcg.tolist(), strict=True))
    want = [(v, n) for v, n in n_pos.items() if n > 0]
    if not want:
        return float("nan")
    ideal = _ideal(np.array([n for _, n in want]), k)
    return float(np.mean([got.get(v, 0.0) for v, _ in want] / ideal))


def served_rows(x: np.ndarray, names: list[str]) -> np.ndarray:
    """``bool[n]``: the ranker rows some source proposed (training rows also hold logged
    impressions no source proposed, which no request ever ranks)."""
    if "n_sources" not in names:
        return np.ones(len(x), bool)
    return np.asarray(x[:, names.index("n_sources")] > 0)


def source_scores(features: np.ndarray, names: list[str], source: str) -> np.ndarray:
    """``(n,)`` scores ordering rows by ``source``'s rank (rows it did not rank last)."""
    r = features[:, names.index(f"rank_{source}")].astype(np.float64)
    return -np.where(np.isnan(r), 1e9, r)
