"""ALS: implicit-feedback matrix factorisation (Hu, Koren & Volinsky, ICDM 2008) via the
``implicit`` library's CPU solver (conjugate-gradient updates, Takács et al., RecSys 2011).

Confidence of an observed pair is ``alpha * log2(1 + w)`` for a row of weight ``w`` (``implicit``
multiplies the matrix, whose entries :class:`BaseRecommender` makes ``log2(1 + w)``: Hu et
al.'s log scaling of counts, ``alpha`` for a plain positive; repeated rows add up);
unobserved pairs have confidence 1 and preference 0. Scores are ``user_factors · item_factors``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from mlsd.errors import ConfigError
from mlsd.evaluation.baselines._base import BaseRecommender

__all__ = ["ALS"]


@dataclass(eq=False, repr=False)
class ALS(BaseRecommender):
    """Implicit ALS with explicit hyperparameters.

    ``factors`` (>= 1), ``regularization`` (>= 0), ``alpha`` (> 0, confidence scale),
    ``iterations`` (>= 1), ``random_state`` (seed of the initial factors), ``num_threads``
    (>= 1; each user's/item's solve runs on one thread, so results do not depend on it).
    ``implicit`` expects a user x item CSR matrix since 0.5 (it was item x user before); this
    is what :meth:`fit` passes. BLAS is held to one thread while fitting, as ``implicit``
    recommends (its own threads would fight BLAS's). Learned: ``user_factors_``
    (``float32[n_users, factors]``) and ``item_factors_`` (``float32[n_items, factors]``).
    """

    factors: int = 64
    regularization: float = 0.05
    alpha: float = 1.0
    iterations: int = 15
    random_state: int = 0
    num_threads: int = 1

    def _check_params(self) -> None:
        for name in ("factors", "iterations", "num_threads"):
            v = getattr(self, name)
            if int(v) != v or v < 1:
                raise ConfigError(f"ALS {name}={v!r}: expected an int >= 1")
        if not self.regularization >= 0:
            raise ConfigError(f"ALS regularization={self.regularization!r}: expected >= 0")
        if not self.alpha > 0:
            raise ConfigError(f"ALS alpha={self.alpha!r}: expected > 0")

    def _fit(self, x: sp.csr_matrix) -> None:
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=int(self.factors),
                regularization=float(self.regularization),
                alpha=float(self.alpha),
                iterations=int(self.iterations),
                random_state=self.random_state,
                num_threads=int(self.num_threads),
            )
            model.fit(x, show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return self.user_factors_[rows] @ self.item_factors_.T
