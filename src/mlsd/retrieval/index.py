"""Approximate nearest-neighbour search over embeddings (maximum inner product), on FAISS.

Kinds (``EmbeddingIndex(kind=...)``):

- ``flat``: exact inner-product search over float32 vectors; right for small catalogs and the
  reference that approximate kinds are measured against.
- ``hnsw``: a hierarchical navigable small-world graph (Malkov and Yashunin, TPAMI 2018) over
  float32 vectors; ``hnsw_m`` links per node, ``ef_construction``/``ef_search`` beam widths.
  Fast and accurate, but the graph costs ``~2 * hnsw_m * 4`` bytes per vector on top of them.
- ``ivf_sq8`` / ``ivf_sq6`` / ``ivf_sq4``: an inverted file of ``nlist`` k-means cells whose
  vectors are scalar-quantised to 8/6/4 bits per dimension; ``nprobe`` cells are scanned.
- ``ivf_pq``: an inverted file with product quantisation (Jégou, Douze and Schmid, TPAMI 2011):
  ``pq_m`` sub-vectors of ``pq_bits`` bits each.

IVF kinds store the caller's ids inside FAISS (8 bytes per vector, part of ``memory_bytes``);
``flat`` and ``hnsw`` keep them in a separate int64 array, counted as well. Saving writes the
FAISS index with ``faiss.write_index`` (FAISS's own binary format, not pickle), the ids as
``.npy`` and the parameters as JSON, so loading cannot execute code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, cast, get_args

import faiss
import numpy as np

from mlsd.errors import ConfigError, DataError
from mlsd.retrieval.base import PAD, NotFittedError, check_k

__all__ = ["KINDS", "EmbeddingIndex", "IndexKind", "faiss_threads"]

IndexKind = Literal["flat", "hnsw", "ivf_sq8", "ivf_sq6", "ivf_sq4", "ivf_pq"]
KINDS: tuple[str, ...] = get_args(IndexKind)
_SQ = {
    "ivf_sq8": faiss.ScalarQuantizer.QT_8bit,
    "ivf_sq6": faiss.ScalarQuantizer.QT_6bit,
    "ivf_sq4": faiss.ScalarQuantizer.QT_4bit,
}
_FORMAT = 1


@contextmanager
def faiss_threads(n: int) -> Iterator[None]:
    """Run a block with FAISS (OpenMP) limited to ``n`` threads, restoring the setting after;
    single-thread latency is measured with ``faiss_threads(1)``."""
    old = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(old)


class EmbeddingIndex:
    """Inner-product search over ``float32[n, d]`` vectors with int64 ids.

    Hyperparameters are keyword arguments (see the module docstring); ``nlist=None`` picks
    ``4 * sqrt(n)`` cells (clipped to [1, n / 39] so k-means has 39 points per centroid, FAISS's
    minimum). ``ef_search`` and ``nprobe`` may be changed after ``build`` (they are query-time
    settings). Learned state: ``index_``, ``ids_`` (None for IVF kinds), ``dim_``, ``ntotal_``.
    """

    def __init__(
        self,
        kind: IndexKind = "flat",
        *,
        hnsw_m: int = 32,
        ef_construction: int = 128,
        ef_search: int = 128,
        nlist: int | None = None,
        nprobe: int = 32,
        pq_m: int = 16,
        pq_bits: int = 8,
        max_train: int = 200_000,
        seed: int = 0,
    ) -> None:
        if kind not in KINDS:
            raise ConfigError(f"index kind {kind!r}: expected one of {', '.join(KINDS)}")
        self.kind = kind
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.nlist = nlist
        self.nprobe = nprobe
        self.pq_m = pq_m
        self.pq_bits = pq_bits
        self.max_train = max_train
        self.seed = seed

    # -- building ---------------------------------------------------------------------------
    def build(self, vectors: np.ndarray, ids: np.ndarray | None = None) -> EmbeddingIndex:
        """Index ``vectors`` (``float[n, d]``) under ``ids`` (``int64[n]``, default 0..n-1).

        Raises :class:`DataError` on a shape mismatch, non-finite values, duplicate or
        negative ids (-1 is the padding id).
        """
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
            raise DataError(f"vectors: shape {x.shape}; expected a non-empty (n, d) matrix")
        if not np.isfinite(x).all():
            raise DataError("vectors: contain NaN or infinite values; expected finite floats")
        n, d = x.shape
        lab = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
        if lab.shape != (n,):
            raise DataError(f"ids: shape {lab.shape}; expected ({n},), one id per vector")
        if (lab < 0).any() or len(np.unique(lab)) != n:
            raise DataError("ids: expected unique non-negative ids (-1 is the padding id)")
        index = self._make(n, d)
        if self.kind.startswith("ivf"):
            rng = np.random.default_rng(self.seed)
            n_train = min(n, self.max_train)
            sample = x if n_train == n else x[np.sort(rng.choice(n, n_train, replace=False))]
            index.train(sample)
            index.add_with_ids(x, lab)
            self.ids_: np.ndarray | None = None
        else:
            index.add(x)
            self.ids_ = lab.copy()
        self.index_ = index
        self.dim_, self.ntotal_ = d, n
        self._memory: int | None = None
        self._apply_query_params()
        return self

    def _make(self, n: int, d: int) -> Any:
        ip = faiss.METRIC_INNER_PRODUCT
        index: Any
        if self.kind == "flat":
            return faiss.IndexFlatIP(d)
        if self.kind == "hnsw":
            if self.hnsw_m < 2:
                raise ConfigError(f"hnsw_m={self.hnsw_m}: expected >= 2")
            index = faiss.IndexHNSWFlat(d, self.hnsw_m, ip)
            index.hnsw.efConstruction = self.ef_construction
            return index
        nlist = self.nlist or int(4 * np.sqrt(n))
        nlist = int(max(1, min(nlist, n // 39 if n >= 39 else 1)))
        self.nlist_ = nlist
        quantizer = faiss.IndexFlatIP(d)
        if self.kind in _SQ:
            index = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, _SQ[self.kind], ip)
        else:
            if d % self.pq_m:
                raise ConfigError(f"pq_m={self.pq_m}: must divide the dimension {d}")
            index = faiss.IndexIVFPQ(quantizer, d, nlist, self.pq_m, self.pq_bits, ip)
            index.pq.cp.seed = self.seed
        index.cp.seed = self.seed
        # The FAISS Python wrapper keeps ``quantizer`` alive with the index (referenced_objects).
        return index

    def _apply_query_params(self) -> None:
        if self.kind == "hnsw":
            self.index_.hnsw.efSearch = self.ef_search
        elif self.kind.startswith("ivf"):
            self.index_.nprobe = self.nprobe

    def set_query_params(self, *, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Change query-time accuracy/speed knobs of a built index."""
        if ef_search is not None:
            self.ef_search = ef_search
        if nprobe is not None:
            self.nprobe = nprobe
        self._check()
        self._apply_query_params()

    # -- querying ---------------------------------------------------------------------------
    def _check(self) -> None:
        if not hasattr(self, "index_"):
            raise NotFittedError("EmbeddingIndex is empty; call build() or load() first")

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ids by inner product: (``int64[q, k]``, ``float32[q, k]``), best first,
        padded with -1 / -inf when fewer than ``k`` vectors are found."""
        self._check()
        k = check_k(k)
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim_:
            raise DataError(f"queries: shape {q.shape}; expected (n, {self.dim_})")
        scores, labels = self.index_.search(q, k)
        found = labels >= 0
        if self.ids_ is not None:
            ids = np.where(found, self.ids_[np.maximum(labels, 0)], PAD)
        else:
            ids = np.where(found, labels, PAD)
        return ids.astype(np.int64), np.where(found, scores, -np.inf).astype(np.float32)

    # -- memory -----------------------------------------------------------------------------
    @property
    def memory_bytes(self) -> int:
        """Bytes to hold the index: FAISS's serialised size (vectors or codes, graph links,
        inverted lists with their ids, centroids) plus the separate id array if any."""
        self._check()
        if self._memory is None:
            faiss_bytes = int(faiss.serialize_index(self.index_).nbytes)
            self._memory = faiss_bytes + (0 if self.ids_ is None else int(self.ids_.nbytes))
        return self._memory

    @property
    def bytes_per_vector(self) -> float:
        return self.memory_bytes / max(self.ntotal_, 1)

    # -- persistence ------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "hnsw_m": self.hnsw_m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "pq_m": self.pq_m,
            "pq_bits": self.pq_bits,
            "max_train": self.max_train,
            "seed": self.seed,
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``index.faiss``, ``ids.npy`` (flat/hnsw) and ``index.json`` into a directory."""
        self._check()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index_, str(d / "index.faiss"))
        if self.ids_ is not None:
            np.save(d / "ids.npy", self.ids_, allow_pickle=False)
        meta = {"format": _FORMAT, "params": self.params(), "dim": self.dim_, "n": self.ntotal_}
        (d / "index.json").write_text(json.dumps(meta, indent=2) + "\n")
        return d

    @classmethod
    def load(cls, directory: str | Path) -> EmbeddingIndex:
        """Read an index written by :meth:`save`; :class:`DataError` names what is wrong."""
        d = Path(directory)
        try:
            meta = json.loads((d / "index.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{d / 'index.json'}: cannot read index metadata ({e})") from e
        if meta.get("format") != _FORMAT:
            raise DataError(
                f"{d / 'index.json'}: format {meta.get('format')!r}; expected {_FORMAT}"
            )
        params = dict(meta["params"])
        kind = cast(IndexKind, params.pop("kind"))
        self = cls(kind, **params)
        try:
            self.index_ = faiss.read_index(str(d / "index.faiss"))
        except RuntimeError as e:
            raise DataError(f"{d / 'index.faiss'}: not a readable FAISS index ({e})") from e
        ids_path = d / "ids.npy"
        self.ids_ = np.load(ids_path, allow_pickle=False) if ids_path.exists() else None
        if self.kind in ("flat", "hnsw") and self.ids_ is None:
            raise DataError(f"{ids_path}: missing; a {self.kind} index needs its id array")
        self.dim_, self.ntotal_ = int(meta["dim"]), int(meta["n"])
        if self.index_.ntotal != self.ntotal_ or self.index_.d != self.dim_:
            raise DataError(
                f"{d}: index holds {self.index_.ntotal} vectors of dimension {self.index_.d}; "
                f"metadata says {self.ntotal_} of dimension {self.dim_}"
            )
        self._memory = None
        self._apply_query_params()
        return self
