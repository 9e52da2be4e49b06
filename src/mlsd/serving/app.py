"""The FastAPI application, composed: shared state, middleware, exception handlers, routers.

Handlers live in :mod:`.routes` and call the live model only through the
:class:`~mlsd.pipeline.Servable` protocol; request and response models are in :mod:`.schemas`,
errors become status codes in :mod:`.exception_handlers`. No model logic lives here.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from mlsd.pipeline import Servable
from mlsd.serving.exception_handlers import EXCEPTION_HANDLERS
from mlsd.serving.fast_events import FastEvents
from mlsd.serving.fast_path import FastRecommendations
from mlsd.serving.ingest import EventLogBackend, Position
from mlsd.serving.ingest.memory_log import MemoryEventLog
from mlsd.serving.ingest.runtime import Ingestion, IngestOptions
from mlsd.serving.metrics import ServingMetrics
from mlsd.serving.middleware import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_REQUESTS_PER_CONNECTION,
    BodySizeLimit,
    ConnectionRecycle,
    RequireKey,
    Timing,
)
from mlsd.serving.model_calls import DEFAULT_MODEL_THREADS, ModelCalls
from mlsd.serving.routes import admin, operations, recommendations
from mlsd.serving.routes import events as event_routes
from mlsd.serving.routes.common import API_KEY_HEADER
from mlsd.serving.service import ModelHolder
from mlsd.serving.state import ServiceState

__all__ = ["API_KEY_HEADER", "create_app"]

_DESCRIPTION = (
    "Two-stage video recommendation (candidate generation, GBDT ranking, business-rule "
    "re-ranking) from *Machine Learning System Design Interview*, chapter 6. "
    f"Write endpoints need the `{API_KEY_HEADER}` header."
)


def create_app(
    model: Servable,
    *,
    loader: Callable[[str], Servable] | None = None,
    events: EventLogBackend | None = None,
    position: Position | None = None,
    ingest: IngestOptions | None = None,
    api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_requests_per_connection: int = DEFAULT_MAX_REQUESTS_PER_CONNECTION,
    model_threads: int = DEFAULT_MODEL_THREADS,
    fast_path: bool = True,
    monitor_interval_s: float = 0.0,
    monitor_reference: str = "deployment",
) -> FastAPI:
    """Build the service around a loaded ``model``.

    ``loader(model_dir)`` loads a new model for ``/admin/reload`` (raising
    :class:`~mlsd.errors.MlsdError` for a bad bundle). ``events`` is the event log accepted
    events are appended to (durable before the 2xx; default: an in-memory one) and that this
    process's tailer applies to the live model from ``position`` on (what ``model``'s online
    state already includes; None: nothing of it); ``ingest`` sets the event path's limits
    (:class:`~mlsd.serving.ingest.runtime.IngestOptions`). ``api_key`` protects the write
    endpoints (``/v1/events``, ``/admin/*``): without one configured they answer 403 to
    everyone. ``model_threads`` sizes the thread pool that runs model calls (0: run them on
    the event loop; see :mod:`.model_calls`). ``max_requests_per_connection`` (0: no limit)
    bounds a keep-alive connection's requests (see :class:`~.middleware.ConnectionRecycle`).
    ``fast_path`` False sends every request through FastAPI (see
    :class:`~.fast_path.FastRecommendations`; the responses are the same, the tests compare
    them). ``monitor_interval_s`` > 0 runs the drift monitor (:mod:`.monitor`) at that period,
    against ``monitor_reference`` ("deployment" or "training").

    The app's :class:`~.state.ServiceState` is ``app.state.service``; the tailer (a daemon
    thread) starts here. Graceful shutdown needs nothing of it: in-flight requests finish
    with their commits, and a stopped tailer only means a later replay.
    """
    holder = ModelHolder(model)
    metrics = ServingMetrics()
    ingestion = Ingestion(
        events if events is not None else MemoryEventLog(),
        holder,
        position=position,
        metrics=metrics,
        options=ingest,
    )
    monitor = None
    if monitor_interval_s > 0:
        from mlsd.serving.monitor import ServiceMonitor

        monitor = ServiceMonitor(
            holder,
            metrics.into,
            interval_s=monitor_interval_s,
            drift_reference=monitor_reference,
        )
    state = ServiceState(
        monitor=monitor,
        holder=holder,
        metrics=metrics,
        calls=ModelCalls(model_threads),
        loader=loader,
        ingestion=ingestion,
        api_key=api_key,
    )
    state.metrics.serving(model)
    state.metrics.watch_cache(lambda: state.holder.get().status())

    app = FastAPI(
        title="mlsd video recommendation service",
        version="1",
        description=_DESCRIPTION,
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.service = state
    # each middleware added wraps the ones added before it: Timing is outermost, so it times
    # (and labels) every answer, the fast paths' included; the key is checked before either
    # fast path reads a body
    if fast_path:
        app.add_middleware(FastRecommendations, state=state)
        app.add_middleware(FastEvents, state=state)
    app.add_middleware(RequireKey, api_key=api_key)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    app.add_middleware(ConnectionRecycle, max_requests=max_requests_per_connection)
    app.add_middleware(Timing, metrics=state.metrics)
    app.include_router(recommendations.router)
    app.include_router(event_routes.router)
    app.include_router(admin.router)
    app.include_router(operations.router)
    ingestion.start()
    if state.monitor is not None:
        state.monitor.start()
    return app
