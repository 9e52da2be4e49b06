"""The protocol of a model the HTTP service can serve: everything :mod:`mlsd.serving` calls.

:class:`~mlsd.pipeline.Recommender` implements it; so do the test stubs of the serving tests.
The service never reaches past it (no reading of a model's learned attributes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

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
    ``compile_ranker``: compile the ranker to native code when it can be;
    ``stale_while_revalidate``: a cached user whose history changed is served their previous
    candidates once more while :meth:`Servable.refresh_candidates` retrieves them again off
    the request path (False: retrieved on their next request).
    """

    candidate_cache: bool = True
    cache_dir: Path | None = None
    threads: int = 2
    compile_ranker: bool = True
    stale_while_revalidate: bool = False


@runtime_checkable
class Servable(Protocol):
    """A loaded model as the service sees it. Implementations are thread-safe for reads.

    A model trained on string ids also has ``id_maps`` (``user_id``/``video_id`` ->
    :class:`~mlsd.data.ids.IdMap`): the service maps request ids through them and answers with
    the original ids; without it, ids are integers (not a protocol member, so that models of
    integer ids need not declare it)."""

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

    def refresh_candidates(self, limit: int = 64) -> int:
        """Retrieve again, off the request path, cached candidates served stale; returns how
        many users (0: nothing to do)."""
        ...

    def online_snapshot(self) -> bytes:
        """Everything ``apply_events`` changed, as bytes for :meth:`restore_online`."""
        ...

    def restore_online(self, blob: bytes) -> None:
        """Replace the online state by a snapshot of this model version (and rewrite the
        online store to match); raises :class:`~mlsd.errors.BundleError` for a snapshot of
        another version or bytes that are no snapshot."""
        ...

    def rewrite_online_store(self) -> int:
        """Write every online-store record from the in-process state (a store that lost its
        data); returns the records written."""
        ...

    def online_store_problem(self) -> str | None:
        """Why the online store does not hold this model's records (e.g. a Redis that came
        back empty), None when it does."""
        ...

    def repopulate_online_store(self) -> int:
        """:meth:`rewrite_online_store` from the thread that applies events, without blocking
        requests (they degrade until the store is whole again); returns the records written."""
        ...

    def user_state(self, user_id: int) -> dict[str, Any]:
        """One user's online state, JSON-ready (``history``, ``seen``, ``blocked_creators``,
        ``features``)."""
        ...

    def prepare(self, options: ServingOptions, say: Callable[[str], None]) -> None:
        """Serving-only preparation after a load (ranker compilation, candidate cache),
        reporting each step through ``say``."""
        ...

    def status(self) -> ServingStatus:
        """Figures for the service's metrics (read at scrape time)."""
        ...
