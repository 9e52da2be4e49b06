"""Offline ranking metrics, vectorised over users, with a breakdown by user segment.

Inputs:

- ``recs``: ``int64[n_users, K]`` recommended item ids per user, best first, padded with ``-1``;
  a row must not repeat an item (:class:`DataError` otherwise);
- ``truth``: the relevant item ids of each user, aligned with the rows of ``recs``, as a
  :class:`Truth` (CSR-like) or a sequence of arrays.

Accuracy metrics return one value per user (``float64[n_users]``), NaN for a user with no
relevant item (nothing to find: such users are left out of the averages). Binary relevance
throughout; ``k`` must not exceed ``K``. Definitions (``hit_j`` = item at rank ``j`` is relevant,
``R`` = the user's relevant items):

- Recall@k = ``sum_{j<=k} hit_j / |R|`` (so it is below 1 when ``|R| > k``);
- Precision@k = ``sum_{j<=k} hit_j / k``; HitRate@k = 1 if any ``hit_j``, ``j <= k``;
- NDCG@k = DCG/IDCG with ``DCG = sum_{j<=k} hit_j / log2(j + 1)`` and IDCG the DCG of ``min(|R|,
  k)`` hits at the top (Järvelin & Kekäläinen, TOIS 2002, binary gains, log2 discount);
- MAP@k: ``AP@k = sum_{j<=k} P@j * hit_j / min(|R|, k)`` (the normalisation of Manning et al.,
  *Introduction to Information Retrieval*, sec. 8.4, truncated at k), averaged over users;
- MRR@k: ``1 / rank`` of the first relevant item within the top k, 0 when there is none.

Beyond-accuracy metrics (catalog coverage, intra-list diversity, novelty, creator
concentration) live in :mod:`mlsd.evaluation.beyond` and are re-exported here;
:func:`evaluate` computes everything at once, overall and per segment (:mod:`.segments`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mlsd.errors import ConfigError, DataError
from mlsd.evaluation.beyond import (
    ItemInfo,
    catalog_coverage,
    creator_concentration,
    gini,
    intra_list_diversity,
    novelty,
)
from mlsd.evaluation.segments import DEFAULT_LIGHT_MAX, SEGMENTS, segment_users

__all__ = [
    "Evaluation",
    "ItemInfo",
    "Truth",
    "as_truth",
    "catalog_coverage",
    "check_recs",
    "creator_concentration",
    "evaluate",
    "gini",
    "hit_rate_at_k",
    "hits",
    "intra_list_diversity",
    "map_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "novelty",
    "precision_at_k",
    "recall_at_k",
]


@dataclass(frozen=True, eq=False)
class Truth:
    """Relevant item ids per user in CSR layout: user ``u`` (a row of ``recs``) has the ids
    ``indices[indptr[u]:indptr[u + 1]]``. Ids within a user are unique (the constructors
    deduplicate); ``indptr`` is ``int64[n_users + 1]`` from 0 to ``len(indices)``."""

    indptr: np.ndarray
    indices: np.ndarray

    def __post_init__(self) -> None:
        p = np.asarray(self.indptr, dtype=np.int64)
        ind = np.asarray(self.indices, dtype=np.int64)
        if p.ndim != 1 or len(p) == 0 or p[0] != 0 or p[-1] != len(ind) or np.any(np.diff(p) < 0):
            raise DataError(
                f"truth: indptr of shape {p.shape} is not a valid CSR pointer for "
                f"{len(ind)} ids; expected non-decreasing from 0 to {len(ind)}"
            )
        object.__setattr__(self, "indptr", p)
        object.__setattr__(self, "indices", ind)

    @classmethod
    def from_lists(cls, lists: Iterable[Iterable[int] | np.ndarray]) -> Truth:
        """From one array (or list) of relevant ids per user; duplicates are dropped."""
        seqs = (x if isinstance(x, np.ndarray | list | tuple) else list(x) for x in lists)
        arrays = [np.unique(np.asarray(x, dtype=np.int64).ravel()) for x in seqs]
        sizes = np.array([len(a) for a in arrays], dtype=np.int64)
        indptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        indices = np.concatenate(arrays).astype(np.int64) if arrays else np.zeros(0, np.int64)
        return cls(indptr, indices)

    @classmethod
    def from_pairs(cls, user_ids: np.ndarray, item_ids: np.ndarray, users: np.ndarray) -> Truth:
        """From (user, item) pairs, one row per id in ``users`` (in that order; a user with no
        pair gets an empty row, pairs of users not in ``users`` are ignored); duplicate pairs
        are dropped."""
        users = np.asarray(users, dtype=np.int64)
        u = np.asarray(user_ids, dtype=np.int64)
        i = np.asarray(item_ids, dtype=np.int64)
        order = np.argsort(users, kind="stable")
        su = users[order]
        pos = np.searchsorted(su, u).clip(max=max(len(su) - 1, 0))
        keep = (su[pos] == u) if len(su) else np.zeros(len(u), bool)
        row = order[pos[keep]]
        pairs = np.unique(np.stack([row, i[keep]], axis=1), axis=0) if keep.any() else None
        if pairs is None:
            return cls(np.zeros(len(users) + 1, np.int64), np.zeros(0, np.int64))
        counts = np.bincount(pairs[:, 0], minlength=len(users))
        return cls(np.concatenate([[0], np.cumsum(counts)]), pairs[:, 1])

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    @property
    def sizes(self) -> np.ndarray:
        """``int64[n_users]``: number of relevant items per user."""
        return np.diff(self.indptr)

    def __len__(self) -> int:
        return self.n_users

    def __getitem__(self, u: int) -> np.ndarray:
        return self.indices[self.indptr[u] : self.indptr[u + 1]]

    def take(self, rows: np.ndarray) -> Truth:
        """The truth of the given rows (an index array or a boolean mask), in that order."""
        rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
        return Truth.from_lists([self[int(r)] for r in rows])


def as_truth(truth: Truth | Sequence[np.ndarray], n_users: int | None = None) -> Truth:
    """Accept a :class:`Truth` or a sequence of id arrays; check the row count when given."""
    t = truth if isinstance(truth, Truth) else Truth.from_lists(truth)
    if n_users is not None and t.n_users != n_users:
        raise DataError(f"truth has {t.n_users:,} users; expected {n_users:,} (one per recs row)")
    return t


def check_recs(recs: np.ndarray) -> np.ndarray:
    """Validate ``recs`` (2-D integer array, no repeated id in a row) and return it as int64."""
    r = np.asarray(recs)
    if r.ndim != 2:
        raise DataError(f"recs has shape {r.shape}; expected (n_users, k)")
    if r.size and not np.issubdtype(r.dtype, np.integer):
        raise DataError(f"recs has dtype {r.dtype}; expected integer item ids (-1 for padding)")
    r = r.astype(np.int64, copy=False)
    if r.shape[1] > 1:
        s = np.sort(r, axis=1)
        dup = (s[:, 1:] == s[:, :-1]) & (s[:, 1:] != -1)
        bad = np.flatnonzero(dup.any(axis=1))
        if bad.size:
            row = int(bad[0])
            item = int(s[row, 1:][dup[row]][0])
            raise DataError(
                f"recs row {row}: item {item} appears twice ({bad.size:,} rows with repeats); "
                "expected each item at most once per list"
            )
    return r


def hits(recs: np.ndarray, truth: Truth | Sequence[np.ndarray]) -> np.ndarray:
    """``bool[n_users, K]``: whether ``recs[u, j]`` is relevant to user ``u`` (padding never is).

    Vectorised: ids are encoded jointly and each (row, item) pair becomes one int64 key, so the
    whole matrix is one sort-based ``np.isin``; O((nK + |truth|) log) time.
    """
    r = check_recs(recs)
    n, k = r.shape
    t = as_truth(truth, n)
    if n == 0 or k == 0 or len(t.indices) == 0:
        return np.zeros((n, k), dtype=bool)
    _, codes = np.unique(np.concatenate([r.ravel(), t.indices]), return_inverse=True)
    m = int(codes.max()) + 1
    rec_keys = np.arange(n, dtype=np.int64)[:, None] * m + codes[: n * k].reshape(n, k)
    truth_keys = np.repeat(np.arange(n, dtype=np.int64), t.sizes) * m + codes[n * k :]
    return np.isin(rec_keys, truth_keys) & (r != -1)


def _prep(
    recs: np.ndarray, truth: Truth | Sequence[np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    r = check_recs(recs)
    if not 1 <= k <= r.shape[1]:
        raise ConfigError(f"k={k}: expected 1 <= k <= {r.shape[1]} (the width of recs)")
    t = as_truth(truth, r.shape[0])
    return hits(r[:, :k], t), t.sizes.astype(np.float64)


def _masked(values: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    return np.where(sizes > 0, values, np.nan)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


# Kernels: h = bool[n, k] hits, s = float64[n] relevant-set sizes.
def _recall(h: np.ndarray, s: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return _masked(h.sum(axis=1) / s, s)


def _precision(h: np.ndarray, s: np.ndarray) -> np.ndarray:
    return _masked(h.sum(axis=1) / h.shape[1], s)


def _hit(h: np.ndarray, s: np.ndarray) -> np.ndarray:
    return _masked(np.any(h, axis=1).astype(np.float64), s)


def _ndcg(h: np.ndarray, s: np.ndarray) -> np.ndarray:
    k = h.shape[1]
    disc = _discounts(k)
    dcg = (h * disc).sum(axis=1)
    ideal = np.concatenate([[0.0], np.cumsum(disc)])[np.minimum(s, k).astype(np.int64)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return _masked(dcg / ideal, s)


def _map(h: np.ndarray, s: np.ndarray) -> np.ndarray:
    k = h.shape[1]
    prec = np.cumsum(h, axis=1) / np.arange(1, k + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _masked((prec * h).sum(axis=1) / np.minimum(s, k), s)


def _mrr(h: np.ndarray, s: np.ndarray) -> np.ndarray:
    first = np.argmax(h, axis=1)
    return _masked(np.where(h.any(axis=1), 1.0 / (first + 1.0), 0.0), s)


_KERNELS = {
    "recall": _recall,
    "precision": _precision,
    "ndcg": _ndcg,
    "map": _map,
    "mrr": _mrr,
    "hit": _hit,
}


def recall_at_k(recs: np.ndarray, truth: Truth | Sequence[np.ndarray], k: int) -> np.ndarray:
    """Recall@k per user: ``float64[n_users]`` in [0, 1], NaN when the user has no relevant item."""
    return _recall(*_prep(recs, truth, k))


def precision_at_k(recs: np.ndarray, truth: Truth | Sequence[np.ndarray], k: int) -> np.ndarray:
    """Precision@k per user (padding counts as a miss): ``float64[n_users]``, NaN as above."""
    return _precision(*_prep(recs, truth, k))


def hit_rate_at_k(recs: np.ndarray, truth: Truth | Sequence[np.ndarray], k: int) -> np.ndarray:
    """HitRate@k per user: 1.0 if a relevant item is in the top k, else 0.0; NaN as above."""
    return _hit(*_prep(recs, truth, k))


def ndcg_at_k(recs: np.ndarray, truth: Truth | Sequence[np.ndarray], k: int) -> np.ndarray:
    """NDCG@k per user with binary gains and log2 discount (see module docstring)."""
    return _ndcg(*_prep(recs, truth, k))


def map_at_k(recs: np.ndarray, truth: Truth | Sequence[np.ndarray], k: int) -> np.ndarray:
    """Average precision at k per user, normalised by ``min(|R|, k)`` (so a perfect list is 1)."""
    return _map(*_prep(recs, truth, k))


def mrr_at_k(recs: np.ndarray, truth: Truth | Sequence[np.ndarray], k: int) -> np.ndarray:
    """Reciprocal rank of the first relevant item in the top k (0 when none); NaN as above."""
    return _mrr(*_prep(recs, truth, k))


@dataclass
class Evaluation:
    """Metrics of one set of recommendation lists.

    ``metrics``: name (``"ndcg@20"``, ``"coverage@20"``...) -> value over all users;
    ``segments``: segment (``"new"``, ``"light"``, ``"heavy"``) -> name -> value, only for
    segments with users; ``n_users``: ``"all"`` and each segment -> users with at least one
    relevant item (those the accuracy means average over); ``per_user``: accuracy metric ->
    ``float64[n_users]`` (NaN for users without relevant items), e.g. for bootstrap intervals.
    """

    metrics: dict[str, float]
    segments: dict[str, dict[str, float]] = field(default_factory=dict)
    n_users: dict[str, int] = field(default_factory=dict)
    per_user: dict[str, np.ndarray] = field(default_factory=dict)


def _nanmean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else float("nan")


def _summarise(
    r: np.ndarray,
    per_user: dict[str, np.ndarray],
    rows: np.ndarray,
    ks: Sequence[int],
    items: ItemInfo | None,
) -> dict[str, float]:
    out = {name: _nanmean(v[rows]) for name, v in per_user.items()}
    if items is None:
        return out
    for k in ks:
        sub = r[rows, :k]
        out[f"coverage@{k}"] = catalog_coverage(sub, len(items.item_ids))
        if items.topics is not None or items.features is not None:
            out[f"ild@{k}"] = _nanmean(
                intra_list_diversity(
                    sub, items.item_ids, topics=items.topics, features=items.features
                )
            )
        if items.user_counts is not None and items.n_users is not None:
            out[f"novelty@{k}"] = _nanmean(
                novelty(sub, items.item_ids, items.user_counts, items.n_users)
            )
        if items.creator_ids is not None:
            out[f"creator_gini@{k}"] = creator_concentration(sub, items.item_ids, items.creator_ids)
    return out


def evaluate(
    recs: np.ndarray,
    truth: Truth | Sequence[np.ndarray],
    *,
    ks: Sequence[int] = (20,),
    train_counts: np.ndarray | None = None,
    light_max: int = DEFAULT_LIGHT_MAX,
    items: ItemInfo | None = None,
) -> Evaluation:
    """Every metric at every cut-off in ``ks``, overall and per user segment.

    Accuracy metrics (``recall``, ``precision``, ``ndcg``, ``map``, ``mrr``, ``hit``, each
    ``@k``) are means over users with at least one relevant item. With ``items`` (catalog side
    information) also ``coverage@k``, ``ild@k`` (when topics or features are given),
    ``novelty@k`` (when popularity is given) and ``creator_gini@k`` (when creators are given),
    over all rows. ``train_counts`` (``int[n_users]``: each user's training interactions) splits
    the users into segments (:func:`mlsd.evaluation.segments.segment_users`).
    """
    r = check_recs(recs)
    t = as_truth(truth, r.shape[0])
    ks = sorted(set(int(k) for k in ks))
    if not ks:
        raise ConfigError("evaluate: ks is empty; expected at least one cut-off such as (20,)")
    if ks[0] < 1 or ks[-1] > r.shape[1]:
        raise ConfigError(f"evaluate: ks={ks}; expected 1 <= k <= {r.shape[1]} (width of recs)")
    h = hits(r[:, : ks[-1]], t)
    sizes = t.sizes.astype(np.float64)
    per_user = {
        f"{name}@{k}": kernel(h[:, :k], sizes) for k in ks for name, kernel in _KERNELS.items()
    }
    has_truth = t.sizes > 0
    everyone = np.arange(r.shape[0])
    result = Evaluation(
        metrics=_summarise(r, per_user, everyone, ks, items),
        n_users={"all": int(has_truth.sum())},
        per_user=per_user,
    )
    if train_counts is not None:
        counts = np.asarray(train_counts)
        if counts.shape != (r.shape[0],):
            raise DataError(
                f"train_counts has shape {counts.shape}; expected ({r.shape[0]},), one per user"
            )
        seg = segment_users(counts, light_max=light_max)
        for name in SEGMENTS:
            rows = np.flatnonzero(seg == name)
            if rows.size:
                result.segments[name] = _summarise(r, per_user, rows, ks, items)
                result.n_users[name] = int(has_truth[rows].sum())
    return result
