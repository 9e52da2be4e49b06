"""What the request paths (:mod:`.online`, :mod:`.batch`) read of an assembled pipeline: its
stages and the little state beside them. :class:`~mlsd.pipeline.two_stage.TwoStage` has them
all; the paths depend on this protocol, not on the class that composes them."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from mlsd.concurrency import ReadWriteLock
from mlsd.pipeline.cache import CachedRetrieval
from mlsd.pipeline.config import StagesConfig
from mlsd.pipeline.ranking import RankingStage
from mlsd.pipeline.retrieval import RetrievalStage
from mlsd.pipeline.state import UserState
from mlsd.reranking import RuleChain

__all__ = ["Parts"]


class Parts(Protocol):
    """A fitted pipeline's stages: ``retrieval`` (and ``cache`` around it), ``ranking``,
    ``rules`` (served) and ``offline_rules``, the rules' user ``state``, the ``popular_ids_``
    fallback order, ``now_ms_`` (the default request time of batch calls), the ``lock``
    requests read under, and ``n_unknown_users_`` (batch users served without history)."""

    config: StagesConfig
    retrieval: RetrievalStage
    cache: CachedRetrieval
    ranking: RankingStage
    rules: RuleChain
    offline_rules: RuleChain
    state: UserState
    popular_ids_: np.ndarray
    now_ms_: int
    lock: ReadWriteLock
    n_unknown_users_: int
    monitor_tap: Any  # online.Tap | None
    feature_faults: dict[str, float]
