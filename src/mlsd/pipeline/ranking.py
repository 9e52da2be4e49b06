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
from mlsd.memory import release_memory
from mlsd.pipeline.ndcg import ndcg_by_user, served_rows
from mlsd.ranking.base import Ranker, RankerKind
from mlsd.ranking.config import RankerConfig
from mlsd.ranking.factory import fit_ranker

__all__ = ["LISTWISE_MARGIN", "RankingStage"]

LISTWISE_MARGIN = 1.02  # pointwise must beat listwise by 2% on validation to be kept (see fit)
CHOOSE_USERS = 4000  # training users the two objectives are compared on (see fit)


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
        self.off_ = np.zeros(0, np.intp)  # columns held at their default (use_time_features)
        self.off_values_ = np.zeros(0, np.float32)

    def use_time_features(self, on: bool) -> None:
        """Use (``on``) or hold at their defaults the features whose value depends on when the
        request is made: time windows, and any computed from the request time (video age,
        hour, day). Held features are constant in training and in serving, so the ranker
        cannot learn from them (see ``time_features`` in
        :class:`~mlsd.pipeline.config.StagesConfig`)."""
        by_name = {f.name: f for f in self.registry.matrix_features()}
        off = [] if on else [
            (j, by_name[n].default)
            for j, n in enumerate(self.feature_names_)
            if n in by_name and (by_name[n].window is not None
                                 or "request.t_ms" in by_name[n].inputs)
        ]  # fmt: skip
        self.off_ = np.array([j for j, _ in off], np.intp)
        self.off_values_ = np.array([v for _, v in off], np.float32)

    def _hold(self, x: np.ndarray) -> np.ndarray:
        if len(self.off_):
            x[:, self.off_] = self.off_values_
        return x

    def training_matrix(
        self, ds: Dataset, rows: pa.Table, retrieval_features: np.ndarray
    ) -> np.ndarray:
        """``float32[n, f + r]``: point-in-time features of the labelled ``rows`` (``user_id,
        video_id, timestamp``) from the offline builder, then their retrieval features."""
        table = build_training_set(ds, rows, registry=self.registry)
        x = np.concatenate([feature_matrix(table, self.feature_names_), retrieval_features], 1)
        del table
        release_memory()  # the as-of join's per-event arrays
        return self._hold(x)

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
        sw = {o: w for o, w in (sample_weight or {}).items() if o in weights}

        def fit(config: RankerConfig, rows: np.ndarray) -> Ranker:
            """The ranker fitted on the training ``rows`` (a mask), validated on the rest."""
            return fit_ranker(
                self.kind,
                config,
                weights,
                x[rows],
                {o: labels[o][rows] for o in weights},
                names,
                valid=(x[is_valid], {o: labels[o][is_valid] for o in weights}),
                seed=seed,
                sample_weight={o: w[rows] for o, w in sw.items()} or None,
                say=say,
                groups=(users[rows], users[is_valid]),
            )

        if self.config.objective != "auto" or self.kind != "gbdt":
            ranker = fit(self.config, ~is_valid)
        else:  # pointwise or listwise, by how they order the validation users' lists
            got = {}
            served = is_valid & served_rows(x, names)
            # compared on a sample of the training users (all of them on small logs), then the
            # chosen objective alone is fitted on every training user
            train_users = np.unique(users[~is_valid])
            sample = ~is_valid
            if len(train_users) > CHOOSE_USERS:
                few = rng.choice(train_users, CHOOSE_USERS, replace=False)
                sample = ~is_valid & np.isin(users, few)
            for objective in ("binary", "lambdarank"):
                r = fit(self.config.model_copy(update={"objective": objective}), sample)
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
            if not sample[~is_valid].all():
                ranker = fit(self.config.model_copy(update={"objective": best}), ~is_valid)
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
        return self._hold(np.concatenate([feats, retrieval_features], axis=1))
