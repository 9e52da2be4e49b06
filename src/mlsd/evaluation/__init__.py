"""Step 5 of the book, offline evaluation: metrics, baselines, protocols, backtests, reports.

- :mod:`.metrics`: Recall/Precision/NDCG/MAP/MRR/HitRate@k, coverage, diversity, novelty,
  creator concentration, per user segment (:func:`evaluate`);
- :mod:`.baselines`: MostPop, ItemKNN, EASE, ALS behind one ``fit``/``recommend`` interface;
- :mod:`.protocol`: temporal and per-user holdouts, validation slices, grid search,
  model comparison; :mod:`.backtest`: rolling-origin backtests;
- :mod:`.report`: Markdown/HTML reports from composable sections.
"""

from mlsd.evaluation.backtest import BacktestResult, backtest, rolling_origins
from mlsd.evaluation.baselines import ALS, EASE, ItemKNN, MostPop
from mlsd.evaluation.baselines.tuned import ML100K_TUNED
from mlsd.evaluation.beyond import ItemInfo
from mlsd.evaluation.interactions import Interactions, Model
from mlsd.evaluation.metrics import Evaluation, Truth, evaluate
from mlsd.evaluation.protocol import (
    Comparison,
    EvalSet,
    Holdout,
    ModelResult,
    TuneResult,
    compare,
    evaluate_model,
    per_user_holdout,
    random_holdout,
    temporal_holdout,
    tune,
    tune_and_compare,
    validation_holdout,
)
from mlsd.evaluation.report import Report

__all__ = [
    "ALS",
    "EASE",
    "ML100K_TUNED",
    "BacktestResult",
    "Comparison",
    "EvalSet",
    "Evaluation",
    "Holdout",
    "Interactions",
    "ItemInfo",
    "ItemKNN",
    "Model",
    "ModelResult",
    "MostPop",
    "Report",
    "Truth",
    "TuneResult",
    "backtest",
    "compare",
    "evaluate",
    "evaluate_model",
    "per_user_holdout",
    "random_holdout",
    "rolling_origins",
    "temporal_holdout",
    "tune",
    "tune_and_compare",
    "validation_holdout",
]
