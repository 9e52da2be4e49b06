"""The FastAPI application: thin handlers over a :class:`~mlsd.serving.service.Servable`.

Composition only: routes validate input (pydantic models in :mod:`.schemas`), call the live
model through a :class:`~mlsd.serving.service.ModelHolder`, record metrics and map errors to
status codes here at the edge. No model logic lives in this module.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, TypeVar

import numpy as np
import orjson
import pyarrow as pa
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import APIKeyHeader
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlsd.data.schema import validate
from mlsd.errors import MlsdError
from mlsd.pipeline import RequestCtx, Servable, ServedItem
from mlsd.serving.arrival import arrival
from mlsd.serving.eventlog import EventLog
from mlsd.serving.metrics import ServingMetrics
from mlsd.serving.schemas import (
    MAX_ID,
    MAX_K,
    ErrorResponse,
    EventAck,
    EventBatch,
    Health,
    RecommendationRequest,
    RecommendationResponse,
    ReloadRequest,
    ReloadResponse,
    SimilarResponse,
)
from mlsd.serving.service import ModelHolder

API_KEY_HEADER = "X-API-Key"
DEFAULT_MAX_BODY_BYTES = 1 << 20  # 1 MiB: a 1000-event batch is ~200 KB
DEFAULT_MAX_REQUESTS_PER_CONNECTION = 0  # no limit (see ConnectionRecycle)
DEFAULT_MODEL_THREADS = 2
T = TypeVar("T")

_INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse, "description": "Invalid request: names the field."}
}
_BODY: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The body cannot be decoded."},
    413: {"model": ErrorResponse, "description": "Request body over the size limit."},
    **_INVALID,
}
_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": f"No `{API_KEY_HEADER}` header."},
    403: {"model": ErrorResponse, "description": f"Wrong `{API_KEY_HEADER}` (or none configured)."},
}
_METRICS_EXAMPLE = (
    "# HELP mlsd_request_latency_seconds End-to-end handler latency.\n"
    "# TYPE mlsd_request_latency_seconds histogram\n"
    'mlsd_request_latency_seconds_bucket{endpoint="/v1/recommendations",le="0.005"} 1523.0\n'
)


def _cache_count(holder: ModelHolder, field: str) -> float:
    return float(getattr(holder.get().status(), field))


def _ranker_compiled(model: Servable) -> int:
    return int(model.status().ranker_compiled)


def _ms(t: datetime | None) -> int:
    if t is None:
        return int(time.time() * 1000)
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


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


_RECOMMENDATIONS = "/v1/recommendations"
_REQUEST_KEYS = frozenset(("user_id", "k", "context", "explain"))
_CONTEXT_KEYS = frozenset(("device", "surface", "time"))
_CONTEXT_TEXT = 32  # RequestContext's max_length


def parse_recommendation(body: bytes) -> tuple[int, int, str | None, str | None, bool] | None:
    """``(user_id, k, device, surface, explain)`` of a ``POST /v1/recommendations`` body that
    :class:`~mlsd.serving.schemas.RecommendationRequest` certainly accepts as it stands, else
    None (the request then goes through FastAPI, which validates it and names what is wrong).

    Only the common shape is taken: exact types (strict ints, not bools; strings or null for
    the context), bounds as in the schema, no unknown keys, and no ``context.time`` (parsed by
    pydantic). Same decoder as FastAPI's (``json.loads``), so a body means the same either way;
    ``tests/serving/test_fast_path.py`` checks both paths answer alike on generated bodies.
    """
    try:
        d = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if type(d) is not dict or not d.keys() <= _REQUEST_KEYS:
        return None
    user_id, k, explain = d.get("user_id"), d.get("k", 20), d.get("explain", False)
    if type(user_id) is not int or not 0 <= user_id <= MAX_ID:
        return None
    if type(k) is not int or not 1 <= k <= MAX_K or type(explain) is not bool:
        return None
    c = d.get("context", {})
    if type(c) is not dict or not c.keys() <= _CONTEXT_KEYS or c.get("time") is not None:
        return None
    device, surface = c.get("device"), c.get("surface")
    for v in (device, surface):
        if v is not None and (type(v) is not str or len(v) > _CONTEXT_TEXT):
            return None
    return user_id, k, device, surface, explain


class _FastPath:
    """What :class:`FastRecommendations` needs from the app, filled in once the routes exist."""

    recommend: Callable[..., Any] | None = None


_ROUTE = SimpleNamespace(path=_RECOMMENDATIONS)  # what the Timing middleware reads of a route


class FastRecommendations:
    """ASGI middleware: a valid ``POST /v1/recommendations`` skips FastAPI's routing,
    dependency solving and pydantic validation and goes straight to the handler's logic.

    Why: with a stub model the whole app took 0.40 ms a call in a loop, 0.15 ms with this path
    (and orjson bodies); over HTTP at 200 requests/s the service's CPU a request fell from 1.6
    to 0.9 ms (``--threads 0``), of a budget of a few milliseconds. The body is checked
    by :func:`parse_recommendation`; anything it does not accept (an error, an unusual shape,
    another content type) is replayed to FastAPI unchanged, so errors and their bodies are
    FastAPI's own. Responses are the ones the FastAPI route gives (one function builds both).
    """

    def __init__(self, app: ASGIApp, fast: _FastPath) -> None:
        self.app = app
        self.fast = fast

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast
        if (
            scope["type"] != "http"
            or scope["path"] != _RECOMMENDATIONS
            or scope["method"] != "POST"
            or fast.recommend is None
            or not _is_json(scope)
        ):
            await self.app(scope, receive, send)
            return
        received = arrival(scope)
        chunks: list[bytes] = []
        while True:
            msg = await receive()
            if msg["type"] != "http.request":  # a disconnect: FastAPI sees it too
                await self.app(scope, _replay(chunks, msg, receive), send)
                return
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body", False):
                break
        body = b"".join(chunks)
        req = parse_recommendation(body)
        if req is None:
            await self.app(scope, _replay([body], None, receive), send)
            return
        scope["route"] = _ROUTE  # for the Timing middleware's label
        try:
            status, payload = 200, await fast.recommend(*req, time_ms=None, received=received)
        except MlsdError as e:  # as the app's handler of MlsdError answers
            status, payload = 422, json.dumps({"error": str(e)}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"application/json"
    return False


def _replay(chunks: list[bytes], last: Message | None, receive: Receive) -> Receive:
    """A ``receive`` that first gives back what was already read, then reads on."""
    queue: list[Message] = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    if queue and last is None:
        queue[-1]["more_body"] = False
    if last is not None:
        queue.append(last)

    async def replayed() -> Message:
        if queue:
            return queue.pop(0)
        return await receive()

    return replayed


def item_json(it: ServedItem, explain: bool) -> dict[str, Any]:
    """A :class:`~mlsd.serving.schemas.RecommendedItem` as JSON-ready data: a score that is not
    finite is 0.0 and score components that are not finite are left out, so the body always
    validates against the schema (checked in the tests)."""
    score = float(it.score)
    explanation = None
    if explain:
        explanation = {
            "components": {str(n): float(v) for n, v in it.components.items() if math.isfinite(v)},
            "actions": [str(a) for a in it.actions],
        }
    return {
        "video_id": int(it.video_id),
        "score": score if math.isfinite(score) else 0.0,
        "source": str(it.source),
        "exploration": bool(it.exploration),
        "explanation": explanation,
    }


def response_json(user_id: int, served: Any, model_version: str, explain: bool) -> bytes:
    """The body of a :class:`~mlsd.serving.schemas.RecommendationResponse` for ``served``
    (a :class:`~mlsd.serving.service.Served`), written directly with orjson: building the
    pydantic models of twenty items cost more than the rest of the response."""
    body = {
        "user_id": int(user_id),
        "items": [item_json(it, explain) for it in served.items],
        "model_version": str(model_version),
        "degraded": bool(served.degraded),
        "degraded_reason": served.degraded_reason,
        "cold_start": bool(served.cold_start),
    }
    return orjson.dumps(body)


class ConnectionRecycle:
    """ASGI middleware: after ``max_requests`` responses on one keep-alive connection, ask the
    client to reconnect (``Connection: close`` on the last one), as nginx's
    ``keepalive_requests`` does.

    Worker processes get *connections*, not requests: a client's long-lived connections pin
    its load to the workers they went to. The pre-forked supervisor hands connections out in
    turn (:mod:`.prefork`), which splits one client's connections evenly; recycling also
    spreads the load of clients that come and go, and lets a load balancer in front rebalance.
    Connections are told apart by the client's address and port (a new connection reusing a
    port may be recycled early: harmless). Off by default: on the ``large`` benchmark at 200
    requests/s (8 client connections, 2 workers each listening with ``SO_REUSEPORT``, before
    the hand-out) recycling every 100 requests split a minute's requests 49/51 and 43/57
    (42/58 without) and those runs had worse tails (p99 82-83 ms against 27-34 ms).
    """

    def __init__(self, app: ASGIApp, max_requests: int) -> None:
        self.app = app
        self.max_requests = max_requests
        self.served: dict[tuple[Any, ...], int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] != "http" or not client or self.max_requests <= 0:
            await self.app(scope, receive, send)
            return
        key = tuple(client)
        n = self.served.get(key, 0) + 1
        if n < self.max_requests:
            if len(self.served) > 65_536:  # entries of connections the client closed
                self.served.clear()
            self.served[key] = n
            await self.app(scope, receive, send)
            return
        self.served.pop(key, None)

        async def send_close(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                headers = [h for h in msg.get("headers", []) if h[0].lower() != b"connection"]
                msg = {**msg, "headers": [*headers, (b"connection", b"close")]}
            await send(msg)

        await self.app(scope, receive, send_close)


class Timing:
    """ASGI middleware: request latency and error counts per route template.

    Pure ASGI rather than ``@app.middleware("http")``: the latter wraps every response in a
    stream and a task group, which costs more than the rest of a small request.
    """

    def __init__(self, app: ASGIApp, metrics: ServingMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_status(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
            await send(msg)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")  # set by the router on this same scope dict
            endpoint = getattr(route, "path", "unmatched")
            self.metrics.request_latency.labels(endpoint).observe(time.perf_counter() - t0)
            if status >= 400:
                self.metrics.errors.labels(endpoint, str(status)).inc()


def single_threaded_kernels() -> None:
    """One thread for FAISS, torch and OpenMP kernels (LightGBM's too) in the calling thread:
    OpenMP's thread count is per thread, so the service calls this in each model thread.

    A request is one query: its kernels are too small to split, and parallelism comes from
    request threads and worker processes instead. Extra OpenMP threads only spin: on the small
    demo bundle they took ~12 of ~28 ms of server CPU per request, and on a busy 2-core machine
    a flat search over 20k items took ~11 ms a query with the default threads, ~1.5 ms with
    one. (BLAS is left alone: its limit is process-wide.)"""
    import faiss
    import torch
    from threadpoolctl import threadpool_limits

    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    threadpool_limits(1, user_api="openmp")  # this thread (OpenMP counts are per thread)


def create_app(
    model: Servable,
    *,
    loader: Callable[[str], Servable] | None = None,
    event_log: EventLog | None = None,
    api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_requests_per_connection: int = DEFAULT_MAX_REQUESTS_PER_CONNECTION,
    model_threads: int = DEFAULT_MODEL_THREADS,
    fast_path: bool = True,
) -> FastAPI:
    """Build the service around a loaded ``model``.

    ``loader(model_dir)`` loads a new model for ``/admin/reload`` (raising
    :class:`~mlsd.errors.MlsdError` for a bad bundle); ``event_log`` receives accepted events
    (fsync'd before the 2xx); ``api_key`` protects the write endpoints (``/v1/events``,
    ``/admin/*``): without one configured they answer 403 to everyone. ``model_threads``
    sizes the thread pool that runs model calls (0: run them on the event loop).
    ``max_requests_per_connection`` (0: no limit) bounds a keep-alive connection's requests
    (see :class:`ConnectionRecycle`). ``fast_path`` False sends every request through FastAPI
    (see :class:`FastRecommendations`; the responses are the same, the tests compare them).
    """
    if model_threads < 0:
        raise ValueError(f"model_threads {model_threads}; expected >= 0")
    holder = ModelHolder(model)
    pool = (
        ThreadPoolExecutor(model_threads, "mlsd-model", initializer=single_threaded_kernels)
        if model_threads
        else None
    )

    async def call_model(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if pool is None:
            return fn(*args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(
            pool, functools.partial(fn, *args, **kwargs)
        )

    metrics = ServingMetrics()
    metrics.model_info.labels(model.version).set(1)
    metrics.ranker_compiled.set(_ranker_compiled(model))
    for label, field in (("hit", "cache_hits"), ("miss", "cache_misses")):  # read at scrape time
        metrics.candidate_cache.labels(label).set_function(
            functools.partial(_cache_count, holder, field)  # from whichever model is live
        )
    app = FastAPI(
        title="mlsd video recommendation service",
        version="1",
        description=(
            "Two-stage video recommendation (candidate generation, GBDT ranking, business-rule "
            "re-ranking) from *Machine Learning System Design Interview*, chapter 6. "
            "Write endpoints need the `X-API-Key` header."
        ),
    )
    app.state.holder = holder
    app.state.metrics = metrics
    fast = _FastPath()
    app.add_middleware(FastRecommendations, fast=fast)  # added first: innermost
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    app.add_middleware(ConnectionRecycle, max_requests=max_requests_per_connection)

    api_key_header = APIKeyHeader(
        name=API_KEY_HEADER,
        auto_error=False,
        description="Key of the write endpoints (`mlsd serve --api-key`, or MLSD_API_KEY).",
    )

    def require_key(x_api_key: str | None = Depends(api_key_header)) -> None:
        if x_api_key is None:
            raise HTTPException(401, f"missing {API_KEY_HEADER} header")
        if api_key is None or not secrets.compare_digest(x_api_key.encode(), api_key.encode()):
            raise HTTPException(403, f"invalid {API_KEY_HEADER}")

    app.add_middleware(Timing, metrics=metrics)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"error": "invalid request", "detail": detail})

    # Starlette's class, so that its own errors (404 route, 405 method, 400 undecodable body)
    # get the same {"error": ...} body as ours
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
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
    stage_latency: dict[str, Any] = {}  # labelled children, looked up once each
    fallbacks: dict[str, Any] = {}

    async def recommend(
        user_id: int,
        k: int,
        device: str | None,
        surface: str | None,
        explain: bool,
        *,
        time_ms: int | None,
        received: float,
    ) -> bytes:
        """One recommendation request, validated, to its response body (the route's and
        :class:`FastRecommendations`' shared logic). ``time_ms`` None: now."""
        m = holder.get()  # in-flight requests keep this model even if a reload swaps it
        ctx = RequestCtx(
            time_ms=_ms(None) if time_ms is None else time_ms,
            device=device,
            surface=surface,
            received_at=received,
        )
        served = await call_model(m.serve, user_id, k, ctx, explain=explain)
        for stage, ms in served.stage_ms.items():
            h = stage_latency.get(stage)
            if h is None:
                h = stage_latency[stage] = metrics.stage_latency.labels(stage)
            h.observe(ms / 1000)
        metrics.candidates.observe(served.n_candidates)
        if served.degraded:
            kind = served.degraded_kind or "other"
            if kind not in fallbacks:
                fallbacks[kind] = metrics.fallbacks.labels(kind)
            fallbacks[kind].inc()
        if served.cold_start:
            metrics.cold_start.inc()
        return response_json(user_id, served, m.version, explain)

    # The read endpoints are ``async`` and call the model through ``call_model``: in a small
    # dedicated thread pool (the model's numpy, LightGBM, FAISS and torch work releases the GIL,
    # so two requests overlap on two cores), or with ``model_threads=0`` on the event loop
    # itself (cheapest for a model of a millisecond or two: no thread hop). FastAPI's own pool
    # (40 threads, two hops per request with response validation) is avoided either way.
    # Endpoints that block on I/O (events: fsync; reload: loading) are sync handlers.
    @v1.post(
        "/recommendations",
        summary="Recommend videos to a user",
        tags=["recommendations"],
        response_model=RecommendationResponse,
        responses=_BODY,
    )
    async def recommendations(req: RecommendationRequest, request: Request) -> Response:
        """Top-``k`` videos for a user: candidate generation, ranking, business rules.

        Never fails for a valid request: a stage that fails or overruns its budget is replaced
        by a fallback and the response says ``degraded``. Unknown users get cold-start
        recommendations (``cold_start``).
        """
        received = arrival(request.scope)  # the budget includes waiting for the model
        c = req.context
        body = await recommend(
            req.user_id, req.k, c.device, c.surface, req.explain,
            time_ms=_ms(c.time), received=received,
        )  # fmt: skip
        return Response(content=body, media_type="application/json")

    @v1.get(
        "/videos/{video_id}/similar",
        summary="Videos similar to a video",
        tags=["recommendations"],
        response_model=SimilarResponse,
        responses={404: {"model": ErrorResponse, "description": "Unknown video."}, **_INVALID},
    )
    async def similar(
        video_id: int = PathParam(
            ge=0, le=MAX_ID, description="A video in the model's catalog.", examples=[1001]
        ),
        k: int = Query(default=20, ge=1, le=MAX_K, description="How many.", examples=[10]),
    ) -> Response:
        """Videos similar to one video (\"more like this\"), by item embedding."""
        m = holder.get()
        if not bool(m.known_videos(np.array([video_id], dtype=np.int64))[0]):
            raise HTTPException(404, f"unknown video_id {video_id}")
        items = await call_model(m.similar, video_id, k)
        body = {
            "video_id": video_id,
            "items": [item_json(i, False) for i in items],
            "model_version": m.version,
        }
        return Response(content=orjson.dumps(body), media_type="application/json")

    @v1.post(
        "/events",
        summary="Record user events",
        tags=["events"],
        response_model=EventAck,
        dependencies=[Depends(require_key)],
        responses={**_AUTH, **_BODY},
    )
    def events(batch: EventBatch) -> EventAck:
        """Record a batch of user events (impressions, plays, likes...).

        All or nothing: the batch is validated (an unknown video is a 422 naming it), appended
        to the durable event log and fsync'd before the 200, then applied to the online
        features. ``applied: false`` means the events are durable but the online state will
        only catch up at the next reload.
        """
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
    fast.recommend = recommend if fast_path else None

    @app.get("/healthz", summary="Liveness", tags=["operations"], response_model=Health)
    def healthz() -> Health:
        """Liveness: the process answers."""
        return Health(status="ok", model_version=holder.get().version)

    @app.get(
        "/readyz",
        summary="Readiness",
        tags=["operations"],
        response_model=Health,
        responses={503: {"model": Health, "description": "No model loaded yet."}},
    )
    def readyz() -> Any:
        """Readiness: a model is loaded and requests can be served."""
        m = holder.get()
        if m is None:
            return JSONResponse(status_code=503, content={"status": "loading"})
        return Health(status="ok", model_version=m.version)

    @app.get(
        "/metrics",
        summary="Prometheus metrics",
        tags=["operations"],
        response_class=PlainTextResponse,
        responses={
            200: {
                "description": "Prometheus text exposition format.",
                "content": {"text/plain": {"example": _METRICS_EXAMPLE}},
            }
        },
    )
    def prometheus() -> PlainTextResponse:
        """Prometheus metrics: latencies per endpoint and stage, fallbacks, errors, events."""
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/admin/reload",
        summary="Hot-swap the model",
        tags=["operations"],
        response_model=ReloadResponse,
        dependencies=[Depends(require_key)],
        responses={
            **_AUTH,
            409: {"model": ErrorResponse, "description": "Refused; the old model still serves."},
            **_BODY,
        },
    )
    def reload(req: ReloadRequest) -> ReloadResponse:
        """Load a model bundle and swap it in atomically (in-flight requests finish on the old
        model). A bad bundle is refused with 409 and the old model keeps serving."""
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
        metrics.ranker_compiled.set(_ranker_compiled(new))
        return ReloadResponse(model_version=new.version, previous_version=old.version)

    return app
