"""What a candidate source is (:class:`CandidateSource`) and the optional capabilities the
pipeline stages use when a source has them (pair scores, cold-start keys, item similarity,
saved state). The array contract is :mod:`mlsd.retrieval.base`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from mlsd.config import LabelConfig
from mlsd.data.dataset import Dataset
from mlsd.data.fingerprint import fingerprint_arrays
from mlsd.retrieval.history import History

__all__ = [
    "CandidateSource",
    "ItemSimilarity",
    "ListScorer",
    "PairScorer",
    "PersistentSource",
    "UserKeyed",
    "source_fingerprint",
]


@runtime_checkable
class CandidateSource(Protocol):
    """Batched candidate generation; see the module docstring for the array contract.

    ``fit`` learns from the positives of ``data`` (a :class:`~mlsd.data.dataset.Dataset` or a
    positives table) up to ``now_ms``; ``history`` is the request-time state the source reads
    users' recent positives from (shared by every source of a pipeline, appended to online).
    Raises :class:`~mlsd.errors.DataError` when the data cannot train it and
    :class:`~mlsd.errors.ConfigError` for bad hyperparameters. ``candidates`` before ``fit``
    raises :class:`~mlsd.errors.NotFittedError`.
    """

    name: str

    def fit(
        self,
        data: Dataset | pa.Table,
        *,
        videos: pa.Table | None = None,
        users: pa.Table | None = None,
        now_ms: int | None = None,
        history: History | None = None,
        label_cfg: LabelConfig | None = None,
    ) -> CandidateSource:
        """Learn from ``data``; returns the source itself."""
        ...

    def candidates(self, user_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``int64[n]`` user ids -> (``int64[n, k]`` video ids, ``float32[n, k]`` scores)."""
        ...


@runtime_checkable
class PairScorer(Protocol):
    """A source that can also score given (user, item) pairs, e.g. an embedding model: the
    pipeline turns the score into a ranking feature named ``<name>_score``. Unknown items
    score NaN. ``candidates_with_embeddings`` returns per-user state (``float32[n, d]``) that
    ``score_lists`` can reuse, so a request computes it once."""

    name: str

    def candidates_with_embeddings(
        self, user_ids: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`CandidateSource.candidates` plus the user embeddings it searched with."""
        ...

    def score_lists(
        self, user_ids: np.ndarray, item_ids: np.ndarray, user_embeddings: np.ndarray | None = None
    ) -> np.ndarray:
        """``int64[n]`` users, ``int64[n, c]`` items -> ``float32[n, c]`` scores."""
        ...

    def score_pairs(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """``int64[n]`` users, ``int64[n]`` items -> ``float32[n]`` scores."""
        ...


@runtime_checkable
class ListScorer(Protocol):
    """A source that scores any of its catalog's items for a user (a factor model's inner
    product, an item-item model's ``x W``), not only those it proposes: the pipeline turns
    the score into a ranking feature named ``<name>_score``, so the ranker sees every
    source's opinion of every candidate. NaN: no opinion (an unknown item, a user without
    history)."""

    name: str

    def score_lists(
        self, user_ids: np.ndarray, item_ids: np.ndarray, user_embeddings: np.ndarray | None = None
    ) -> np.ndarray:
        """``int64[n]`` users, ``int64[n, c]`` items -> ``float32[n, c]`` scores."""
        ...

    def score_pairs(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """``int64[n]`` users, ``int64[n]`` items -> ``float32[n]`` scores."""
        ...


@runtime_checkable
class UserKeyed(Protocol):
    """A source whose candidates for a user without history depend on more than the (empty)
    history: on a hash bucket of the user id and on the user's attributes. Users without
    history or attributes in one bucket get the same candidates, so they can share one cached
    row (see :mod:`mlsd.pipeline.cache`)."""

    def user_buckets(self, user_ids: np.ndarray) -> tuple[int, np.ndarray]:
        """(number of buckets, ``int64[n]`` bucket of each user)."""
        ...

    def has_user_attributes(self, user_ids: np.ndarray) -> np.ndarray:
        """``bool[n]``: whether the source knows attributes of each user."""
        ...


@runtime_checkable
class ItemSimilarity(Protocol):
    """A source that can answer "more like this" from item embeddings."""

    def similar_items(self, video_id: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(``int64[k]`` ids, ``float32[k]`` similarities) of the items nearest ``video_id``
        (itself excluded, padded with :data:`PAD`); KeyError for an unknown item."""
        ...


@runtime_checkable
class PersistentSource(Protocol):
    """A source whose fitted state is saved rather than refitted on load (training it is
    costly). ``load_state`` reads what ``save`` wrote into a configured instance; raises
    :class:`~mlsd.errors.DataError` naming what does not match ``videos``."""

    name: str

    def save(self, directory: str | Path) -> Any:
        """Write the fitted state into ``directory`` (created)."""
        ...

    def load_state(
        self, directory: str | Path, *, videos: pa.Table, history: History
    ) -> PersistentSource:
        """Read the state written by :meth:`save`; serve from ``history``."""
        ...


def source_fingerprint(source: object) -> str:
    """A digest of a fitted source: its own ``fingerprint()`` when it has one, else its
    hyperparameters (public attributes, scikit-learn style) and its learned numpy arrays
    (attributes ending in ``_``). Two sources with equal digests and equal histories propose
    the same candidates."""
    own = getattr(source, "fingerprint", None)
    if callable(own):
        return str(own())
    parts: dict[str, Any] = {"type": f"{type(source).__module__}.{type(source).__qualname__}"}
    for key, value in vars(source).items():
        if key.startswith("_"):
            continue
        if key.endswith("_"):
            if isinstance(value, np.ndarray):
                parts[key] = value
        elif isinstance(value, bool | int | float | str | type(None) | list | tuple | dict):
            parts[key] = value
    return fingerprint_arrays(parts)
