"""Evaluation protocols on the tiny simulated platform: no leakage, the right users and truth,
validation slices that never touch the test slice, tuning, comparison and backtests."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mlsd.config import LabelConfig, SimulationConfig
from mlsd.data.dataset import Dataset
from mlsd.data.labels import positives
from mlsd.data.simulate import simulate
from mlsd.errors import ConfigError
from mlsd.evaluation import (
    EASE,
    Holdout,
    Interactions,
    ItemInfo,
    ItemKNN,
    MostPop,
    backtest,
    compare,
    per_user_holdout,
    rolling_origins,
    temporal_holdout,
    tune,
    tune_and_compare,
    validation_holdout,
)


@pytest.fixture(scope="module")
def world() -> Dataset:
    return simulate(SimulationConfig.for_scale("tiny", seed=0))


@pytest.fixture(scope="module")
def temporal(world: Dataset) -> Holdout:
    return temporal_holdout(world, test_share=0.2)


def _ms(t: Any) -> int:
    return int(t.timestamp() * 1000)


def _pairs(user_ids: np.ndarray, item_ids: np.ndarray) -> set[tuple[int, int]]:
    return set(zip(user_ids.tolist(), item_ids.tolist(), strict=True))


def _truth_pairs(h: Holdout) -> set[tuple[int, int]]:
    t = h.test.truth
    users = np.repeat(h.test.user_ids, t.sizes)
    return _pairs(users, t.indices)


def test_temporal_holdout_has_no_leak_and_new_users(temporal: Holdout) -> None:
    cut = _ms(temporal.info["split_time"])
    assert temporal.train.timestamps is not None
    assert temporal.train.timestamps.max() < cut
    ev = temporal.train.events
    assert ev is not None and ev.num_rows > 0
    assert pc.max(pc.cast(ev.column("timestamp"), pa.int64())).as_py() < cut
    # truth is what is new after the cut: no training positive is a target again
    train_pairs = _pairs(temporal.train.user_ids, temporal.train.item_ids)
    assert _truth_pairs(temporal)
    assert not _truth_pairs(temporal) & train_pairs
    # every evaluated user has truth; "new" users are exactly those absent from training
    assert np.all(temporal.test.truth.sizes > 0)
    absent = ~np.isin(temporal.test.user_ids, temporal.train.user_ids)
    np.testing.assert_array_equal(absent, temporal.test.train_counts == 0)
    assert temporal.info["new_users"] == int(absent.sum()) > 0
    assert "new" in temporal.summary()


def test_temporal_horizon_limits_the_test_period(world: Dataset, temporal: Holdout) -> None:
    cut = temporal.info["split_time"]
    short = temporal_holdout(world, split_time=cut, horizon=timedelta(days=1))
    assert short.info["test_end"] == cut + timedelta(days=1)
    assert 0 < short.info["test_rows"] < temporal.info["test_rows"]
    assert _truth_pairs(short) <= _truth_pairs(temporal)
    with pytest.raises(ConfigError, match="horizon"):
        temporal_holdout(world, split_time=cut, horizon=timedelta(0))


def test_per_user_holdout_splits_each_user_by_time(world: Dataset) -> None:
    h = per_user_holdout(world, test_share=0.2)
    assert h.protocol == "per-user"
    assert np.all(h.test.train_counts > 0)  # every test user has training items
    assert not _truth_pairs(h) & _pairs(h.train.user_ids, h.train.item_ids)
    # when each positive happened (first positive of each pair, as the protocol counts them)
    pos = Interactions.from_table(positives(world.events, world.videos, LabelConfig()))
    assert pos.timestamps is not None and h.train.timestamps is not None
    keys = zip(pos.user_ids.tolist(), pos.item_ids.tolist(), strict=True)
    when = dict(zip(keys, pos.timestamps.tolist(), strict=True))
    ev = h.train.events
    assert ev is not None
    ev_users = np.asarray(ev.column("user_id").to_numpy())
    ev_ms = np.asarray(pc.cast(ev.column("timestamp"), pa.int64()).to_numpy())
    for row, u in enumerate(h.test.user_ids.tolist()):
        first_test = min(when[(u, i)] for i in h.test.truth[row].tolist())
        # training positives end no later than the first test positive (ties split by row
        # order); the raw events a model may read end strictly before it
        assert h.train.timestamps[h.train.user_ids == u].max() <= first_test
        mine = ev_ms[ev_users == u]
        assert mine.size and mine.max() < first_test


def test_validation_slice_lies_inside_the_training_side(world: Dataset, temporal: Holdout) -> None:
    val = validation_holdout(temporal)
    outer_cut = _ms(temporal.info["split_time"])
    inner_cut = _ms(val.info["split_time"])
    # the validation period is as long as the test period and ends at the outer cut
    length = temporal.info["test_end"] - temporal.info["split_time"]
    assert val.info["split_time"] == temporal.info["split_time"] - length
    assert val.train.timestamps is not None and val.train.timestamps.max() < inner_cut
    outer_train = _pairs(temporal.train.user_ids, temporal.train.item_ids)
    assert _truth_pairs(val) <= outer_train  # built from training rows only
    assert not _truth_pairs(val) & _truth_pairs(temporal)
    assert val.train.events is not None
    ev_ms = pc.cast(val.train.events.column("timestamp"), pa.int64())
    assert pc.max(ev_ms).as_py() < inner_cut < outer_cut
    per_user = per_user_holdout(world)
    pv = validation_holdout(per_user)
    assert pv.protocol == "per-user" and len(pv.train) < len(per_user.train)
    assert _truth_pairs(pv) <= _pairs(per_user.train.user_ids, per_user.train.item_ids)


class _Fixed:
    """A fake model whose lists are the truth (good) or nothing relevant (bad)."""

    def __init__(self, truth: dict[int, np.ndarray], good: bool, tag: int = 0) -> None:
        self.truth, self.good, self.tag = truth, good, tag

    def fit(self, interactions: Interactions) -> _Fixed:
        return self

    def recommend(self, user_ids: np.ndarray, k: int, exclude_seen: bool = True) -> np.ndarray:
        out = np.full((len(user_ids), k), -1, np.int64)
        if self.good:
            for r, u in enumerate(user_ids):
                t = self.truth[int(u)][:k]
                out[r, : len(t)] = t
        return out


def test_tune_picks_the_best_first_in_grid_order(temporal: Holdout) -> None:
    val = validation_holdout(temporal)
    truth = {int(u): val.test.truth[r] for r, u in enumerate(val.test.user_ids)}

    def make(good: bool, tag: int) -> _Fixed:
        return _Fixed(truth, good, tag)

    res = tune(make, {"good": [False, True], "tag": [1, 2]}, val.train, val.test)
    assert res.params == {"good": True, "tag": 1}  # tags tie: the first wins
    assert res.score == pytest.approx(1.0)
    assert [t["params"] for t in res.trials] == [
        {"good": g, "tag": t} for g in (False, True) for t in (1, 2)
    ]
    knn = tune(ItemKNN, {"n_neighbors": [2, 50]}, val.train, val, metric="recall@10")
    assert knn.params["n_neighbors"] in (2, 50) and len(knn.trials) == 2
    assert knn.score == max(t["score"] for t in knn.trials)
    with pytest.raises(ConfigError, match="metric"):
        tune(ItemKNN, {}, val.train, val.test, metric="ndcg")
    with pytest.raises(ConfigError, match="not computed"):
        tune(ItemKNN, {}, val.train, val.test, metric="auc@20")


def test_compare_reports_metrics_segments_and_fallbacks(world: Dataset, temporal: Holdout) -> None:
    items = ItemInfo.from_videos(world.videos)
    cmp = compare(
        {"pop": MostPop, "ease": lambda: EASE(l2=50.0)}, temporal, k=20, ks=(10, 20), items=items
    )
    table = cmp.table()
    assert set(table) == {"pop", "ease"}
    for name in table:
        assert {"ndcg@20", "recall@10", "coverage@20", "ild@20", "novelty@20"} <= set(table[name])
        assert "creator_gini@20" in table[name]
        # the baselines count the new users they had to serve from popularity
        assert cmp.results[name].n_unknown_users == temporal.info["new_users"]
    assert cmp.results["ease"].params == {"l2": 50.0, "max_items": 50_000}
    assert set(cmp.table("new")["pop"]) == set(table["pop"])
    # personalisation shows in coverage; MostPop recommends (nearly) one list to everybody
    assert table["ease"]["coverage@20"] > table["pop"]["coverage@20"]
    with pytest.raises(ConfigError):
        compare({}, temporal)


def test_tune_and_compare_refits_the_winners(temporal: Holdout) -> None:
    cmp, tuned = tune_and_compare(
        {"knn": (ItemKNN, {"n_neighbors": [5, 40]}), "pop": (MostPop, {})}, temporal, k=10
    )
    assert cmp.results["knn"].params["n_neighbors"] == tuned["knn"].params["n_neighbors"]
    assert tuned["pop"].params == {}


def test_backtest_rolls_three_windows(world: Dataset) -> None:
    delta = timedelta(days=2)
    origins = rolling_origins(world.events, 3, delta)
    assert [b - a for a, b in itertools.pairwise(origins)] == [delta, delta]
    bt = backtest({"pop": MostPop, "knn": lambda: ItemKNN(20)}, world, delta=delta, k=10)
    assert bt.windows == [(t, t + delta) for t in origins]
    assert bt.models == ["pop", "knn"]
    values = bt.values("knn", "ndcg@10")
    assert values.shape == (3,) and np.all((values >= 0) & (values <= 1))
    mean, std = bt.summary()["knn"]["ndcg@10"]
    assert mean == pytest.approx(values.mean()) and std == pytest.approx(values.std(ddof=1))
    with pytest.raises(ConfigError, match="at least 2"):
        backtest({"pop": MostPop}, world, delta=delta, origins=origins[:1])
    with pytest.raises(ConfigError, match="increasing"):
        backtest({"pop": MostPop}, world, delta=delta, origins=origins[::-1])


def test_eval_set_sample_is_a_seeded_subset_with_its_truth(temporal: Holdout) -> None:
    full = temporal.test
    n = len(full) // 2
    s = full.sample(n, seed=1)
    assert len(s) == n
    where = {int(u): i for i, u in enumerate(full.user_ids)}
    rows = [where[int(u)] for u in s.user_ids]
    assert rows == sorted(rows)  # order kept
    for i, r in enumerate(rows):
        got = s.truth.indices[s.truth.indptr[i] : s.truth.indptr[i + 1]]
        want = full.truth.indices[full.truth.indptr[r] : full.truth.indptr[r + 1]]
        assert np.array_equal(got, want)
        assert s.train_counts[i] == full.train_counts[r]
    assert np.array_equal(full.sample(n, seed=1).user_ids, s.user_ids)
    assert not np.array_equal(full.sample(n, seed=2).user_ids, s.user_ids)
    assert full.sample(len(full) + 5) is full
    with pytest.raises(ConfigError, match="at least 1"):
        full.sample(0)


def test_backtest_max_test_users_scores_a_sample(world: Dataset) -> None:
    delta = timedelta(days=2)
    full = backtest({"pop": MostPop}, world, delta=delta, k=10)
    few = backtest({"pop": MostPop}, world, delta=delta, k=10, max_test_users=15)
    for c in few.comparisons:
        assert c.results["pop"].evaluation.n_users["all"] == 15
    assert any(a.results["pop"].evaluation.n_users["all"] > 15 for a in full.comparisons)
