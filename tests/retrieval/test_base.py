"""Array helpers of the retrieval contract."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsd.errors import ConfigError
from mlsd.retrieval.base import PAD, check_k, exclude_and_take, rowwise_isin, top_k_rows


def test_top_k_rows_orders_breaks_ties_by_column_and_pads() -> None:
    scores = np.array([[1.0, 3.0, 3.0, -np.inf], [0.5, 0.1, 0.2, 0.3]], dtype=np.float32)
    idx, val = top_k_rows(scores, 5)
    assert idx[0].tolist() == [1, 2, 0, -1, -1]
    assert idx[1].tolist() == [0, 3, 2, 1, -1]
    assert np.isneginf(val[0, 3:]).all()


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 3), min_size=12, max_size=12), min_size=1, max_size=4),
    st.integers(1, 12),
)
def test_top_k_rows_ties_at_the_cut_take_the_lowest_columns(rows: list[list[int]], k: int) -> None:
    """Few distinct values, so ties straddle the k-th place: the kept set must still be the
    lowest columns among the tied, as a full stable sort gives (sources rely on it to be
    independent of how a batch is laid out)."""
    scores = np.array(rows, dtype=np.float32)
    idx, val = top_k_rows(scores, k)
    want = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    assert (idx == want).all()
    assert (val == np.take_along_axis(scores, want, axis=1)).all()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.integers(-1, 30), min_size=4, max_size=4), min_size=1, max_size=5),
    st.lists(st.lists(st.integers(-1, 30), min_size=3, max_size=3), min_size=5, max_size=5),
)
def test_rowwise_isin_matches_python_sets(a_rows: list[list[int]], b_rows: list[list[int]]) -> None:
    a = np.array(a_rows, dtype=np.int64)
    b = np.array(b_rows[: len(a_rows)], dtype=np.int64)
    got = rowwise_isin(a, b)
    want = [[x != PAD and x in set(b[i].tolist()) - {PAD} for x in row] for i, row in enumerate(a)]
    assert got.tolist() == want


def test_rowwise_isin_handles_huge_ids_without_overflow() -> None:
    big = np.int64(2**62 + 7)
    a = np.array([[big, 5], [big, 6]], dtype=np.int64)
    b = np.array([[big], [5]], dtype=np.int64)
    assert rowwise_isin(a, b).tolist() == [[True, False], [False, False]]


def test_exclude_and_take_keeps_order_and_pads() -> None:
    items = np.array([[5, 6, 7, 8], [1, 2, PAD, PAD]], dtype=np.int64)
    scores = np.array([[4, 3, 2, 1], [2, 1, -np.inf, -np.inf]], dtype=np.float32)
    exclude = np.array([[6, PAD], [9, 1]], dtype=np.int64)
    ids, sc = exclude_and_take(items, scores, exclude, 3)
    assert ids.tolist() == [[5, 7, 8], [2, PAD, PAD]]
    assert sc[0].tolist() == [4, 2, 1]
    assert np.isneginf(sc[1, 1:]).all()


@pytest.mark.parametrize("k", [1, 4, 9])
def test_one_row_fast_path_agrees_with_the_batched_path(k: int) -> None:
    rng = np.random.default_rng(k)
    for _ in range(50):
        items = rng.integers(0, 12, (3, 8)).astype(np.int64)
        items[rng.random(items.shape) < 0.2] = PAD
        scores = rng.random(items.shape).astype(np.float32)
        exclude = rng.integers(0, 12, (3, 4)).astype(np.int64)
        exclude[rng.random(exclude.shape) < 0.3] = PAD
        ids, sc = exclude_and_take(items, scores, exclude, k)  # the batched path
        for r in range(3):
            one = exclude_and_take(items[r : r + 1], scores[r : r + 1], exclude[r : r + 1], k)
            np.testing.assert_array_equal(one[0], ids[r : r + 1])
            np.testing.assert_array_equal(one[1], sc[r : r + 1])
            nothing = exclude_and_take(items[r : r + 1], scores[r : r + 1], None, k)
            assert nothing[0].shape == (1, k)


@pytest.mark.parametrize("k", [0, -3, 2.5, True])
def test_check_k_rejects_non_positive_ints(k: object) -> None:
    with pytest.raises(ConfigError, match="positive integer"):
        check_k(k)  # type: ignore[arg-type]
