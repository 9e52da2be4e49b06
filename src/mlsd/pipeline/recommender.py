"""The book's two-stage video recommender: the video system's blocks handed to
:class:`~mlsd.pipeline.two_stage.TwoStage`.

1. **Candidate generation** (step 4a): the default :mod:`mlsd.retrieval` sources (two-tower,
   co-visitation, topic/creator popular, popular, trending, fresh) and ALS, merged with quotas
   into ``candidates`` (500 by default), each tagged with its source.
2. **Features** (step 3b): the :data:`~mlsd.features.VIDEO_REC` feature-store vector of every
   (user, candidate, request time), plus each source's rank of the candidate and the two-tower
   similarity.
3. **Ranking** (step 4b): :class:`~mlsd.ranking.GBDTRanker`, calibrated probabilities per
   objective (valid watch, like) combined with configured weights.
4. **Re-ranking** (step 4c): :func:`mlsd.reranking.default_chain` (drop watched, explicit
   filter, blocked creators, topic diversity, exploration, creator dedup).

Everything else (training with an internal label cut, the budgeted online path with fallbacks,
the candidate cache, user state, versioning) is the generic stages'.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mlsd.features import VIDEO_REC, OnlineStore
from mlsd.pipeline import persistence
from mlsd.pipeline.config import PipelineConfig
from mlsd.pipeline.two_stage import TwoStage
from mlsd.reranking import default_chain
from mlsd.retrieval import default_quotas, default_sources
from mlsd.retrieval.als import ALSSource
from mlsd.retrieval.item_item import EASESource, ItemKNNSource
from mlsd.retrieval.protocols import CandidateSource

__all__ = ["ALS_SHARE", "ITEM_ITEM_SHARE", "Recommender", "video_quotas", "video_sources"]

ALS_SHARE = 0.15  # of the merged list, when ALS is on; the other sources share the rest
ITEM_ITEM_SHARE = 0.10  # each, EASE and item-kNN when on (untuned defaults)


def video_sources(cfg: PipelineConfig) -> list[CandidateSource]:
    """The video system's unfitted candidate sources for ``cfg``."""
    sources: list[CandidateSource] = list(default_sources(seed=cfg.seed, **cfg.two_tower.kwargs()))
    if cfg.als is not None:
        sources.append(ALSSource(seed=cfg.seed, **cfg.als.kwargs()))
    if cfg.ease is not None:
        sources.append(EASESource(**cfg.ease.kwargs()))
    if cfg.itemknn is not None:
        sources.append(ItemKNNSource(**cfg.itemknn.kwargs()))
    return sources


def video_quotas(cfg: PipelineConfig) -> dict[str, float]:
    """Merged-list shares: ``cfg.quotas``, else the defaults scaled to leave ALS and the
    item-to-item sources their shares (the starting point when ``cfg.tune_quotas``)."""
    if cfg.quotas is not None:
        return dict(cfg.quotas)
    extra = {"als": (cfg.als, ALS_SHARE), "ease": (cfg.ease, ITEM_ITEM_SHARE),
             "itemknn": (cfg.itemknn, ITEM_ITEM_SHARE)}  # fmt: skip
    on = {c.name: share for c, share in extra.values() if c is not None}
    q = {k: v * (1 - sum(on.values())) for k, v in default_quotas().items()}
    q.update(on)
    return q


class Recommender(TwoStage):
    """The two-stage video recommender (see the module docstring); implements the evaluation
    ``Model`` protocol (``fit``/``recommend``) and the serving
    :class:`~mlsd.pipeline.Servable` protocol, and is saved as a model bundle's
    ``recommender`` kind.

    ``config``: a :class:`~mlsd.pipeline.PipelineConfig` or a mapping validated into one.
    The other arguments are :class:`~mlsd.pipeline.two_stage.TwoStage`'s.
    """

    config: PipelineConfig

    def __init__(
        self,
        config: PipelineConfig | Mapping[str, Any] | None = None,
        *,
        videos: pa.Table | None = None,
        users: pa.Table | None = None,
        online_store: OnlineStore | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        if config is None:
            config = PipelineConfig()
        elif not isinstance(config, PipelineConfig):
            config = PipelineConfig.model_validate(dict(config))
        super().__init__(
            video_sources(config),
            registry=VIDEO_REC,
            rules=default_chain(config.rerank),
            offline_rules=default_chain(config.offline_rerank),
            quotas=video_quotas(config),
            ranker=config.ranker,
            config=config,
            warm_refit={"auto": None, "full": False, "incremental": True}[config.two_tower_refit],
            videos=videos,
            users=users,
            online_store=online_store,
            progress=progress,
        )

    def merge(self, lists: list[tuple[np.ndarray, np.ndarray]], k: int) -> np.ndarray:
        """The merged candidate ids ``int64[n, k]`` (PAD-padded) of per-source
        ``(ids, scores)`` lists given in ``sources_`` order, under the configured quotas."""
        return self.retrieval.merge(lists, k).item_ids

    def save(self, directory: str | Path) -> None:
        """Write the model into ``directory`` (see :mod:`mlsd.pipeline.persistence`).
        Nothing written can execute code on load."""
        self._check()
        persistence.save(self, directory)

    @classmethod
    def load(cls, directory: str | Path, *, online_store: OnlineStore | None = None) -> Recommender:
        """Read a model written by :meth:`save` (this mlsd's format or the one before the
        stages redesign) and warm it up; :class:`~mlsd.errors.DataError` names what is wrong
        (an unreadable file, a format this mlsd cannot read and what to do)."""
        meta = persistence.read_meta(directory)
        config = dict(meta["config"])
        for key in ("ease", "itemknn"):  # bundles written before these sources had neither
            config.setdefault(key, None)
        config.setdefault("cold_start", "ranker")  # nor a cold-start order: the ranker's
        config.setdefault("order_by", "ranker")
        config.setdefault("ranker_weight", 0.0)  # a source named there ordered alone
        config.setdefault("time_features", "on")
        self = cls(config, online_store=online_store)
        persistence.restore(self, directory, meta)
        self.warm_up()
        return self
