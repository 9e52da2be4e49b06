"""The service's pure ASGI middlewares: body size limit, the write endpoints' API key,
keep-alive connection recycling and per-route timing.

Pure ASGI rather than ``@app.middleware("http")``: the latter wraps every response in a stream
and a task group, which costs more than the rest of a small request.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlsd.errors import RequestTooLarge
from mlsd.serving.metrics import ServingMetrics
from mlsd.serving.routes.common import API_KEY_HEADER

DEFAULT_MAX_BODY_BYTES = 1 << 20  # 1 MiB: a 1000-event batch is ~200 KB
DEFAULT_MAX_REQUESTS_PER_CONNECTION = 0  # no limit (see ConnectionRecycle)
#: How much of an oversize body is read and discarded before its 413 (see BodySizeLimit).
DRAIN_MAX_BYTES = 16 << 20
DRAIN_MAX_S = 5.0


async def send_json(
    send: Send, status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """Send a whole ``application/json`` response of ``body`` with ``status`` (and ``headers``
    besides its content type and length)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
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


def _header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of request header ``name`` (lower case), None when absent."""
    for n, value in scope.get("headers", []):
        if n == name:
            return bytes(value)
    return None


class BodySizeLimit(HttpMiddleware):
    """Reject request bodies over ``max_bytes`` with 413, by their ``Content-Length`` or, when
    streamed without one, as soon as the bytes read pass the limit.

    The client must be able to read the 413: a server that closes a connection with request
    bytes unread makes the kernel send a reset, and a client still sending its body then sees
    the reset instead of the answer. So the rest of the body is read and discarded first, up
    to ``drain_max_bytes`` and ``drain_max_s`` (defaults :data:`DRAIN_MAX_BYTES`,
    :data:`DRAIN_MAX_S`), and the connection stays usable. A body longer than that, declared
    or sent, gets its 413 with ``Connection: close``; so does a request that asked ``Expect:
    100-continue``, whose client waits for the answer before sending the body. The app's own
    answer to the aborted read of a streamed body is dropped: the 413 has gone out instead.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        *,
        drain_max_bytes: int | None = None,
        drain_max_s: float | None = None,
    ) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes
        self.drain_max_bytes = DRAIN_MAX_BYTES if drain_max_bytes is None else drain_max_bytes
        self.drain_max_s = DRAIN_MAX_S if drain_max_s is None else drain_max_s

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = self.max_bytes + 1  # the protocol refuses these first; be safe
            if declared > self.max_bytes:
                drained = (
                    declared <= self.drain_max_bytes
                    and _header(scope, b"expect") is None
                    and await self._drain(receive)
                )
                await self._reject(send, close=not drained)
                return
        seen = 0
        rejected = started = False

        async def limited() -> Message:
            nonlocal seen, rejected
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    if not rejected and not started:
                        rejected = True
                        drained = not msg.get("more_body", False) or await self._drain(receive)
                        await self._reject(send, close=not drained)
                    raise RequestTooLarge(f"request body over {self.max_bytes} bytes")
            return msg

        async def guarded(msg: Message) -> None:
            nonlocal started
            if rejected:  # the app's answer to its failed read: the 413 went out instead
                return
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, limited, guarded)
        except RequestTooLarge:
            if not rejected:  # the app had already begun its answer: uvicorn closes
                raise

    async def _drain(self, receive: Receive) -> bool:
        """Read and discard the rest of the body; True when all of it was read within the
        caps (False: too long, too slow, or the client went away)."""
        read = 0
        with anyio.move_on_after(self.drain_max_s):
            while read <= self.drain_max_bytes:
                msg = await receive()
                if msg["type"] != "http.request":
                    return False
                read += len(msg.get("body", b""))
                if not msg.get("more_body", False):
                    return True
        return False

    async def _reject(self, send: Send, close: bool) -> None:
        body = (
            b'{"error":"request body too large","detail":"at most '
            + str(self.max_bytes).encode()
            + b' bytes"}'
        )
        await send_json(send, 413, body, [(b"connection", b"close")] if close else ())


class RequireKey(HttpMiddleware):
    """The write endpoints' API key, checked before any of the body is read: ``POST
    /v1/events`` and every ``/admin`` path answer 401 without an ``X-API-Key`` header (or an
    empty one) and 403 with a wrong key or when ``api_key`` is None; other requests pass.

    Why here and not only in the routes' dependency
    (:func:`~mlsd.serving.routes.common.require_key`, which stays: it documents the scheme in
    OpenAPI, and passes): FastAPI reads and decodes a body before it runs a route's
    dependencies, so a client without the key got a 422 for a malformed body, learning what
    the endpoint takes, and made the service read and parse it for nothing. Same answers as the
    dependency's, key compared in constant time (the header decoded as Starlette does);
    :class:`Timing` counts a refusal under ``/v1/events`` or ``/admin/*``.
    """

    _HEADER = API_KEY_HEADER.lower().encode()

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        super().__init__(app)
        self.api_key = api_key

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        label = _key_label(scope)
        if label is None:
            await self.app(scope, receive, send)
            return
        given = _header(scope, self._HEADER)
        if not given:
            status, error = 401, f"missing {API_KEY_HEADER} header"
        elif self.api_key is None or not secrets.compare_digest(
            given.decode("latin-1").encode(), self.api_key.encode()
        ):
            status, error = 403, f"invalid {API_KEY_HEADER}"
        else:
            await self.app(scope, receive, send)
            return
        scope["route"] = label
        body = json.dumps({"error": error}, ensure_ascii=False, separators=(",", ":")).encode()
        await send_json(send, status, body)


# what Timing reads of a route (its ``path``): a refusal is labelled by what it protects, one
# label for all of /admin (a label per path asked for would let clients grow the metrics)
_EVENTS_LABEL = SimpleNamespace(path="/v1/events")
_ADMIN_LABEL = SimpleNamespace(path="/admin/*")


def _key_label(scope: Scope) -> SimpleNamespace | None:
    """The metrics label of a request that needs the key, None for one that does not."""
    path = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):  # routes match the path below the app's root
        path = path[len(root) :]
    if path == "/v1/events":
        return _EVENTS_LABEL if scope["method"] == "POST" else None
    return _ADMIN_LABEL if path == "/admin" or path.startswith("/admin/") else None


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
    label is the matched route's path, ``unmatched`` when no route matched. Every answer
    names the process that served it (header ``X-Served-By``: its pid), so that clients and
    tests can tell the workers apart."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics) -> None:
        super().__init__(app)
        self.metrics = metrics
        self.served_by = (b"x-served-by", str(os.getpid()).encode())  # built in the worker

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        t0 = time.perf_counter()
        status = 500

        async def send_status(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
                msg = {**msg, "headers": [*msg.get("headers", []), self.served_by]}
            await send(msg)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")  # set by the router (or the fast path) on this scope
            endpoint = getattr(route, "path", "unmatched")
            self.metrics.request_latency.labels(endpoint).observe(time.perf_counter() - t0)
            if status >= 400:
                self.metrics.errors.labels(endpoint, str(status)).inc()
