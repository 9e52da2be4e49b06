"""ItemKNN: item-based top-N recommendation with cosine similarity and a sparse neighbourhood.

Deshpande & Karypis, "Item-based top-N recommendation algorithms", TOIS 2004: for every item
``i`` keep its ``n_neighbors`` most similar items; a user's score for item ``j`` is the sum of
``sim(i, j)`` over the user's items ``i`` that have ``j`` among their neighbours. Similarity is
the cosine between item columns of the user x item matrix ``X``, with an optional shrinkage
term in the denominator that damps similarities resting on few co-occurrences (Bell & Koren,
ICDM 2007): ``sim(i, j) = x_i . x_j / (||x_i|| ||x_j|| + shrink)``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mlsd.errors import ConfigError
from mlsd.evaluation.baselines._base import BaseRecommender
from mlsd.retrieval.item_item import knn_weights

__all__ = ["ItemKNN"]


class ItemKNN(BaseRecommender):
    """Item-based cosine kNN.

    Hyperparameters: ``n_neighbors`` (>= 1) similar items kept per item; ``shrink`` (>= 0)
    added to the cosine denominator. Learned: ``similarity_``, ``csr float32[n_items, n_items]``
    with at most ``n_neighbors`` positive entries per row, no diagonal. Fitting computes
    ``XᵀX`` in row blocks (:func:`mlsd.retrieval.item_item.knn_weights`, shared with the
    item-kNN candidate source), so memory stays ``O(n_items * n_neighbors)`` plus one block.
    """

    def __init__(self, n_neighbors: int = 100, shrink: float = 0.0) -> None:
        self.n_neighbors = n_neighbors
        self.shrink = shrink

    def _check_params(self) -> None:
        if int(self.n_neighbors) != self.n_neighbors or self.n_neighbors < 1:
            raise ConfigError(f"ItemKNN n_neighbors={self.n_neighbors!r}: expected an int >= 1")
        if not self.shrink >= 0:
            raise ConfigError(f"ItemKNN shrink={self.shrink!r}: expected a number >= 0")

    def _fit(self, x: sp.csr_matrix) -> None:
        self.similarity_ = knn_weights(x, int(self.n_neighbors), float(self.shrink))

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray((self._x[rows] @ self.similarity_).toarray(), dtype=np.float32)
