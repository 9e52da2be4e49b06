"""What the routes and middleware of one app share: the live model, its metrics, where model
calls run, and the write side's settings. One :class:`ServiceState` per app, kept on
``app.state.service``; routes reach it through the :data:`Service` dependency."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from mlsd.pipeline import Servable
from mlsd.serving.ingest.runtime import Ingestion
from mlsd.serving.metrics import ServingMetrics
from mlsd.serving.model_calls import ModelCalls
from mlsd.serving.service import ModelHolder


@dataclass(frozen=True)
class ServiceState:
    """``holder``: the live model (swapped by a reload); ``calls``: runs model calls;
    ``loader(model_dir)``: a new model for ``/admin/reload`` (None: reload refused);
    ``ingestion``: the event path (durable log, admission, the tailer applying the log to the
    live model; None: events are refused); ``api_key``: the write endpoints' key (None: they
    answer 403 to everyone); ``monitor``: the drift monitor (None: off)."""

    holder: ModelHolder
    metrics: ServingMetrics
    calls: ModelCalls
    loader: Callable[[str], Servable] | None = None
    ingestion: Ingestion | None = None
    api_key: str | None = None
    monitor: Any = None  # the drift monitor (mlsd.serving.monitor), None when off
    reload_lock: threading.Lock = field(default_factory=threading.Lock)


async def service(request: Request) -> ServiceState:
    """FastAPI dependency: the app's :class:`ServiceState` (async: no thread hop to get it)."""
    state: ServiceState = request.app.state.service
    return state


#: A route's parameter ``state: Service`` receives the app's :class:`ServiceState`.
Service = Annotated[ServiceState, Depends(service)]
