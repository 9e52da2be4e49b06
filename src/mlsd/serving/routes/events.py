"""``POST /v1/events``: user events, made durable, then applied to the online state.

A sync handler (FastAPI runs it on its thread pool): it blocks on the event log's fsync.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from fastapi import APIRouter, Depends, HTTPException

from mlsd.data.schema import validate
from mlsd.serving.encoding import epoch_ms
from mlsd.serving.routes.common import AUTH, BODY, require_key
from mlsd.serving.schemas import EventAck, EventBatch
from mlsd.serving.state import Service

router = APIRouter(prefix="/v1", tags=["events"])


@router.post(
    "/events",
    summary="Record user events",
    response_model=EventAck,
    dependencies=[Depends(require_key)],
    responses={**AUTH, **BODY},
)
def events(batch: EventBatch, state: Service) -> EventAck:
    """Record a batch of user events (impressions, plays, likes...).

    All or nothing: the batch is validated (an unknown video is a 422 naming it), appended
    to the durable event log and fsync'd before the 200, then applied to the online
    features. ``applied: false`` means the events are durable but the online state will
    only catch up at the next reload.
    """
    m = state.holder.get()
    vids = np.array([e.video_id for e in batch.events], dtype=np.int64)
    known = m.known_videos(vids)
    if not known.all():
        i = int(np.flatnonzero(~known)[0])
        raise HTTPException(
            422,
            f"events[{i}].video_id: unknown video_id {int(vids[i])} "
            f"({int((~known).sum())} unknown in this batch); nothing was accepted",
        )
    now = epoch_ms(None)
    records = []
    for e in batch.events:
        r = e.model_dump(exclude_none=True)
        r["timestamp"] = epoch_ms(e.timestamp) if e.timestamp is not None else now
        records.append(r)
    table, _ = validate({"events": pa.Table.from_pylist(records)}, {"events": "request body"})
    if state.event_log is not None:
        state.event_log.append(records)
    for r in records:
        state.metrics.events.labels(r["event_type"]).inc()
    applied = True
    try:
        m.apply_events(table["events"])
    except Exception:  # the events are durable; the online state catches up on reload
        applied = False
        state.metrics.fallbacks.labels("apply_events_failed").inc()
    return EventAck(accepted=len(records), applied=applied)
