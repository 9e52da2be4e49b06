"""Probability calibration for ranking objectives.

Platt scaling (Platt, 1999): fit p = sigmoid(a * margin + b) on held-out data by maximising the
log-likelihood. A GBDT trained with log-loss is close to calibrated on its training
distribution; the held-out fit corrects what early stopping and regularisation shift, so that
the weighted sum of objective probabilities means what its weights say.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -35, 35)))


class PlattCalibrator:
    """p = sigmoid(a_ * margin + b_); ``fit`` by Newton's method on the log-loss.

    Uses Platt's smoothed targets (N+ + 1)/(N+ + 2) and 1/(N- + 2) to avoid overconfidence.
    """

    def __init__(self, max_iter: int = 50, tol: float = 1e-8) -> None:
        self.max_iter = max_iter
        self.tol = tol
        self.a_ = 1.0
        self.b_ = 0.0

    def fit(self, margin: np.ndarray, y: np.ndarray) -> PlattCalibrator:
        """Fit on raw margins (log-odds) and binary labels of equal length."""
        x = np.asarray(margin, dtype=np.float64)
        y = np.asarray(y).astype(bool)
        if x.shape != y.shape or x.ndim != 1:
            raise ValueError(f"margin {x.shape} and y {y.shape} must be 1-d of equal length")
        n_pos, n_neg = int(y.sum()), int((~y).sum())
        if n_pos == 0 or n_neg == 0:
            self.a_, self.b_ = 1.0, 0.0  # nothing to learn from one class: identity
            return self
        t = np.where(y, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
        a, b = 1.0, 0.0
        for _ in range(self.max_iter):
            p = _sigmoid(a * x + b)
            g_a, g_b = np.dot(p - t, x), np.sum(p - t)
            w = p * (1 - p) + 1e-12
            h_aa, h_ab, h_bb = np.dot(w, x * x), np.dot(w, x), np.sum(w)
            det = h_aa * h_bb - h_ab * h_ab
            if det <= 0:
                break
            da = (h_bb * g_a - h_ab * g_b) / det
            db = (h_aa * g_b - h_ab * g_a) / det
            a, b = a - da, b - db
            if abs(da) + abs(db) < self.tol:
                break
        self.a_, self.b_ = float(a), float(b)
        return self

    def predict(self, margin: np.ndarray) -> np.ndarray:
        return _sigmoid(self.a_ * np.asarray(margin, dtype=np.float64) + self.b_)

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a_, "b": self.b_}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PlattCalibrator:
        c = cls()
        c.a_, c.b_ = float(d["a"]), float(d["b"])
        return c


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """ECE (Naeini et al., AAAI 2015): mean |accuracy - confidence| over equal-width bins,
    weighted by bin size."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(y[m].mean() - p[m].mean())
    return float(total / max(len(p), 1))
