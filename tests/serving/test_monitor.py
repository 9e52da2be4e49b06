"""The service's drift monitor on a real tiny model: sampled rows against the training
reference; an injected feature fault (zeros) raises that feature's data-quality gauges."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from mlsd.config import SimulationConfig
from mlsd.data.simulate import simulate
from mlsd.pipeline import RequestCtx
from mlsd.serving.monitor import ServiceMonitor
from mlsd.serving.service import ModelHolder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model() -> Any:
    from mlsd.pipeline import PipelineConfig, Recommender

    ds = simulate(SimulationConfig.for_scale("tiny", seed=0))
    cfg = PipelineConfig.model_validate({
        "two_tower": {"epochs": 1}, "ranker": {"n_estimators": 20, "num_threads": 1},
        "candidates": 100, "negatives_per_user": 30,
    })  # fmt: skip
    return Recommender(cfg).fit(ds)


def _traffic(m: Any) -> None:
    for u in range(1, 301):
        m.serve(u, 10, RequestCtx(time_ms=int(m.now_ms_) - u * 200_000))


def _issues(reg: CollectorRegistry, feature: str) -> set[str]:
    out = set()
    for line in generate_latest(reg).decode().splitlines():
        ours = line.startswith("mlsd_data_quality_issues{") and f'feature="{feature}"' in line
        if ours and line.endswith(" 1.0"):
            out.add(line.split('check="')[1].split('"')[0])
    return out


def test_a_zeroed_feature_raises_its_quality_gauges(model: Any) -> None:
    reg = CollectorRegistry()
    mon = ServiceMonitor(ModelHolder(model), reg, sample_every=1, min_rows=100)
    assert mon.check() is None  # attached, reference taken, no rows yet
    _traffic(model)
    stable = mon.check()
    assert stable is not None and stable["rows"] > 100
    assert _issues(reg, "video_age_h") == set()
    assert stable["drift_share"] < 0.5
    model.feature_faults = {"video_age_h": 0.0}
    try:
        mon._rows.clear()
        _traffic(model)
        mon.check()
    finally:
        model.feature_faults = {}
    assert {"zeros", "constant"} <= _issues(reg, "video_age_h")
