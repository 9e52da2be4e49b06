"""Beyond-accuracy metrics: coverage, intra-list diversity, novelty, Gini, concentration."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsd.errors import DataError
from mlsd.evaluation.beyond import (
    ItemInfo,
    catalog_coverage,
    creator_concentration,
    gini,
    intra_list_diversity,
    novelty,
)
from mlsd.evaluation.interactions import Interactions
from mlsd.evaluation.metrics import evaluate


def test_catalog_coverage_counts_distinct_items_without_padding() -> None:
    assert catalog_coverage(np.array([[1, 2, -1], [2, 3, -1]]), 10) == pytest.approx(0.3)
    with pytest.raises(DataError):
        catalog_coverage(np.array([[1]]), 0)


def test_intra_list_diversity_with_topics() -> None:
    ids = np.array([1, 2, 3, 4])
    topics = np.array(["a", "a", "b", None], dtype=object)
    recs = np.array([[1, 2, 3], [1, 4, -1], [1, -1, -1]])
    # list 0: of its 3 pairs only (1, 2) shares a topic -> 1 - 1/3; list 1: unknown topics never
    # match -> 1; list 2: a single item has no pairs -> NaN
    np.testing.assert_allclose(intra_list_diversity(recs, ids, topics=topics), [2 / 3, 1.0, np.nan])


def test_intra_list_diversity_with_cosine_features() -> None:
    ids = np.array([10, 20, 30])
    f = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    # cos(10, 20) = cos(20, 30) = 1/sqrt(2), cos(10, 30) = 0: mean similarity sqrt(2)/3
    v = intra_list_diversity(np.array([[10, 20, 30]]), ids, features=f)
    assert v[0] == pytest.approx(1 - math.sqrt(2) / 3)
    with pytest.raises(DataError, match="not in the catalog"):
        intra_list_diversity(np.array([[10, 99]]), ids, features=f)
    with pytest.raises(DataError, match="exactly one"):
        intra_list_diversity(np.array([[10, 20]]), ids)


def test_novelty_is_mean_self_information_in_bits() -> None:
    ids = np.array([1, 2])
    counts = np.array([3, 1])  # of 3 training users
    # p = (count + 1) / (3 + 1): item 1 -> 1 (0 bits), item 2 -> 1/2 (1 bit),
    # unknown item 7 -> 1/4 (2 bits)
    np.testing.assert_allclose(
        novelty(np.array([[1, 2], [7, -1], [-1, -1]]), ids, counts, 3), [0.5, 2.0, np.nan]
    )


def test_gini_by_hand() -> None:
    assert gini(np.array([1, 1, 1, 1])) == 0.0
    assert gini(np.array([0, 0, 0, 1])) == pytest.approx(3 / 4)  # (n - 1) / n: all on one
    assert gini(np.array([1, 2, 3])) == pytest.approx(8 / 36)  # sum|xi - xj| / (2 n^2 mean)
    assert gini(np.zeros(3)) == 0.0
    assert math.isnan(gini(np.array([])))
    with pytest.raises(DataError):
        gini(np.array([-1, 2]))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=30))
def test_gini_matches_mean_absolute_difference(values: list[int]) -> None:
    x = np.array(values, dtype=np.float64)
    if x.sum() == 0:
        return
    mad = np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean())
    assert gini(x) == pytest.approx(mad)
    assert 0 <= gini(x) <= 1


def test_creator_concentration_counts_slots_over_all_known_creators() -> None:
    ids = np.array([1, 2, 3, 4, 5])
    creators = np.array([10, 10, 20, 30, -1])  # creator 30 is never shown; item 5 has none
    recs = np.array([[1, 2, 5], [1, 3, -1]])
    # slots: creator 10 -> 3, 20 -> 1, 30 -> 0: Gini of [0, 1, 3] = (2*3 - 2*0) / (3 * 4)
    assert creator_concentration(recs, ids, creators) == pytest.approx(0.5)


def test_item_info_from_videos_and_evaluate_reports_every_metric() -> None:
    videos = pa.table(
        {
            "video_id": pa.array([1, 2, 3], pa.int64()),
            "creator_id": pa.array([7, 7, None], pa.int64()),
            "topic": pa.array(["a", "b", "a"]),
            "topics": pa.array([["a"], ["b", "a"], ["a"]]),
        }
    )
    train = Interactions(np.array([100, 101, 101]), np.array([1, 1, 2]), np.ones(3))
    info = ItemInfo.from_videos(videos, train)
    np.testing.assert_array_equal(info.user_counts, [2, 1, 0])
    assert info.n_users == 2
    np.testing.assert_array_equal(info.creator_ids, [7, 7, -1])
    multi = ItemInfo.from_videos(videos, multi_topic=True)
    assert multi.features is not None and multi.features.shape == (3, 2)
    ev = evaluate(np.array([[1, 2], [3, 1]]), [[2], [3]], ks=(2,), items=info)
    assert ev.metrics["coverage@2"] == pytest.approx(1.0)
    assert ev.metrics["ild@2"] == pytest.approx(0.5)  # list 0 mixes topics, list 1 does not
    assert ev.metrics["creator_gini@2"] == 0.0  # a single known creator
    assert ev.metrics["novelty@2"] > 0
    with pytest.raises(DataError, match="duplicates"):
        ItemInfo(np.array([1, 1]))
