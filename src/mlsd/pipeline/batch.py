"""Batch recommendations (offline evaluation, ``mlsd recommend``): the online path's stages for
many users at once, with one ranker call per batch of users."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from mlsd.errors import ConfigError, NotFittedError
from mlsd.pipeline.cold_start import cold_scores
from mlsd.pipeline.ndcg import mixed_scores
from mlsd.pipeline.parts import Parts
from mlsd.pipeline.types import RecommendationBatch
from mlsd.reranking import DropWatched, RuleChain, Slate
from mlsd.retrieval import PAD

__all__ = ["BATCH_USERS", "check_k", "recommend_batch", "without_drop_watched"]

BATCH_USERS = 512


def check_k(k: object, n_items: int) -> int:
    """``k`` as an int; :class:`ConfigError` unless 1 <= k <= ``n_items``."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"k={k!r}: expected an integer >= 1")
    if k > n_items:
        raise ConfigError(f"k={k}: larger than the catalog ({n_items:,} videos)")
    return int(k)


def without_drop_watched(chain: RuleChain) -> RuleChain:
    """``chain`` without its :class:`~mlsd.reranking.DropWatched` filter (itself if none)."""
    rules = [r for r in chain.rules if not isinstance(r, DropWatched)]
    if len(rules) == len(chain.rules):
        return chain
    return RuleChain(rules, truncate=chain.truncate, name=chain.name)


def recommend_batch(
    p: Parts,
    user_ids: np.ndarray | Sequence[int],
    k: int,
    *,
    exclude_seen: bool = True,
    rules: Literal["offline", "served"] = "offline",
    time_ms: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> RecommendationBatch:
    """Top-``k`` item ids and scores per user (the same stages as ``serve``; this is
    :meth:`~mlsd.pipeline.TwoStage.recommend_batch`).

    ``rules``: the offline chain (default) or the served one. ``exclude_seen=False`` runs
    that chain without its drop-watched filter. ``time_ms``: the request time (default: the
    end of the training log). ``progress(n_done)`` is called after each batch of users. Users
    without history (unknown in training) get cold-start lists and are counted in
    ``n_unknown_users_``. Raises :class:`~mlsd.errors.ConfigError` for ``k`` < 1 or larger
    than the catalog, :class:`~mlsd.errors.NotFittedError` before ``fit``.
    """
    if not hasattr(p, "state"):
        raise NotFittedError(f"{type(p).__name__} is not fitted; call fit() or load()")
    users = np.asarray(user_ids, dtype=np.int64)
    catalog = p.state.catalog
    k = check_k(k, len(catalog.item_ids))
    t_ms = p.now_ms_ if time_ms is None else int(time_ms)
    chain = p.offline_rules if rules == "offline" else p.rules
    if not exclude_seen:
        chain = without_drop_watched(chain)
    out_i = np.full((len(users), k), PAD, np.int64)
    out_s = np.full((len(users), k), np.nan, np.float32)
    n_cand = max(p.config.candidates, k)
    ranker = p.ranking.ranker_
    with p.lock.read():
        cold = p.retrieval.history_.lengths(users) == 0
        p.n_unknown_users_ += int(cold.sum())
        for lo in range(0, len(users), BATCH_USERS):
            ub = users[lo : lo + BATCH_USERS]
            cand = p.retrieval.retrieve(ub, n_cand)
            # features per user (the online path), one ranker call for the whole batch
            xs, keep = [], []
            for i, u in enumerate(ub.tolist()):
                ok = cand.items[i] != PAD
                keep.append(ok)
                x = p.ranking.request_matrix(
                    u, cand.items[i][ok], cand.features[i][ok], t_ms, None, None
                )
                xs.append(x)
            sizes = np.array([len(x) for x in xs])
            scores = np.split(ranker.score(np.concatenate(xs)), np.cumsum(sizes)[:-1])
            names = p.ranking.feature_names_ + p.retrieval.feature_names_
            by = p.config.order_by
            for j in range(len(xs)):
                if cold[lo + j] and p.config.cold_start == "popular":  # the popular order
                    scores[j] = cold_scores(xs[j], names)
                elif by not in ("ranker", "auto"):  # a source helps to order (see guard)
                    scores[j] = mixed_scores(scores[j], xs[j], names, by, p.config.ranker_weight)
            for i, u in enumerate(ub.tolist()):
                items = cand.items[i][keep[i]]
                order = np.argsort(-scores[i], kind="stable")
                dense = catalog.index_of(items[order])
                known = dense >= 0
                slate = Slate.from_arrays(
                    dense[known],
                    scores[i][order][known],
                    source=cand.sources[i][keep[i]][order][known],
                )
                slate = chain.apply(slate, p.state.context(u, k, t_ms))
                m = len(slate)
                out_i[lo + i, :m] = catalog.item_ids[slate.items]
                out_s[lo + i, :m] = slate.scores
            if progress is not None:
                progress(min(lo + BATCH_USERS, len(users)))
    return RecommendationBatch(users, out_i, out_s, cold)
