"""Approximate nearest-neighbour search over embeddings (maximum inner product), on FAISS.

Kinds (``EmbeddingIndex(kind=...)``):

- ``flat``: exact inner-product search over float32 vectors; right for small catalogs and the
  reference that approximate kinds are measured against.
- ``hnsw``: a hierarchical navigable small-world graph (Malkov and Yashunin, TPAMI 2018) over
  float32 vectors; ``hnsw_m`` links per node, ``ef_construction``/``ef_search`` beam widths.
  Fast and accurate, but the graph costs ``~2 * hnsw_m * 4`` bytes per vector on top of them.
  Two measures make it hold its recall on two-tower embeddings (see *HNSW on two-tower
  embeddings* below): the graph is built in a partially whitened space, reduced from maximum
  inner product to L2, and a query starts from ``hnsw_entries`` entry points.
- ``ivf_sq8`` / ``ivf_sq6`` / ``ivf_sq4``: an inverted file of ``nlist`` k-means cells whose
  vectors are scalar-quantised to 8/6/4 bits per dimension; ``nprobe`` cells are scanned.
- ``ivf_pq``: an inverted file with product quantisation (Jégou, Douze and Schmid, TPAMI 2011):
  ``pq_m`` sub-vectors of ``pq_bits`` bits each.

IVF kinds store the caller's ids inside FAISS (8 bytes per vector, part of ``memory_bytes``);
``flat`` and ``hnsw`` keep them in a separate int64 array, counted as well. Saving writes the
FAISS index with ``faiss.write_index`` (FAISS's own binary format, not pickle), the ids and the
HNSW transform as ``.npy`` and the parameters as JSON, so loading cannot execute code.

HNSW on two-tower embeddings
----------------------------
A plain inner-product HNSW over the ``large`` benchmark's 1M two-tower video embeddings stalls
below the recall the issue asks for (recall@100 0.74 at ``ef_search=512`` on the embeddings of
the first simulator version, 0.92 on the current ones). The vectors all have norm 1, so this is
not the classic MIPS failure; the cause is their geometry. Videos that training never saw (most
of a 1M catalog) differ only in features they share with thousands of others (topic, creator,
duration, age), so they form very tight clusters (a video's 1,000th neighbour still has cosine
0.998), while the user tower's queries lie far from all of them (best cosine ~0.8). A query's
top 100 then spreads over ~11 such clusters (figures from the first version's embeddings),
and a greedy graph search that enters one cluster rarely crosses to the others. Two measures
fix it without changing the result set's definition (the ranking is still exactly by inner
product):

1. *Transform.* Ranking by ``q . x`` equals ranking by ``q . (x - mean)`` (``q . mean`` is the
   same for every item), and for any invertible ``A``, ``q . x = (A^-T q) . (A x)``. With
   ``A = Lambda^(-p) U^T`` (``U``, ``Lambda`` the eigenvectors/values of the items' covariance,
   ``p = hnsw_whiten``, 0.25 by default) the tight directions are stretched and the clusters
   loosen. The transformed items no longer share one norm, so the maximum-inner-product search
   is reduced to L2 search (Bachrach et al., "Speeding up the Xbox recommender system using a
   Euclidean transformation for inner-product spaces", RecSys 2014): every item gets an extra
   coordinate ``sqrt(R^2 - |x'|^2)`` (``R`` the largest norm), every query a 0, and then
   ``|q' - x'|^2 = |q'|^2 + R^2 - 2 q' . x'`` is smallest exactly where ``q . x`` is largest.
   The graph is an L2 HNSW over ``d + 1`` dimensions; returned scores are the inner products,
   recovered from the distances (float32 rounding, ~1e-5).
2. *Entry points.* The items are clustered into ``hnsw_cells`` k-means cells; a query scores
   the cell centroids by inner product and runs one beam search (width ``ef_search``) on the
   graph's bottom layer from the item nearest to each of its ``hnsw_entries`` best centroids,
   sharing one visited set and one result heap (FAISS's ``search_level_0``). ``hnsw_entries=0``
   is the usual single descent from the top layer.

Measured (``benchmarks/results/retrieval.json``, single thread): the transform alone gives 0.965
at ``ef_search=512`` (plain: 0.92); with 4 entry points, 0.987 at ``ef_search=64`` with a p99 of
0.6 ms, the defaults. On the first version's embeddings the transform alone went from 0.74 to
0.98 at ``ef_search=512``. The reduction is not free in general: on isotropic Gaussian vectors
with spread-out norms a plain inner-product HNSW is the more accurate of the two at the same
``ef_search`` (cf. Morozov and Babenko, NeurIPS 2018), so ``hnsw`` here is tuned for embedding
tables like the two-tower's; the tests check it stays an exact-definition MIPS index anyway.
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
_FORMAT = 2
_EIG_FLOOR = 1e-6  # covariance eigenvalues below this fraction of the largest are clipped


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

    Hyperparameters are keyword arguments (see the module docstring); ``nlist=None`` (IVF
    cells) and ``hnsw_cells=None`` (HNSW entry cells) pick ``4 * sqrt(n)`` cells (clipped to
    [1, n / 39] so k-means has 39 points per centroid, FAISS's minimum). ``ef_search``,
    ``nprobe`` and ``hnsw_entries`` may be changed after ``build`` (they are query-time
    settings). Learned state: ``index_``, ``ids_`` (None for IVF kinds), ``dim_``, ``ntotal_``;
    for ``hnsw`` also ``mean_`` and ``query_map_`` (the query side of the transform),
    ``radius_`` (``R``), ``centroids_`` and ``entry_ids_`` (graph node nearest each centroid).
    """

    def __init__(
        self,
        kind: IndexKind = "flat",
        *,
        hnsw_m: int = 32,
        ef_construction: int = 128,
        ef_search: int = 64,
        hnsw_whiten: float = 0.25,
        hnsw_cells: int | None = None,
        hnsw_entries: int = 4,
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
        self.hnsw_whiten = hnsw_whiten
        self.hnsw_cells = hnsw_cells
        self.hnsw_entries = hnsw_entries
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
        rng = np.random.default_rng(self.seed)
        rows = (
            np.arange(n)
            if n <= self.max_train
            else np.sort(rng.choice(n, self.max_train, replace=False))
        )
        sample = x if len(rows) == n else x[rows]
        self.dim_, self.ntotal_ = d, n
        self.index_ = index
        if self.kind.startswith("ivf"):
            index.train(sample)
            index.add_with_ids(x, lab)
            self.ids_: np.ndarray | None = None
        elif self.kind == "hnsw":
            index.add(self._fit_transform(x, sample))
            self.ids_ = lab.copy()
            self._fit_entries(sample, rows)
        else:
            index.add(x)
            self.ids_ = lab.copy()
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
            if self.hnsw_whiten < 0 or self.hnsw_entries < 0:
                raise ConfigError(
                    f"hnsw_whiten={self.hnsw_whiten}, hnsw_entries={self.hnsw_entries}: "
                    "expected >= 0"
                )
            # L2 over d + 1 dimensions: the MIPS -> L2 reduction (module docstring)
            index = faiss.IndexHNSWFlat(d + 1, self.hnsw_m, faiss.METRIC_L2)
            index.hnsw.efConstruction = self.ef_construction
            return index
        self.nlist_ = nlist = _cells(self.nlist, n)
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

    def _fit_transform(self, x: np.ndarray, sample: np.ndarray) -> np.ndarray:
        """Learn the HNSW transform on ``sample``; return the ``(n, d + 1)`` graph vectors."""
        mean = sample.mean(axis=0, dtype=np.float64)
        centred = sample.astype(np.float64) - mean
        cov = centred.T @ centred / max(len(sample) - 1, 1)
        lam, u = np.linalg.eigh(cov)
        lam = np.maximum(lam, max(float(lam.max()), 1e-30) * _EIG_FLOOR)
        p = self.hnsw_whiten
        item_map = (u * lam ** (-p)).T  # A = Lambda^-p U^T
        self.mean_ = mean.astype(np.float32)
        self.query_map_ = (u * lam**p).T.astype(np.float32)  # A^-T = Lambda^p U^T
        out = np.empty((len(x), x.shape[1] + 1), np.float32)
        for lo in range(0, len(x), 65_536):  # chunks: no float64 copy of a 1M catalog
            xt = (x[lo : lo + 65_536] - mean) @ item_map.T
            out[lo : lo + len(xt), :-1] = xt
        sq = np.einsum("ij,ij->i", out[:, :-1], out[:, :-1], dtype=np.float64)
        self.radius_ = float(np.sqrt(sq.max()) * (1 + 1e-6) + 1e-12)
        out[:, -1] = np.sqrt(np.maximum(self.radius_**2 - sq, 0.0))
        return out

    def _fit_entries(self, sample: np.ndarray, rows: np.ndarray) -> None:
        """k-means cells for the entry points (on ``sample``, the catalog rows ``rows``); a
        cell's entry is the sampled item nearest to its centroid (a graph node)."""
        d = sample.shape[1]
        if self.hnsw_entries == 0:
            self.centroids_ = np.zeros((0, d), np.float32)
            self.entry_ids_ = np.zeros(0, np.int32)
        else:
            cells = _cells(self.hnsw_cells, len(sample))
            km = faiss.Kmeans(d, cells, niter=10, seed=self.seed, verbose=False)
            km.train(sample)
            self.centroids_ = np.ascontiguousarray(km.centroids, dtype=np.float32)
            flat = faiss.IndexFlatL2(d)
            flat.add(sample)
            _, nearest = flat.search(self.centroids_, 1)
            self.entry_ids_ = rows[nearest[:, 0]].astype(np.int32)
        self._entry_vectors()

    def _entry_vectors(self) -> None:
        """The entry nodes' graph vectors (for the entry distances), read from the graph."""
        ids = self.entry_ids_.astype(np.int64)
        self._entry_vecs = (
            self.index_.reconstruct_batch(ids)
            if len(ids)
            else np.zeros((0, self.dim_ + 1), np.float32)
        )

    def _apply_query_params(self) -> None:
        if self.kind == "hnsw":
            self.index_.hnsw.efSearch = self.ef_search
        elif self.kind.startswith("ivf"):
            self.index_.nprobe = self.nprobe

    def set_query_params(
        self,
        *,
        ef_search: int | None = None,
        nprobe: int | None = None,
        hnsw_entries: int | None = None,
    ) -> None:
        """Change query-time accuracy/speed knobs of a built index. ``hnsw_entries`` above the
        number of entry cells uses them all; an HNSW built with ``hnsw_entries=0`` has no cells,
        so it can only search from the top layer."""
        if hnsw_entries is not None:
            if hnsw_entries < 0:
                raise ConfigError(f"hnsw_entries={hnsw_entries}: expected >= 0")
            if hnsw_entries and hasattr(self, "entry_ids_") and not len(self.entry_ids_):
                raise ConfigError("hnsw_entries > 0: this index was built without entry cells")
            self.hnsw_entries = hnsw_entries
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
        if self.kind == "hnsw":
            scores, labels = self._search_hnsw(q, k)
        else:
            scores, labels = self.index_.search(q, k)
        found = labels >= 0
        if self.ids_ is not None:
            ids = np.where(found, self.ids_[np.maximum(labels, 0)], PAD)
        else:
            ids = np.where(found, labels, PAD)
        return ids.astype(np.int64), np.where(found, scores, -np.inf).astype(np.float32)

    def _search_hnsw(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Search the transformed L2 graph; returns (inner products, node positions)."""
        qt = np.zeros((len(q), self.dim_ + 1), np.float32)
        qt[:, :-1] = q @ self.query_map_.T
        e = min(self.hnsw_entries, len(self.entry_ids_))
        if e == 0:
            dist, labels = self.index_.search(qt, k)
        else:
            cell_scores = q @ self.centroids_.T
            if e < cell_scores.shape[1]:
                top = np.argpartition(-cell_scores, e - 1, axis=1)[:, :e]
                order = np.take_along_axis(cell_scores, top, axis=1).argsort(axis=1)[:, ::-1]
                top = np.take_along_axis(top, order, axis=1)
            else:
                top = np.argsort(-cell_scores, axis=1)
            entries = np.ascontiguousarray(self.entry_ids_[top], dtype=np.int32)
            diff = qt[:, None, :] - self._entry_vecs[top]
            entry_d = np.ascontiguousarray(np.einsum("ijk,ijk->ij", diff, diff), np.float32)
            dist = np.empty((len(q), k), np.float32)
            labels = np.empty((len(q), k), np.int64)
            sp = faiss.swig_ptr
            self.index_.search_level_0(
                len(q), sp(qt), k, sp(entries), sp(entry_d), sp(dist), sp(labels), e, 1
            )
        # |q' - x'|^2 = |q'|^2 + R^2 - 2 q'.x'  and  q.x = q'.x' + q.mean
        qn = np.einsum("ij,ij->i", qt, qt, dtype=np.float64)[:, None]
        ip = (qn + self.radius_**2 - dist) / 2 + (q @ self.mean_)[:, None]
        return ip.astype(np.float32), labels

    # -- memory -----------------------------------------------------------------------------
    @property
    def memory_bytes(self) -> int:
        """Bytes to hold the index: FAISS's serialised size (vectors or codes, graph links,
        inverted lists with their ids, centroids) plus the separate id array if any and, for
        ``hnsw``, the transform and entry cells."""
        self._check()
        if self._memory is None:
            faiss_bytes = int(faiss.serialize_index(self.index_).nbytes)
            self._memory = faiss_bytes + (0 if self.ids_ is None else int(self.ids_.nbytes))
            self._memory += sum(int(a.nbytes) for a in self._extra_arrays().values())
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
            "hnsw_whiten": self.hnsw_whiten,
            "hnsw_cells": self.hnsw_cells,
            "hnsw_entries": self.hnsw_entries,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "pq_m": self.pq_m,
            "pq_bits": self.pq_bits,
            "max_train": self.max_train,
            "seed": self.seed,
        }

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        """The ``hnsw`` transform and entry cells (saved as ``.npy`` next to the index)."""
        if self.kind != "hnsw":
            return {}
        return {
            "mean": self.mean_,
            "query_map": self.query_map_,
            "centroids": self.centroids_,
            "entry_ids": self.entry_ids_,
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``index.faiss``, ``ids.npy`` (flat/hnsw), the ``hnsw`` transform's ``.npy``
        files and ``index.json`` into a directory."""
        self._check()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index_, str(d / "index.faiss"))
        if self.ids_ is not None:
            np.save(d / "ids.npy", self.ids_, allow_pickle=False)
        for name, arr in self._extra_arrays().items():
            np.save(d / f"{name}.npy", arr, allow_pickle=False)
        meta: dict[str, Any] = {
            "format": _FORMAT,
            "params": self.params(),
            "dim": self.dim_,
            "n": self.ntotal_,
        }
        if self.kind == "hnsw":
            meta["radius"] = self.radius_
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
        fmt = meta.get("format")
        params = dict(meta.get("params", {}))
        kind = cast(IndexKind, params.pop("kind", None))
        # Format 1 (before the HNSW transform) is still readable for every other kind.
        if fmt != _FORMAT and not (fmt == 1 and kind in KINDS and kind != "hnsw"):
            raise DataError(
                f"{d / 'index.json'}: format {fmt!r} of a {kind!r} index; expected {_FORMAT} "
                "(rebuild the index with this version)"
            )
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
        graph_dim = self.dim_ + (1 if self.kind == "hnsw" else 0)
        if self.index_.ntotal != self.ntotal_ or self.index_.d != graph_dim:
            raise DataError(
                f"{d}: index holds {self.index_.ntotal} vectors of dimension {self.index_.d}; "
                f"metadata says {self.ntotal_} of dimension {self.dim_}"
            )
        if self.kind == "hnsw":
            self._load_hnsw(d, meta)
        self._memory = None
        self._apply_query_params()
        return self

    def _load_hnsw(self, d: Path, meta: dict[str, Any]) -> None:
        arrays = {}
        for name in ("mean", "query_map", "centroids", "entry_ids"):
            try:
                arrays[name] = np.load(d / f"{name}.npy", allow_pickle=False)
            except (OSError, ValueError) as e:
                raise DataError(
                    f"{d / (name + '.npy')}: cannot read the HNSW transform ({e})"
                ) from e
        dim = self.dim_
        shapes = {"mean": (dim,), "query_map": (dim, dim)}
        for name, shape in shapes.items():
            if arrays[name].shape != shape:
                raise DataError(
                    f"{d / (name + '.npy')}: shape {arrays[name].shape}; expected {shape}"
                )
        cells = arrays["entry_ids"]
        if arrays["centroids"].shape != (len(cells), dim) or (
            len(cells) and (cells.min() < 0 or cells.max() >= self.ntotal_)
        ):
            raise DataError(f"{d}: HNSW entry cells do not match the index")
        if self.index_.d != dim + 1 or "radius" not in meta:
            raise DataError(f"{d}: not an HNSW index written by this version")
        self.mean_ = arrays["mean"].astype(np.float32)
        self.query_map_ = arrays["query_map"].astype(np.float32)
        self.centroids_ = np.ascontiguousarray(arrays["centroids"], dtype=np.float32)
        self.entry_ids_ = cells.astype(np.int32)
        self.radius_ = float(meta["radius"])
        self._entry_vectors()


def _cells(requested: int | None, n: int) -> int:
    """k-means cells: ``requested`` or ``4 * sqrt(n)``, clipped to [1, n / 39]."""
    cells = requested or int(4 * np.sqrt(n))
    return int(max(1, min(cells, n // 39 if n >= 39 else 1)))
