"""``POST /v1/events``: user events, durable before the answer, applied off the request path.

Most requests are answered by the fast path (:mod:`mlsd.serving.fast_events`); this route
answers the others (and documents the endpoint) with the same logic
(:mod:`mlsd.serving.accept_events`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from mlsd.serving.accept_events import accept, check_admission, idempotency_key
from mlsd.serving.routes.common import AUTH, BODY, require_key
from mlsd.serving.schemas import (
    EVENT_ID_PATTERN,
    MAX_EVENT_ID,
    ErrorResponse,
    EventAck,
    EventBatch,
)
from mlsd.serving.state import Service

router = APIRouter(prefix="/v1", tags=["events"])

_RETRY_AFTER: dict[str, Any] = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer"},
    }
}
SHED: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorResponse,
        "description": "Over the service's event rate; retry after `Retry-After` seconds.",
        "headers": _RETRY_AFTER,
    },
    503: {
        "model": ErrorResponse,
        "description": "The service is behind (queue full, events not yet applied, or the "
        "event log unavailable); retry after `Retry-After` seconds.",
        "headers": _RETRY_AFTER,
    },
}


_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Makes a retried batch idempotent: its events without an `event_id` get "
    "`<key>:<index>`, so the retry is stored once.",
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_EVENT_ID,
        "pattern": EVENT_ID_PATTERN,
        "examples": ["batch-2026-02-01-0042"],
    },
}


@router.post(
    "/events",
    summary="Record user events",
    response_model=EventAck,
    dependencies=[Depends(require_key)],
    responses={**AUTH, **BODY, **SHED},
    # documented here and read from the request (see the handler): a declared header
    # parameter would make schema fuzzers treat the API key as generated
    openapi_extra={"parameters": [_IDEMPOTENCY_KEY]},
)
async def events(batch: EventBatch, state: Service, request: Request) -> Response:
    """Record a batch of user events (impressions, plays, likes...).

    All or nothing: the batch is validated (an unknown video is a 422 naming it; times must
    lie within the data contract's range), appended to the durable event log (one fsync per
    group of concurrent requests) and acknowledged only then. Each worker applies the events
    to its online state within a second. Events whose id was already stored (a retry) are
    counted in `duplicates` and not stored again. Over capacity the answer is 429 or 503
    with `Retry-After`, at once.
    """
    key_ok, key = idempotency_key(request.scope)
    if not key_ok:
        detail = [
            {
                "loc": ["header", "Idempotency-Key"],
                "msg": f"expected 1 to {MAX_EVENT_ID} characters of {EVENT_ID_PATTERN}",
                "type": "string_pattern_mismatch",
            }
        ]
        return JSONResponse({"error": "invalid request", "detail": detail}, status_code=422)
    refused = check_admission(state)
    if refused is None:
        refused = await accept(state, batch.events, key)
    status, body, headers = refused
    return Response(
        body,
        status_code=status,
        media_type="application/json",
        headers={k.decode(): v.decode() for k, v in headers},
    )
