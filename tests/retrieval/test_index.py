"""EmbeddingIndex: every kind searches, round-trips through save/load, reports memory."""

from __future__ import annotations

import json
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


def _recall(got: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) for a, b in zip(got, exact, strict=True)]))


@pytest.mark.parametrize("entries", [0, 4])
def test_hnsw_is_maximum_inner_product_search_when_norms_vary(entries: int, tmp_path: Path) -> None:
    """The MIPS -> L2 reduction: with norms spread over 10x, HNSW still finds the largest
    inner products (not the nearest vectors), and its scores are those inner products."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5_000, 16)).astype(np.float32)
    x *= rng.uniform(0.2, 2.0, size=(len(x), 1)).astype(np.float32)
    q = rng.normal(size=(40, 16)).astype(np.float32)
    ids = np.arange(len(x), dtype=np.int64) * 2 + 5
    ix = EmbeddingIndex("hnsw", hnsw_entries=entries, ef_search=512).build(x, ids)
    got, scores = ix.search(q, 20)
    exact, _ = EmbeddingIndex("flat").build(x, ids).search(q, 20)
    assert _recall(got, exact) / 20 > 0.95
    pos = (got - 5) // 2
    true = np.einsum("ijk,ik->ij", x[pos], q)
    assert np.allclose(scores, true, atol=1e-4)
    assert (np.diff(scores, axis=1) <= 1e-5).all()  # best first
    # cheap check that the graph really is L2 on the augmented vectors: nearest != best IP
    assert not np.array_equal(got[:, 0], ids[np.argmin(((x[None] - q[:, None]) ** 2).sum(-1), 1)])
    ix.save(tmp_path / "h")
    again = EmbeddingIndex.load(tmp_path / "h")
    assert (again.search(q, 20)[0] == got).all()
    assert again.memory_bytes == ix.memory_bytes


def test_hnsw_entry_points_find_scattered_clusters() -> None:
    """Tight, far-apart clusters and a query whose best items lie in many of them (the
    geometry of two-tower embeddings of unseen videos): entry points fix the recall that a
    single top-down descent loses."""
    rng = np.random.default_rng(2)
    d, n_clusters, per = 16, 200, 100
    centres = rng.normal(size=(n_clusters, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres.repeat(per, 0) + 0.01 * rng.normal(size=(n_clusters * per, d))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    q = rng.normal(size=(50, d)).astype(np.float32)
    exact, _ = EmbeddingIndex("flat").build(x).search(q, 100)
    ix = EmbeddingIndex("hnsw", hnsw_m=8, ef_search=32, hnsw_entries=16).build(x)
    with_entries = _recall(ix.search(q, 100)[0], exact) / 100
    ix.set_query_params(hnsw_entries=0)
    without = _recall(ix.search(q, 100)[0], exact) / 100
    assert with_entries > 0.9
    assert with_entries > without


def test_hnsw_query_params_are_checked(vectors: np.ndarray) -> None:
    ix = EmbeddingIndex("hnsw", hnsw_entries=0).build(vectors[:500])
    with pytest.raises(ConfigError, match="without entry cells"):
        ix.set_query_params(hnsw_entries=4)
    with pytest.raises(ConfigError, match="expected >= 0"):
        ix.set_query_params(hnsw_entries=-1)
    with pytest.raises(ConfigError, match="hnsw_whiten"):
        EmbeddingIndex("hnsw", hnsw_whiten=-1.0).build(vectors[:50])
    got, scores = ix.search(vectors[:2], 600)  # k above n pads
    assert (got[:, 500:] == PAD).all() and np.isneginf(scores[:, 500:]).all()


def test_format_1_files_load_except_old_hnsw(vectors: np.ndarray, tmp_path: Path) -> None:
    """Indexes saved before the HNSW transform (format 1) still load, except HNSW graphs."""
    for kind in ("flat", "hnsw"):
        ix = EmbeddingIndex(kind).build(vectors[:200])  # type: ignore[arg-type]
        ix.save(tmp_path / kind)
        meta_path = tmp_path / kind / "index.json"
        meta = json.loads(meta_path.read_text())
        meta["format"] = 1
        for p in ("hnsw_whiten", "hnsw_cells", "hnsw_entries"):
            meta["params"].pop(p)
        meta_path.write_text(json.dumps(meta))
    again = EmbeddingIndex.load(tmp_path / "flat")
    brute = np.argsort(-(vectors[:3] @ vectors[:200].T), axis=1)[:, :5]
    assert (again.search(vectors[:3], 5)[0] == brute).all()
    with pytest.raises(DataError, match="rebuild"):
        EmbeddingIndex.load(tmp_path / "hnsw")
