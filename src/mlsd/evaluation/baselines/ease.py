"""EASE: Embarrassingly Shallow Autoencoder (Steck, "Embarrassingly Shallow Autoencoders for
Sparse Data", WWW 2019).

A dense item x item weight matrix ``B`` with zero diagonal that reconstructs ``X`` by ``XB``,
learned in closed form: with ``P = (XᵀX + λI)⁻¹``, ``B = I - P · diagMat(1 / diag(P))``, i.e.
``B_ij = -P_ij / P_jj`` off the diagonal and ``B_jj = 0`` (Steck 2019, eq. 8). A user's scores
are their row of ``XB``. The cost is an ``n_items x n_items`` inverse: ``O(n_items³)`` time and
``4 n_items²`` bytes (float32; the solve is :func:`mlsd.retrieval.item_item.ease_weights`),
so catalogs above ``max_items`` are refused.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mlsd.errors import ConfigError
from mlsd.evaluation.baselines._base import BaseRecommender
from mlsd.retrieval.item_item import ease_weights

__all__ = ["EASE"]


class EASE(BaseRecommender):
    """EASE^R with L2 regularisation ``l2`` (λ > 0; Steck reports 200-1000 on his datasets).

    ``max_items`` (default 50,000: a 20 GB float64 Gram matrix) bounds the catalog; ``fit``
    raises :class:`ConfigError` above it. Learned: ``B_``, ``float32[n_items, n_items]``.
    """

    def __init__(self, l2: float = 500.0, max_items: int = 50_000) -> None:
        self.l2 = l2
        self.max_items = max_items

    def _check_params(self) -> None:
        if not self.l2 > 0:
            raise ConfigError(f"EASE l2={self.l2!r}: expected a number > 0")
        if self.max_items < 1:
            raise ConfigError(f"EASE max_items={self.max_items!r}: expected >= 1")

    def _fit(self, x: sp.csr_matrix) -> None:
        m = x.shape[1]
        if m > self.max_items:
            raise ConfigError(
                f"EASE: the training data has {m:,} items, above max_items={self.max_items:,}; "
                f"EASE inverts a dense {m:,} x {m:,} matrix ({8 * m * m / 1e9:,.1f} GB, "
                "O(n³) time). Use ItemKNN or ALS for this catalog, filter it to its most "
                "popular items, or raise max_items if the machine can take it"
            )
        self.B_ = ease_weights(x, self.l2)

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self._x[rows] @ self.B_, dtype=np.float32)
