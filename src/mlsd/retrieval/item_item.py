"""Item-to-item sources that score a user's whole history: EASE and cosine item-kNN.

The strongest simple models on small catalogs (Steck, "Embarrassingly Shallow Autoencoders
for Sparse Data", WWW 2019; Deshpande & Karypis, "Item-based top-N recommendation
algorithms", TOIS 2004; Dacrema et al., "Are we really making much progress?", RecSys 2019,
where tuned item-kNN and EASE beat most neural recommenders). As candidate sources their ranks
become ranker features, so the ranker starts from what they know.

Both learn an item x item weight matrix ``W`` over the items with training positives (the
*active* items, catalog order). A user's scores are ``x W`` with ``x`` the binary row of their
last ``history_len`` history items (read at request time, so a new watch changes the next
request); watched items are excluded when ``exclude_seen``.

- :class:`EASESource`: ``W = I - P diagMat(1 / diag(P))``, ``P = (XᵀX + l2 I)⁻¹`` (Steck 2019,
  eq. 8), dense; ``O(m³)`` time and ``4 m²`` bytes for ``m`` active items, so above
  ``max_items`` active items (default 12,500) it stays empty (every list padding) and says so
  in ``skipped_``.
- :class:`ItemKNNSource`: cosine similarity with shrinkage, the ``n_neighbors`` most similar
  items per item (sparse), as :class:`mlsd.evaluation.ItemKNN`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.linalg.lapack as lapack
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from mlsd.data.fingerprint import fingerprint_arrays
from mlsd.errors import ConfigError, DataError
from mlsd.retrieval._data import Catalog
from mlsd.retrieval.base import PAD, NotFittedError, as_user_ids, check_k, top_k_rows
from mlsd.retrieval.fitting import FitData, SourceBase
from mlsd.retrieval.history import History

__all__ = ["EASESource", "ItemKNNSource"]

_FORMAT = 1
_BLOCK_USERS = 256
_KNN_BLOCK_ELEMENTS = 1 << 24  # dense similarity block: rows x items <= 16M floats


@dataclass(kw_only=True, eq=False)
class _ItemItem(SourceBase):
    """Shared fit/score/persistence; a subclass computes ``W`` in :meth:`_weights`."""

    history_len: int = 200
    max_items: int = 16_000
    exclude_seen: bool = True
    name: str = "item_item"

    default_history_len = None

    def params(self) -> dict[str, Any]:
        """The constructor arguments."""
        raise NotImplementedError

    def _weights(self, x: sp.csr_matrix) -> np.ndarray | sp.csr_matrix:
        raise NotImplementedError

    def _check_common(self) -> None:
        if self.history_len < 1 or self.max_items < 1:
            raise ConfigError(
                f"{self.name}: history_len={self.history_len}, max_items={self.max_items}; "
                "expected each >= 1"
            )

    def _fit(self, d: FitData, **options: Any) -> None:
        pos, catalog = d.positives, d.catalog
        v = catalog.index(pos.video_ids)
        ok = v >= 0
        if ok.sum() < 2:
            raise DataError(
                f"{self.name}: {int(ok.sum())} positives of known videos; expected >= 2"
            )
        active, col = np.unique(v[ok], return_inverse=True)
        self.catalog_, self.history_ = catalog, d.history
        self.__dict__.pop("_pos", None)
        self.skipped_: str | None = None
        if len(active) > self.max_items:
            self.skipped_ = (
                f"{len(active):,} items with positives, above max_items={self.max_items:,}"
            )
            self.active_ = np.zeros(0, np.int64)
            self.weights_: np.ndarray | sp.csr_matrix = np.zeros((0, 0), np.float32)
            return
        _, row = np.unique(pos.user_ids[ok], return_inverse=True)
        x = sp.csr_matrix(
            (np.ones(len(row), np.float32), (row, col)), shape=(int(row.max()) + 1, len(active))
        )
        x.sum_duplicates()
        x.data[:] = 1.0
        self.active_ = active.astype(np.int64)
        self.weights_ = self._weights(x)

    def _position(self) -> np.ndarray:
        """``int64[len(catalog)]``: each catalog position's column in ``W`` (-1: inactive)."""
        pos: np.ndarray | None = getattr(self, "_pos", None)
        if pos is None:
            pos = np.full(len(self.catalog_), -1, np.int64)
            pos[self.active_] = np.arange(len(self.active_))
            self._pos = pos
        return pos

    def _user_rows(self, users: np.ndarray) -> sp.csr_matrix:
        """Binary ``csr[n, m]``: each user's last ``history_len`` history items."""
        seeds, _ = self.history_.recent(users, self.history_len)
        idx = self.catalog_.index(seeds)
        col = np.where(idx >= 0, self._position()[np.maximum(idx, 0)], -1)
        r, c = np.nonzero(col >= 0)
        x = sp.csr_matrix(
            (np.ones(len(r), np.float32), (r, col[r, c])), shape=(len(users), len(self.active_))
        )
        x.sum_duplicates()
        x.data[:] = 1.0
        return x

    def _scores(self, x: sp.csr_matrix) -> np.ndarray:
        s = x @ self.weights_
        return np.asarray(s.toarray() if sp.issparse(s) else s, dtype=np.float32)

    def candidates(self, user_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """See :class:`~mlsd.retrieval.base.CandidateSource`; scores are ``x W``. Users
        without history (and every user when ``skipped_``) get padding."""
        if not hasattr(self, "weights_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() first")
        k = check_k(k)
        users = as_user_ids(user_ids)
        out_i = np.full((len(users), k), PAD, np.int64)
        out_s = np.full((len(users), k), -np.inf, np.float32)
        if len(self.active_) == 0:
            return out_i, out_s
        ids = self.catalog_.video_ids[self.active_]
        for lo in range(0, len(users), _BLOCK_USERS):
            ub = users[lo : lo + _BLOCK_USERS]
            s = self._scores(self._user_rows(ub))
            s[s == 0] = -np.inf  # no evidence: not a candidate (users without history: none)
            seen = self._seen(ub)
            if seen is not None:  # the whole history, not only the scored recent part
                idx = self.catalog_.index(seen)
                col = np.where(idx >= 0, self._position()[np.maximum(idx, 0)], -1)
                r, c = np.nonzero(col >= 0)
                s[r, col[r, c]] = -np.inf
            col, val = top_k_rows(s, k)
            got = col >= 0
            out_i[lo : lo + len(s)] = np.where(got, ids[np.maximum(col, 0)], PAD)
            out_s[lo : lo + len(s)] = np.where(got, val, -np.inf)
        return out_i, out_s

    def score_lists(
        self, user_ids: np.ndarray, item_ids: np.ndarray, user_embeddings: np.ndarray | None = None
    ) -> np.ndarray:
        """``x W`` of each user for each of their items: ``int64[n]`` users, ``int64[n, c]``
        video ids -> ``float32[n, c]``; NaN for items without positives in training, for
        users without history and for every pair when ``skipped_`` (``user_embeddings`` is
        unused: the :class:`~mlsd.retrieval.protocols.ListScorer` signature)."""
        if not hasattr(self, "weights_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() first")
        users = as_user_ids(user_ids)
        items = np.asarray(item_ids, np.int64)
        out = np.full(items.shape, np.nan, np.float32)
        if len(self.active_) == 0 or items.size == 0:
            return out
        idx = self.catalog_.index(items)
        col = np.where(idx >= 0, self._position()[np.maximum(idx, 0)], -1)
        for lo in range(0, len(users), _BLOCK_USERS):
            x = self._user_rows(users[lo : lo + _BLOCK_USERS])
            c = col[lo : lo + _BLOCK_USERS]
            s = self._scores(x)[np.arange(len(c))[:, None], np.maximum(c, 0)]
            has = np.diff(x.indptr)[:, None] > 0
            out[lo : lo + len(c)] = np.where((c >= 0) & has, s, np.nan)
        return out

    def score_pairs(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """:meth:`score_lists` of (user, video) pairs: ``int64[n]`` each -> ``float32[n]``."""
        u = as_user_ids(user_ids)
        v = np.asarray(item_ids, np.int64)
        if len(u) == 0:
            return np.zeros(0, np.float32)
        uu, inv = np.unique(u, return_inverse=True)
        o = np.argsort(inv, kind="stable")
        counts = np.bincount(inv, minlength=len(uu))
        width = int(counts.max())
        grid = np.full((len(uu), width), PAD, np.int64)
        slot = np.arange(len(u)) - np.repeat(np.cumsum(counts) - counts, counts)
        grid[inv[o], slot] = v[o]
        got = self.score_lists(uu, grid)
        out = np.empty(len(u), np.float32)
        out[o] = got[inv[o], slot]
        return out

    def fingerprint(self) -> str:
        """A digest of the parameters and the learned weights (see
        :func:`~mlsd.retrieval.protocols.source_fingerprint`)."""
        w = self.weights_
        parts: dict[str, Any] = {"type": type(self).__name__, **self.params(),
                                 "active": self.active_}  # fmt: skip
        if sp.issparse(w):
            c = sp.csr_matrix(w)
            parts.update(data=c.data, indices=c.indices, indptr=c.indptr)
        else:
            parts["weights"] = np.asarray(w)
        return fingerprint_arrays(parts)

    # -- persistence: W as .npy/.npz, parameters as JSON --------------------------------------
    def save(self, directory: str | Path) -> None:
        if not hasattr(self, "weights_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() first")
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / "active.npy", self.active_, allow_pickle=False)
        np.save(d / "video_ids.npy", self.catalog_.video_ids, allow_pickle=False)
        if sp.issparse(self.weights_):
            sp.save_npz(d / "weights.npz", sp.csr_matrix(self.weights_))
        else:
            np.save(d / "weights.npy", np.asarray(self.weights_), allow_pickle=False)
        meta = {"format": _FORMAT, "params": self.params(), "skipped": self.skipped_}
        (d / "item_item.json").write_text(json.dumps(meta, indent=2) + "\n")

    def load_state(self, directory: str | Path, *, videos: pa.Table, history: History) -> Any:
        """Read what :meth:`save` wrote into this (configured) source; :class:`DataError` if
        unreadable, fitted with other parameters, or for another catalog."""
        d = Path(directory)
        try:
            meta = json.loads((d / "item_item.json").read_text())
            active = np.load(d / "active.npy", allow_pickle=False)
            vids = np.load(d / "video_ids.npy", allow_pickle=False)
            if (d / "weights.npz").exists():
                w: np.ndarray | sp.csr_matrix = sp.load_npz(d / "weights.npz").tocsr()
            else:  # dense (EASE): mapped, so worker processes share the pages
                w = np.load(d / "weights.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"{d}: cannot load the {self.name} source ({e})") from e
        if meta.get("format") != _FORMAT:
            raise DataError(f"{d / 'item_item.json'}: format {meta.get('format')!r}; "
                            f"expected {_FORMAT}")  # fmt: skip
        if meta.get("params") != self.params():
            raise DataError(f"{d / 'item_item.json'}: fitted with {meta.get('params')}; this "
                            f"configuration is {self.params()}")  # fmt: skip
        catalog = Catalog.from_videos(videos)
        if not np.array_equal(vids, catalog.video_ids) or w.shape != (len(active), len(active)):
            raise DataError(f"{d}: the item weights do not match the bundle's video catalog")
        self.catalog_, self.active_, self.weights_ = catalog, active.astype(np.int64), w
        self.skipped_, self.history_ = meta.get("skipped"), history
        self.__dict__.pop("_pos", None)
        return self


@dataclass(kw_only=True, eq=False)
class EASESource(_ItemItem):
    """EASE^R candidates (see the module docstring); ``l2`` > 0 its regularisation, or None
    to set it from the data (:func:`auto_l2` times ``l2_scale``). Learned: ``l2_``, the
    value used."""

    l2: float | None = None
    l2_scale: float = 1.0
    # one fit (twice per training: at the label cut and on the whole log) is ~m³ flops on one
    # thread: about a minute at 12,500 items on the machines measured, several above
    max_items: int = 12_500
    name: str = "ease"

    def params(self) -> dict[str, Any]:
        out = {"l2": self.l2, "history_len": self.history_len, "max_items": self.max_items,
               "exclude_seen": self.exclude_seen, "name": self.name}  # fmt: skip
        if self.l2_scale != 1.0:  # absent otherwise, as in bundles written before it
            out["l2_scale"] = self.l2_scale
        return out

    def _check_params(self) -> None:
        self._check_common()
        if self.l2 is not None and not self.l2 > 0:
            raise ConfigError(
                f"EASE l2={self.l2!r}: expected a number > 0 (or None: from the data)"
            )
        if not self.l2_scale > 0:
            raise ConfigError(f"EASE l2_scale={self.l2_scale!r}: expected a number > 0")

    def _weights(self, x: sp.csr_matrix) -> np.ndarray:
        self.l2_ = float(self.l2) if self.l2 is not None else self.l2_scale * auto_l2(x)
        return ease_weights(x, self.l2_)


def auto_l2(x: sp.csr_matrix) -> float:
    """EASE's L2 for the binary ``x`` (users x items) when none is given: 8 x the mean
    positives per item, within [10, 1000].

    The best L2 grows with the Gram matrix's diagonal (the items' positive counts), which it is
    added to (Steck 2019 reports 200-1000 on logs with hundreds of positives per item); the
    factor 8 is where the evaluation's validation grids put it on the logs measured
    (docs/benchmarks.md)."""
    per_item = x.nnz / max(x.shape[1], 1)
    return float(np.clip(8.0 * per_item, 10.0, 1000.0))


def ease_weights(x: sp.csr_matrix, l2: float) -> np.ndarray:
    """EASE's ``float32[m, m]`` weights for the binary ``x`` (users x items), Steck 2019 eq. 8.

    ``P = (XᵀX + l2 I)⁻¹`` by a Cholesky factorisation and its inverse (LAPACK potrf/potri,
    ``m³`` flops in all: a third of a general solve against the identity), in float32 (the
    weights agree with float64's to ~1e-7 in half the time, docs/benchmarks.md). Raises
    :class:`DataError` if the factorisation fails."""
    m = x.shape[1]
    g = np.asarray((x.T @ x).toarray(), dtype=np.float32)
    g[np.diag_indices(m)] += np.float32(l2)
    # one BLAS thread: a threaded factorisation sums in another order with each thread count
    # (weights differing by ~1e-8, enough to swap tied candidates), and results must not
    # depend on the machine or on evaluate's worker processes
    with threadpool_limits(1, "blas"):
        c, info = lapack.spotrf(g, lower=True, overwrite_a=True, clean=True)
        if info != 0:
            raise DataError(f"EASE: the Gram matrix is not positive definite (potrf info {info})")
        p, info = lapack.spotri(c, lower=True, overwrite_c=True)
    if info != 0:
        raise DataError(f"EASE: inverting the Gram matrix failed (potri info {info})")
    p = np.tril(p)
    p += np.tril(p, -1).T  # potri fills one triangle
    d = np.diag(p).copy()
    p /= -d[None, :]
    p[np.diag_indices(m)] = 0.0
    return p


@dataclass(kw_only=True, eq=False)
class ItemKNNSource(_ItemItem):
    """Cosine item-kNN candidates (see the module docstring): ``n_neighbors`` kept per item,
    ``shrink`` added to the cosine's denominator."""

    n_neighbors: int = 200
    shrink: float = 10.0
    max_items: int = 200_000
    name: str = "itemknn"

    def params(self) -> dict[str, Any]:
        return {"n_neighbors": self.n_neighbors, "shrink": self.shrink,
                "history_len": self.history_len, "max_items": self.max_items,
                "exclude_seen": self.exclude_seen, "name": self.name}  # fmt: skip

    def _check_params(self) -> None:
        self._check_common()
        if self.n_neighbors < 1 or not self.shrink >= 0:
            raise ConfigError(
                f"ItemKNN n_neighbors={self.n_neighbors}, shrink={self.shrink}: expected >= 1, >= 0"
            )

    def _weights(self, x: sp.csr_matrix) -> sp.csr_matrix:
        return knn_weights(x, self.n_neighbors, self.shrink)


def knn_weights(x: sp.csr_matrix, n_neighbors: int, shrink: float) -> sp.csr_matrix:
    """``csr float32[m, m]``: each item's ``n_neighbors`` largest cosine similarities
    ``x_i . x_j / (|x_i| |x_j| + shrink)`` (no diagonal), computed in row blocks."""
    m = x.shape[1]
    xt = x.T.tocsr()
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0), dtype=np.float64).ravel())
    nn = min(int(n_neighbors), max(m - 1, 1))
    block = max(1, _KNN_BLOCK_ELEMENTS // max(m, 1))
    rows, cols, vals = [], [], []
    for lo in range(0, m, block):
        hi = min(lo + block, m)
        dots = np.asarray((xt[lo:hi] @ x).toarray(), dtype=np.float64)
        denom = norms[lo:hi, None] * norms[None, :] + shrink
        sim = np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)
        sim[np.arange(hi - lo), np.arange(lo, hi)] = 0.0
        top = (
            np.argpartition(-sim, nn - 1, axis=1)[:, :nn]
            if nn < m
            else np.broadcast_to(np.arange(m), (hi - lo, m))
        )
        v = np.take_along_axis(sim, top, axis=1)
        keep = v > 0
        rows.append(np.broadcast_to(np.arange(lo, hi)[:, None], top.shape)[keep])
        cols.append(top[keep])
        vals.append(v[keep])
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(m, m),
        dtype=np.float32,
    )
