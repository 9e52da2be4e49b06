"""The protocol of a model the HTTP service can serve: everything :mod:`mlsd.serving` calls.

:class:`~mlsd.pipeline.Recommender` implements it; so do the test stubs of the serving tests.
The service never reaches past it (no reading of a model's learned attributes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from mlsd.pipeline.types import RequestCtx, Served, ServedItem, ServingStatus

__all__ = ["Servable", "ServingOptions"]


@dataclass(frozen=True)
class ServingOptions:
    """Serving-only preparation after a load (see :meth:`Servable.prepare`).

    ``candidate_cache``: retrieve every known user's candidates ahead (exact; a user's new
    events invalidate theirs); ``cache_dir``: keep them there between starts (reused when saved
    for this model, else computed and saved); ``threads``: threads retrieving ahead;
    ``compile_ranker``: compile the ranker to native code when it can be.
    """

    candidate_cache: bool = True
    cache_dir: Path | None = None
    threads: int = 2
    compile_ranker: bool = True


@runtime_checkable
class Servable(Protocol):
    """A loaded model as the service sees it. Implementations are thread-safe for reads."""

    version: str

    def serve(self, user_id: int, k: int, ctx: RequestCtx, explain: bool = False) -> Served:
        """Recommend ``k`` items; never raises for a valid request (degrades instead)."""
        ...

    def similar(self, video_id: int, k: int) -> list[ServedItem]:
        """Items similar to ``video_id``; raises KeyError for an unknown item."""
        ...

    def known_videos(self, video_ids: np.ndarray) -> np.ndarray:
        """Boolean mask: which ids are in the model's catalog."""
        ...

    def apply_events(self, events: pa.Table) -> None:
        """Apply validated new events to the online state (history, features)."""
        ...

    def prepare(self, options: ServingOptions, say: Callable[[str], None]) -> None:
        """Serving-only preparation after a load (ranker compilation, candidate cache),
        reporting each step through ``say``."""
        ...

    def status(self) -> ServingStatus:
        """Figures for the service's metrics (read at scrape time)."""
        ...
