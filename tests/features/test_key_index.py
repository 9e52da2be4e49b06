"""KeyIndex (the online state's key interning) against a reference: the same rows under any
interleaving of lookups, additions, bulk loads, tier merges and folds, and state round trips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsd.features._window_state import KeyIndex


class ReferenceIndex:
    """The straightforward interning KeyIndex must agree with: one ``pd.Index`` of every key,
    rebuilt whenever keys are added (rows: first sight, a batch's new keys ascending)."""

    def __init__(self) -> None:
        self.keys = np.zeros(0, np.int64)

    def lookup(self, packed: np.ndarray, add: bool) -> np.ndarray:
        if add and len(self.keys) == 0 and len(packed):
            self.keys, inv = np.unique(packed, return_inverse=True)
            return np.asarray(inv, np.int64).reshape(-1)
        idx = np.asarray(pd.Index(self.keys).get_indexer(packed), np.int64)
        miss = idx < 0
        if add and miss.any():
            self.keys = np.concatenate([self.keys, np.unique(packed[miss])])
            idx = np.asarray(pd.Index(self.keys).get_indexer(packed), np.int64)
        return idx


def small_tiers(index: KeyIndex, recent: int, fold: int) -> KeyIndex:
    """Tiny tier limits, so that a few hundred keys go through every merge and fold."""
    index.RECENT_MAX = recent
    index.FOLD_MIN = fold
    return index


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("recent", "fold"), [(4, 8), (16, 64), (1024, 1 << 16)])
def test_rows_agree_with_the_reference_under_random_interleavings(
    seed: int, recent: int, fold: int
) -> None:
    rng = np.random.default_rng(seed)
    universe = rng.choice(np.arange(-(2**40), 2**40, 2**27, dtype=np.int64), 3000, replace=False)
    index, ref = small_tiers(KeyIndex(1), recent, fold), ReferenceIndex()
    bulk = rng.integers(0, 2)  # start with a bulk load, or with small batches
    if bulk:
        keys = rng.choice(universe[:500], 800)
        np.testing.assert_array_equal(index.lookup(keys, keys[:, None]), ref.lookup(keys, True))
    top = 500
    for _ in range(300):
        top = min(len(universe), top + int(rng.integers(0, 15)))
        n = int(rng.choice([1, 1, 2, 5, 30, 400]))
        keys = rng.choice(universe[:top], n)  # known and new keys, repeats within a batch
        add = bool(rng.random() < 0.7)
        got = index.lookup(keys, keys[:, None] if add else None)
        np.testing.assert_array_equal(got, ref.lookup(keys, add))
    assert len(index) == len(ref.keys)
    np.testing.assert_array_equal(index.packed, ref.keys)
    np.testing.assert_array_equal(index.ids[:, 0], ref.keys)


def test_pair_ids_follow_their_rows() -> None:
    index = small_tiers(KeyIndex(2), 2, 4)
    rng = np.random.default_rng(1)
    for _ in range(50):
        u, c = rng.integers(0, 30, 7), rng.integers(0, 5, 7)
        index.lookup((u << 32) | c, np.stack([u, c], axis=1))
    np.testing.assert_array_equal((index.ids[:, 0] << 32) | index.ids[:, 1], index.packed)


def test_unknown_keys_are_minus_one_and_are_not_added_without_ids() -> None:
    index = KeyIndex(1)
    assert index.lookup(np.array([5, 6])).tolist() == [-1, -1]
    assert len(index) == 0
    index.lookup(np.array([9, 3, 9]), np.array([[9], [3], [9]]))
    assert index.lookup(np.array([3, 9, 4])).tolist() == [0, 1, -1]
    assert index.lookup(np.zeros(0, np.int64)).tolist() == []


def test_state_round_trip_keeps_rows_and_accepts_new_keys() -> None:
    rng = np.random.default_rng(2)
    index = small_tiers(KeyIndex(1), 3, 5)
    for _ in range(40):
        keys = rng.integers(0, 200, 6)
        index.lookup(keys, keys[:, None])
    copy = KeyIndex(1)
    copy.load_state(index.state())
    probe = np.arange(-5, 260)
    np.testing.assert_array_equal(copy.lookup(probe), index.lookup(probe))
    new = np.array([500, 250, 7])
    np.testing.assert_array_equal(copy.lookup(new, new[:, None]), index.lookup(new, new[:, None]))


def test_a_state_of_another_arity_is_refused() -> None:
    index = KeyIndex(2)
    with pytest.raises(ValueError, match="ids of shape"):
        index.load_state({"packed": np.arange(3), "ids": np.zeros((3, 1), np.int64)})
