"""Evaluation protocols: how data is cut into what a model learns from and what it is judged on,
and how models are run, tuned and compared under them.

- (a) :func:`temporal_holdout`: one global cut, next-period valid watches as truth, ``new``
  users (no training history) as a segment: how a deployed model lives;
- (b) :func:`per_user_holdout`: each user's positives (ratings >= 4) split 80/20 by time, full
  ranking with each user's training items excluded: the MovieLens protocol;
- (b') :func:`random_holdout`: (b) with a seeded random split, for logs without timestamps;
- (c) :func:`validation_holdout`: the same cut inside the training side, and :func:`tune`, a grid
  search on it that never reads the test slice (:func:`tune_and_compare` chains both);
- (d) :func:`mlsd.evaluation.backtest.backtest`: rolling-origin windows.

The holdouts live in :mod:`.holdout` and are re-exported here. Models come in as factories
(``Callable[[], Model]``), so the baselines and the full pipeline plug in the same way;
:func:`compare` fits and scores each on one holdout.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlsd.errors import ConfigError, DataError
from mlsd.evaluation.beyond import ItemInfo
from mlsd.evaluation.holdout import (
    EvalSet,
    Holdout,
    per_user_holdout,
    random_holdout,
    temporal_holdout,
    validation_holdout,
)
from mlsd.evaluation.interactions import Interactions, Model
from mlsd.evaluation.metrics import Evaluation, evaluate
from mlsd.evaluation.segments import DEFAULT_LIGHT_MAX

__all__ = [
    "Comparison",
    "EvalSet",
    "Holdout",
    "ModelResult",
    "TuneResult",
    "compare",
    "evaluate_model",
    "per_user_holdout",
    "random_holdout",
    "temporal_holdout",
    "tune",
    "tune_and_compare",
    "validation_holdout",
]


@dataclass
class ModelResult:
    """One model on one holdout: its metrics, hyperparameters (when it reports them), wall
    times in seconds, and how many test users it met as unknown (None if it does not say)."""

    name: str
    evaluation: Evaluation
    params: dict[str, Any]
    fit_seconds: float
    recommend_seconds: float
    n_unknown_users: int | None


@dataclass
class Comparison:
    """Several models on one holdout. ``table()`` is ``model -> metric -> value`` (overall, or
    for one segment), the input of the report helpers."""

    holdout: str
    k: int
    results: dict[str, ModelResult]

    def table(self, segment: str | None = None) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for name, r in self.results.items():
            ev = r.evaluation
            out[name] = dict(ev.metrics if segment is None else ev.segments.get(segment, {}))
        return out


def evaluate_model(
    model: Model,
    holdout: Holdout,
    *,
    name: str | None = None,
    k: int = 20,
    ks: Sequence[int] | None = None,
    items: ItemInfo | None = None,
    light_max: int = DEFAULT_LIGHT_MAX,
) -> ModelResult:
    """Fit ``model`` on ``holdout.train``, ask for top-``k`` lists (training items excluded) for
    the test users, and score them at cut-offs ``ks`` (default ``(k,)``). ``items`` adds the
    beyond-accuracy metrics; its popularity is recomputed from the training side."""
    t0 = time.perf_counter()
    model.fit(holdout.train)
    t1 = time.perf_counter()
    recs = np.asarray(model.recommend(holdout.test.user_ids, k, exclude_seen=True))
    t2 = time.perf_counter()
    if recs.shape != (len(holdout.test), k):
        raise DataError(
            f"{name or type(model).__name__}.recommend returned shape {recs.shape}; expected "
            f"({len(holdout.test)}, {k})"
        )
    info = items.with_popularity(holdout.train) if items is not None else None
    ev = evaluate(
        recs,
        holdout.test.truth,
        ks=ks or (k,),
        train_counts=holdout.test.train_counts,
        light_max=light_max,
        items=info,
    )
    get_params = getattr(model, "get_params", None)
    unknown = getattr(model, "n_unknown_users_", None)
    return ModelResult(
        name=name or type(model).__name__,
        evaluation=ev,
        params=dict(get_params()) if callable(get_params) else {},
        fit_seconds=t1 - t0,
        recommend_seconds=t2 - t1,
        n_unknown_users=int(unknown) if unknown is not None else None,
    )


def compare(
    factories: Mapping[str, Callable[[], Model]],
    holdout: Holdout,
    *,
    k: int = 20,
    ks: Sequence[int] | None = None,
    items: ItemInfo | None = None,
    light_max: int = DEFAULT_LIGHT_MAX,
) -> Comparison:
    """Each factory builds a fresh model, which :func:`evaluate_model` fits and scores."""
    if not factories:
        raise ConfigError("compare: no models given; expected a mapping name -> factory")
    results = {
        name: evaluate_model(
            make(), holdout, name=name, k=k, ks=ks, items=items, light_max=light_max
        )
        for name, make in factories.items()
    }
    return Comparison(holdout.summary(), k, results)


@dataclass
class TuneResult:
    """Grid search outcome: the best ``params`` and ``score`` of ``metric`` on the validation
    slice, and every trial as ``{"params", "score", "fit_seconds"}`` in grid order."""

    metric: str
    params: dict[str, Any]
    score: float
    trials: list[dict[str, Any]]


_METRIC = re.compile(r"^[a-z_]+@(\d+)$")


def tune(
    model_factory: Callable[..., Model],
    grid: Mapping[str, Sequence[Any]],
    train: Interactions,
    valid: EvalSet | Holdout,
    metric: str = "ndcg@20",
) -> TuneResult:
    """Exhaustive search over ``grid`` (name -> values; every combination is tried): each model
    ``model_factory(**params)`` is fitted on ``train`` and scored on ``valid`` by ``metric``
    (``"<name>@<k>"``, see :func:`mlsd.evaluation.metrics.evaluate`). The first best in grid
    order wins ties; a trial whose score is NaN never wins. Pass a validation slice
    (:func:`validation_holdout`), never the test slice."""
    m = _METRIC.match(metric)
    if m is None:
        raise ConfigError(f"metric {metric!r}: expected '<name>@<k>' such as 'ndcg@20'")
    k = int(m.group(1))
    vset = valid.test if isinstance(valid, Holdout) else valid
    holdout = Holdout("validation", train, vset)
    names = list(grid)
    combos = list(itertools.product(*(list(grid[n]) for n in names))) if names else [()]
    trials: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    best_score = -math.inf
    for values in combos:
        params = dict(zip(names, values, strict=True))
        r = evaluate_model(model_factory(**params), holdout, k=k)
        if metric not in r.evaluation.metrics:
            raise ConfigError(
                f"metric {metric!r} is not computed; expected one of "
                + ", ".join(sorted(r.evaluation.metrics))
            )
        score = r.evaluation.metrics[metric]
        trials.append({"params": params, "score": score, "fit_seconds": r.fit_seconds})
        if best is None or (not math.isnan(score) and score > best_score):
            best, best_score = params, score if not math.isnan(score) else -math.inf
    assert best is not None
    return TuneResult(metric, best, best_score, trials)


def tune_and_compare(
    models: Mapping[str, tuple[Callable[..., Model], Mapping[str, Sequence[Any]]]],
    holdout: Holdout,
    *,
    metric: str = "ndcg@20",
    k: int = 20,
    ks: Sequence[int] | None = None,
    items: ItemInfo | None = None,
    valid: Holdout | None = None,
) -> tuple[Comparison, dict[str, TuneResult]]:
    """Tune each model (``name -> (factory, grid)``) on a validation slice of ``holdout``
    (``valid``, default :func:`validation_holdout`), then refit the winners on the full training
    side and compare them on the test slice."""
    val = valid if valid is not None else validation_holdout(holdout)
    tuned = {
        name: tune(factory, grid, val.train, val.test, metric)
        for name, (factory, grid) in models.items()
    }
    factories: dict[str, Callable[[], Model]] = {
        name: _bind(models[name][0], tuned[name].params) for name in models
    }
    return compare(factories, holdout, k=k, ks=ks, items=items), tuned


def _bind(factory: Callable[..., Model], params: dict[str, Any]) -> Callable[[], Model]:
    def make() -> Model:
        return factory(**params)

    return make
