"""How values cross the HTTP edge: response bodies written with orjson, and request times as
Unix milliseconds.

Bodies are written as plain data rather than built as the pydantic response models: for twenty
items the models cost more than the rest of the response. What is written always validates
against the response models of :mod:`.schemas` (the tests check it).
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from mlsd.pipeline import Served, ServedItem


def item_json(it: ServedItem, explain: bool, names: list[str] | None = None) -> dict[str, Any]:
    """A :class:`~mlsd.serving.schemas.RecommendedItem` as JSON-ready data: a score that is not
    finite is 0.0 and score components that are not finite are left out, so the body always
    validates against the schema. ``names``: the original video ids by code (a model of
    string ids; see :mod:`.ids`), else None."""
    score = float(it.score)
    explanation = None
    if explain:
        explanation = {
            "components": {str(n): float(v) for n, v in it.components.items() if math.isfinite(v)},
            "actions": [str(a) for a in it.actions],
        }
    return {
        "video_id": int(it.video_id) if names is None else _name(names, int(it.video_id)),
        "score": score if math.isfinite(score) else 0.0,
        "source": str(it.source),
        "exploration": bool(it.exploration),
        "explanation": explanation,
    }


def _name(names: list[str], code: int) -> str | int:
    return names[code] if 0 <= code < len(names) else code


def response_json(
    user_id: int | str,
    served: Served,
    model_version: str,
    explain: bool,
    names: list[str] | None = None,
) -> bytes:
    """The body of a :class:`~mlsd.serving.schemas.RecommendationResponse` for ``served``;
    ``user_id`` as the answer carries it (a string id for a model of string ids), ``names``
    as for :func:`item_json`."""
    body: dict[str, Any] = {
        "user_id": user_id if type(user_id) is str else int(user_id),
        "items": [item_json(it, explain, names) for it in served.items],
        "model_version": str(served.model_version or model_version),
        "degraded": bool(served.degraded),
        "degraded_reason": served.degraded_reason,
        "cold_start": bool(served.cold_start),
    }
    if served.experiment is not None:
        body["experiment"] = {"name": served.experiment, "arm": served.arm}
    return orjson.dumps(body)


def similar_json(
    video_id: int | str,
    items: list[ServedItem],
    model_version: str,
    names: list[str] | None = None,
) -> bytes:
    """The body of a :class:`~mlsd.serving.schemas.SimilarResponse` (``names`` as for
    :func:`item_json`)."""
    body = {
        "video_id": video_id,
        "items": [item_json(i, False, names) for i in items],
        "model_version": model_version,
    }
    return orjson.dumps(body)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def epoch_ms(t: datetime | None) -> int:
    """``t`` as Unix milliseconds, floored (a naive time is taken as UTC); None: now.

    Exact: integer arithmetic on the difference, where ``t.timestamp() * 1000`` in floating
    point is off by one for some times. Never raises for an aware or naive ``datetime``
    (every time the request schemas accept, and any other).
    """
    if t is None:
        return time.time_ns() // 1_000_000
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return (t - _EPOCH) // _MS
