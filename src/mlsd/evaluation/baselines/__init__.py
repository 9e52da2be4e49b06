"""Baselines every recommender is measured against, with one interface (:class:`~mlsd.
evaluation.interactions.Model`): ``fit(interactions)`` and ``recommend(user_ids, k,
exclude_seen=True) -> int64[n, k]`` (plus ``candidates`` returning scores too, the
``CandidateSource`` contract). Hyperparameters are explicit keyword arguments; ids are arbitrary
int64 (mapped to dense indices inside); unknown users get the most popular items.

``ML100K_TUNED`` holds the hyperparameters tuned on MovieLens 100k (:mod:`.tuned`).
"""

from mlsd.evaluation.baselines._base import BaseRecommender
from mlsd.evaluation.baselines.als import ALS
from mlsd.evaluation.baselines.ease import EASE
from mlsd.evaluation.baselines.itemknn import ItemKNN
from mlsd.evaluation.baselines.popularity import MostPop
from mlsd.evaluation.baselines.tuned import ML100K_TUNED, factories

__all__ = ["ALS", "EASE", "ML100K_TUNED", "BaseRecommender", "ItemKNN", "MostPop", "factories"]
