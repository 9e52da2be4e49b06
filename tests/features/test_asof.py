"""The as-of engine's sort: stable, on both of its paths."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd.features._asof import sorted_by_key


@pytest.mark.parametrize("top", [0, 5, 70_000, 2**40, 2**61])
def test_sorted_by_key_matches_numpy_stable_argsort(top: int) -> None:
    # top 2**40 and 2**61 do not fit beside a 12-bit index: they take the radix path
    rng = np.random.default_rng(top % 1000)
    codes = rng.integers(0, top + 1, size=3_000, dtype=np.int64)
    codes[:50] = top  # many ties, whose input order must survive
    got, keys = sorted_by_key(codes)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, np.argsort(codes, kind="stable"))
    np.testing.assert_array_equal(keys, codes[got])


def test_sorted_by_key_of_nothing_and_of_narrow_ints() -> None:
    assert len(sorted_by_key(np.zeros(0, dtype=np.int64))[0]) == 0
    codes = np.array([3, 1, 3, 0, 1], dtype=np.int32)  # not int64: must not overflow the shift
    np.testing.assert_array_equal(sorted_by_key(codes)[0], [3, 1, 4, 0, 2])


@pytest.mark.parametrize("scale", [1, 2**40])  # a lookup table, then a binary search
def test_key_ranks_finds_known_keys_and_marks_unknown_ones(scale: int) -> None:
    from mlsd.features._asof import _key_ranks

    ukeys = np.array([2, 5, 9, 40], dtype=np.int64) * scale
    keys = np.array([0, 2, 5, 6, 9, 40, 41, 10**6], dtype=np.int64) * scale
    np.testing.assert_array_equal(_key_ranks(ukeys, keys), [-1, 0, 1, -1, 2, 3, -1, -1])
    assert len(_key_ranks(np.zeros(0, dtype=np.int64), keys)) == len(keys)
