"""Merge: the union of several sources with per-source quotas, deduplicated and tagged.

Quotas are shares of ``k`` (largest-remainder rounding). Each source is asked for ``k``
candidates; a source's top ``quota`` are *in quota*. Every candidate gets a priority
``(rank + 0.5) / quota`` (rank 0-based within its source), so in-quota candidates come before
any overflow and overflow fills empty slots (duplicates, sources that came up short, e.g.
co-visitation for a user without history) from all sources in proportion to their quotas. A
video found by several sources is kept once, tagged with the source that gave it the best
priority. The ``k`` best priorities are kept, then ordered by reciprocal-rank fusion,
``score = sum_s 1 / (rrf_k + rank_s)`` over every source that returned the video (Cormack,
Clarke and Buettcher, "Reciprocal rank fusion outperforms Condorcet and individual rank
learning methods", SIGIR 2009): a video several sources agree on moves up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlsd.errors import ConfigError
from mlsd.retrieval.base import PAD, as_user_ids, check_k
from mlsd.retrieval.history import History
from mlsd.retrieval.protocols import CandidateSource

__all__ = ["MergedSource", "TaggedCandidates", "allocate", "merge_lists"]


@dataclass(frozen=True)
class TaggedCandidates:
    """Merged candidates: ``item_ids`` ``int64[n, k]``, ``scores`` ``float32[n, k]`` (RRF),
    ``sources`` ``int8[n, k]`` codes into ``source_names`` (-1 on padding)."""

    item_ids: np.ndarray
    scores: np.ndarray
    sources: np.ndarray
    source_names: tuple[str, ...]

    def source_of(self, code: int) -> str:
        return self.source_names[code] if code >= 0 else "<pad>"


def allocate(shares: Sequence[float] | np.ndarray, k: int) -> np.ndarray:
    """Split ``k`` slots by ``shares`` with largest-remainder rounding (ties: earlier first)."""
    w = np.asarray(shares, dtype=np.float64)
    if w.ndim != 1 or len(w) == 0 or (w < 0).any() or w.sum() <= 0:
        raise ConfigError(f"quotas {list(shares)!r}: expected non-negative shares, not all zero")
    exact = k * w / w.sum()
    base = np.floor(exact).astype(np.int64)
    rest = k - int(base.sum())
    order = np.lexsort((np.arange(len(w)), -(exact - base)))
    base[order[:rest]] += 1
    return base


class MergedSource:
    """Union of ``sources`` with quotas; itself a :class:`CandidateSource` named ``name``.

    ``quotas`` maps source name -> share of ``k`` (any positive scale; default: equal).
    Source names must be unique. ``candidates`` returns (ids, RRF scores);
    ``tagged`` also returns the source of every candidate.
    """

    def __init__(
        self,
        sources: Sequence[CandidateSource],
        quotas: Mapping[str, float] | None = None,
        *,
        k: int = 500,
        rrf_k: float = 60.0,
        name: str = "merged",
    ) -> None:
        self.sources = list(sources)
        self.quotas = dict(quotas) if quotas is not None else None
        self.k = k
        self.rrf_k = rrf_k
        self.name = name
        names = [s.name for s in self.sources]
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"sources {names!r}: expected at least one, with unique names")
        if len(names) > 127:
            raise ConfigError(f"{len(names)} sources: at most 127 fit the int8 source tags")
        if self.quotas is not None:
            unknown = sorted(set(self.quotas) - set(names))
            if unknown:
                raise ConfigError(
                    f"quotas name unknown source(s) {unknown}; expected some of {names}"
                )
        self.source_names: tuple[str, ...] = tuple(names)

    def shares(self) -> np.ndarray:
        if self.quotas is None:
            return np.ones(len(self.sources))
        return np.array([float(self.quotas.get(n, 0.0)) for n in self.source_names])

    def fit(self, data: Any, *, history: History | None = None, **kwargs: Any) -> MergedSource:
        """Fit every child source on the same data with one shared :class:`History` (built
        from the children's positives when not given, by the first child's ``fit``)."""
        for s in self.sources:
            fit = getattr(s, "fit", None)
            if fit is None:
                raise ConfigError(f"source {s.name!r} has no fit(); pass fitted sources instead")
            fit(data, history=history, **kwargs)
            if history is None:
                history = getattr(s, "history_", None)
        return self

    def candidates(
        self, user_ids: np.ndarray, k: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """See :class:`~mlsd.retrieval.base.CandidateSource`; ``k`` defaults to ``self.k``."""
        t = self.tagged(user_ids, k)
        return t.item_ids, t.scores

    def tagged(self, user_ids: np.ndarray, k: int | None = None) -> TaggedCandidates:
        """Merged candidates with their source tags."""
        k = check_k(self.k if k is None else k)
        users = as_user_ids(user_ids)
        quota = allocate(self.shares(), k)
        lists = [s.candidates(users, k) for s in self.sources]
        return merge_lists(lists, quota, k, self.rrf_k, self.source_names)


def merge_lists(
    lists: Sequence[tuple[np.ndarray, np.ndarray]],
    quota: np.ndarray,
    k: int,
    rrf_k: float,
    names: tuple[str, ...],
) -> TaggedCandidates:
    """Merge per-source ``(ids[n, m_s], scores[n, m_s])`` lists (see the module docstring).

    Priorities depend only on (source, rank), not on the user, so the columns are put in
    priority order once and every row is then deduplicated with row-wise sorts.
    """
    n = lists[0][0].shape[0] if lists else 0
    cols_prio, cols_src, cols_rrf, mats = [], [], [], []
    for code, ((ids, _), q) in enumerate(zip(lists, quota, strict=True)):
        m = ids.shape[1]
        rank = np.arange(m, dtype=np.float64)
        cols_prio.append((rank + 0.5) / q if q > 0 else np.full(m, np.inf))
        cols_src.append(np.full(m, code, np.int8))
        cols_rrf.append(1.0 / (rrf_k + rank + 1.0))
        mats.append(ids)
    prio, src, rrf = np.concatenate(cols_prio), np.concatenate(cols_src), np.concatenate(cols_rrf)
    perm = np.lexsort((src, prio))
    perm = perm[np.isfinite(prio[perm])]
    it = np.concatenate(mats, axis=1)[:, perm]
    src, rrf = src[perm], rrf[perm]
    out_i = np.full((n, k), PAD, np.int64)
    out_s = np.full((n, k), -np.inf, np.float32)
    out_t = np.full((n, k), -1, np.int8)
    if n == 0 or it.shape[1] == 0:
        return TaggedCandidates(out_i, out_s, out_t, names)
    m = it.shape[1]
    valid = it != PAD
    # Per row, sort by item (stable: the better-priority copy of an item comes first).
    o = np.argsort(it, axis=1, kind="stable")
    s_it = np.take_along_axis(it, o, axis=1)
    s_rr = np.where(np.take_along_axis(valid, o, axis=1), rrf[o], 0.0)
    start = np.ones((n, m), dtype=bool)
    start[:, 1:] = s_it[:, 1:] != s_it[:, :-1]
    flat_starts = np.flatnonzero(start.ravel())
    group_sum = np.add.reduceat(s_rr.ravel(), flat_starts)
    s_fused = np.zeros(n * m)
    s_fused[flat_starts] = group_sum
    dup = np.empty((n, m), dtype=bool)
    np.put_along_axis(dup, o, ~start, axis=1)
    fused = np.empty((n, m))
    np.put_along_axis(fused, o, s_fused.reshape(n, m), axis=1)
    keep = valid & ~dup
    # The k best priorities per row (columns are in priority order) ...
    sel = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    kept = np.take_along_axis(keep, sel, axis=1)
    f = np.where(kept, np.take_along_axis(fused, sel, axis=1), -np.inf)
    # ... then ordered by fused score (stable: ties keep priority order).
    o2 = np.argsort(-f, axis=1, kind="stable")
    sel = np.take_along_axis(sel, o2, axis=1)
    kept = np.take_along_axis(kept, o2, axis=1)
    w = sel.shape[1]
    out_i[:, :w] = np.where(kept, np.take_along_axis(it, sel, axis=1), PAD)
    out_s[:, :w] = np.where(kept, np.take_along_axis(f, o2, axis=1), -np.inf)
    out_t[:, :w] = np.where(kept, src[sel], -1)
    return TaggedCandidates(out_i, out_s, out_t, names)
