"""The ranking stage: feature-store features (one registry, offline and online) plus the
retrieval features, scored by the ranker (calibrated probabilities per objective combined with
weights)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa

from mlsd.config import LabelConfig
from mlsd.data.dataset import Dataset
from mlsd.errors import ConfigError, DataError
from mlsd.features import (
    FeatureRegistry,
    OnlineFeatures,
    OnlineStore,
    build_training_set,
    feature_matrix,
    materialize,
)
from mlsd.pipeline.ndcg import ndcg_by_user, served_rows
from mlsd.ranking.base import Ranker, RankerKind
from mlsd.ranking.config import RankerConfig
from mlsd.ranking.factory import fit_ranker

__all__ = ["LISTWISE_MARGIN", "RankingStage"]

LISTWISE_MARGIN = 1.02  # pointwise must beat listwise by 2% on validation to be kept (see fit)


class RankingStage:
    """Features from ``registry`` (its matrix features, in order) then the retrieval features,
    scored by a ranker of ``kind`` (:func:`~mlsd.ranking.fit_ranker`: ``gbdt``, ``deep``,
    ``distilled``, ``int8``) configured by ``ranker``.

    Learned: ``ranker_`` (a :class:`~mlsd.ranking.Ranker`), ``feature_names_`` (the
    registry's columns), ``online_`` (the online features, after :meth:`materialize`).
    """

    def __init__(
        self,
        registry: FeatureRegistry,
        ranker: RankerConfig | None = None,
        kind: RankerKind = "gbdt",
    ) -> None:
        self.registry = registry
        self.config = ranker or RankerConfig()
        self.kind = kind
        self.feature_names_ = [f.name for f in registry.matrix_features()]

    def training_matrix(
        self, ds: Dataset, rows: pa.Table, retrieval_features: np.ndarray
    ) -> np.ndarray:
        """``float32[n, f + r]``: point-in-time features of the labelled ``rows`` (``user_id,
        video_id, timestamp``) from the offline builder, then their retrieval features."""
        table = build_training_set(ds, rows, registry=self.registry)
        return np.concatenate([feature_matrix(table, self.feature_names_), retrieval_features], 1)

    def fit(
        self,
        x: np.ndarray,
        labels: dict[str, np.ndarray],
        names: list[str],
        users: np.ndarray,
        *,
        seed: int,
        valid_users_share: float,
        say: Callable[[str], None],
        sample_weight: dict[str, np.ndarray] | None = None,
    ) -> Ranker:
        """Train the ranker on ``x`` (``names`` its columns) for each weighted objective that
        has both classes in ``labels`` (the others are dropped, and said so). A seeded
        ``valid_users_share`` of the ``users`` (one per row) validates it (early stopping,
        calibration). ``sample_weight`` (objective -> one weight per row, optional) weighs
        the training rows. Raises :class:`DataError` when no objective can be trained."""
        weights = dict(self.config.weights)
        for obj in list(weights):
            if obj not in labels:
                raise ConfigError(
                    f"ranker weights: unknown objective {obj!r}; expected one of {sorted(labels)}"
                )
            y = labels[obj]
            if y.min() == y.max():
                say(f"ranker: objective {obj!r} has a single class; dropped")
                del weights[obj]
        if not weights:
            raise DataError("ranker training: no objective has both positives and negatives")
        rng = np.random.default_rng(seed + 1)
        uu = np.unique(users)
        valid_users = uu[rng.random(len(uu)) < valid_users_share]
        is_valid = np.isin(users, valid_users)
        if is_valid.all() or not is_valid.any():
            is_valid = np.zeros(len(users), bool)
            is_valid[-max(1, len(users) // 10) :] = True
        self.valid_users_ = np.unique(users[is_valid])
        sw = {o: w[~is_valid] for o, w in (sample_weight or {}).items() if o in weights}

        def fit(config: RankerConfig) -> Ranker:
            return fit_ranker(
                self.kind,
                config,
                weights,
                x[~is_valid],
                {o: labels[o][~is_valid] for o in weights},
                names,
                valid=(x[is_valid], {o: labels[o][is_valid] for o in weights}),
                seed=seed,
                sample_weight=sw or None,
                say=say,
                groups=(users[~is_valid], users[is_valid]),
            )

        if self.config.objective != "auto" or self.kind != "gbdt":
            ranker = fit(self.config)
        else:  # pointwise or listwise, by how they order the validation users' lists
            got = {}
            served = is_valid & served_rows(x, names)
            for objective in ("binary", "lambdarank"):
                r = fit(self.config.model_copy(update={"objective": objective}))
                ndcg = ndcg_by_user(r.score(x[served]), labels[next(iter(weights))][served],
                                    users[served])  # fmt: skip
                got[objective] = (ndcg, r)
            # listwise unless pointwise is clearly better: NDCG@20 is what LambdaRank optimises,
            # and these validation users' NDCG moves by a percent or two with the sample
            best = (
                "binary"
                if got["binary"][0] > LISTWISE_MARGIN * got["lambdarank"][0]
                else "lambdarank"
            )
            say("ranker objective: " + ", ".join(f"{o} NDCG@20 {v[0]:.4f}" for o, v in got.items())
                + f" on the validation users: {best}")  # fmt: skip
            ranker = got[best][1]
        self.ranker_: Ranker = ranker
        return ranker

    def materialize(
        self, ds: Dataset, store: OnlineStore, *, at_ms: int, label: LabelConfig
    ) -> OnlineFeatures:
        """Write the online features of ``ds`` as of ``at_ms`` into ``store``."""
        self.online_ = materialize(ds, store, at_ms=at_ms, registry=self.registry, label_cfg=label)
        return self.online_

    def request_matrix(
        self,
        user_id: int,
        items: np.ndarray,
        retrieval_features: np.ndarray,
        t_ms: int,
        device: str | None,
        surface: str | None,
    ) -> np.ndarray:
        """``float32[n, f + r]`` of one request's candidates ``items`` (the online path)."""
        feats = self.online_.request_features(
            int(user_id), items, int(t_ms), device=device, surface=surface,
            features=self.feature_names_,
        )  # fmt: skip
        return np.concatenate([feats, retrieval_features], axis=1)
