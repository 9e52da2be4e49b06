"""What a two-stage pipeline hands its callers: served slates, request context, batch output.

The serving layer imports these from here (never the reverse): they are the contract between
:mod:`mlsd.pipeline` and :mod:`mlsd.serving`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
import pyarrow as pa

from mlsd.retrieval.base import PAD

__all__ = [
    "DEGRADED_KINDS",
    "DegradedKind",
    "RecommendationBatch",
    "RequestCtx",
    "Served",
    "ServedItem",
    "ServingStatus",
]

#: Why a response was degraded, as a bounded set (a metric label, an alert's key); the
#: free-text reason (with times and error names) goes beside it in ``Served.degraded_reason``.
DegradedKind = Literal[
    "overload",  # waited past the queue budget before starting: the popular fallback
    "retrieval_failed",  # a source raised: the popular fallback
    "retrieval_over_budget",  # retrieval used the budget: retrieval order
    "features_failed",  # the feature store raised (e.g. Redis down): retrieval order
    "features_over_budget",  # features used the budget: retrieval order
    "ranker_failed",  # the ranker raised: retrieval order
    "reranking_failed",  # a rule raised: the ranked order, truncated
]
DEGRADED_KINDS: tuple[str, ...] = get_args(DegradedKind)


@dataclass
class ServedItem:
    """One served item: its id, final score, the source that proposed it, whether an
    exploration slot put it there, and (when explaining) its score components and the rule
    actions that moved it."""

    video_id: int
    score: float
    source: str
    exploration: bool = False
    components: dict[str, float] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)


@dataclass
class Served:
    """One user's recommendations as served. ``degraded_kind`` is None for a full answer, else
    why a fallback served it (``degraded_reason`` says it in words, with figures).
    ``experiment``/``arm``/``model_version``: set when an experiment routed the request (the
    arm's model answered; see :mod:`mlsd.serving.experiment`), else None."""

    user_id: int
    items: list[ServedItem]
    degraded_kind: DegradedKind | None = None
    degraded_reason: str | None = None
    cold_start: bool = False
    stage_ms: dict[str, float] = field(default_factory=dict)
    n_candidates: int = 0
    experiment: str | None = None
    arm: str | None = None
    model_version: str | None = None

    @property
    def degraded(self) -> bool:
        return self.degraded_kind is not None


@dataclass
class RequestCtx:
    """The request's context. ``time_ms`` is the request time (Unix ms, UTC). ``received_at``
    (``time.perf_counter()`` seconds) is when the service received it: the model's time budget
    counts from there, so time spent queued behind other requests counts too (None: from when
    the model starts on it)."""

    time_ms: int
    device: str | None = None
    surface: str | None = None
    received_at: float | None = None


@dataclass(frozen=True)
class ServingStatus:
    """What a servable model reports to the service's metrics: whether its ranker runs
    compiled, and its candidate cache's hits and misses since it was prepared."""

    ranker_compiled: bool = False
    cache_hits: int = 0
    cache_misses: int = 0


@dataclass
class RecommendationBatch:
    """Batch output: ``item_ids`` ``int64[n, k]`` (padded with -1), ``scores`` ``float32[n, k]``
    and ``cold`` (``bool[n]``, users without any history)."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    scores: np.ndarray
    cold: np.ndarray

    def to_table(self) -> pa.Table:
        """Long format: ``user_id, rank, item_id, score`` (padding omitted)."""
        n, k = self.item_ids.shape
        ok = self.item_ids != PAD
        rows = np.broadcast_to(np.arange(n)[:, None], (n, k))[ok]
        ranks = np.broadcast_to(np.arange(1, k + 1)[None, :], (n, k))[ok]
        return pa.table(
            {
                "user_id": pa.array(self.user_ids[rows], pa.int64()),
                "rank": pa.array(ranks, pa.int32()),
                "item_id": pa.array(self.item_ids[ok], pa.int64()),
                "score": pa.array(self.scores[ok], pa.float32()),
            }
        )
