"""Plumbing shared by the baselines: id mapping, the user x item matrix, seen-item exclusion,
batched top-k and the popularity fallback for users unseen in training."""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

from mlsd.data.labels import confidence
from mlsd.errors import ConfigError, DataError
from mlsd.evaluation.interactions import PAD, Interactions, as_interactions

__all__ = ["BaseRecommender", "lookup", "top_k"]


def lookup(sorted_ids: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Dense index of each id of ``query`` in the sorted unique ``sorted_ids``; -1 if absent."""
    q = np.asarray(query, dtype=np.int64)
    if len(sorted_ids) == 0:
        return np.full(q.shape, -1, np.int64)
    pos = np.searchsorted(sorted_ids, q).clip(max=len(sorted_ids) - 1)
    return np.where(sorted_ids[pos] == q, pos, -1).astype(np.int64)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of the ``k`` largest scores per row, best first:
    ``(int64[b, k], float32[b, k])``. Rows with fewer than ``k`` finite scores are padded with
    index -1 and score -inf (``-inf`` marks an excluded item). Ties keep no particular order
    but the result is deterministic for a given input."""
    b, m = scores.shape
    kk = min(k, m)
    if kk == 0:
        return np.full((b, k), -1, np.int64), np.full((b, k), -np.inf, np.float32)
    if kk < m:
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    else:
        part = np.broadcast_to(np.arange(m), (b, m))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1).astype(np.int64)
    vals = np.take_along_axis(vals, order, axis=1).astype(np.float32)
    idx[~np.isfinite(vals)] = -1
    vals[~np.isfinite(vals)] = -np.inf
    if kk < k:
        idx = np.pad(idx, ((0, 0), (0, k - kk)), constant_values=-1)
        vals = np.pad(vals, ((0, 0), (0, k - kk)), constant_values=-np.inf)
    return idx, vals


class BaseRecommender:
    """fit/recommend for models that score every item for a user.

    Subclasses set hyperparameters in ``__init__`` (stored verbatim, validated in
    :meth:`_check_params`), learn in :meth:`_fit` from the user x item matrix ``X``
    (``csr float32[n_users, n_items]``, dense indices: each row counts ``log2(1 + weight)``,
    :func:`mlsd.data.labels.confidence`, 1 for a plain positive, summed over a pair's rows) and
    score in :meth:`_scores`. Learned state ends with ``_``:

    - ``user_ids_``, ``item_ids_``: ``int64`` sorted training ids (row/column ``i`` of ``X`` is
      ``user_ids_[i]``/``item_ids_[i]``); only items seen in training can be recommended;
    - ``popularity_``: ``int64[n_items]`` distinct training users per item;
    - ``n_unknown_users_``: users asked for since ``fit`` who were not in training; they get the
      most popular items (the MostPop fallback).
    """

    batch_size: ClassVar[int] = 1024  # users scored at once: memory is batch_size x n_items

    user_ids_: np.ndarray
    item_ids_: np.ndarray
    popularity_: np.ndarray
    n_unknown_users_: int

    def get_params(self) -> dict[str, Any]:
        """The ``__init__`` arguments, as scikit-learn estimators report them."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def _check_params(self) -> None:
        """Raise :class:`ConfigError` on invalid hyperparameters (called by :meth:`fit`)."""

    def _fit(self, x: sp.csr_matrix) -> None:
        raise NotImplementedError

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        """``float[len(rows), n_items]`` scores (higher is better) of training users ``rows``
        (float32, or float64 where float32 would merge distinct scores)."""
        raise NotImplementedError

    def _top(self, rows: np.ndarray, k: int, exclude_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item indices and scores of training users ``rows`` (see :func:`top_k`)."""
        s = np.array(self._scores(rows), copy=True)  # writable: seen items are masked
        if exclude_seen:
            seen = self._x[rows]
            s[np.repeat(np.arange(len(rows)), np.diff(seen.indptr)), seen.indices] = -np.inf
        return top_k(s, k)

    def fit(self, interactions: Interactions | tuple[np.ndarray, ...]) -> Self:
        """Learn from positive interactions (an :class:`Interactions` or a ``(user_ids,
        item_ids, weights)`` tuple of arrays). Raises :class:`ConfigError` on bad
        hyperparameters and :class:`DataError` on bad or empty input."""
        self._check_params()
        data = as_interactions(interactions)
        if len(data) == 0:
            raise DataError(f"{type(self).__name__}.fit: no interactions; expected at least one")
        users, u = np.unique(data.user_ids, return_inverse=True)
        items, i = np.unique(data.item_ids, return_inverse=True)
        # each row counts log2(1 + weight): 1 for a plain positive, a count by its log
        w = confidence(data.weights)
        x = sp.csr_matrix(
            (w, (u.ravel(), i.ravel())), shape=(len(users), len(items)), dtype=np.float32
        )
        x.sum_duplicates()
        self.user_ids_, self.item_ids_ = users, items
        self.popularity_ = np.bincount(x.indices, minlength=len(items)).astype(np.int64)
        self._pop_order = np.argsort(-self.popularity_, kind="stable")
        self._x = x
        self.n_unknown_users_ = 0
        self._fit(x)
        return self

    def candidates(
        self, user_ids: np.ndarray, k: int, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items per user with their scores: ``(int64[n, k], float32[n, k])``.

        Padded with item ``-1`` / score ``-inf`` when fewer than ``k`` items are available.
        With ``exclude_seen`` a user's training items are never returned. Users not seen in
        training get the most popular items (scores: their training user counts) and are
        counted in ``n_unknown_users_``.
        """
        if not hasattr(self, "item_ids_"):
            raise ConfigError(f"{type(self).__name__}: call fit before recommending")
        if int(k) != k or k < 1:
            raise ConfigError(f"k={k!r}: expected a positive integer")
        q = np.asarray(user_ids, dtype=np.int64).ravel()
        rows = lookup(self.user_ids_, q)
        ids = np.full((len(q), k), PAD, np.int64)
        scores = np.full((len(q), k), -np.inf, np.float32)
        known = np.flatnonzero(rows >= 0)
        for lo in range(0, len(known), self.batch_size):
            batch = known[lo : lo + self.batch_size]
            top, vals = self._top(rows[batch], k, exclude_seen)
            ids[batch] = np.where(top >= 0, self.item_ids_[np.maximum(top, 0)], PAD)
            scores[batch] = vals
        unknown = np.flatnonzero(rows < 0)
        if unknown.size:
            self.n_unknown_users_ += int(unknown.size)
            kk = min(k, len(self.item_ids_))
            ids[unknown, :kk] = self.item_ids_[self._pop_order[:kk]]
            scores[unknown, :kk] = self.popularity_[self._pop_order[:kk]]
        return ids, scores

    def recommend(self, user_ids: np.ndarray, k: int, exclude_seen: bool = True) -> np.ndarray:
        """``int64[len(user_ids), k]`` item ids, best first, padded with -1 (see
        :meth:`candidates`)."""
        return self.candidates(user_ids, k, exclude_seen)[0]
