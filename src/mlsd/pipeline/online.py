"""The online path of one request, within a time budget: candidates (cached or retrieved),
features, ranking, rules, the served slate with explanations.

A failing or slow stage never fails the request: the best order available is served (ranked,
else retrieval order, else popular) with ``degraded_kind`` and a reason. The budget counts
from when the service received the request, so time queued behind other requests counts; a
request that waited past the queue budget is answered with the popular fallback at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mlsd.pipeline.cold_start import cold_scores
from mlsd.pipeline.data import ids
from mlsd.pipeline.explain import served_items
from mlsd.pipeline.ndcg import mixed_scores
from mlsd.pipeline.parts import Parts
from mlsd.pipeline.types import DegradedKind, RequestCtx, Served, ServedItem
from mlsd.reranking import Slate
from mlsd.retrieval import PAD

__all__ = ["fallback", "serve"]


def serve(p: Parts, user_id: int, k: int, ctx: RequestCtx, explain: bool = False) -> Served:
    """One request through every stage of ``p`` (see the module docstring)."""
    t_start = time.perf_counter() if ctx.received_at is None else ctx.received_at
    budget = p.config.budget_ms
    stage: dict[str, float] = {}
    users = np.array([int(user_id)], np.int64)
    catalog = p.state.catalog
    k = min(int(k), len(catalog.item_ids))
    n_cand = max(p.config.candidates, k)
    kind: DegradedKind | None = None  # why degraded (None: not)
    reason: str | None = None

    def elapsed() -> float:
        return (time.perf_counter() - t_start) * 1000

    with p.lock.read():
        cold = bool(p.retrieval.history_.lengths(users)[0] == 0)
        queued = elapsed() if ctx.received_at is not None else 0.0
        wait_budget = min(p.config.queue_budget_ms, budget)
        if queued > wait_budget:  # overload: shed to the cheap order, not more queueing
            stage["queue"] = queued
            return fallback(
                p, user_id, k, cold, "overload",
                f"waited {queued:.0f} ms before starting (queue budget {wait_budget:g} "
                "ms): overload",
                stage, t_start,
            )  # fmt: skip
        try:
            items, sources, rfeat = p.cache.candidates_of(int(user_id), n_cand, cold)
            stage["retrieval"] = elapsed() - queued
            if queued >= 0.05:  # a measurable wait: reported as its own stage
                stage["queue"] = queued
        except Exception as e:  # any source failure: popular fallback
            return fallback(
                p, user_id, k, cold, "retrieval_failed",
                f"retrieval failed: {type(e).__name__}", stage, t_start,
            )  # fmt: skip
        if elapsed() > budget:
            kind = "retrieval_over_budget"
            reason = f"retrieval took {elapsed():.0f} ms (budget {budget:g} ms)"
        x = None
        if kind is None:
            try:
                ok = items != PAD
                items, sources, rfeat = items[ok], sources[ok], rfeat[ok]
                x = p.ranking.request_matrix(
                    int(user_id), items, rfeat, ctx.time_ms, ctx.device, ctx.surface
                )
                if p.feature_faults:  # an injected fault: a feature pipeline sends constants
                    x = _inject(x, p.ranking.feature_names_ + p.retrieval.feature_names_,
                                p.feature_faults)  # fmt: skip
                stage["features"] = elapsed() - queued - stage["retrieval"]
            except Exception as e:
                kind = "features_failed"
                reason = f"feature store failed: {type(e).__name__}: {e}"[:200]
        proba: dict[str, np.ndarray] | None = None
        if x is not None and elapsed() > budget:
            kind = "features_over_budget"
            reason = f"features took {elapsed():.0f} ms in all (budget {budget:g} ms)"
        ranker = p.ranking.ranker_
        if kind is None and x is not None:
            try:
                proba = ranker.predict_proba(x)
                stage["ranking"] = elapsed() - queued - stage["retrieval"] - stage["features"]
            except Exception as e:
                kind, reason = "ranker_failed", f"ranker failed: {type(e).__name__}"
        cols = p.ranking.feature_names_ + p.retrieval.feature_names_
        by = p.config.order_by
        if proba is not None and x is not None and cold and p.config.cold_start == "popular":
            score = cold_scores(x, cols)
        elif proba is not None and x is not None and by not in ("ranker", "auto"):
            score = np.asarray(sum(ranker.weights[o] * q for o, q in proba.items()))
            score = mixed_scores(score, x, cols, by, p.config.ranker_weight)  # see guard
        elif proba is not None:
            score = np.asarray(sum(ranker.weights[o] * q for o, q in proba.items()))
        else:  # retrieval order, rules still applied (filters are not optional)
            ok = items != PAD
            items, sources = items[ok], sources[ok]
            score = -np.arange(len(items), dtype=np.float64)
        order = np.argsort(-score, kind="stable")
        tap = p.monitor_tap
        if tap is not None and x is not None and proba is not None:
            top = order[:MONITOR_ROWS]
            tap(cols, x[top], score[top])
        dense = catalog.index_of(items[order])
        known = dense >= 0
        slate = Slate.from_arrays(dense[known], score[order][known], source=sources[order][known])
        t0 = time.perf_counter()
        try:
            out = p.rules.apply(slate, p.state.context(int(user_id), k, ctx.time_ms, explain))
        except Exception as e:
            if kind is None:
                kind, reason = "reranking_failed", f"re-ranking failed: {type(e).__name__}"
            out = slate.truncate(k)
        stage["rerank"] = (time.perf_counter() - t0) * 1000
        weights = ranker.weights if proba is not None else {}
        names = (p.retrieval.names_, p.retrieval.feature_names_)
        served = served_items(
            out, catalog, names, explain, proba, weights, order, known, rfeat, items
        )
    stage["total"] = elapsed()
    return Served(
        user_id=int(user_id),
        items=served,
        degraded_kind=kind,
        degraded_reason=reason,
        cold_start=cold,
        stage_ms=stage,
        n_candidates=int((items != PAD).sum()),
    )


def fallback(
    p: Parts,
    user_id: int,
    k: int,
    cold: bool,
    kind: DegradedKind,
    reason: str,
    stage: dict[str, float],
    t_start: float,
) -> Served:
    """The popular items the user has not seen, marked degraded with ``kind`` and ``reason``."""
    watched = set(p.state.watched(int(user_id)).tolist())
    picks = [int(v) for v in p.popular_ids_.tolist() if v != PAD and v not in watched][:k]
    stage["total"] = (time.perf_counter() - t_start) * 1000
    return Served(
        user_id=int(user_id),
        items=[ServedItem(v, 1.0 / (i + 1), "popular") for i, v in enumerate(picks)],
        degraded_kind=kind,
        degraded_reason=reason,
        cold_start=cold,
        stage_ms=stage,
        n_candidates=len(picks),
    )


#: (feature names, rows, scores): what the monitor's tap receives and its reference holds.
MonitorReference = tuple[list[str], np.ndarray, np.ndarray]
#: The monitor's tap: called by ``serve`` with the top ranked rows of a ranked request.
Tap = Callable[[list[str], np.ndarray, np.ndarray], None]
MONITOR_ROWS = 10  # rows of a request the monitor tap sees: the top of the ranked list


def _inject(x: np.ndarray, cols: list[str], faults: dict[str, float]) -> np.ndarray:
    x = np.array(x, copy=True)
    for name, value in faults.items():
        if name in cols:
            x[:, cols.index(name)] = value
    return x


def monitor_reference(p: Any, n_users: int = 300, seed: int = 0) -> MonitorReference:
    """The drift monitor's reference: (feature names, rows, scores) of the top ranked
    candidates ``serve`` gives up to ``n_users`` training users (a seeded sample) over the
    training data's last day, before any online event: the distribution the model was built
    on, as the service computes it."""
    p._check()
    users = np.unique(ids(p.dataset_.events, "user_id"))
    rng = np.random.default_rng(seed)
    pick = rng.choice(users, min(n_users, len(users)), replace=False)
    rows: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    names: list[str] = []

    def collect(cols: list[str], x: np.ndarray, score: np.ndarray) -> None:
        names[:] = cols
        rows.append(np.asarray(x, np.float64))
        scores.append(np.asarray(score, np.float64))

    tap, faults = p.monitor_tap, p.feature_faults
    p.monitor_tap, p.feature_faults = collect, {}
    try:
        # over the last day of the data: request-time features take their usual spread
        times = int(p.now_ms_) - rng.integers(0, 86_400_000, len(pick))
        for u, t in zip(pick.tolist(), times.tolist(), strict=True):
            p.serve(int(u), 10, RequestCtx(time_ms=int(t)))
    finally:
        p.monitor_tap, p.feature_faults = tap, faults
    if not rows:
        return names, np.empty((0, 0)), np.empty(0)
    return names, np.concatenate(rows), np.concatenate(scores)
