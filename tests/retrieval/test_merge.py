"""Merging sources: quotas, dedup, overflow filling, tags."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd.errors import ConfigError
from mlsd.retrieval.base import PAD
from mlsd.retrieval.merge import MergedSource, allocate


class ListSource:
    """A fixed candidate list per user (tests only)."""

    def __init__(self, name: str, rows: list[list[int]]) -> None:
        self.name = name
        self.rows = rows

    def candidates(self, user_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        ids = np.full((len(user_ids), k), PAD, np.int64)
        sc = np.full((len(user_ids), k), -np.inf, np.float32)
        for i, u in enumerate(np.asarray(user_ids)):
            r = self.rows[int(u)][:k]
            ids[i, : len(r)] = r
            sc[i, : len(r)] = -np.arange(len(r))
        return ids, sc


def test_allocate_largest_remainder() -> None:
    assert allocate([1, 1, 1], 10).tolist() == [4, 3, 3]
    assert allocate([0.5, 0.25, 0.25], 500).tolist() == [250, 125, 125]
    assert allocate([1, 0], 7).tolist() == [7, 0]
    with pytest.raises(ConfigError):
        allocate([0, 0], 5)


def test_quotas_dedup_and_tags() -> None:
    a = ListSource("a", [[1, 2, 3, 4, 5, 6]])
    b = ListSource("b", [[3, 10, 11, 12, 13, 14]])
    m = MergedSource([a, b], {"a": 1, "b": 1}, k=6)
    t = m.tagged(np.array([0]), 6)
    got = t.item_ids[0].tolist()
    assert len(set(got)) == 6 and PAD not in got
    # Each source's top 3 are in quota; 3 is shared, so one overflow slot is filled.
    assert {1, 2, 3, 10, 11} <= set(got)
    tags = dict(zip(got, (t.source_of(int(c)) for c in t.sources[0]), strict=True))
    assert tags[1] == "a" and tags[10] == "b"
    # The shared video is found by both sources: RRF ranks it first.
    assert got[0] == 3


def test_overflow_fills_when_a_source_comes_up_short() -> None:
    a = ListSource("a", [list(range(1, 20))])
    empty = ListSource("empty", [[]])
    m = MergedSource([a, empty], {"a": 0.2, "empty": 0.8}, k=10)
    ids, scores = m.candidates(np.array([0]), 10)
    assert ids[0].tolist() == list(range(1, 11))
    assert np.isfinite(scores).all()


def test_pads_when_all_sources_run_dry() -> None:
    m = MergedSource([ListSource("a", [[4, 5]]), ListSource("b", [[5]])], k=4)
    t = m.tagged(np.array([0]))
    assert sorted(t.item_ids[0, :2].tolist()) == [4, 5]
    assert t.item_ids[0, 2:].tolist() == [PAD, PAD]
    assert t.sources[0, 2:].tolist() == [-1, -1]
    assert np.isneginf(t.scores[0, 2:]).all()


def test_rejects_duplicate_names_and_unknown_quotas() -> None:
    a = ListSource("a", [[1]])
    with pytest.raises(ConfigError, match="unique"):
        MergedSource([a, a])
    with pytest.raises(ConfigError, match="unknown source"):
        MergedSource([a], {"zzz": 1.0})
