"""The online store contract: the :class:`OnlineStore` protocol and what every store shares.

A store holds one packed float32 record per (entity, key): the entity's stored features in the
order of its :class:`EntityLayout`. Reads are batched: ``get(entity, keys, features)`` returns
a ``[len(keys), width]`` float32 array (``width`` is the summed width of ``features``) in one
call, so that serving reads one user and 500 videos in two lookups, not 501.

Bad input never raises on the hot path: a key the store does not hold gets each feature's
default and is counted in ``stats.unknown_keys``. Asking for a feature that is not registered
raises :class:`~mlsd.errors.UnknownFeatureError` naming the closest registered names.

The implementations, :class:`~mlsd.features.memory_store.MemoryStore` (embedded default) and
:class:`~mlsd.features.redis_store.RedisStore` (production), import this module and nothing of
each other; :func:`mlsd.features.online.open_store` picks one from a URL.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from mlsd.errors import FeatureStoreError, UnknownFeatureError
from mlsd.features.registry import STORED_ENTITIES, FeatureRegistry

__all__ = [
    "EntityLayout",
    "KeyArray",
    "LayoutsMixin",
    "OnlineStore",
    "Read",
    "StoreStats",
    "normalize_keys",
]

KeyArray = np.ndarray
#: One batched read: (entity, keys, feature names).
Read = tuple[str, KeyArray, Sequence[str]]


def normalize_keys(
    entity: str, keys: KeyArray | Sequence[int] | Sequence[Sequence[int]]
) -> np.ndarray:
    """Keys as int64: shape ``[n]`` for single-id entities, ``[n, 2]`` (user_id, creator_id)
    for ``user_creator``. Raises FeatureStoreError on another shape."""
    arr = np.asarray(keys, dtype=np.int64)
    if entity == "user_creator":
        if arr.size == 0:
            return arr.reshape(0, 2)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise FeatureStoreError(
                f"user_creator keys: shape {arr.shape}; expected [n, 2] (user_id, creator_id)"
            )
        return arr
    if arr.ndim != 1:
        raise FeatureStoreError(f"{entity} keys: shape {arr.shape}; expected a 1-d array of ids")
    return arr


@dataclass(frozen=True)
class EntityLayout:
    """The record layout of one stored entity: feature names, widths and defaults.

    ``defaults`` has one float32 per record column (``sum(widths)``). The ``fingerprint``
    changes with the layout, so that a reader never decodes records of another layout.
    """

    entity: str
    features: tuple[str, ...]
    widths: tuple[int, ...]
    defaults: np.ndarray = field(compare=False)

    def __post_init__(self) -> None:
        if self.entity not in STORED_ENTITIES:
            raise FeatureStoreError(
                f"entity {self.entity!r} is not stored; expected one of {STORED_ENTITIES}"
            )
        if len(self.features) != len(self.widths) or len(self.defaults) != sum(self.widths):
            raise FeatureStoreError(f"layout of {self.entity!r}: features, widths and defaults "
                                    "do not match")  # fmt: skip
        offsets = np.concatenate([[0], np.cumsum(self.widths)]).astype(np.int64)
        object.__setattr__(self, "_offsets", {f: (int(offsets[i]), int(offsets[i + 1]))
                                              for i, f in enumerate(self.features)})  # fmt: skip
        object.__setattr__(self, "_cols_cache", {})

    @classmethod
    def from_registry(
        cls, registry: FeatureRegistry, entity: str, n_topics: int = 0
    ) -> EntityLayout:
        """The layout of ``entity``'s stored features in registry order (vector features over
        topics take ``n_topics`` columns)."""
        feats = [f for f in registry.for_entity(entity) if f.source != "request"]
        widths = tuple(n_topics if f.width == "topics" else int(f.width) for f in feats)
        defaults = np.concatenate(
            [np.full(w, f.default, dtype=np.float32) for f, w in zip(feats, widths, strict=True)]
            or [np.zeros(0, np.float32)]
        )
        return cls(entity, tuple(f.name for f in feats), widths, defaults)

    @property
    def width(self) -> int:
        return int(sum(self.widths))

    @property
    def fingerprint(self) -> str:
        spec = json.dumps([self.entity, list(self.features), list(self.widths)])
        return hashlib.sha1(spec.encode()).hexdigest()[:10]

    def columns(self, features: Sequence[str]) -> np.ndarray:
        """Record column indices of ``features`` (vector features expand), cached."""
        key = tuple(features)
        cache: dict[tuple[str, ...], np.ndarray] = self._cols_cache  # type: ignore[attr-defined]
        cols = cache.get(key)
        if cols is None:
            offsets: dict[str, tuple[int, int]] = self._offsets  # type: ignore[attr-defined]
            parts = []
            for f in key:
                if f not in offsets:
                    raise UnknownFeatureError(f, self.features, f"the {self.entity} layout")
                lo, hi = offsets[f]
                parts.append(np.arange(lo, hi))
            cols = np.concatenate(parts) if parts else np.zeros(0, np.int64)
            cache[key] = cols
        return cols

    def to_json(self) -> str:
        return json.dumps({"entity": self.entity, "features": list(self.features),
                           "widths": list(self.widths),
                           "defaults": [float(x) for x in self.defaults]})  # fmt: skip

    @classmethod
    def from_json(cls, text: str | bytes) -> EntityLayout:
        d = json.loads(text)
        return cls(d["entity"], tuple(d["features"]), tuple(d["widths"]),
                   np.asarray(d["defaults"], dtype=np.float32))  # fmt: skip


@dataclass
class StoreStats:
    """Counters of a store since it was created (not thread-safe; for monitoring)."""

    reads: int = 0  # batched get calls (each read of a get_many counts once)
    keys_read: int = 0
    unknown_keys: int = 0  # keys not in the store: served the defaults
    writes: int = 0  # keys written


@runtime_checkable
class OnlineStore(Protocol):
    """What serving and the online updater need from a feature store.

    ``define`` declares an entity's record layout (before ``put``); ``put(entity, keys,
    values)`` writes whole records (``values``: ``[len(keys), layout.width]``); ``get``
    reads ``features`` for ``keys`` as float32 ``[len(keys), width]`` (unknown keys: defaults,
    counted); ``get_many`` does several reads in one round trip. ``mark_populated(token)``
    records, after a full write of every record, who wrote them (a model version);
    ``populated()`` reads it back (None: never, or the records were lost). Errors:
    UnknownFeatureError (unregistered feature), FeatureStoreError (bad keys or values),
    OnlineStoreUnavailable (backend down or too slow; never a hang).
    """

    stats: StoreStats

    def define(self, layout: EntityLayout) -> None: ...

    def layout(self, entity: str) -> EntityLayout: ...

    def put(self, entity: str, keys: KeyArray, values: np.ndarray) -> None: ...

    def get(self, entity: str, keys: KeyArray, features: Sequence[str]) -> np.ndarray: ...

    def get_many(self, reads: Sequence[Read]) -> list[np.ndarray]: ...

    def mark_populated(self, token: str) -> None: ...

    def populated(self) -> str | None: ...

    def close(self) -> None: ...


class LayoutsMixin:
    """Layout bookkeeping shared by the store implementations: ``layout`` (with the error
    that names a missing entity), record columns of feature names (naming the entity a
    misplaced feature belongs to) and the check of ``put`` values. A store sets ``_layouts``
    and may override ``_known_layout`` (Redis looks a layout up in the server)."""

    _layouts: dict[str, EntityLayout]

    def _known_layout(self, entity: str) -> EntityLayout | None:
        return self._layouts.get(entity)

    def layout(self, entity: str) -> EntityLayout:
        lay = self._known_layout(entity)
        if lay is None:
            if entity not in STORED_ENTITIES:
                raise FeatureStoreError(
                    f"unknown entity {entity!r}; expected one of {STORED_ENTITIES}"
                )
            raise FeatureStoreError(f"no layout defined for entity {entity!r} in this store "
                                    "(materialize it first)")  # fmt: skip
        return lay

    def _columns(self, lay: EntityLayout, features: Sequence[str]) -> np.ndarray:
        try:
            return lay.columns(features)
        except UnknownFeatureError as e:
            for other in self._layouts.values():
                if e.name in other.features:
                    raise FeatureStoreError(
                        f"feature {e.name!r} belongs to entity {other.entity!r}, not {lay.entity!r}"
                    ) from None
            names = [f for other in self._layouts.values() for f in other.features]
            raise UnknownFeatureError(e.name, names, "the store's layouts") from None

    @staticmethod
    def _check_values(lay: EntityLayout, n: int, values: np.ndarray) -> np.ndarray:
        v = np.asarray(values, dtype=np.float32)
        if v.shape != (n, lay.width):
            raise FeatureStoreError(
                f"put {lay.entity}: values of shape {v.shape}; expected ({n}, {lay.width}) "
                f"(one record of {lay.width} columns per key)"
            )
        return v
