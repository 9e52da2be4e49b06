"""The swap-able holder of the live model.

The model is a :class:`~mlsd.pipeline.Servable` (the protocol of what the handlers call).
:class:`ModelHolder` swaps models atomically: a request takes a reference to the current model
once, at its start, so in-flight requests finish on the model they started with while new
requests see the new one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from mlsd.pipeline.servable import Servable


class ModelHolder:
    """Holds the live model; ``swap`` is atomic, ``get`` is lock-free (one reference read)."""

    def __init__(self, model: Servable) -> None:
        self._model = model
        self._lock = threading.Lock()

    def get(self) -> Servable:
        return self._model

    def set(self, model: Servable) -> Servable:
        """Serve ``model`` from now on; returns the model it replaces."""
        with self._lock:
            old, self._model = self._model, model
            return old

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
