"""Ranking metrics: hand-computed examples, properties, and the segment breakdown."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsd.errors import ConfigError, DataError
from mlsd.evaluation.metrics import (
    Truth,
    evaluate,
    hit_rate_at_k,
    hits,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)
from mlsd.evaluation.segments import segment_users

LOG2_3 = math.log2(3)

# Four users, K = 4:
#   u0 ranks relevant items at positions 2 and 4, and misses one of its three (item 9);
#   u1 finds its only relevant item at position 1, the rest is padding;
#   u2 has no relevant item (left out of every average);
#   u3 finds nothing.
RECS = np.array([[1, 2, 3, 4], [5, -1, -1, -1], [1, 2, 3, 4], [7, 8, 9, 10]])
TRUTH = [np.array([2, 4, 9]), np.array([5]), np.array([], dtype=np.int64), np.array([1])]


def test_hits_marks_relevant_positions_and_never_padding() -> None:
    expected = [[0, 1, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    np.testing.assert_array_equal(hits(RECS, TRUTH), np.array(expected, dtype=bool))
    # a truth that (wrongly) contains -1 still never matches padding
    assert not hits(np.array([[-1, 3]]), [np.array([-1])]).any()


def test_recall_precision_hit_by_hand() -> None:
    np.testing.assert_allclose(recall_at_k(RECS, TRUTH, 4), [2 / 3, 1, np.nan, 0])
    np.testing.assert_allclose(recall_at_k(RECS, TRUTH, 2), [1 / 3, 1, np.nan, 0])
    # padding counts as a miss: u1 has one hit in four slots
    np.testing.assert_allclose(precision_at_k(RECS, TRUTH, 4), [2 / 4, 1 / 4, np.nan, 0])
    np.testing.assert_allclose(hit_rate_at_k(RECS, TRUTH, 1), [0, 1, np.nan, 0])
    np.testing.assert_allclose(hit_rate_at_k(RECS, TRUTH, 2), [1, 1, np.nan, 0])


def test_ndcg_by_hand() -> None:
    # u0: DCG = 1/log2(2+1) + 1/log2(4+1); |R| = 3 so IDCG = 1 + 1/log2(3) + 1/log2(4).
    dcg = 1 / LOG2_3 + 1 / math.log2(5)
    idcg = 1 + 1 / LOG2_3 + 1 / 2
    np.testing.assert_allclose(ndcg_at_k(RECS, TRUTH, 4), [dcg / idcg, 1, np.nan, 0])
    # at k = 2 the ideal list has min(|R|, 2) = 2 hits: IDCG = 1 + 1/log2(3)
    np.testing.assert_allclose(
        ndcg_at_k(RECS, TRUTH, 2), [(1 / LOG2_3) / (1 + 1 / LOG2_3), 1, np.nan, 0]
    )


def test_map_and_mrr_by_hand() -> None:
    # u0: precision at the hits is 1/2 (rank 2) and 2/4 (rank 4); normalised by min(3, 4) = 3.
    np.testing.assert_allclose(map_at_k(RECS, TRUTH, 4), [(1 / 2 + 2 / 4) / 3, 1, np.nan, 0])
    np.testing.assert_allclose(mrr_at_k(RECS, TRUTH, 4), [1 / 2, 1, np.nan, 0])
    np.testing.assert_allclose(mrr_at_k(RECS, TRUTH, 1), [0, 1, np.nan, 0])


def test_evaluate_averages_over_users_with_truth_and_by_segment() -> None:
    ev = evaluate(RECS, TRUTH, ks=(2, 4), train_counts=np.array([0, 5, 40, 25]))
    assert ev.n_users == {"all": 3, "new": 1, "light": 1, "heavy": 1}
    assert ev.metrics["recall@4"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert ev.metrics["mrr@4"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert ev.segments["new"]["recall@4"] == pytest.approx(2 / 3)
    assert ev.segments["light"]["ndcg@2"] == pytest.approx(1.0)
    # u2 (heavy, no truth) is left out, so the heavy mean is u3's 0
    assert ev.segments["heavy"]["hit@4"] == 0.0
    assert set(ev.per_user) >= {"recall@2", "ndcg@4", "map@4", "precision@2", "hit@4"}
    assert math.isnan(ev.per_user["ndcg@4"][2])


def test_segments_thresholds() -> None:
    seg = segment_users(np.array([0, 1, 19, 20, 500]))
    assert list(seg) == ["new", "light", "light", "heavy", "heavy"]
    assert list(segment_users(np.array([3, 4]), light_max=3)) == ["light", "heavy"]
    with pytest.raises(ConfigError):
        segment_users(np.array([1]), light_max=0)
    with pytest.raises(DataError):
        segment_users(np.array([-1]))


def test_truth_constructors_agree_and_deduplicate() -> None:
    a = Truth.from_lists([[3, 1, 3], [], [7]])
    b = Truth.from_pairs(
        np.array([20, 10, 10, 10, 99]), np.array([7, 1, 3, 3, 5]), np.array([10, 11, 20])
    )
    for t in (a, b):
        np.testing.assert_array_equal(t.indptr, [0, 2, 2, 3])
        np.testing.assert_array_equal(t.indices, [1, 3, 7])
    np.testing.assert_array_equal(a.take(np.array([2, 0])).indices, [7, 1, 3])
    with pytest.raises(DataError, match="indptr"):
        Truth(np.array([0, 3]), np.array([1, 2]))


def test_bad_inputs_are_rejected_with_a_message() -> None:
    with pytest.raises(DataError, match="row 1: item 4 appears twice"):
        recall_at_k(np.array([[1, 2], [4, 4]]), [[1], [4]], 2)
    with pytest.raises(ConfigError, match="k=3"):
        recall_at_k(np.array([[1, 2]]), [[1]], 3)
    with pytest.raises(DataError, match="truth has 2 users"):
        recall_at_k(np.array([[1, 2]]), [[1], [2]], 1)
    with pytest.raises(DataError, match="shape"):
        recall_at_k(np.array([1, 2]), [[1]], 1)
    with pytest.raises(DataError, match="train_counts"):
        evaluate(RECS, TRUTH, ks=(4,), train_counts=np.array([1, 2]))


# ---- properties ----------------------------------------------------------------------------


@st.composite
def ranking_case(draw: st.DrawFn) -> tuple[np.ndarray, list[np.ndarray], int]:
    """Random lists without repeats (some padded) over a small catalog, random truth sets."""
    n_items = draw(st.integers(1, 25))
    width = draw(st.integers(1, 8))
    n_users = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    recs = np.full((n_users, width), -1, np.int64)
    truth = []
    for u in range(n_users):
        n = int(rng.integers(0, min(width, n_items) + 1))
        recs[u, :n] = rng.choice(n_items, n, replace=False) * 7 - 3  # arbitrary ids, some < 0
        size = int(rng.integers(0, n_items + 1))
        truth.append(rng.choice(n_items, size, replace=False) * 7 - 3)
    return recs, truth, width


METRICS = [recall_at_k, precision_at_k, hit_rate_at_k, ndcg_at_k, map_at_k, mrr_at_k]


@settings(max_examples=100, deadline=None)
@given(ranking_case())
def test_metrics_lie_in_unit_interval(case: tuple[np.ndarray, list[np.ndarray], int]) -> None:
    recs, truth, width = case
    for k in range(1, width + 1):
        for metric in METRICS:
            v = metric(recs, truth, k)
            v = v[~np.isnan(v)]
            assert np.all((v >= 0) & (v <= 1 + 1e-12)), metric.__name__


@settings(max_examples=100, deadline=None)
@given(ranking_case())
def test_recall_and_hit_rate_never_decrease_with_k(
    case: tuple[np.ndarray, list[np.ndarray], int],
) -> None:
    recs, truth, width = case
    for metric in (recall_at_k, hit_rate_at_k):
        values = np.stack([metric(recs, truth, k) for k in range(1, width + 1)], axis=1)
        rows = ~np.isnan(values[:, 0])
        assert np.all(np.diff(values[rows], axis=1) >= -1e-12)


@settings(max_examples=100, deadline=None)
@given(ranking_case())
def test_hits_match_a_set_lookup(case: tuple[np.ndarray, list[np.ndarray], int]) -> None:
    recs, truth, _ = case
    rows = zip(recs.tolist(), truth, strict=True)
    expected = np.array(
        [[x != -1 and x in set(t.tolist()) for x in row] for row, t in rows], dtype=bool
    ).reshape(recs.shape)
    np.testing.assert_array_equal(hits(recs, truth), expected)


@settings(max_examples=100, deadline=None)
@given(ranking_case(), st.integers(0, 2**32 - 1))
def test_perfect_ranking_scores_one(
    case: tuple[np.ndarray, list[np.ndarray], int], seed: int
) -> None:
    _, truth, width = case
    rng = np.random.default_rng(seed)
    truth = [t for t in truth if len(t)] or [np.array([5])]
    recs = np.full((len(truth), width), -1, np.int64)
    for u, t in enumerate(truth):
        top = rng.permutation(t)[:width]  # relevant items first, in any order
        recs[u, : len(top)] = top
    for k in range(1, width + 1):
        for metric in (ndcg_at_k, map_at_k, mrr_at_k, hit_rate_at_k):
            np.testing.assert_allclose(metric(recs, truth, k), 1.0, err_msg=metric.__name__)
        sizes = np.array([len(t) for t in truth])
        # recall reaches 1 exactly when the list can hold every relevant item
        np.testing.assert_allclose(recall_at_k(recs, truth, k), np.minimum(sizes, k) / sizes)
