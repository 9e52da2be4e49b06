"""The service's pure ASGI middlewares: body size limit, keep-alive connection recycling and
per-route timing.

Pure ASGI rather than ``@app.middleware("http")``: the latter wraps every response in a stream
and a task group, which costs more than the rest of a small request.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlsd.errors import RequestTooLarge
from mlsd.serving.metrics import ServingMetrics

DEFAULT_MAX_BODY_BYTES = 1 << 20  # 1 MiB: a 1000-event batch is ~200 KB
DEFAULT_MAX_REQUESTS_PER_CONNECTION = 0  # no limit (see ConnectionRecycle)


async def send_json(send: Send, status: int, body: bytes) -> None:
    """Send a whole ``application/json`` response of ``body`` with ``status``."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class HttpMiddleware:
    """Base of an ASGI middleware that acts on HTTP requests only: other scopes (lifespan,
    websockets) go to the wrapped ``app`` untouched, HTTP requests to :meth:`http`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.http(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class BodySizeLimit(HttpMiddleware):
    """Reject request bodies over ``max_bytes`` with 413, by their ``Content-Length`` or, when
    streamed without one, as soon as the bytes read pass the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
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
                    raise RequestTooLarge(f"request body over {self.max_bytes} bytes")
            return msg

        try:
            await self.app(scope, limited, send)
        except RequestTooLarge:
            await self._reject(send)

    async def _reject(self, send: Send) -> None:
        body = (
            b'{"error":"request body too large","detail":"at most '
            + str(self.max_bytes).encode()
            + b' bytes"}'
        )
        await send_json(send, 413, body)


class ConnectionRecycle(HttpMiddleware):
    """After ``max_requests`` responses on one keep-alive connection, ask the client to
    reconnect (``Connection: close`` on the last one), as nginx's ``keepalive_requests`` does;
    ``max_requests`` 0: never.

    Why: worker processes get *connections*, not requests, so a client's long-lived
    connections pin its load to the workers they went to. The pre-forked supervisor hands
    connections out in turn (:mod:`.prefork`), which splits one client's connections evenly;
    recycling also spreads the load of clients that come and go, and lets a load balancer in
    front rebalance. Connections are told apart by the client's address and port (a new
    connection reusing a port may be recycled early: harmless). Off by default: every
    reconnect costs the client a new connection, which shows in the tail latency, and the
    supervisor's hand-out already balances a steady client.
    """

    def __init__(self, app: ASGIApp, max_requests: int) -> None:
        super().__init__(app)
        self.max_requests = max_requests
        self.served: dict[tuple[Any, ...], int] = {}

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if not client or self.max_requests <= 0:
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


class Timing(HttpMiddleware):
    """Request latency and error counts (status >= 400) per route template: the ``endpoint``
    label is the matched route's path, ``unmatched`` when no route matched."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics) -> None:
        super().__init__(app)
        self.metrics = metrics

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
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
            route = scope.get("route")  # set by the router (or the fast path) on this scope
            endpoint = getattr(route, "path", "unmatched")
            self.metrics.request_latency.labels(endpoint).observe(time.perf_counter() - t0)
            if status >= 400:
                self.metrics.errors.labels(endpoint, str(status)).inc()
