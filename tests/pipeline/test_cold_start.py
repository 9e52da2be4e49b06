"""New users: ordered by the ranker or by popularity, decided on new validation users."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd.config import SimulationConfig
from mlsd.data.dataset import Dataset
from mlsd.data.simulate import simulate
from mlsd.pipeline import Recommender
from mlsd.pipeline.cold_start import cold_scores
from mlsd.pipeline.ndcg import ndcg_by_user
from mlsd.pipeline.types import RequestCtx
from mlsd.retrieval import PAD

LIGHT = {
    "candidates": 100,
    "two_tower": {"epochs": 1, "dim": 16, "hidden": 32, "n_user_buckets": 64},
    "als": {"factors": 16, "iterations": 3},
    "ranker": {"n_estimators": 20},
}


def test_ndcg_by_user_by_hand() -> None:
    users = np.array([1, 1, 1, 2, 2, 3])
    y = np.array([0, 1, 0, 1, 1, 0])
    score = np.array([3.0, 2.0, 1.0, 1.0, 2.0, 5.0])
    # user 1: the positive at position 2 -> (1/log2 3) / 1; user 2: both on top -> 1;
    # user 3: no positive, left out
    want = (1 / np.log2(3) + 1.0) / 2
    assert ndcg_by_user(score, y, users) == pytest.approx(want)
    assert ndcg_by_user(score, y, users, k=1) == pytest.approx(0.5)


def test_cold_scores_follow_the_popular_rank() -> None:
    names = ["a", "rank_popular"]
    x = np.array([[0, 3], [0, np.nan], [0, 1], [0, 2]], np.float32)
    assert np.argsort(-cold_scores(x, names), kind="stable").tolist() == [2, 3, 0, 1]


@pytest.fixture(scope="module")
def tiny() -> Dataset:
    return simulate(SimulationConfig.for_scale("tiny", seed=0))


def test_auto_is_resolved_at_fit_and_popular_orders_new_users(tiny: Dataset) -> None:
    said: list[str] = []
    auto = Recommender({**LIGHT, "cold_start": "auto"}, progress=said.append).fit(tiny)
    assert auto.config.cold_start in ("ranker", "popular")
    assert any(m.startswith("cold start:") for m in said)
    pop = Recommender({**LIGHT, "cold_start": "popular"}).fit(tiny)
    assert pop.config.cold_start == "popular"
    newcomer = np.array([10**9])
    batch = pop.recommend_batch(newcomer, 10)
    order = pop.retrieval.source("popular").candidates(newcomer, 100)[0][0].tolist()
    got = [(v, s) for v, s in zip(batch.item_ids[0].tolist(), batch.scores[0].tolist(),
                                  strict=True) if v != PAD]  # fmt: skip
    assert got and batch.cold[0]
    # each item scored by minus its (1-based) rank in the popular list, not by the ranker
    assert all(-s == order.index(v) + 1 for v, s in got)
    served = pop.serve(10**9, 10, RequestCtx(time_ms=pop.now_ms_))  # the online path too
    assert served.cold_start and served.items
    assert all(-i.score == order.index(i.video_id) + 1 for i in served.items if not i.exploration)
    ranked = Recommender({**LIGHT, "cold_start": "ranker"}).fit(tiny)
    assert ranked.config.cold_start == "ranker"
