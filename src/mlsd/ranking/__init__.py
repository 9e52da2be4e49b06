"""Step 4b of the book: the ranking stage. Calibrated probabilities per objective combined into
one score by configurable weights, from one of four rankers: a GBDT (LightGBM, compiled for
serving), a deep multi-task network (DCN-v2), a small MLP distilled from either, or the deep
network quantized to int8."""

from mlsd.ranking.base import RANKER_KINDS, Ranker, RankerKind
from mlsd.ranking.calibration import PlattCalibrator
from mlsd.ranking.deep import DeepRanker
from mlsd.ranking.factory import fit_ranker, load_ranker
from mlsd.ranking.gbdt import GBDTRanker

__all__ = [
    "RANKER_KINDS",
    "DeepRanker",
    "GBDTRanker",
    "PlattCalibrator",
    "Ranker",
    "RankerKind",
    "fit_ranker",
    "load_ranker",
]
