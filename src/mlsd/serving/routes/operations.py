"""Operations endpoints: liveness, readiness, Prometheus metrics and the model hot-swap."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from mlsd.errors import MlsdError
from mlsd.serving.routes.common import AUTH, BODY, require_key
from mlsd.serving.schemas import ErrorResponse, Health, ReloadRequest, ReloadResponse
from mlsd.serving.state import Service

router = APIRouter(tags=["operations"])

_METRICS_EXAMPLE = (
    "# HELP mlsd_request_latency_seconds End-to-end handler latency.\n"
    "# TYPE mlsd_request_latency_seconds histogram\n"
    'mlsd_request_latency_seconds_bucket{endpoint="/v1/recommendations",le="0.005"} 1523.0\n'
)


@router.get("/healthz", summary="Liveness", response_model=Health)
def healthz(state: Service) -> Health:
    """Liveness: the process answers."""
    return Health(status="ok", model_version=state.holder.get().version)


@router.get(
    "/readyz",
    summary="Readiness",
    response_model=Health,
    responses={
        503: {
            "model": Health,
            "description": "Not ready: no model yet, the event log still replaying, or the "
            "online store being repopulated (the reason says which).",
        }
    },
)
def readyz(state: Service) -> Any:
    """Readiness: a model is loaded, its online state has caught up with the event log and
    its online store holds its records, so answers are exact."""
    m = state.holder.get()
    if m is None:
        return JSONResponse(status_code=503, content={"status": "loading"})
    problem = state.ingestion.problem() if state.ingestion is not None else None
    if problem is not None:
        return JSONResponse(
            status_code=503,
            content={"status": "unavailable", "model_version": m.version, "reason": problem},
        )
    return Health(status="ok", model_version=m.version)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={
        200: {
            "description": "Prometheus text exposition format.",
            "content": {"text/plain": {"example": _METRICS_EXAMPLE}},
        }
    },
)
def prometheus(state: Service) -> PlainTextResponse:
    """Prometheus metrics: latencies per endpoint and stage, fallbacks, errors, events; with
    several pre-forked workers, summed over them (whichever worker answers)."""
    return PlainTextResponse(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


@router.post(
    "/admin/reload",
    summary="Hot-swap the model",
    response_model=ReloadResponse,
    dependencies=[Depends(require_key)],
    responses={
        **AUTH,
        409: {"model": ErrorResponse, "description": "Refused; the old model still serves."},
        **BODY,
    },
)
def reload(req: ReloadRequest, state: Service) -> ReloadResponse:
    """Load a model bundle and swap it in atomically (in-flight requests finish on the old
    model). A bad bundle is refused with 409 and the old model keeps serving."""
    # a sync handler (FastAPI runs it on its thread pool): loading blocks
    loader = state.loader
    if loader is None:
        raise HTTPException(409, "this service was started without a model loader")
    with state.reload_lock:
        old = state.holder.get()
        try:
            new = loader(req.model_dir)
            if state.ingestion is not None:  # the new model's online state: replay the log
                state.ingestion.adopt(new)
            else:
                state.holder.set(new)
        except MlsdError as e:
            state.metrics.reloads.labels("refused").inc()
            raise HTTPException(409, f"reload refused, still serving {old.version}: {e}") from e
    state.metrics.reloads.labels("ok").inc()
    state.metrics.serving(new, previous=old)
    return ReloadResponse(model_version=new.version, previous_version=old.version)
