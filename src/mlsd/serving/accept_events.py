"""The logic of ``POST /v1/events``, shared by its FastAPI route and its fast path.

A batch is all or nothing: validated (schema, known videos, times within the data
contract's range), given its ids, appended durably, and only then acknowledged. Applying it
to the online state happens later, off the request path, in every worker (see
:mod:`mlsd.serving.ingest.applier`). A write the service cannot afford is refused before its
body is read (:meth:`check_admission`) or, when the durable queue is full or the log is down,
after; either way with 429 or 503 and ``Retry-After``, within milliseconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
from starlette.types import Scope

from mlsd.serving.encoding import epoch_ms
from mlsd.serving.ids import Id, IdRefused, id_maps, resolve
from mlsd.serving.ingest.admission import Refusal
from mlsd.serving.ingest.group_commit import Overloaded
from mlsd.serving.ingest.log import LogUnavailable
from mlsd.serving.ingest.records import OPTIONAL_FIELDS, event_ids, out_of_range, range_text
from mlsd.serving.schemas import EVENT_ID_PATTERN, MAX_EVENT_ID, EventIn
from mlsd.serving.state import ServiceState

#: (status, body, extra headers) of an answer.
Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]


_KEY = re.compile(EVENT_ID_PATTERN)
IDEMPOTENCY_HEADER = b"idempotency-key"


def idempotency_key(scope: Scope) -> tuple[bool, str | None]:
    """(well formed, key) of the request's ``Idempotency-Key`` header (absent: (True, None))."""
    for name, value in scope["headers"]:
        if name == IDEMPOTENCY_HEADER:
            try:
                key = value.decode("ascii")
            except UnicodeDecodeError:
                return False, None
            ok = 0 < len(key) <= MAX_EVENT_ID and _KEY.match(key) is not None
            return ok, key
    return True, None


def refusal_answer(state: ServiceState, r: Refusal) -> Answer:
    """The 429/503 answer of refusal ``r`` (counted in ``mlsd_events_shed_total``)."""
    state.metrics.events_shed.labels(r.reason).inc()
    body = orjson.dumps({"error": "event write refused, retry later", "detail": r.detail})
    return r.status, body, [(b"retry-after", str(r.retry_after_s).encode())]


def check_admission(state: ServiceState) -> Answer | None:
    """The refusal answer for a new write request, or None when it is admitted (the caller
    must then call :func:`accept` or ``state.ingestion.admission.done()``)."""
    ing = state.ingestion
    if ing is None:
        return None
    r = ing.admission.check()
    if r is not None:
        return refusal_answer(state, r)
    ing.admission.enter()
    return None


def _error(status: int, message: str) -> Answer:
    return status, orjson.dumps({"error": message}), []


def _ids(maps: Any, events: Sequence[EventIn]) -> tuple[list[Id], list[Id], np.ndarray, list[int]]:
    """(user ids, video ids, video codes, user codes) of a batch: the ids as the log records
    them (the model's kind of id: strings for a model of string ids; see :mod:`.ids`) and the
    int64 ids the model knows videos and users by. Raises :class:`~.ids.IdRefused` naming the
    first event whose id the model cannot take."""
    users: list[Id] = []
    videos: list[Id] = []
    user_codes: list[int] = []
    codes = np.empty(len(events), np.int64)
    for i, e in enumerate(events):
        uc, u = resolve(maps, "user_id", e.user_id, ("body", "events", i, "user_id"))
        users.append(u)
        user_codes.append(int(uc))
        code, v = resolve(maps, "video_id", e.video_id, ("body", "events", i, "video_id"))
        codes[i] = code
        videos.append(v)
    return users, videos, codes, user_codes


async def accept(
    state: ServiceState, events: Sequence[EventIn], idempotency_key: str | None
) -> Answer:
    """Validate, durably append and acknowledge one admitted batch (see the module
    docstring); the answer is an :class:`~mlsd.serving.schemas.EventAck` or an error."""
    ing = state.ingestion
    try:
        if ing is None:
            return _error(503, "this service takes no events (no event log)")
        m = state.holder.get()
        try:
            users, videos, codes, user_codes = _ids(id_maps(m), events)
        except IdRefused as refused:
            return 422, refused.body(), []
        known = m.known_videos(codes)
        if not known.all():
            i = int(np.flatnonzero(~known)[0])
            return _error(
                422,
                f"events[{i}].video_id: unknown video_id {videos[i]!r} "
                f"({int((~known).sum())} unknown in this batch); nothing was accepted",
            )
        now = epoch_ms(None)
        times = [epoch_ms(e.timestamp) if e.timestamp is not None else now for e in events]
        bad = out_of_range(times, now)
        if bad is not None:
            return _error(
                422,
                f"events[{bad}].timestamp: {events[bad].timestamp} is outside the accepted "
                f"range ({range_text(now)}); nothing was accepted",
            )
        ids = event_ids(len(events), [e.event_id for e in events], idempotency_key)
        # an experiment's service stamps each event with its user's arm (see .experiment)
        labels = getattr(m, "event_labels", None)
        records = []
        for e, t, eid, u, v, uc in zip(events, times, ids, users, videos, user_codes, strict=True):
            r = {
                "event_id": eid,
                "user_id": u,
                "video_id": v,
                "event_type": e.event_type,
                "timestamp": t,
                "received_ms": now,
            }
            for name in OPTIONAL_FIELDS:
                v = getattr(e, name)
                if v is not None:
                    r[name] = v
            if labels is not None:
                r.update(labels(uc))
            records.append(r)
        ing.admission.charge(len(records))
        try:
            result = await ing.append(records)
        except Overloaded as exc:
            wait = max(1, math.ceil(exc.retry_after_s))
            return refusal_answer(
                state, Refusal(503, "log_queue", "the durable log's queue is full", wait)
            )
        except LogUnavailable as exc:
            return refusal_answer(state, Refusal(503, "log_unavailable", str(exc), 1))
        except RuntimeError:  # the group commit was closed: the process is stopping
            return refusal_answer(state, Refusal(503, "stopping", "the service is stopping", 1))
        counter = state.metrics.events
        for ev in events:
            counter.labels(ev.event_type).inc()
        if result.duplicates:
            state.metrics.events_duplicate.inc(result.duplicates)
        body = orjson.dumps(
            {"accepted": len(records), "stored": result.stored, "duplicates": result.duplicates}
        )
        return 200, body, []
    finally:
        if ing is not None:
            ing.admission.done()
