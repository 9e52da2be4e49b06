"""Matrix-factorisation retrieval: implicit ALS (Hu, Koren & Volinsky, ICDM 2008).

Item factors are learned by the ``implicit`` library's CPU solver on the training positives.
A positive's confidence is ``alpha * log2(1 + weight)`` (:func:`mlsd.data.labels.confidence`:
Hu et al.'s log scaling of counts; ``alpha`` for a plain positive), so play counts in a
bring-your-own log weigh in; a log without weights gives every positive ``alpha``.
At request time a user's factors are *recomputed* from their current history with the same
solver (``recalculate_user``: one regularised least-squares solve against the fixed item
factors), so a new watch changes the next request, as with the two-tower (the history holds
no weights: there each watch has the plain confidence ``alpha``). Candidates are the top
inner products, searched in an :class:`~mlsd.retrieval.EmbeddingIndex` (exact by default;
HNSW or IVF for large catalogs).

ALS is the strongest single baseline on MovieLens 100k here (``mlsd.evaluation``); as a source
its rank becomes a ranker feature, so the ranker starts from what ALS knows.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import ThreadpoolController, threadpool_limits

from mlsd.data.labels import confidence
from mlsd.errors import ConfigError, DataError
from mlsd.retrieval._data import Catalog
from mlsd.retrieval.base import (
    PAD,
    NotFittedError,
    as_user_ids,
    check_k,
    embedding_pair_scores,
    exclude_and_take,
)
from mlsd.retrieval.fitting import FitData, SourceBase
from mlsd.retrieval.history import History
from mlsd.retrieval.index import EmbeddingIndex, IndexKind

__all__ = ["ALSSource"]

_FORMAT = 1


FIT_THREADS = 0  # implicit's threads for fit: 0 = every core (see ALSSource._fit)

# score_lists: all items at once below this many (gathering n x c x d factors costs more than
# the product with every item on small catalogs)
_FULL_PRODUCT_ITEMS = 50_000


@functools.cache
def _blas_controller() -> ThreadpoolController:
    """One controller per process: building it scans the loaded libraries (milliseconds),
    too slow to repeat on every request; ``limit`` on it is cheap."""
    return ThreadpoolController()


@dataclass(kw_only=True, eq=False)
class ALSSource(SourceBase):
    """Implicit-ALS candidates (see the module docstring); a ``CandidateSource``.

    Hyperparameters as :class:`mlsd.evaluation.ALS` (defaults: the values tuned on MovieLens
    100k), ``history_len`` watches used to recompute a user, ``index_kind``, ``name``,
    ``exclude_seen``. Learned: ``item_factors_`` (``float32[n_videos, factors]``, catalog
    order), ``catalog_``, ``index_``, ``history_``.
    """

    default_history_len = None  # fit without a history: exclude every watched video

    factors: int = 128
    regularization: float = 30.0
    alpha: float = 5.0
    iterations: int = 15
    history_len: int = 200
    seed: int = 0
    index_kind: IndexKind = "flat"
    name: str = "als"
    exclude_seen: bool = True

    def get_params(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in ("factors", "regularization", "alpha", "iterations", "history_len", "seed",
                      "index_kind", "name", "exclude_seen")
        }  # fmt: skip

    def _check_params(self) -> None:
        if self.factors < 1 or self.iterations < 1 or self.alpha <= 0 or self.regularization < 0:
            raise ConfigError(
                f"ALS factors={self.factors}, iterations={self.iterations}, alpha={self.alpha}, "
                f"regularization={self.regularization}: expected >= 1, >= 1, > 0, >= 0"
            )

    def _model(self) -> AlternatingLeastSquares:
        # implicit warns (an error under pytest) unless BLAS is single-threaded when it builds
        with threadpool_limits(1, "blas"):
            return AlternatingLeastSquares(
                factors=int(self.factors),
                regularization=float(self.regularization),
                alpha=float(self.alpha),
                iterations=int(self.iterations),
                random_state=self.seed,
                num_threads=1,
            )

    def _fit(self, d: FitData, **options: Any) -> None:
        """Learn item factors from the positives (see :meth:`SourceBase.fit`)."""
        pos, catalog = d.positives, d.catalog
        v = catalog.index(pos.video_ids)
        ok = v >= 0
        if ok.sum() < 2:
            raise DataError(f"ALS: {int(ok.sum())} positives of known videos; expected >= 2")
        uids, u = np.unique(pos.user_ids[ok], return_inverse=True)
        # implicit's confidence is alpha * x: alpha for a plain positive, more for a count
        w = np.ones(int(ok.sum()), np.float32) if pos.weights is None else pos.weights[ok]
        x = sp.csr_matrix((confidence(w), (u, v[ok])), shape=(len(uids), len(catalog)))
        x.sum_duplicates()
        if pos.weights is None:
            x.data[:] = 1.0  # repeated plain positives count once
        model = self._model()
        # The fit solves every user's and item's factors independently given the other side
        # (and the Gramian, BLAS kept single-threaded), so its threads change its speed, not
        # its result; a request's solve stays on one thread.
        model.num_threads = FIT_THREADS
        with threadpool_limits(1, "blas"):
            model.fit(x, show_progress=False)
        model.num_threads = 1
        self.catalog_ = catalog
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self._model_ = model
        self.history_ = d.history
        self._build_index()

    def _build_index(self) -> None:
        self.index_ = EmbeddingIndex(self.index_kind, seed=self.seed).build(
            self.item_factors_, self.catalog_.video_ids
        )

    def user_factors(self, user_ids: np.ndarray) -> np.ndarray:
        """``float32[n, factors]`` recomputed from each user's current history (zeros for a
        user without known history: their candidates then fall back to padding)."""
        if not hasattr(self, "item_factors_"):
            raise NotFittedError("ALSSource is not fitted; call fit() first")
        users = as_user_ids(user_ids)
        items, _ = self.history_.recent(users, self.history_len)
        idx = self.catalog_.index(items)
        rows, cols = np.nonzero(idx >= 0)
        x = sp.csr_matrix(
            (np.ones(len(rows), np.float32), (rows, idx[rows, cols])),
            shape=(len(users), len(self.catalog_)),
        )
        x.sum_duplicates()
        x.data[:] = 1.0
        with _blas_controller().limit(limits=1, user_api="blas"):
            f = self._model_.recalculate_user(np.arange(len(users)), x)
        return np.asarray(f, dtype=np.float32).reshape(len(users), -1)

    def candidates(self, user_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """See :class:`~mlsd.retrieval.base.CandidateSource`; scores are inner products."""
        ids, scores, _ = self.candidates_with_embeddings(user_ids, k)
        return ids, scores

    def candidates_with_embeddings(
        self, user_ids: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`candidates` plus the ``float32[n, factors]`` user factors it searched with
        (all zeros for users without history), so :meth:`score_lists` need not solve them
        again for the same request."""
        k = check_k(k)
        users = as_user_ids(user_ids)
        q = self.user_factors(users)
        no_hist = ~np.any(q != 0, axis=1)
        if no_hist.all():  # new users only (a cold-start request): nothing to search for
            return (
                np.full((len(users), k), PAD, np.int64),
                np.full((len(users), k), -np.inf, np.float32),
                q,
            )
        seen = self._seen(users)
        extra = 0 if seen is None else seen.shape[1]
        ids, scores = self.index_.search(q, min(k + extra, len(self.catalog_)))
        ids[no_hist] = PAD
        scores[no_hist] = -np.inf
        return (*exclude_and_take(ids, scores, seen, k), q)

    def score_lists(
        self, user_ids: np.ndarray, item_ids: np.ndarray, user_embeddings: np.ndarray | None = None
    ) -> np.ndarray:
        """Inner product of each user's factors (from their current history) with each of
        their items': ``int64[n]`` users, ``int64[n, c]`` video ids -> ``float32[n, c]``; NaN
        for videos outside the catalog and users without history. ``user_embeddings``: the
        users' factors when already computed."""
        q = self.user_factors(user_ids) if user_embeddings is None else user_embeddings
        idx = self.catalog_.index(np.asarray(item_ids, np.int64))
        at = np.maximum(idx, 0)
        if len(self.catalog_) <= _FULL_PRODUCT_ITEMS:  # one matrix product, then a gather
            s = np.take_along_axis(q @ self.item_factors_.T, at, axis=1)
        else:  # a large catalog: only the listed items' factors
            s = np.einsum("nd,ncd->nc", q, self.item_factors_[at])
        ok = (idx >= 0) & np.any(q != 0, axis=1)[:, None]
        return np.where(ok, s, np.nan).astype(np.float32)

    def score_pairs(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """:meth:`score_lists` of (user, video) pairs: ``int64[n]`` each -> ``float32[n]``;
        each distinct user's factors are computed once."""
        return embedding_pair_scores(
            user_ids,
            item_ids,
            self.user_factors,
            self.item_factors_,
            self.catalog_.index,
            nan_without_history=True,
        )

    # -- persistence: factors as .npy, parameters as JSON ------------------------------------
    def save(self, directory: str | Path) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / "item_factors.npy", self.item_factors_, allow_pickle=False)
        np.save(d / "video_ids.npy", self.catalog_.video_ids, allow_pickle=False)
        # the index too: rebuilding an HNSW graph over a 1M catalog takes minutes on load
        self.index_.save(d / "index")
        (d / "als.json").write_text(json.dumps({"format": _FORMAT, "params": self.get_params()}))

    @classmethod
    def load(cls, directory: str | Path, *, videos: pa.Table, history: History) -> ALSSource:
        d = Path(directory)
        try:
            meta = json.loads((d / "als.json").read_text())
            factors = np.load(d / "item_factors.npy", allow_pickle=False)
            ids = np.load(d / "video_ids.npy", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"{d}: cannot load the ALS source ({e})") from e
        if meta.get("format") != _FORMAT:
            raise DataError(f"{d / 'als.json'}: format {meta.get('format')!r}; expected {_FORMAT}")
        self = cls(**meta["params"])
        catalog = Catalog.from_videos(videos)
        if not np.array_equal(catalog.video_ids, ids) or factors.shape[0] != len(ids):
            raise DataError(f"{d}: item factors do not match the bundle's video catalog")
        model = self._model()
        model.item_factors = factors
        self._model_ = model
        self.catalog_, self.item_factors_, self.history_ = catalog, factors, history
        if (d / "index").is_dir():
            index = EmbeddingIndex.load(d / "index")
            if (
                index.kind != self.index_kind
                or index.dim_ != factors.shape[1]
                or index.ntotal_ != len(ids)
                or (index.ids_ is not None and not np.array_equal(index.ids_, ids))
            ):
                raise DataError(f"{d / 'index'}: does not match the item factors beside it")
            self.index_ = index
        else:  # written before the index was saved: build it (deterministic, seeded)
            self._build_index()
        return self

    def load_state(self, directory: str | Path, *, videos: pa.Table, history: History) -> ALSSource:
        """:meth:`load` into this instance (the saved hyperparameters replace its own)."""
        vars(self).update(vars(type(self).load(directory, videos=videos, history=history)))
        return self
