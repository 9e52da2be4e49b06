"""``POST /v1/recommendations`` and ``GET /v1/videos/{video_id}/similar``.

The handlers are ``async`` and run the model through :class:`~mlsd.serving.model_calls.ModelCalls`
(a small dedicated pool, or the event loop itself), so FastAPI's own thread pool is not in the
path of a read.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from mlsd.serving.arrival import arrival
from mlsd.serving.encoding import epoch_ms, similar_json
from mlsd.serving.ids import IdRefused, id_maps, names, resolve
from mlsd.serving.recommend import recommend
from mlsd.serving.routes.common import BODY, INVALID
from mlsd.serving.schemas import (
    DEFAULT_K,
    MAX_K,
    ErrorResponse,
    RecommendationRequest,
    RecommendationResponse,
    SimilarResponse,
    VideoIdValue,
)
from mlsd.serving.state import Service

router = APIRouter(prefix="/v1", tags=["recommendations"])


@router.post(
    "/recommendations",
    summary="Recommend videos to a user",
    response_model=RecommendationResponse,
    responses=BODY,
)
async def recommendations(req: RecommendationRequest, request: Request, state: Service) -> Response:
    """Top-``k`` videos for a user: candidate generation, ranking, business rules.

    Never fails for a valid request: a stage that fails or overruns its budget is replaced
    by a fallback and the response says ``degraded``. Unknown users get cold-start
    recommendations (``cold_start``).
    """
    received = arrival(request.scope)  # the budget includes waiting for the model
    c = req.context
    try:
        body = await recommend(
            state, req.user_id, req.k, c.device, c.surface, req.explain,
            time_ms=epoch_ms(c.time), received=received,
        )  # fmt: skip
    except IdRefused as e:
        return Response(content=e.body(), status_code=422, media_type="application/json")
    return Response(content=body, media_type="application/json")


@router.get(
    "/videos/{video_id}/similar",
    summary="Videos similar to a video",
    response_model=SimilarResponse,
    responses={404: {"model": ErrorResponse, "description": "Unknown video."}, **INVALID},
)
async def similar(
    state: Service,
    video_id: Annotated[
        VideoIdValue,
        PathParam(description="A video in the model's catalog.", examples=[1001, "sku-000A"]),
    ],
    k: int = Query(default=DEFAULT_K, ge=1, le=MAX_K, description="How many.", examples=[10]),
) -> Response:
    """Videos similar to one video (\"more like this\"), by item embedding."""
    m = state.holder.get()
    maps = id_maps(m)
    try:
        code, shown = resolve(maps, "video_id", video_id, ("path", "video_id"), path=True)
    except IdRefused as e:
        return Response(content=e.body(), status_code=422, media_type="application/json")
    if not bool(m.known_videos(np.array([code], dtype=np.int64))[0]):
        raise HTTPException(404, f"unknown video_id {shown!r}")
    items = await state.calls(m.similar, code, k)
    body = similar_json(shown, items, m.version, names(maps, "video_id"))
    return Response(content=body, media_type="application/json")
