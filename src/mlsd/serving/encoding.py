"""How values cross the HTTP edge: response bodies written with orjson, and request times as
Unix milliseconds.

Bodies are written as plain data rather than built as the pydantic response models: for twenty
items the models cost more than the rest of the response. What is written always validates
against the response models of :mod:`.schemas` (the tests check it).
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from mlsd.pipeline import Served, ServedItem


def item_json(it: ServedItem, explain: bool) -> dict[str, Any]:
    """A :class:`~mlsd.serving.schemas.RecommendedItem` as JSON-ready data: a score that is not
    finite is 0.0 and score components that are not finite are left out, so the body always
    validates against the schema."""
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


def response_json(user_id: int, served: Served, model_version: str, explain: bool) -> bytes:
    """The body of a :class:`~mlsd.serving.schemas.RecommendationResponse` for ``served``."""
    body = {
        "user_id": int(user_id),
        "items": [item_json(it, explain) for it in served.items],
        "model_version": str(model_version),
        "degraded": bool(served.degraded),
        "degraded_reason": served.degraded_reason,
        "cold_start": bool(served.cold_start),
    }
    return orjson.dumps(body)


def similar_json(video_id: int, items: list[ServedItem], model_version: str) -> bytes:
    """The body of a :class:`~mlsd.serving.schemas.SimilarResponse`."""
    body = {
        "video_id": video_id,
        "items": [item_json(i, False) for i in items],
        "model_version": model_version,
    }
    return orjson.dumps(body)


def epoch_ms(t: datetime | None) -> int:
    """``t`` as Unix milliseconds (a naive time is taken as UTC); None: now."""
    if t is None:
        return int(time.time() * 1000)
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)
