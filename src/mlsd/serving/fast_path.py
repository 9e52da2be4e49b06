"""The fast path of ``POST /v1/recommendations``: a request of the common shape skips FastAPI's
routing, dependency solving and pydantic validation and goes straight to the route's logic
(:func:`~mlsd.serving.recommend.recommend`); every other request goes through FastAPI as if
this path did not exist."""

from __future__ import annotations

import json
from types import SimpleNamespace

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlsd.errors import MlsdError
from mlsd.serving.arrival import arrival
from mlsd.serving.ids import IdRefused, id_maps
from mlsd.serving.middleware import HttpMiddleware, send_json
from mlsd.serving.recommend import recommend
from mlsd.serving.schemas import (
    CONTEXT_KEYS,
    DEFAULT_K,
    MAX_CONTEXT_TEXT,
    MAX_ID,
    MAX_ID_TEXT,
    MAX_K,
    REQUEST_KEYS,
)
from mlsd.serving.state import ServiceState

PATH = "/v1/recommendations"
_ROUTE = SimpleNamespace(path=PATH)  # what the Timing middleware reads of a route

Recommendation = tuple[int | str, int, str | None, str | None, bool]


def parse_recommendation(body: bytes, strings: bool = False) -> Recommendation | None:
    """``(user_id, k, device, surface, explain)`` of a ``POST /v1/recommendations`` body that
    :class:`~mlsd.serving.schemas.RecommendationRequest` certainly accepts as it stands, else
    None (the request then goes through FastAPI, which validates it and names what is wrong).

    Only the common shape is taken: exact types (strict ints, not bools; strings or null for
    the context), the schema's bounds and keys (imported from :mod:`.schemas`), and no
    ``context.time`` (parsed by pydantic). A string ``user_id`` is taken only when
    ``strings`` (the live model has string ids; for another a string is FastAPI's 422). Same
    decoder as FastAPI's (``json.loads``), so a body means the same either way;
    ``tests/serving/test_fast_path.py`` checks both paths answer alike on generated bodies.
    """
    try:
        d = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if type(d) is not dict or not d.keys() <= REQUEST_KEYS:
        return None
    user_id, k, explain = d.get("user_id"), d.get("k", DEFAULT_K), d.get("explain", False)
    if type(user_id) is int:
        if not 0 <= user_id <= MAX_ID:
            return None
    elif not strings or type(user_id) is not str or not 1 <= len(user_id) <= MAX_ID_TEXT:
        return None
    if type(k) is not int or not 1 <= k <= MAX_K or type(explain) is not bool:
        return None
    c = d.get("context", {})
    if type(c) is not dict or not c.keys() <= CONTEXT_KEYS or c.get("time") is not None:
        return None
    device, surface = c.get("device"), c.get("surface")
    for v in (device, surface):
        if v is not None and (type(v) is not str or len(v) > MAX_CONTEXT_TEXT):
            return None
    return user_id, k, device, surface, explain


class FastRecommendations(HttpMiddleware):
    """ASGI middleware: answers a ``POST /v1/recommendations`` whose JSON body
    :func:`parse_recommendation` accepts, without FastAPI.

    Why: for a request this small, FastAPI's routing, dependency solving and validation cost a
    large share of the service's CPU per request. Contract: the answers are FastAPI's own.
    The response body comes from the same function as the route's; a refused request (an
    :class:`~mlsd.errors.MlsdError`) gets the app's 422; anything the parser does not accept
    (an error, an unusual shape, another content type, a disconnect) is replayed to FastAPI
    unchanged, so errors and their bodies are FastAPI's. The route is labelled for
    :class:`~mlsd.serving.middleware.Timing` as the router would.
    """

    def __init__(self, app: ASGIApp, state: ServiceState) -> None:
        super().__init__(app)
        self.state = state

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] != PATH or scope["method"] != "POST" or not _is_json(scope):
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
        req = parse_recommendation(body, strings=bool(id_maps(self.state.holder.get())))
        if req is None:
            await self.app(scope, _replay([body], None, receive), send)
            return
        scope["route"] = _ROUTE
        try:
            status = 200
            payload = await recommend(self.state, *req, time_ms=None, received=received)
        except IdRefused as e:  # as the route answers
            status, payload = 422, e.body()
        except MlsdError as e:  # as the app's handler of MlsdError answers
            status, payload = 422, json.dumps({"error": str(e)}).encode()
        await send_json(send, status, payload)


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
