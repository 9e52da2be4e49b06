"""What the HTTP layer needs from a loaded model, and the swap-able holder of the live one.

:class:`Servable` is the narrow interface the handlers call (the pipeline's ``Recommender``
implements it). :class:`ModelHolder` swaps models atomically: a request takes a reference to
the current model once, at its start, so in-flight requests finish on the model they started
with while new requests see the new one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pyarrow as pa


@dataclass
class ServedItem:
    video_id: int
    score: float
    source: str
    exploration: bool = False
    components: dict[str, float] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)


@dataclass
class Served:
    """One user's recommendations as served."""

    user_id: int
    items: list[ServedItem]
    degraded: bool = False
    degraded_reason: str | None = None
    cold_start: bool = False
    stage_ms: dict[str, float] = field(default_factory=dict)
    n_candidates: int = 0


@dataclass
class RequestCtx:
    """The request's context. ``received_at`` (``time.perf_counter()`` seconds) is when the
    service received it: the model's time budget counts from there, so time spent queued
    behind other requests counts too (None: from when the model starts on it)."""

    time_ms: int
    device: str | None = None
    surface: str | None = None
    received_at: float | None = None


class Servable(Protocol):
    """The model interface the service calls. Implementations must be thread-safe for reads."""

    version: str

    def serve(self, user_id: int, k: int, ctx: RequestCtx, explain: bool = False) -> Served:
        """Recommend ``k`` videos; never raises for a valid request (degrades instead)."""
        ...

    def similar(self, video_id: int, k: int) -> list[ServedItem]:
        """Videos similar to ``video_id``; raises KeyError for an unknown video."""
        ...

    def known_videos(self, video_ids: np.ndarray) -> np.ndarray:
        """Boolean mask: which ids are in the model's catalog."""
        ...

    def apply_events(self, events: pa.Table) -> None:
        """Apply validated new events to the online state (history, features)."""
        ...


class ModelHolder:
    """Holds the live model; ``swap`` is atomic, ``get`` is lock-free (one reference read)."""

    def __init__(self, model: Servable) -> None:
        self._model = model
        self._lock = threading.Lock()

    def get(self) -> Servable:
        return self._model

    def swap(self, load: Callable[[], Servable]) -> tuple[Servable, Servable]:
        """Load a new model with ``load`` (outside any request path) and swap it in.

        If ``load`` raises, the old model keeps serving and the exception propagates.
        Returns (old, new).
        """
        with self._lock:  # one reload at a time
            new = load()
            old = self._model
            self._model = new
            return old, new
