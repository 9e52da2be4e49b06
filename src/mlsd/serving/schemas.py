"""Request and response models of the HTTP API (pydantic, ``extra="forbid"``).

Every field is typed and bounded so that FastAPI rejects malformed input with a 422 that names
the field, before any handler runs. Examples feed the OpenAPI schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mlsd.data.schema import EVENT_TYPES

MAX_K = 200
MAX_EVENTS_PER_BATCH = 1000

EventType = Literal["impression", "play", "like", "share", "dislike", "rating"]
assert set(EventType.__args__) == set(EVENT_TYPES)  # type: ignore[attr-defined]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequestContext(_Strict):
    device: str | None = Field(default=None, max_length=32, examples=["android"])
    surface: str | None = Field(default=None, max_length=32, examples=["home"])
    time: datetime | None = Field(
        default=None, description="Request time (ISO-8601); defaults to the server's clock."
    )


class RecommendationRequest(_Strict):
    user_id: int = Field(ge=0, le=2**62, examples=[42])
    k: int = Field(default=20, ge=1, le=MAX_K, examples=[20])
    context: RequestContext = Field(default_factory=RequestContext)
    explain: bool = False

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"user_id": 42, "k": 10, "context": {"device": "ios", "surface": "home"}},
                {"user_id": 7, "k": 5, "explain": True},
            ]
        },
    )


class Explanation(_Strict):
    components: dict[str, float] = Field(
        default_factory=dict, description="Score components, e.g. p_watch, p_like, retrieval."
    )
    actions: list[str] = Field(default_factory=list, description="Re-ranking rule actions.")


class RecommendedItem(_Strict):
    video_id: int
    score: float
    source: str = Field(description="Candidate source that found the video.")
    exploration: bool = Field(
        description="Inserted by the exploration rule (log for unbiased learning)."
    )
    explanation: Explanation | None = None


class RecommendationResponse(_Strict):
    user_id: int
    items: list[RecommendedItem]
    model_version: str
    degraded: bool = Field(
        description="True when a stage failed or overran and a fallback order was served."
    )
    degraded_reason: str | None = None
    cold_start: bool = Field(description="The user had no known history.")


class SimilarResponse(_Strict):
    video_id: int
    items: list[RecommendedItem]
    model_version: str


class EventIn(_Strict):
    user_id: int = Field(ge=0, le=2**62)
    video_id: int = Field(ge=0, le=2**62)
    event_type: EventType
    timestamp: datetime | None = Field(default=None, description="Defaults to receipt time.")
    watch_seconds: float | None = Field(default=None, ge=0, le=7 * 24 * 3600)
    request_id: int | None = Field(default=None, ge=0, le=2**62)
    position: int | None = Field(default=None, ge=1, le=10_000)
    surface: str | None = Field(default=None, max_length=32)
    device: str | None = Field(default=None, max_length=32)
    rating: float | None = Field(default=None, ge=0, le=10)


class EventBatch(_Strict):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS_PER_BATCH)

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "events": [
                        {
                            "user_id": 42,
                            "video_id": 1001,
                            "event_type": "play",
                            "watch_seconds": 95.0,
                            "surface": "home",
                            "device": "ios",
                        }
                    ]
                }
            ]
        },
    )


class EventAck(_Strict):
    accepted: int
    applied: bool = Field(description="Applied to the online store (history and features).")


class ReloadRequest(_Strict):
    model_dir: str = Field(min_length=1, max_length=4096)


class ReloadResponse(_Strict):
    model_version: str
    previous_version: str


class ErrorResponse(_Strict):
    error: str
    detail: str | list[dict[str, object]] | None = None


class Health(_Strict):
    status: Literal["ok", "loading", "unavailable"]
    model_version: str | None = None
