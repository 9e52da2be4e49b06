"""What every ranker shares: the :class:`Ranker` protocol the pipeline uses, the names of the
ranker kinds, and the validation figures each reports per objective."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from mlsd.ranking.calibration import expected_calibration_error

__all__ = ["RANKER_KINDS", "Ranker", "RankerKind", "auc", "validation_metrics"]

# gbdt: LightGBM per objective (compiled with lleaves for serving); deep: a DCN-v2 multi-task
# network; distilled: a small MLP trained on a teacher's probabilities; int8: the deep network
# with its Linear layers dynamically quantized to int8
RankerKind = Literal["gbdt", "deep", "distilled", "int8"]
RANKER_KINDS: tuple[RankerKind, ...] = ("gbdt", "deep", "distilled", "int8")


@runtime_checkable
class Ranker(Protocol):
    """What the pipeline uses of a fitted ranker: scores (user, item, context) feature rows as
    calibrated probabilities per objective, combined by ``weights`` (higher is better).

    ``compile`` prepares it for serving (False: it predicts as it is). ``fingerprint`` digests
    what was learned, so that equal digests score alike. ``save`` writes formats that cannot
    run code on load; :func:`mlsd.ranking.load_ranker` reads any kind back.
    """

    weights: dict[str, float]
    feature_names_: list[str]
    metrics_: dict[str, dict[str, float]]

    def predict_proba(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """``features`` ``(n, f)`` in ``feature_names_`` order -> objective -> ``(n,)``."""
        ...

    def score(self, features: np.ndarray) -> np.ndarray:
        """``features`` ``(n, f)`` -> ``sum_o weights[o] * p_o``, ``(n,)``."""
        ...

    def compile(self) -> bool:
        """Prepare for low-latency prediction; True when done."""
        ...

    def fingerprint(self) -> str:
        """A digest of the learned models."""
        ...

    def feature_importance(self, objective: str) -> dict[str, float]:
        """Feature name -> importance in ``objective``'s model (higher: used more)."""
        ...

    def save(self, directory: str | Path) -> None:
        """Write the fitted ranker into ``directory``."""
        ...


def validation_metrics(p: np.ndarray, y: np.ndarray, best_iteration: float) -> dict[str, float]:
    """Validation log-loss, AUC and ECE of calibrated probabilities ``p`` against binary
    labels ``y`` (both ``(n,)``), with the iteration (boosting round, epoch) kept."""
    y = np.asarray(y, dtype=np.float64)
    return {
        "valid_logloss": float(-np.mean(y * np.log(p + 1e-12) + (1 - y) * np.log(1 - p + 1e-12))),
        "valid_auc": auc(p, y),
        "valid_ece": expected_calibration_error(p, y),
        "best_iteration": float(best_iteration),
    }


def auc(p: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney U) formula, ties averaged."""
    from scipy.stats import rankdata

    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(p)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
