"""The ranker against its sources on whole candidate lists (mlsd.pipeline.guard)."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd.config import SimulationConfig
from mlsd.data.simulate import simulate
from mlsd.pipeline import Recommender
from mlsd.pipeline.ndcg import ndcg_full, source_scores

LIGHT = {
    "candidates": 100,
    "two_tower": {"epochs": 1, "dim": 16, "hidden": 32, "n_user_buckets": 64},
    "als": {"factors": 16, "iterations": 3},
    "ranker": {"n_estimators": 20},
}


def test_ndcg_full_counts_positives_no_row_holds() -> None:
    users = np.array([1, 1, 2])
    y = np.array([1, 0, 1])
    score = np.array([2.0, 1.0, 1.0])
    # user 1: 1 of its 2 positives retrieved, at the top: 1 / (1 + 1/log2 3); user 2: 1;
    # user 3: 1 positive, no row: 0
    want = (1 / (1 + 1 / np.log2(3)) + 1.0 + 0.0) / 3
    assert ndcg_full(score, y, users, {1: 2, 2: 1, 3: 1}) == pytest.approx(want)


def test_source_scores_follow_the_source_rank() -> None:
    x = np.array([[2, 7], [np.nan, 1], [1, np.nan]], np.float32)
    s = source_scores(x, ["rank_a", "rank_b"], "a")
    assert np.argsort(-s, kind="stable").tolist() == [2, 0, 1]


def test_order_by_a_source_serves_its_order() -> None:
    tiny = simulate(SimulationConfig.for_scale("tiny", seed=0))
    said: list[str] = []
    auto = Recommender(LIGHT, progress=said.append).fit(tiny)
    assert auto.config.order_by in ("ranker", *auto.retrieval.names_)
    assert any(m.startswith("order: ") for m in said)
    forced = Recommender({**LIGHT, "order_by": "als"}).fit(tiny)
    user = int(np.sort(forced.history_.users())[0])
    batch = forced.recommend_batch(np.array([user]), 10)
    als, _ = forced.retrieval.source("als").candidates(np.array([user]), 100)
    ranks = {v: i + 1 for i, v in enumerate(als[0].tolist())}
    got = [(v, s) for v, s in zip(batch.item_ids[0].tolist(), batch.scores[0].tolist(),
                                  strict=True) if v >= 0]  # fmt: skip
    assert got and all(-s == ranks[v] for v, s in got)  # scored by minus ALS's rank
