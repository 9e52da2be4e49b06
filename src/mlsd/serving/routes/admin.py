"""Operator endpoints beside the hot-swap: one user's online state, as this worker holds it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from fastapi.responses import Response

from mlsd.serving.ids import IdRefused, id_maps, names, resolve, show
from mlsd.serving.routes.common import AUTH, INVALID, require_key
from mlsd.serving.schemas import UserIdValue, UserState
from mlsd.serving.state import Service

router = APIRouter(prefix="/admin", tags=["operations"])


@router.get(
    "/users/{user_id}",
    summary="A user's online state",
    response_model=UserState,
    dependencies=[Depends(require_key)],
    responses={**AUTH, **INVALID},
)
async def user_state(user_id: Annotated[UserIdValue, Path()], state: Service) -> Any:
    """The user's online state on the worker that answers: recent positives (newest first),
    how many videos they have seen, the creators they blocked, their stored features, and
    where this worker is in the event log. Every worker applies the same log, so all
    answer alike once they have caught up (``lag_s``)."""
    m = state.holder.get()
    maps = id_maps(m)
    try:
        code, shown = resolve(maps, "user_id", user_id, ("path", "user_id"), path=True)
    except IdRefused as e:
        return Response(content=e.body(), status_code=422, media_type="application/json")
    s = await state.calls(m.user_state, code)
    videos = names(maps, "video_id")
    if videos is not None:
        s = {**s, "history": [show(videos, int(v)) for v in s.get("history", [])]}
    ing = state.ingestion
    return {
        "user_id": shown,
        **s,
        "model_version": m.version,
        "log_position": ing.tailer.position if ing is not None else None,
        "lag_s": ing.tailer.lag_s() if ing is not None else 0.0,
    }


@router.get(
    "/monitor",
    summary="The drift monitor's last check",
    dependencies=[Depends(require_key)],
    responses={**AUTH},
)
async def monitor(state: Service) -> dict[str, Any]:
    """What this worker's drift monitor found at its last check against the training
    reference: per-feature drift (method, statistic, threshold, PSI), the prediction's drift,
    data-quality issues and the window's size (``enabled`` false when the service runs
    without it; ``checked_at`` null before the first check with enough rows)."""
    if state.monitor is None:
        return {"enabled": False, "checked_at": None}
    return {"enabled": True, **state.monitor.details()}
