"""The fast path of ``POST /v1/events``: admission before the body is read, then the body
validated by pydantic-core straight from its bytes, without FastAPI's routing and dependency
solving; anything unusual (invalid body, bad header, another content type) is replayed to
FastAPI unchanged, which answers it as if this path did not exist.

Why: writes are the platform's highest-volume requests; refusing one the service cannot
afford must cost almost nothing (no body parse), and accepting one must cost little more than
its validation and its share of a group commit.
"""

from __future__ import annotations

from types import SimpleNamespace

from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from mlsd.serving.accept_events import accept, check_admission, idempotency_key
from mlsd.serving.fast_path import _is_json, _replay
from mlsd.serving.middleware import HttpMiddleware
from mlsd.serving.schemas import EventBatch
from mlsd.serving.state import ServiceState

PATH = "/v1/events"
_ROUTE = SimpleNamespace(path=PATH)


async def send_answer(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    """Send a whole ``application/json`` response."""
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


class FastEvents(HttpMiddleware):
    """ASGI middleware answering ``POST /v1/events`` (see the module docstring)."""

    def __init__(self, app: ASGIApp, state: ServiceState) -> None:
        super().__init__(app)
        self.state = state

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] != PATH or scope["method"] != "POST" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        key_ok, key = idempotency_key(scope)
        if not key_ok:
            await self.app(scope, receive, send)
            return
        scope["route"] = _ROUTE
        refused = check_admission(self.state)
        if refused is not None:
            await send_answer(send, *refused)
            return
        ing = self.state.ingestion
        admitted = True
        try:
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
            try:
                batch = EventBatch.model_validate_json(body)
            except ValidationError:  # FastAPI names what is wrong, with its own 422 body
                if ing is not None:
                    ing.admission.done()
                admitted = False
                await self.app(scope, _replay([body], None, receive), send)
                return
            admitted = False  # accept() answers for the admission from here
            await send_answer(send, *await accept(self.state, batch.events, key))
        finally:
            if admitted and ing is not None:
                ing.admission.done()
