"""Hyperparameters of the baselines tuned on MovieLens 100k, and factories that use them.

Protocol (b) of :mod:`mlsd.evaluation.protocol`: positives are ratings >= 4, each user's
positives split 80/20 by time; tuning used the validation slice carved the same way from the
training side (never the test slice), by grid search on NDCG@20
(``tests/evaluation/test_movielens.py`` re-runs a small version of it). Measured on the test
slice (942 users, full ranking over every training item, each user's training items
excluded), k = 20:

=========  =========  =======  ==============================================================
model      Recall@20  NDCG@20  hyperparameters
=========  =========  =======  ==============================================================
MostPop    0.1168     0.0985   (none)
ItemKNN    0.2026     0.1624   n_neighbors=800, shrink=0
EASE       0.2257     0.1792   l2=300
ALS        0.2294     0.1795   factors=128, regularization=30, alpha=5, iterations=15
=========  =========  =======  ==============================================================

Validation NDCG@20 is flat near the optimum (EASE: 0.1803 at l2=200, 0.1805 at 300, 0.1795
at 500; ALS: 0.1819 at the setting above, 0.1812 with regularization=10, alpha=1), so these are
good settings rather than unique ones. For ALS what matters is regularization relative to the
confidence scale: at alpha=1, regularization=30 drops validation NDCG@20 to 0.11. Tuned ALS
matches EASE here (within 0.001 NDCG@20); ItemKNN and MostPop trail.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mlsd.evaluation.baselines._base import BaseRecommender
from mlsd.evaluation.baselines.als import ALS
from mlsd.evaluation.baselines.ease import EASE
from mlsd.evaluation.baselines.itemknn import ItemKNN
from mlsd.evaluation.baselines.popularity import MostPop

__all__ = ["BASELINES", "ML100K_GRIDS", "ML100K_TUNED", "factories"]

BASELINES: dict[str, type[BaseRecommender]] = {
    "MostPop": MostPop,
    "ItemKNN": ItemKNN,
    "EASE": EASE,
    "ALS": ALS,
}

ML100K_TUNED: dict[str, dict[str, Any]] = {
    "MostPop": {},
    "ItemKNN": {"n_neighbors": 800, "shrink": 0.0},
    "EASE": {"l2": 300.0},
    "ALS": {"factors": 128, "regularization": 30.0, "alpha": 5.0, "iterations": 15},
}

# The grids searched (every combination) to find ML100K_TUNED.
ML100K_GRIDS: dict[str, dict[str, list[Any]]] = {
    "MostPop": {},
    "ItemKNN": {"n_neighbors": [10, 20, 50, 100, 200, 400, 800, 2000], "shrink": [0.0, 2.0, 10.0]},
    "EASE": {"l2": [50.0, 100.0, 200.0, 300.0, 500.0, 1000.0]},
    "ALS": {
        "factors": [16, 32, 64, 128],
        "regularization": [0.01, 0.1, 1.0, 10.0, 30.0, 100.0],
        "alpha": [0.5, 1.0, 2.0, 5.0, 20.0],
        "iterations": [15],
    },
}


def factories(
    params: Mapping[str, Mapping[str, Any]] = ML100K_TUNED,
) -> dict[str, Callable[[], BaseRecommender]]:
    """``name -> factory`` building each baseline named in ``params`` with those
    hyperparameters (default: the ML-100k tuned ones), ready for
    :func:`mlsd.evaluation.protocol.compare`."""

    def bind(cls: type[BaseRecommender], kw: Mapping[str, Any]) -> Callable[[], BaseRecommender]:
        return lambda: cls(**kw)

    return {name: bind(BASELINES[name], kw) for name, kw in params.items()}
