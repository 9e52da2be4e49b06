"""NDCG@k of rows grouped by user, the measure the pipeline's choices at fit are made by, and
the row orders those choices compare (the ranker's, or one source's rank)."""

from __future__ import annotations

import numpy as np

__all__ = [
    "dcg_by_user",
    "ideal_dcg",
    "mixed_scores",
    "ndcg_by_user",
    "ndcg_full",
    "served_rows",
    "source_scores",
]


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


def ideal_dcg(n_pos: np.ndarray, k: int) -> np.ndarray:
    """Ideal binary DCG@``k`` of ``n_pos`` (``int[n]``, each > 0) positives each:
    ``float[n]``."""
    disc = np.cumsum(1 / np.log2(np.arange(2, k + 2)))
    return disc[np.minimum(n_pos, k).astype(int) - 1]


def ndcg_by_user(score: np.ndarray, y: np.ndarray, users: np.ndarray, k: int = 20) -> float:
    """Mean over users of NDCG@k of ``y`` (binary, ``(n,)``) ordered by ``score`` within each
    user's rows (ties: row order); users without a positive are left out."""
    _, dcg, n_pos = dcg_by_user(score, y, users, k)
    ok = n_pos > 0
    return float(np.mean(dcg[ok] / ideal_dcg(n_pos[ok], k))) if ok.any() else float("nan")


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
    ideal = ideal_dcg(np.array([n for _, n in want]), k)
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


def _ranks(score: np.ndarray, users: np.ndarray | None) -> np.ndarray:
    """0-based position of each row in its user's list ordered by ``score`` (descending,
    ties in row order); one list when ``users`` is None."""
    if users is None:
        o = np.argsort(-score, kind="stable")
        r = np.empty(len(score), np.float64)
        r[o] = np.arange(len(score))
        return r
    o = np.lexsort((np.arange(len(score)), -score, users))
    u = users[o]
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]]) if len(u) else np.zeros(0, np.intp)
    pos = np.arange(len(u)) - np.repeat(starts, np.diff(np.r_[starts, len(u)]))
    r = np.empty(len(score), np.float64)
    r[o] = pos
    return r


def mixed_scores(
    ranker_score: np.ndarray,
    features: np.ndarray,
    names: list[str],
    source: str,
    ranker_weight: float,
    users: np.ndarray | None = None,
) -> np.ndarray:
    """``(n,)`` scores of the order ``source`` and the ranker agree on: minus ``ranker_weight``
    times the ranker's rank plus ``1 - ranker_weight`` times the source's, within each user's
    rows (``users``; one list when None). Averaging the ranks of two comparable rankers is
    the plainest ensemble (Borda count; Cormack et al. 2009 for rank fusion in retrieval).
    ``source`` ``ranker`` or ``auto``, or a weight of 1, give the ranker's scores; 0 the
    source's (:func:`source_scores`)."""
    if source in ("ranker", "auto") or ranker_weight >= 1:
        return np.asarray(ranker_score)
    own = source_scores(features, names, source)
    if ranker_weight <= 0:
        return own
    w = float(ranker_weight)
    return -(w * _ranks(np.asarray(ranker_score, np.float64), users)
             + (1 - w) * _ranks(own, users))  # fmt: skip
