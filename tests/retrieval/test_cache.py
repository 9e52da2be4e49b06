"""CandidateCache: compact rows read back exactly; invalidation; bad shapes refused."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd.errors import ConfigError
from mlsd.retrieval.cache import CandidateCache


def _rows(n: int, w: int, r: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pos = rng.integers(-1, 1000, (n, w))
    src = rng.integers(-1, r, (n, w)).astype(np.int8)
    f = np.full((n, w, r + 2), np.nan, np.float32)
    ranks = rng.integers(1, w + 1, (n, w, r)).astype(np.float32)
    hit = rng.random((n, w, r)) < 0.4
    f[:, :, :r] = np.where(hit, ranks, np.nan)
    f[:, :, -2] = rng.normal(size=(n, w)).astype(np.float32)
    f[:, :, -1] = hit.sum(2)
    return pos, src, f


def test_rows_read_back_exactly_and_invalidate() -> None:
    users = np.array([3, 8, 20, 21], np.int64)
    cache = CandidateCache(users, width=50, n_ranks=5)
    pos, src, f = _rows(3, 50, 5, 0)
    cache.put(np.array([20, 3, 99]), pos, src, f)  # 99 is not a cached user: ignored
    for i, u in enumerate([20, 3]):
        got = cache.get(u)
        assert got is not None
        np.testing.assert_array_equal(got[0], pos[i])
        np.testing.assert_array_equal(got[1], src[i])
        np.testing.assert_array_equal(got[2], f[i])  # NaN where a source did not propose
    assert cache.get(8) is None and cache.get(99) is None  # not filled / not a cached user
    assert (cache.hits, cache.misses) == (2, 2)
    assert cache.invalidate(np.array([3, 8, 1000])) == 1
    assert cache.get(3) is None and cache.get(20) is not None
    assert cache.nbytes == 4 * 50 * (4 + 1 + 5 * 2 + 4 + 1)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ConfigError, match="sorted unique"):
        CandidateCache(np.array([5, 2]), width=10, n_ranks=2)
    with pytest.raises(ConfigError, match="width"):
        CandidateCache(np.array([1]), width=70_000, n_ranks=2)
    cache = CandidateCache(np.array([1, 2]), width=10, n_ranks=2)
    pos, src, f = _rows(2, 10, 3, 1)  # one rank column too many
    with pytest.raises(ConfigError, match="expected"):
        cache.put(np.array([1, 2]), pos, src, f)
    assert not cache.valid.any()  # nothing written
