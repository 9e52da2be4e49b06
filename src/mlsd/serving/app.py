"""The FastAPI application: thin handlers over a :class:`~mlsd.serving.service.Servable`.

Composition only: routes validate input (pydantic models in :mod:`.schemas`), call the live
model through a :class:`~mlsd.serving.service.ModelHolder`, record metrics and map errors to
status codes here at the edge. No model logic lives in this module.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlsd.data.schema import validate
from mlsd.errors import MlsdError
from mlsd.serving.eventlog import EventLog
from mlsd.serving.metrics import ServingMetrics
from mlsd.serving.schemas import (
    MAX_K,
    ErrorResponse,
    EventAck,
    EventBatch,
    Explanation,
    Health,
    RecommendationRequest,
    RecommendationResponse,
    RecommendedItem,
    ReloadRequest,
    ReloadResponse,
    SimilarResponse,
)
from mlsd.serving.service import ModelHolder, RequestCtx, Servable, ServedItem

API_KEY_HEADER = "X-API-Key"
DEFAULT_MAX_BODY_BYTES = 1 << 20  # 1 MiB: a 1000-event batch is ~200 KB


def _ms(t: datetime | None) -> int:
    if t is None:
        return int(time.time() * 1000)
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


def _item(it: ServedItem, explain: bool) -> RecommendedItem:
    return RecommendedItem(
        video_id=int(it.video_id),
        score=float(it.score) if np.isfinite(it.score) else 0.0,
        source=it.source,
        exploration=bool(it.exploration),
        explanation=Explanation(components=it.components, actions=it.actions) if explain else None,
    )


class BodySizeLimit:
    """ASGI middleware: reject request bodies over ``max_bytes`` with 413, streaming-safe."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = True
                if too_big:
                    await self._reject(send)
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return msg

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._reject(send)

    async def _reject(self, send: Send) -> None:
        body = (
            b'{"error":"request body too large","detail":"at most '
            + str(self.max_bytes).encode()
            + b' bytes"}'
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def create_app(
    model: Servable,
    *,
    loader: Callable[[str], Servable] | None = None,
    event_log: EventLog | None = None,
    api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """Build the service around a loaded ``model``.

    ``loader(model_dir)`` loads a new model for ``/admin/reload`` (raising
    :class:`~mlsd.errors.MlsdError` for a bad bundle); ``event_log`` receives accepted events
    (fsync'd before the 2xx); ``api_key`` protects the write endpoints (``/v1/events``,
    ``/admin/*``): without one configured they answer 403 to everyone.
    """
    holder = ModelHolder(model)
    metrics = ServingMetrics()
    metrics.model_info.labels(model.version).set(1)
    app = FastAPI(
        title="mlsd video recommendation service",
        version="1",
        description=(
            "Two-stage video recommendation (candidate generation, GBDT ranking, business-rule "
            "re-ranking) from *Machine Learning System Design Interview*, chapter 6. "
            "Write endpoints need the `X-API-Key` header."
        ),
        responses={422: {"model": ErrorResponse, "description": "Invalid request"}},
    )
    app.state.holder = holder
    app.state.metrics = metrics
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)

    def require_key(x_api_key: str | None = Header(default=None, alias=API_KEY_HEADER)) -> None:
        if x_api_key is None:
            raise HTTPException(401, f"missing {API_KEY_HEADER} header")
        if api_key is None or not secrets.compare_digest(x_api_key.encode(), api_key.encode()):
            raise HTTPException(403, f"invalid {API_KEY_HEADER}")

    @app.middleware("http")
    async def timing(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        t0 = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        endpoint = getattr(route, "path", "unmatched")
        metrics.request_latency.labels(endpoint).observe(time.perf_counter() - t0)
        if response.status_code >= 400:
            metrics.errors.labels(endpoint, str(response.status_code)).inc()
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"error": "invalid request", "detail": detail})

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            status_code=exc.status_code, content={"error": str(exc.detail)}, headers=exc.headers
        )

    @app.exception_handler(MlsdError)
    async def user_error(_: Request, exc: MlsdError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"error": str(exc)})

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        # No traceback in the body: it leaks internals and helps nobody calling the API.
        return JSONResponse(
            status_code=500, content={"error": "internal error", "detail": type(exc).__name__}
        )

    v1 = APIRouter(prefix="/v1")

    @v1.post("/recommendations", response_model=RecommendationResponse)
    def recommendations(req: RecommendationRequest) -> RecommendationResponse:
        m = holder.get()  # in-flight requests keep this model even if a reload swaps it
        ctx = RequestCtx(
            time_ms=_ms(req.context.time), device=req.context.device, surface=req.context.surface
        )
        served = m.serve(req.user_id, req.k, ctx, explain=req.explain)
        for stage, ms in served.stage_ms.items():
            metrics.stage_latency.labels(stage).observe(ms / 1000)
        metrics.candidates.observe(served.n_candidates)
        if served.degraded:
            metrics.fallbacks.labels(served.degraded_reason or "unknown").inc()
        if served.cold_start:
            metrics.cold_start.inc()
        return RecommendationResponse(
            user_id=req.user_id,
            items=[_item(it, req.explain) for it in served.items],
            model_version=m.version,
            degraded=served.degraded,
            degraded_reason=served.degraded_reason,
            cold_start=served.cold_start,
        )

    @v1.get(
        "/videos/{video_id}/similar",
        response_model=SimilarResponse,
        responses={404: {"model": ErrorResponse}},
    )
    def similar(video_id: int, k: int = Query(default=20, ge=1, le=MAX_K)) -> SimilarResponse:
        m = holder.get()
        if video_id < 0 or not bool(m.known_videos(np.array([video_id], dtype=np.int64))[0]):
            raise HTTPException(404, f"unknown video_id {video_id}")
        items = m.similar(video_id, k)
        return SimilarResponse(
            video_id=video_id, items=[_item(i, False) for i in items], model_version=m.version
        )

    @v1.post(
        "/events",
        response_model=EventAck,
        dependencies=[Depends(require_key)],
        responses={
            401: {"model": ErrorResponse},
            403: {"model": ErrorResponse},
            413: {"model": ErrorResponse},
        },
    )
    def events(batch: EventBatch) -> EventAck:
        m = holder.get()
        vids = np.array([e.video_id for e in batch.events], dtype=np.int64)
        known = m.known_videos(vids)
        if not known.all():
            i = int(np.flatnonzero(~known)[0])
            raise HTTPException(
                422,
                f"events[{i}].video_id: unknown video_id {int(vids[i])} "
                f"({int((~known).sum())} unknown in this batch); nothing was accepted",
            )
        now = int(time.time() * 1000)
        records = []
        for e in batch.events:
            r = e.model_dump(exclude_none=True)
            r["timestamp"] = _ms(e.timestamp) if e.timestamp is not None else now
            records.append(r)
        table, _ = validate({"events": pa.Table.from_pylist(records)}, {"events": "request body"})
        if event_log is not None:
            event_log.append(records)
        for r in records:
            metrics.events.labels(r["event_type"]).inc()
        applied = True
        try:
            m.apply_events(table["events"])
        except Exception:  # the events are durable; the online state catches up on reload
            applied = False
            metrics.fallbacks.labels("apply_events_failed").inc()
        return EventAck(accepted=len(records), applied=applied)

    app.include_router(v1)

    @app.get("/healthz", response_model=Health)
    def healthz() -> Health:
        return Health(status="ok", model_version=holder.get().version)

    @app.get("/readyz", response_model=Health, responses={503: {"model": Health}})
    def readyz() -> Any:
        m = holder.get()
        if m is None:
            return JSONResponse(status_code=503, content={"status": "loading"})
        return Health(status="ok", model_version=m.version)

    @app.get("/metrics", response_class=PlainTextResponse)
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/admin/reload",
        response_model=ReloadResponse,
        dependencies=[Depends(require_key)],
        responses={
            401: {"model": ErrorResponse},
            403: {"model": ErrorResponse},
            409: {"model": ErrorResponse},
        },
    )
    def reload(req: ReloadRequest) -> ReloadResponse:
        if loader is None:
            raise HTTPException(409, "this service was started without a model loader")
        try:
            old, new = holder.swap(lambda: loader(req.model_dir))
        except MlsdError as e:
            metrics.reloads.labels("refused").inc()
            raise HTTPException(
                409, f"reload refused, still serving {holder.get().version}: {e}"
            ) from e
        metrics.reloads.labels("ok").inc()
        metrics.model_info.labels(old.version).set(0)
        metrics.model_info.labels(new.version).set(1)
        return ReloadResponse(model_version=new.version, previous_version=old.version)

    return app
