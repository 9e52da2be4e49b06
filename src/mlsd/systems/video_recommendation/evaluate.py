"""Offline evaluation of the video recommender against the baselines a practitioner tries first.

:func:`evaluate_system` runs one protocol end to end:

1. the holdout (``temporal``: train before a cut, test on the next period's positives;
   ``per-user``: each user's last ``test_share`` of positives, as for MovieLens; either
   becomes ``per-user-random``, a seeded random ``test_share`` of each user's items, on a log
   whose times order nothing, which is said through ``log``); a test set of fewer than
   ``min_test_users`` users is refused (its metrics would be noise);
2. a validation slice carved from the training side only (never the test slice) on which the
   baselines' hyperparameters are tuned by grid search on NDCG@k;
3. the tuned baselines (MostPop, ItemKNN, EASE when the catalog is small enough, ALS) and the
   full :class:`~mlsd.pipeline.Recommender`, each fitted on the whole training side and scored
   on the test users with their training items excluded: accuracy and, against the videos
   table as catalog, coverage, intra-list diversity, novelty and creator concentration
   (:mod:`mlsd.evaluation.beyond`), overall and per user segment;
4. optionally a rolling-origin backtest of the same models (``backtest_windows`` >= 3), in a
   second process when ``workers`` >= 2 so that it overlaps steps 2-3 (each model trains on
   one thread, so two processes use two cores).

The result carries the comparison, the tuning trials and the report sections that
:func:`mlsd.systems.video_recommendation.demo.run_demo` and ``mlsd evaluate`` write.
"""

from __future__ import annotations

import functools
import importlib
import multiprocessing
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from multiprocessing.pool import AsyncResult, Pool
from typing import Any, Literal

import numpy as np

from mlsd.config import LabelConfig
from mlsd.data.dataset import Dataset
from mlsd.data.timing import NO_ORDER_NOTE, has_time_order, late_outliers, table_ms
from mlsd.errors import ConfigError, DataError
from mlsd.evaluation import (
    ALS,
    EASE,
    BacktestResult,
    Comparison,
    Holdout,
    ItemKNN,
    MostPop,
    TuneResult,
    compare,
    per_user_holdout,
    random_holdout,
    temporal_holdout,
    tune,
    validation_holdout,
)
from mlsd.evaluation.backtest import backtest_window, rolling_origins
from mlsd.evaluation.beyond import ItemInfo
from mlsd.evaluation.interactions import Model
from mlsd.evaluation.report import (
    Section,
    Text,
    backtest_sections,
    comparison_sections,
)
from mlsd.pipeline import PipelineConfig, Recommender
from mlsd.systems.video_recommendation.reproducible import NATIVE_THREADS, pin_worker_threads

__all__ = ["DEFAULT_GRIDS", "EvaluationRun", "evaluate_system"]

Protocol = Literal["temporal", "per-user"]

# Small grids: tuning must fit in the demo's budget. Values around the ML-100k optimum
# (mlsd.evaluation.baselines.tuned) plus the libraries' defaults.
DEFAULT_GRIDS: dict[str, dict[str, list[Any]]] = {
    "MostPop": {},
    "ItemKNN": {"n_neighbors": [50, 200, 800], "shrink": [0.0, 10.0]},
    "EASE": {"l2": [100.0, 300.0, 1000.0]},
    "ALS": {
        "factors": [64, 128],
        "regularization": [1.0, 30.0],
        "alpha": [1.0, 5.0],
        "iterations": [15],
    },
}
_CLASSES: dict[str, Callable[..., Model]] = {
    "MostPop": MostPop,
    "ItemKNN": ItemKNN,
    "EASE": EASE,
    "ALS": ALS,
}
EASE_MAX_ITEMS = 16_000  # a dense n x n solve; above this it dominates the run (O(n^3))
MIN_TEST_USERS = 10  # below this, a holdout's metrics are noise: refused unless lowered


@dataclass
class EvaluationRun:
    """What :func:`evaluate_system` measured."""

    protocol: str
    k: int
    holdout: Holdout
    comparison: Comparison
    tuned: dict[str, TuneResult]
    backtest: BacktestResult | None
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    pipeline: Recommender | None = None

    def table(self, segment: str | None = None) -> dict[str, dict[str, float]]:
        return self.comparison.table(segment)

    def sections(self) -> list[Section]:
        out: list[Section] = [
            Text(
                f"Protocol: **{self.protocol}**, k = {self.k}. Baselines tuned on a validation "
                "slice of the training side (grid search on NDCG@k); the test slice was used "
                "once, for the numbers below."
            )
        ]
        if self.skipped:
            out.append(
                Text("\n".join(f"- {m}: skipped ({why})" for m, why in self.skipped.items()))
            )
        out += comparison_sections(
            self.comparison, tuned=self.tuned or None, name=f"cmp_{self.protocol.replace('-', '_')}"
        )
        if self.backtest is not None:
            out += backtest_sections(self.backtest, (f"ndcg@{self.k}", f"recall@{self.k}"))
        return out


def _holdout(
    data: Dataset,
    protocol: Protocol,
    test_share: float,
    test_days: float,
    labels: LabelConfig,
    seed: int,
    say: Callable[[str], None],
) -> Holdout:
    if protocol not in ("temporal", "per-user"):
        raise ConfigError(f"protocol {protocol!r}: expected 'temporal' or 'per-user'")
    ms = table_ms(data.events)
    if not has_time_order(ms):
        say(NO_ORDER_NOTE)
        return random_holdout(data, test_share=test_share, seed=seed, labels=labels)
    if protocol == "temporal":
        late = late_outliers(ms)  # the cut follows the bulk of the log, not a skewed clock
        if late.count:
            say(late.describe(ms) + "; the cut ignores them")
        end = late.bulk_end
        return temporal_holdout(data, split_time=end - timedelta(days=test_days), labels=labels)
    return per_user_holdout(data, test_share=test_share, labels=labels)


def _check_test_users(holdout: Holdout, min_test_users: int) -> None:
    n = len(holdout.test)
    if n < min_test_users:
        raise DataError(
            f"{holdout.summary()}: {n} test user(s) is too few for metrics that mean anything; "
            f"expected at least {min_test_users}. Give a longer log (or a longer test period), "
            f"try the per-user protocol, or lower the bound (--min-test-users {n}) to score "
            "them anyway"
        )


def evaluate_system(
    data: Dataset,
    *,
    protocol: Protocol = "temporal",
    k: int = 20,
    test_share: float = 0.2,
    test_days: float = 7.0,
    baselines: Sequence[str] = ("MostPop", "ItemKNN", "EASE", "ALS"),
    grids: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
    config: PipelineConfig | None = None,
    labels: LabelConfig | None = None,
    backtest_windows: int = 0,
    backtest_days: float = 3.0,
    backtest_baselines: Sequence[str] = ("MostPop", "ALS"),
    backtest_max_users: int | None = None,
    workers: int = 1,
    pool: Pool | None = None,
    log: Callable[[str], None] | None = None,
    min_test_users: int = MIN_TEST_USERS,
) -> EvaluationRun:
    """Tune the baselines on a validation slice, then compare them with the pipeline on the
    test slice (see the module docstring). ``grids`` override :data:`DEFAULT_GRIDS` (an empty
    grid means the class defaults). EASE is skipped, and said so, above
    :data:`EASE_MAX_ITEMS` training items. ``backtest_windows`` >= 3 adds a rolling-origin
    backtest of the pipeline and ``backtest_baselines`` over windows of ``backtest_days``;
    each window scores at most ``backtest_max_users`` test users (a seeded sample); with
    ``workers`` >= 2 it runs in spawned processes while the holdout is evaluated, or in
    ``pool`` (a caller-owned ``multiprocessing`` spawn pool, left open) when given. A holdout
    with fewer than ``min_test_users`` test users raises :class:`DataError` (0: never)."""
    run_with = functools.partial(
        _evaluate,
        data,
        protocol=protocol,
        k=k,
        test_share=test_share,
        test_days=test_days,
        baselines=baselines,
        grids=grids,
        config=config,
        labels=labels,
        backtest_windows=backtest_windows,
        backtest_days=backtest_days,
        backtest_baselines=backtest_baselines,
        backtest_max_users=backtest_max_users,
        log=log,
        min_test_users=min_test_users,
    )
    if pool is not None:
        return run_with(pool=pool)
    own: Pool | None = None
    if backtest_windows and workers >= 2:
        # spawn, not fork: the parent holds torch and OpenMP thread pools that fork would copy.
        # The workers import the models while the baselines are tuned here.
        own = multiprocessing.get_context("spawn").Pool(
            min(workers, backtest_windows),
            initializer=pin_worker_threads,  # results must not depend on the machine's cores
            initargs=(NATIVE_THREADS,),
        )
        for _ in range(min(workers, backtest_windows)):
            own.apply_async(importlib.import_module, (__name__,))
    ok = False
    try:
        run = run_with(pool=own)
        ok = True
        return run
    finally:
        if own is not None:
            if ok:
                own.close()
            else:
                own.terminate()  # stop the workers on an error or Ctrl-C
            own.join()


def _evaluate(
    data: Dataset,
    *,
    protocol: Protocol,
    k: int,
    test_share: float,
    test_days: float,
    baselines: Sequence[str],
    grids: Mapping[str, Mapping[str, Sequence[Any]]] | None,
    config: PipelineConfig | None,
    labels: LabelConfig | None,
    backtest_windows: int,
    backtest_days: float,
    backtest_baselines: Sequence[str],
    backtest_max_users: int | None,
    pool: Pool | None,
    log: Callable[[str], None] | None,
    min_test_users: int,
) -> EvaluationRun:
    say = log or (lambda _m: None)
    labels = labels or LabelConfig()
    grids = dict(DEFAULT_GRIDS if grids is None else grids)
    unknown = [b for b in baselines if b not in _CLASSES]
    if unknown:
        raise ConfigError(f"unknown baseline(s) {unknown}; expected some of {sorted(_CLASSES)}")
    if k < 1:
        raise ConfigError(f"k={k}: expected an integer >= 1")
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    seed = config.seed if config is not None else 0
    holdout = _holdout(data, protocol, test_share, test_days, labels, seed, say)
    say(holdout.summary())
    _check_test_users(holdout, min_test_users)
    proto = holdout.protocol  # per-user-random when the log's times order nothing
    n_items = len(np.unique(holdout.train.item_ids))
    if k > n_items:
        raise ConfigError(f"k={k}: larger than the {n_items:,} items of the training side")
    skipped: dict[str, str] = {}
    names = list(baselines)
    if "EASE" in names and n_items > EASE_MAX_ITEMS:
        names.remove("EASE")
        skipped["EASE"] = (
            f"{n_items:,} training items; EASE solves a dense {n_items:,}² system, above the "
            f"{EASE_MAX_ITEMS:,} set for this run"
        )
    cfg = config or PipelineConfig(label_split="global" if proto == "temporal" else "per-user")
    t_bt = time.perf_counter()
    delta = timedelta(days=backtest_days)
    origins = rolling_origins(data.events, backtest_windows, delta) if backtest_windows else []
    if backtest_windows and len(origins) < 3:
        raise ConfigError(
            f"backtest: {backtest_windows} window(s); expected 0 (none) or at least 3, so that "
            "a spread can be reported"
        )
    common = (backtest_days, k, labels.model_dump(mode="json"), backtest_max_users)
    pending_pipe: list[AsyncResult[Comparison]] = []
    if origins and pool is not None:
        # the pipeline's windows need no tuned parameters: start them first
        cfg_json = cfg.model_dump(mode="json")
        pending_pipe = [
            pool.apply_async(_run_window, (data, {}, cfg_json, t, *common)) for t in origins
        ]
        say(f"backtest: {len(origins)} pipeline windows started in worker processes")
    valid = (
        validation_holdout(holdout, horizon=timedelta(days=test_days))
        if proto == "temporal"
        else validation_holdout(holdout)
    )
    tuned: dict[str, TuneResult] = {}
    chosen: dict[str, dict[str, Any]] = {}
    factories: dict[str, Callable[[], Model]] = {}
    for name in names:
        grid = {p: list(v) for p, v in grids.get(name, {}).items()}
        cls = _CLASSES[name]
        if grid and all(len(v) == 1 for v in grid.values()):  # one setting: nothing to choose
            params = {p: v[0] for p, v in grid.items()}
            say(f"{name}: {params} (a single setting: not tuned)")
        elif grid:
            t1 = time.perf_counter()
            tuned[name] = tune(cls, grid, valid.train, valid.test, f"ndcg@{k}")
            say(
                f"tuned {name}: {tuned[name].params} (validation ndcg@{k} "
                f"{tuned[name].score:.4f}, {time.perf_counter() - t1:.1f} s)"
            )
            params = tuned[name].params
        else:
            params = {}
        chosen[name] = params
        factories[name] = _bind(cls, params)
    holder: dict[str, Recommender] = {}

    def make_pipeline() -> Model:
        rec = Recommender(cfg, videos=data.videos, users=data.users, progress=say)
        holder["last"] = rec
        return rec

    factories["pipeline"] = make_pipeline
    seconds["setup_and_tuning"] = time.perf_counter() - t0
    bt_baselines = {n: (n, chosen[n]) for n in backtest_baselines if n in names}
    pending_base: list[AsyncResult[Comparison]] = []
    if pending_pipe and pool is not None and bt_baselines:
        pending_base = [
            pool.apply_async(_run_window, (data, bt_baselines, None, t, *common)) for t in origins
        ]
    results = {}
    items = ItemInfo.from_videos(data.videos)  # beyond accuracy: coverage, ILD, novelty, Gini
    for name, make in factories.items():
        t1 = time.perf_counter()
        c = compare({name: make}, holdout, k=k, items=items)
        results[name] = c.results[name]
        m = c.results[name].evaluation.metrics
        say(
            f"{name}: recall@{k} {m.get(f'recall@{k}', float('nan')):.4f}, ndcg@{k} "
            f"{m.get(f'ndcg@{k}', float('nan')):.4f} ({time.perf_counter() - t1:.1f} s)"
        )
    if pending_pipe:
        window_results = [p.get() for p in pending_pipe]
        if pending_base:
            window_results = [
                _merge(b.get(), p) for b, p in zip(pending_base, window_results, strict=True)
            ]
    else:
        cfg_json = cfg.model_dump(mode="json")
        window_results = [_run_window(data, bt_baselines, cfg_json, t, *common) for t in origins]
    comparison = Comparison(holdout.summary(), k, results)
    bt = None
    if window_results:
        bt = BacktestResult([(t, t + delta) for t in origins], window_results)
        seconds["backtest"] = time.perf_counter() - t_bt
        say(f"backtest: {len(bt.windows)} windows, done {seconds['backtest']:.0f} s after start")
    seconds["total"] = time.perf_counter() - t0
    return EvaluationRun(
        proto, k, holdout, comparison, tuned, bt, skipped, seconds, holder.get("last")
    )


def _bind(cls: Callable[..., Model], params: dict[str, Any]) -> Callable[[], Model]:
    return lambda: cls(**params)


def _merge(a: Comparison, b: Comparison) -> Comparison:
    """One window's comparison from its baselines' part ``a`` and its pipeline's part ``b``."""
    return Comparison(a.holdout, a.k, {**a.results, **b.results})


def _run_window(
    data: Dataset,
    baselines: Mapping[str, tuple[str, dict[str, Any]]],
    config: dict[str, Any] | None,
    origin: datetime,
    days: float,
    k: int,
    labels: dict[str, Any],
    max_users: int | None,
) -> Comparison:
    """One backtest window from plain arguments (so that a spawned process can run it):
    baselines as name -> (class name, tuned params), the pipeline config as JSON (None: no
    pipeline)."""
    factories: dict[str, Callable[[], Model]] = {
        n: _bind(_CLASSES[c], p) for n, (c, p) in baselines.items()
    }
    if config is not None:
        cfg = PipelineConfig.model_validate(config)
        factories["pipeline"] = lambda: Recommender(cfg, videos=data.videos, users=data.users)
    return backtest_window(
        factories,
        data,
        origin,
        delta=timedelta(days=days),
        k=k,
        labels=LabelConfig.model_validate(labels),
        max_test_users=max_users,
    )
