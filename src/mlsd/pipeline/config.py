"""Configuration of a two-stage pipeline: the generic knobs every system shares
(:class:`StagesConfig`) and the video recommender's (:class:`PipelineConfig`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mlsd.config import LabelConfig, StrictModel
from mlsd.ranking.base import RankerKind
from mlsd.ranking.config import RankerConfig
from mlsd.reranking import RerankConfig
from mlsd.reranking.chain import DiversityConfig, ExplorationConfig
from mlsd.retrieval.config import ALSConfig, EASEConfig, ItemKNNConfig, TwoTowerConfig

__all__ = ["WARM_REFIT_POSITIVES", "PipelineConfig", "StagesConfig"]


# two_tower_refit "auto": above this many positives, refit incrementally (see PipelineConfig).
# On the large simulated log (2.3M positives) a full two-tower refit was ~40% of training.
WARM_REFIT_POSITIVES = 1_000_000


class StagesConfig(StrictModel):
    """What describes a trained two-stage pipeline besides its data and its blocks.

    - ``candidates``: merged candidates ranked per request (the book's "a few hundred");
    - ``label_split``: how training labels are cut from the log: ``global`` (the last
      ``label_days`` of the log), ``per-user`` (each user's last ``label_share`` of positives,
      for logs such as MovieLens where users' periods hardly overlap) or ``auto`` (global when
      the log spans at least ``2 * label_days`` and at least a quarter of the users have a
      positive in its last ``label_days``, else per-user);
    - ``max_label_users``: train the ranker on at most this many of the users with labels
      after the cut (a seeded sample; None: all), which bounds its time and memory on large
      logs (candidate rows grow with label users x ``candidates``);
    - ``negatives_per_user``: unwatched candidate rows kept per user for the ranker (all
      positives are kept; negatives are sampled uniformly, seeded);
    - ``valid_users_share``: users whose rows validate the ranker (early stopping, calibration);
    - ``ranker``: the rankers' settings, the objective weights among them;
    - ``ranker_kind``: which ranker is trained and served (:mod:`mlsd.ranking`): ``gbdt``
      (LightGBM, compiled for serving), ``deep`` (DCN-v2 multi-task network), ``distilled``
      (a small MLP trained on a teacher's probabilities) or ``int8`` (the deep network
      quantized);
    - ``quotas``: merged-list share per source name; None: chosen at fit when
      ``tune_quotas`` (:mod:`mlsd.pipeline.tuning`: the shares that find the most of the
      label positives at the internal cut; written back here, so a saved model keeps them),
      else the system's defaults;
    - ``cold_start``: how a user without history is ordered: by popularity (the popular
      source's order: the MostPop baseline's, the default), by the ranker, or ``auto``:
      decided at fit on the ranker's new validation users and written back here
      (:mod:`mlsd.pipeline.cold_start`);
    - ``order_by``: what orders the candidates: ``ranker``, a source's name (its own rank,
      averaged with the ranker's by ``ranker_weight``), or ``auto``: whichever of the ranker,
      the best source, or their rank average orders whole candidate lists best on the
      ranker's validation users, decided at fit and written back here
      (:mod:`mlsd.pipeline.guard`);
    - ``ranker_weight``: when ``order_by`` names a source, the candidates are ordered by
      ``ranker_weight`` times the ranker's rank plus ``1 - ranker_weight`` times the source's
      (rank averaging, :func:`~mlsd.pipeline.ndcg.mixed_scores`); 0: by the source alone;
      decided with ``order_by`` when that is ``auto``;
    - ``time_features``: whether the ranker uses the features that depend on when a request
      is made (time-window counts, video age, request hour and day): ``on``, ``off``, or
      ``auto``: off when the labels are cut per user (each user's rows are featurised at their
      own cut, while serving asks at the log's end, so the same feature means two things),
      else on; decided at fit and written back here;
    - ``budget_ms``: total time budget of one request, from when the service received it;
      past it the remaining stages are skipped and the best order so far is served, marked
      degraded;
    - ``queue_budget_ms``: a request that waited longer than this for a model thread
      (overload) is answered at once with the popular fallback, marked degraded: the wait
      would leave too little of ``budget_ms`` for the stages, whose work would be wasted.
    """

    candidates: int = Field(default=500, ge=1)
    label_split: Literal["auto", "global", "per-user"] = "auto"
    label_days: float = Field(default=7.0, gt=0)
    label_share: float = Field(default=0.2, gt=0, lt=1)
    negatives_per_user: int = Field(default=150, ge=1)
    max_label_users: int | None = Field(default=12_000, ge=2)
    valid_users_share: float = Field(default=0.1, gt=0, lt=1)
    ranker: RankerConfig = RankerConfig()
    ranker_kind: RankerKind = "gbdt"
    quotas: dict[str, float] | None = None
    tune_quotas: bool = True
    cold_start: Literal["auto", "ranker", "popular"] = "popular"
    order_by: str = "auto"
    ranker_weight: float = Field(default=0.0, ge=0, le=1)
    time_features: Literal["auto", "on", "off"] = "auto"
    budget_ms: float = Field(default=80.0, gt=0)
    queue_budget_ms: float = Field(default=30.0, gt=0)
    label: LabelConfig = LabelConfig()
    seed: int = 0


class PipelineConfig(StagesConfig):
    """The video recommender (:class:`~mlsd.pipeline.Recommender`): :class:`StagesConfig` plus
    the blocks it is assembled from.

    - ``two_tower``: :class:`~mlsd.retrieval.TwoTowerSource` settings;
    - ``two_tower_refit``: how the two-tower is brought up to the end of the log after the
      ranker's labels are cut: ``full`` (train a new one on every positive),
      ``incremental`` (continue training the cut-time network for ``two_tower.refresh_epochs``
      on the positives after the cut only: several times cheaper, what production refreshes
      do daily) or
      ``auto`` (incremental when the cut is global and the log has at least
      :data:`WARM_REFIT_POSITIVES` positives, where a second full
      training would be the largest cost of a fit; else full);
    - ``als``: :class:`~mlsd.retrieval.als.ALSSource` settings, or None to leave ALS out;
    - ``ease``, ``itemknn``: :class:`~mlsd.retrieval.item_item.EASESource` and
      :class:`~mlsd.retrieval.item_item.ItemKNNSource` settings, or None to leave them out
      (EASE stays empty above ``max_items`` items with positives: a dense solve);
    - ``quotas`` (see :class:`StagesConfig`): the untuned default is
      :func:`mlsd.retrieval.default_quotas`, scaled to leave ALS and the item-to-item sources
      their shares when they are on;
    - ``rerank``: the served rule chain; ``offline_rerank``: the chain used by
      :meth:`~mlsd.pipeline.Recommender.recommend` for offline evaluation (exploration and
      diversity off by default: their value is measured online, and random slots would only
      add noise here).
    """

    two_tower: TwoTowerConfig = TwoTowerConfig()
    two_tower_refit: Literal["auto", "full", "incremental"] = "auto"
    als: ALSConfig | None = ALSConfig()
    ease: EASEConfig | None = EASEConfig()
    itemknn: ItemKNNConfig | None = ItemKNNConfig()
    rerank: RerankConfig = RerankConfig()
    offline_rerank: RerankConfig = RerankConfig(
        diversity=DiversityConfig(enabled=False), exploration=ExplorationConfig(enabled=False)
    )
