"""The closed loop on the tiny world: users visit, a real trained model serves them through
``serve``, their responses go back into its online state; A/A splits find no difference."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mlsd.config import SimulationConfig
from mlsd.data.simulate import simulate
from mlsd.experiments.loop import aa_experiments, closed_loop
from mlsd.serving.experiment import ArmConfig, ExperimentConfig, ExperimentServable

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny() -> tuple[dict[str, Any], Any]:
    from mlsd.pipeline import PipelineConfig, Recommender

    ds = simulate(SimulationConfig.for_scale("tiny", seed=0))
    cfg = PipelineConfig.model_validate({
        "two_tower": {"epochs": 1}, "ranker": {"n_estimators": 20, "num_threads": 1},
        "candidates": 100, "negatives_per_user": 30,
    })  # fmt: skip
    return ds.meta, Recommender(cfg).fit(ds)


class _Popular:
    """MostPop as a servable: the same top videos for everyone (a weak arm)."""

    version = "popular"

    def __init__(self, model: Any) -> None:
        self.items = model.recommend(np.array([10**9]), 10, exclude_seen=False)[0]

    def serve(self, user_id: int, k: int, ctx: Any, explain: bool = False) -> Any:
        from mlsd.pipeline import Served, ServedItem

        items = [ServedItem(int(v), 1.0, "popular") for v in self.items[:k] if v > 0]
        return Served(user_id=user_id, items=items)

    def apply_events(self, events: Any) -> None:
        pass


def test_the_loop_feeds_events_back_and_reports_per_user_days(tiny: Any) -> None:
    meta, model = tiny

    def positives() -> int:
        return sum(model.history_of(u, 10_000).size for u in range(1, 301))

    before = positives()
    r = closed_loop(meta, model, days=3, seed=0)
    assert r.metrics["valid_watches"].shape == (len(r.user_ids), 3)
    assert (r.metrics["requests"].sum(axis=1) > 0).all()  # only visitors are kept
    assert r.metrics["impressions"].sum() == 10 * r.metrics["requests"].sum()
    assert r.metrics["valid_watches"].sum() > 0
    assert (r.metrics["valid_watches"] <= r.metrics["plays"]).all()
    # the model's online state evolved with what its users did
    assert positives() > before
    again = closed_loop(meta, model, days=1, seed=0)
    assert again.metrics["requests"].sum() == r.metrics["requests"][:, 0].sum()


def test_two_arms_split_the_users_and_the_better_model_wins(tiny: Any) -> None:
    meta, model = tiny
    cfg = ExperimentConfig(name="ab", arms=[ArmConfig(name="popular"), ArmConfig(name="pipeline")])
    exp = ExperimentServable(cfg, [("popular", _Popular(model)), ("pipeline", model)])
    r = closed_loop(meta, exp, days=3, seed=1)
    assert r.arms == ("popular", "pipeline")
    assert set(np.unique(r.arm)) == {0, 1}
    # the arm each user was served by is the service's hash of (user, salt)
    assert (r.arm == exp.arm_of(r.user_ids)).all()
    assert len(r.days) == 3 and 0 < r.days[0]["arms"][1]["coverage"] <= 1
    # the pipeline's re-ranking explores (10% of slots by default); the stub never does
    assert r.days[0]["arms"][1]["exploration_share"] > 0
    assert r.days[0]["arms"][0]["exploration_share"] == 0
    per_user = r.metrics["valid_watches"].sum(axis=1)
    assert per_user[r.arm == 1].mean() > per_user[r.arm == 0].mean()


def test_aa_splits_of_one_run_rarely_reject(tiny: Any) -> None:
    meta, model = tiny
    r = closed_loop(meta, model, days=4, seed=2)
    aa = aa_experiments(r, 100)
    assert aa["fixed_horizon_fpr"] <= 0.12 and aa["sequential_fpr"] <= 0.08
    assert aa["srm_alarms"] <= 1
