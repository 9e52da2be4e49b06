"""Step 4b of the book: the ranking stage. A GBDT (LightGBM) per objective, calibrated, combined
into one score by configurable weights."""

from mlsd.ranking.calibration import PlattCalibrator
from mlsd.ranking.gbdt import GBDTRanker, Ranker

__all__ = ["GBDTRanker", "PlattCalibrator", "Ranker"]
