"""EmbeddingIndex: every kind searches, round-trips through save/load, reports memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlsd.errors import ConfigError, DataError
from mlsd.retrieval.base import PAD
from mlsd.retrieval.index import KINDS, EmbeddingIndex


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    x = np.random.default_rng(0).normal(size=(12_000, 32)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_flat_is_exact(vectors: np.ndarray) -> None:
    ids = np.arange(len(vectors), dtype=np.int64) * 3 + 1
    ix = EmbeddingIndex("flat").build(vectors, ids)
    got, scores = ix.search(vectors[:5], 10)
    brute = np.argsort(-(vectors[:5] @ vectors.T), axis=1)[:, :10]
    assert (got == ids[brute]).all()
    assert np.allclose(scores[:, 0], 1.0, atol=1e-5)
    assert ix.bytes_per_vector == pytest.approx(4 * 32 + 8, rel=0.01)


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "flat"])
def test_approximate_kinds_recall_and_round_trip(
    kind: str, vectors: np.ndarray, tmp_path: Path
) -> None:
    ids = np.arange(len(vectors), dtype=np.int64) + 100
    ix = EmbeddingIndex(kind, nprobe=64, pq_m=8, pq_bits=6).build(vectors, ids)  # type: ignore[arg-type]
    queries = vectors[:50] + 0.1
    got, _ = ix.search(queries, 10)
    exact, _ = EmbeddingIndex("flat").build(vectors, ids).search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, exact, strict=True)])
    assert recall > {"ivf_pq": 0.3, "ivf_sq4": 0.6}.get(kind, 0.8)
    ix.save(tmp_path / kind)
    again = EmbeddingIndex.load(tmp_path / kind)
    assert (again.search(queries, 10)[0] == got).all()
    assert again.memory_bytes == ix.memory_bytes
    if kind.startswith("ivf"):
        assert ix.bytes_per_vector < 4 * 32  # quantised codes are smaller than float32


def test_pads_when_fewer_vectors_than_k(vectors: np.ndarray) -> None:
    ix = EmbeddingIndex("flat").build(vectors[:3], np.array([7, 8, 9]))
    ids, scores = ix.search(vectors[:1], 5)
    assert sorted(ids[0, :3].tolist()) == [7, 8, 9]
    assert ids[0, 3:].tolist() == [PAD, PAD] and np.isneginf(scores[0, 3:]).all()


def test_bad_inputs_fail_with_clear_errors(vectors: np.ndarray, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="index kind"):
        EmbeddingIndex("annoy")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="unique"):
        EmbeddingIndex().build(vectors[:2], np.array([1, 1]))
    with pytest.raises(DataError, match="finite"):
        EmbeddingIndex().build(np.full((2, 3), np.nan))
    ix = EmbeddingIndex().build(vectors[:10])
    with pytest.raises(DataError, match="expected"):
        ix.search(np.zeros((1, 5), np.float32), 3)
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(DataError, match="index metadata"):
        EmbeddingIndex.load(tmp_path)
