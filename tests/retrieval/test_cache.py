"""CandidateCache: compact rows read back exactly; invalidation; bad shapes refused; saved
and memory-mapped back, refused when saved for another model or broken."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlsd.errors import ConfigError
from mlsd.retrieval.cache import CacheMismatch, CandidateCache


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


def test_keys_across_the_whole_int64_range_are_accepted() -> None:
    # cold-start rows sit near -2**63 and real user ids can be large: a difference of two
    # keys overflows int64, their order does not
    keys = np.array([-(2**63), 1, 10**15, 2**63 - 1], np.int64)
    cache = CandidateCache(keys, width=4, n_ranks=1)
    cache.put(keys, *_rows(len(keys), 4, 1, 1))
    assert all(cache.get(int(k)) is not None for k in keys)
    with pytest.raises(ConfigError, match="sorted unique"):
        CandidateCache(keys[::-1].copy(), width=4, n_ranks=1)


def test_a_cache_without_similarity_reads_back_its_own_layout(tmp_path: Path) -> None:
    # a retrieval stage without a pair scorer has ranks and the source count only
    users = np.array([3, 8, 20])
    pos, src, f = _rows(3, 30, 4, 7)
    f = np.delete(f, -2, axis=2)  # no similarity column
    cache = CandidateCache(users, width=30, n_ranks=4, scored=False)
    with pytest.raises(ConfigError, match="expected"):
        cache.put(users, pos, src, _rows(3, 30, 4, 7)[2])  # the scored layout is refused
    cache.put(users, pos, src, f)
    assert cache.n_scores == 0 and cache.n_features == 5
    cache.save(tmp_path / "c", {"model_version": "m"})
    back = CandidateCache.load(tmp_path / "c", {"model_version": "m"})
    assert back.n_scores == 0
    for i, u in enumerate(users.tolist()):
        got = back.get(u)
        assert got is not None
        np.testing.assert_array_equal(got[2], f[i])  # NaN ranks compare equal


def _filled(users: np.ndarray, w: int = 30, r: int = 4) -> CandidateCache:
    cache = CandidateCache(users, width=w, n_ranks=r)
    cache.put(users, *_rows(len(users), w, r, 1))
    return cache


def test_saved_cache_loads_memory_mapped_and_reads_back_the_same(tmp_path: Path) -> None:
    users = np.array([2, 5, 9, 40], np.int64)
    cache = _filled(users)
    key = {"model_version": "m-1", "sources": ["a", "b"]}
    cache.save(tmp_path / "c", key)
    back = CandidateCache.load(tmp_path / "c", key)
    assert isinstance(back.items.base, np.memmap)
    for u in users.tolist():
        for a, b in zip(cache.get(u) or (), back.get(u) or (), strict=True):
            np.testing.assert_array_equal(a, b)
    assert back.invalidate(np.array([5])) == 1 and back.get(5) is None  # still invalidates
    # copy-on-write: rows put after the load (retrieved again after events) stay in this
    # process; the files, shared by every worker, do not change
    back.put(users[:1], *_rows(1, back.width, back.n_ranks, 7))
    assert not np.array_equal(back.get(2)[0], cache.get(2)[0])  # type: ignore[index]
    again = CandidateCache.load(tmp_path / "c", key)
    for a, b in zip(cache.get(2) or (), again.get(2) or (), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not list(tmp_path.glob(".c.*"))  # no temporary directory left behind


def test_a_cache_saved_for_another_model_or_broken_is_refused(tmp_path: Path) -> None:
    users = np.array([1, 2, 3], np.int64)
    _filled(users).save(tmp_path / "c", {"model_version": "m-1"})
    with pytest.raises(CacheMismatch, match=r"model_version 'm-1' \(wanted 'm-2'\)"):
        CandidateCache.load(tmp_path / "c", {"model_version": "m-2"})
    # saving again replaces the old cache whole
    _filled(np.array([7, 8], np.int64)).save(tmp_path / "c", {"model_version": "m-2"})
    assert CandidateCache.load(tmp_path / "c", {"model_version": "m-2"}).users.tolist() == [7, 8]
    np.save(tmp_path / "c" / "sources.npy", np.zeros((2, 30), np.int16))  # wrong dtype
    with pytest.raises(CacheMismatch, match=r"sources\.npy: int16\[2, 30\], expected int8"):
        CandidateCache.load(tmp_path / "c", {"model_version": "m-2"})
    (tmp_path / "c" / "ranks.npy").unlink()
    with pytest.raises(CacheMismatch, match="cannot read the arrays"):
        CandidateCache.load(tmp_path / "c", {"model_version": "m-2"})
    with pytest.raises(CacheMismatch, match="cannot read"):
        CandidateCache.load(tmp_path / "nothing", {"model_version": "m-2"})


def test_a_cache_with_invalidated_rows_is_not_saved(tmp_path: Path) -> None:
    cache = _filled(np.array([1, 2], np.int64))
    cache.invalidate(np.array([2]))
    with pytest.raises(ConfigError, match="not filled or invalidated"):
        cache.save(tmp_path / "c", {})
    assert not (tmp_path / "c").exists()
