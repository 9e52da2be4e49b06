"""`evaluate_system`: the backtest in worker processes gives the numbers of the sequential run."""

from __future__ import annotations

import pytest

from mlsd.config import SimulationConfig
from mlsd.data.simulate import simulate
from mlsd.errors import ConfigError
from mlsd.pipeline import PipelineConfig
from mlsd.systems.video_recommendation.evaluate import evaluate_system

FAST = PipelineConfig.model_validate(
    {
        "label_split": "global",
        "label_days": 3,
        "candidates": 100,
        "negatives_per_user": 30,
        "two_tower": {"epochs": 1},
        "two_tower_refit": "incremental",
        "ranker": {"n_estimators": 30},
    }
)


@pytest.mark.slow
def test_parallel_backtest_matches_sequential() -> None:
    data = simulate(SimulationConfig.for_scale("tiny", seed=0))
    kw = dict(
        test_days=3.0,
        baselines=("MostPop", "ALS"),
        grids={},
        config=FAST,
        backtest_windows=3,
        backtest_days=2.0,
        backtest_max_users=40,
    )
    seq = evaluate_system(data, workers=1, **kw)  # type: ignore[arg-type]
    par = evaluate_system(data, workers=2, **kw)  # type: ignore[arg-type]
    assert seq.backtest is not None and par.backtest is not None
    assert par.backtest.windows == seq.backtest.windows
    assert par.backtest.models == seq.backtest.models == ["MostPop", "ALS", "pipeline"]
    for a, b in zip(seq.backtest.comparisons, par.backtest.comparisons, strict=True):
        assert a.table() == b.table()
    assert seq.table() == par.table()


def test_too_few_backtest_windows_is_a_config_error() -> None:
    data = simulate(SimulationConfig.for_scale("tiny", seed=0))
    with pytest.raises(ConfigError, match="at least 3"):
        evaluate_system(
            data, baselines=("MostPop",), grids={}, config=FAST, backtest_windows=2, workers=2
        )
