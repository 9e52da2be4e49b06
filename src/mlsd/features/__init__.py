"""Step 3b of the book, feature engineering: one registry of features, computed offline for
training (point-in-time correct) and online for serving, and a check that the two agree.

- :mod:`.registry`, :mod:`.definitions`: declared features (:data:`VIDEO_REC`);
- :mod:`.offline`: :func:`build_training_set`, the as-of training matrix;
- :mod:`.store`: the :class:`OnlineStore` contract (:class:`EntityLayout`,
  :class:`StoreStats`); :mod:`.memory_store`, :mod:`.redis_store`: :class:`MemoryStore`,
  :class:`RedisStore`; :mod:`.online`: :func:`open_store` (a store from a URL);
- :mod:`.stream`: :class:`OnlineFeatures` (incremental updates, request vector),
  :func:`materialize`;
- :mod:`.skew`: :func:`skew_check`.
"""

from mlsd.errors import FeatureStoreError, OnlineStoreUnavailable, UnknownFeatureError
from mlsd.features.definitions import VIDEO_REC
from mlsd.features.memory_store import MemoryStore
from mlsd.features.offline import build_training_set, feature_matrix
from mlsd.features.online import open_store
from mlsd.features.registry import WINDOWS, Feature, FeatureRegistry
from mlsd.features.signals import Vocab
from mlsd.features.skew import SkewReport, skew_check
from mlsd.features.store import EntityLayout, OnlineStore, StoreStats
from mlsd.features.stream import OnlineFeatures, materialize

__all__ = [
    "VIDEO_REC",
    "WINDOWS",
    "EntityLayout",
    "Feature",
    "FeatureRegistry",
    "FeatureStoreError",
    "MemoryStore",
    "OnlineFeatures",
    "OnlineStore",
    "OnlineStoreUnavailable",
    "RedisStore",
    "SkewReport",
    "StoreStats",
    "UnknownFeatureError",
    "Vocab",
    "build_training_set",
    "feature_matrix",
    "materialize",
    "open_store",
    "skew_check",
]


def __getattr__(name: str) -> object:
    if name == "RedisStore":  # imported on first use: it pulls in redis-py
        from mlsd.features.redis_store import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
