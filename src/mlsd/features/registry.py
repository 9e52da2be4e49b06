"""The feature registry: every feature declared once, with its entity, source, window, dtype,
default, the raw inputs it reads and the ONE function that computes it.

A feature's ``compute`` is a vectorised numpy function ``inputs -> values``. The offline builder
(:mod:`mlsd.features.offline`) and the online path (:mod:`mlsd.features.stream`) both call it:
only the *raw state* they hand it is produced differently (a point-in-time as-of join over the
whole log offline, incremental hourly buckets online), and the skew check
(:mod:`mlsd.features.skew`) proves the two agree.

Entities:

- ``user``, ``video``, ``creator``, ``user_creator``: stored entities; their features live in
  the online store, one packed record per key (``user_creator`` keys are ``(user_id,
  creator_id)`` pairs: the user's history with the creator of a candidate video);
- ``user_video`` and ``context``: computed at request time from stored values of the entities
  above and from the request itself (time, device, surface).

Raw input names: a windowed counter is ``"<signal>_<window>"`` (``"valid_7d"``: valid watches
in the 7-day window, see :data:`WINDOWS`); on-demand features read stored features by their
name and the request as ``"request.t_ms"``, ``"request.device"``, ``"request.surface"``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from mlsd.errors import FeatureStoreError, UnknownFeatureError

__all__ = [
    "ENTITIES",
    "STORED_ENTITIES",
    "WINDOWS",
    "Feature",
    "FeatureRegistry",
    "window_inputs",
]

#: Window name -> length in hours. Window ``W`` at request time ``t`` holds the events with
#: timestamp in ``[floor_hour(t) - W, t)``: whole hours back from the start of the current hour,
#: plus the current hour up to (not including) ``t``. Aligning the start on hours lets the online
#: path keep hourly buckets and agree with the offline builder exactly, while the current hour's
#: bucket is updated in real time (serving sees a watch seconds after it happened).
WINDOWS: dict[str, int] = {"1h": 1, "1d": 24, "7d": 168, "30d": 720}

STORED_ENTITIES: tuple[str, ...] = ("user", "video", "creator", "user_creator")
ENTITIES: tuple[str, ...] = (*STORED_ENTITIES, "user_video", "context")
SOURCES: tuple[str, ...] = ("events", "videos", "request")
DTYPES: tuple[str, ...] = ("count", "rate", "float", "flag", "category", "vector")

Compute = Callable[[Mapping[str, np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class Feature:
    """One declared feature.

    ``compute(inputs)`` takes a mapping holding (at least) the arrays named in ``inputs``, all
    of the same length ``n``, and returns float64 values of shape ``[n]`` (``[n, width]`` for a
    ``vector`` feature). ``default`` is the value of a key the store does not know; for
    windowed features it equals ``compute`` of zero counts (checked by the tests).
    ``width`` is 1, or ``"topics"`` for a vector over the topic vocabulary. ``in_matrix=False``
    marks stored state other features read (e.g. the topic-affinity vector) that is not a
    column of the training matrix. Categories are integer codes (-1: unknown) stored as floats.
    """

    name: str
    entity: str
    source: str
    dtype: str
    default: float
    inputs: tuple[str, ...]
    compute: Compute = field(repr=False, compare=False)
    description: str = ""
    window: str | None = None
    width: int | str = 1
    in_matrix: bool = True

    def __post_init__(self) -> None:
        if self.entity not in ENTITIES:
            raise FeatureStoreError(
                f"feature {self.name!r}: entity {self.entity!r}; expected one of {ENTITIES}"
            )
        if self.source not in SOURCES:
            raise FeatureStoreError(
                f"feature {self.name!r}: source {self.source!r}; expected one of {SOURCES}"
            )
        if self.dtype not in DTYPES:
            raise FeatureStoreError(
                f"feature {self.name!r}: dtype {self.dtype!r}; expected one of {DTYPES}"
            )
        if self.window is not None and self.window not in WINDOWS:
            raise FeatureStoreError(
                f"feature {self.name!r}: window {self.window!r}; expected one of {list(WINDOWS)}"
            )

    @property
    def stored(self) -> bool:
        """Whether the value lives in the online store (else computed at request time)."""
        return self.entity in STORED_ENTITIES

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.compute(inputs), dtype=np.float64)


def window_inputs(inputs: Iterable[str]) -> list[tuple[str, str]]:
    """The ``(signal, window)`` pairs among raw input names like ``"valid_7d"``."""
    out = []
    for name in inputs:
        signal, _, window = name.rpartition("_")
        if signal and window in WINDOWS:
            out.append((signal, window))
    return out


class FeatureRegistry:
    """An ordered, immutable set of :class:`Feature` with lookup by name.

    Looking up an unregistered name raises :class:`UnknownFeatureError` naming the closest
    registered names.
    """

    def __init__(self, features: Iterable[Feature]) -> None:
        self._features: dict[str, Feature] = {}
        for f in features:
            if f.name in self._features:
                raise FeatureStoreError(f"feature {f.name!r} is declared twice")
            self._features[f.name] = f

    def __getitem__(self, name: str) -> Feature:
        try:
            return self._features[name]
        except KeyError:
            raise UnknownFeatureError(name, self._features) from None

    def __contains__(self, name: object) -> bool:
        return name in self._features

    def __iter__(self) -> Iterator[Feature]:
        return iter(self._features.values())

    def __len__(self) -> int:
        return len(self._features)

    @property
    def names(self) -> list[str]:
        return list(self._features)

    def resolve(self, names: Sequence[str] | None) -> list[Feature]:
        """Features by name, in the order given (None: every matrix feature, registry order)."""
        if names is None:
            return self.matrix_features()
        return [self[n] for n in names]

    def with_inputs(self, names: Sequence[str] | None) -> list[Feature]:
        """The features ``names`` (None: every matrix feature) followed by the registered
        features they read, transitively, each once; raises UnknownFeatureError for an
        unregistered name."""
        out = self.resolve(names)
        seen = {f.name for f in out}
        i = 0
        while i < len(out):
            for inp in out[i].inputs:
                if inp in self and inp not in seen:
                    seen.add(inp)
                    out.append(self[inp])
            i += 1
        return out

    def matrix_features(self) -> list[Feature]:
        """The features that are columns of the training matrix, in registry order."""
        return [f for f in self if f.in_matrix]

    def for_entity(self, entity: str) -> list[Feature]:
        """The features of ``entity``, in registry order."""
        if entity not in ENTITIES:
            raise FeatureStoreError(f"unknown entity {entity!r}; expected one of {ENTITIES}")
        return [f for f in self if f.entity == entity]

    def counters(self, entity: str) -> dict[str, tuple[str, ...]]:
        """Window name -> the event signals the stored features of ``entity`` count in it.

        This is the raw state both paths keep: derived from the features' inputs, so that a
        new windowed feature brings its state along.
        """
        need: dict[str, set[str]] = {}
        for f in self.for_entity(entity):
            for signal, window in window_inputs(f.inputs):
                need.setdefault(window, set()).add(signal)
        return {w: tuple(sorted(need[w])) for w in WINDOWS if w in need}
