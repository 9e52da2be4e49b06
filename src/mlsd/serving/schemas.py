"""Request and response models of the HTTP API (pydantic, ``extra="forbid"``).

Every field is typed and bounded so that FastAPI rejects malformed input with a 422 that names
the field, before any handler runs. Numbers and booleans of request bodies are strict: ``"42"``
or ``0`` where the schema says integer or boolean is rejected, not coerced, so the service
accepts exactly what its OpenAPI schema documents (the fuzz tests check this). Examples feed
the OpenAPI schema.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
)

from mlsd.data.schema import EVENT_TYPES

MAX_K = 200
DEFAULT_K = 20
MAX_ID = 2**62  # ids travel as int64; bounded below its limit so no arithmetic overflows
MAX_ID_TEXT = 512  # characters of a string id
MAX_EVENTS_PER_BATCH = 1000
MAX_CONTEXT_TEXT = 32  # characters of a device or surface name
MAX_EVENT_ID = 128  # characters of an event id or an Idempotency-Key
EVENT_ID_PATTERN = r"^[A-Za-z0-9._:-]+$"

EventType = Literal["impression", "play", "like", "share", "dislike", "rating"]
assert set(EventType.__args__) == set(EVENT_TYPES)  # type: ignore[attr-defined]


def _iso_text(v: object) -> object:
    # pydantic would also take a number as epoch seconds; the schema says an ISO-8601 string
    if isinstance(v, str | datetime):
        return v
    raise ValueError("expected an ISO-8601 date-time string, e.g. 2026-02-01T20:15:00Z")


IsoDateTime = Annotated[datetime, BeforeValidator(_iso_text)]

_ID_TEXT = (
    f"an integer from 0 to {MAX_ID}, or a string id of 1 to {MAX_ID_TEXT} characters (for a "
    "model trained on string ids)"
)


def _id_value(v: object) -> int | str:
    # strict either way: an integer (not a bool, not a float) or a string, taken as it is; which
    # one the model takes is decided against its ids (mlsd.serving.ids: a 422 naming the field)
    if type(v) is int and 0 <= v <= MAX_ID:
        return v
    if type(v) is str and 1 <= len(v) <= MAX_ID_TEXT:
        return v
    raise ValueError(f"expected {_ID_TEXT}")


def _id_schema(*examples: int | str) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": MAX_ID},
                {"type": "string", "minLength": 1, "maxLength": MAX_ID_TEXT},
            ],
            "description": f"The id: {_ID_TEXT}.",
            "examples": list(examples),
        }
    )


#: A user or video id in a request: an integer, or a string for a model of string ids.
UserIdValue = Annotated[int | str, PlainValidator(_id_value), _id_schema(42, "u_277")]
VideoIdValue = Annotated[int | str, PlainValidator(_id_value), _id_schema(1001, "sku-000A")]
#: An id in an answer: as the model knows it (a string for a model of string ids).
IdOut = int | str

#: The range of a request's times, inclusive, after conversion to UTC: from the Unix epoch to
#: the last whole second that int64 nanoseconds hold (2262-04-11T23:47:16.854775807Z), so that
#: every layer behind the edge (Unix milliseconds, Arrow and numpy timestamps) can hold it.
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2262, 4, 11, 23, 47, 16, tzinfo=UTC)
_Z = "%Y-%m-%dT%H:%M:%SZ"
_RANGE = f"between {EARLIEST_TIME:{_Z}} and {LATEST_TIME:{_Z}} (a time without an offset is UTC)"


def _in_range(t: datetime) -> datetime:
    # compared as aware times, never converted: converting 0001-01-01T00:00:00+14:00 to UTC
    # overflows, comparing it does not
    if not EARLIEST_TIME <= (t if t.tzinfo is not None else t.replace(tzinfo=UTC)) <= LATEST_TIME:
        raise ValueError(f"expected a time {_RANGE}")
    return t


#: An ISO-8601 date-time within [EARLIEST_TIME, LATEST_TIME].
BoundedDateTime = Annotated[IsoDateTime, AfterValidator(_in_range)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    """``extra="forbid"`` plus whole-object examples for the OpenAPI schema."""
    return ConfigDict(extra="forbid", json_schema_extra={"examples": list(examples)})


_ITEM = {"video_id": 1001, "score": 0.83, "source": "two_tower", "exploration": False}


class RequestContext(_Strict):
    device: str | None = Field(default=None, max_length=MAX_CONTEXT_TEXT, examples=["android"])
    surface: str | None = Field(default=None, max_length=MAX_CONTEXT_TEXT, examples=["home"])
    time: BoundedDateTime | None = Field(
        default=None,
        description=f"Request time (ISO-8601), {_RANGE}; defaults to the server's clock.",
        examples=["2026-02-01T20:15:00Z"],
    )

    model_config = _examples({"device": "android", "surface": "home"})


class RecommendationRequest(_Strict):
    user_id: UserIdValue
    k: int = Field(strict=True, default=DEFAULT_K, ge=1, le=MAX_K, examples=[20])
    context: RequestContext = Field(default_factory=RequestContext)
    explain: bool = Field(
        strict=True, default=False, description="Return score components and rule actions per item."
    )

    model_config = _examples(
        {"user_id": 42, "k": 10, "context": {"device": "ios", "surface": "home"}},
        {"user_id": 7, "k": 5, "explain": True},
    )


#: The keys a recommendation request and its context may carry (the fast path's check).
REQUEST_KEYS = frozenset(RecommendationRequest.model_fields)
CONTEXT_KEYS = frozenset(RequestContext.model_fields)


class Explanation(_Strict):
    components: dict[str, float] = Field(
        default_factory=dict, description="Score components, e.g. p_watch, p_like, retrieval."
    )
    actions: list[str] = Field(default_factory=list, description="Re-ranking rule actions.")

    model_config = _examples(
        {"components": {"p_watch": 0.41, "p_like": 0.05, "retrieval": 0.77}, "actions": []}
    )


class RecommendedItem(_Strict):
    video_id: IdOut
    score: float
    source: str = Field(description="Candidate source that found the video.")
    exploration: bool = Field(
        description="Inserted by the exploration rule (log for unbiased learning)."
    )
    explanation: Explanation | None = None

    model_config = _examples(_ITEM)


class ExperimentArm(_Strict):
    name: str = Field(description="The experiment's name.")
    arm: str = Field(description="The arm the user is assigned to (a hash of user and salt).")

    model_config = _examples({"name": "pipeline-vs-mostpop", "arm": "pipeline"})


class RecommendationResponse(_Strict):
    user_id: IdOut
    items: list[RecommendedItem]
    model_version: str
    degraded: bool = Field(
        description="True when a stage failed or overran and a fallback order was served."
    )
    degraded_reason: str | None = Field(
        default=None, description="Which stage fell back and why (when degraded)."
    )
    cold_start: bool = Field(description="The user had no known history.")
    experiment: ExperimentArm | None = Field(
        default=None,
        description="The experiment and arm that served this request (absent outside one); "
        "``model_version`` is then the arm's model.",
    )

    model_config = _examples(
        {
            "user_id": 42,
            "items": [_ITEM, {**_ITEM, "video_id": 2002, "score": 0.79, "source": "covisit"}],
            "model_version": "rec-20260201-3f2a9c",
            "degraded": False,
            "degraded_reason": None,
            "cold_start": False,
        }
    )


class SimilarResponse(_Strict):
    video_id: IdOut
    items: list[RecommendedItem]
    model_version: str

    model_config = _examples(
        {
            "video_id": 1001,
            "items": [{**_ITEM, "video_id": 2002, "source": "two_tower"}],
            "model_version": "rec-20260201-3f2a9c",
        }
    )


class EventIn(_Strict):
    user_id: UserIdValue
    video_id: VideoIdValue
    event_type: EventType
    timestamp: BoundedDateTime | None = Field(
        default=None,
        description=f"Event time (ISO-8601), {_RANGE}; defaults to receipt time. Within "
        "that, the event data's own range (1990-01-01 to a year ahead) applies: 422 outside.",
    )
    watch_seconds: float | None = Field(strict=True, default=None, ge=0, le=7 * 24 * 3600)
    request_id: int | None = Field(strict=True, default=None, ge=0, le=MAX_ID)
    position: int | None = Field(strict=True, default=None, ge=1, le=10_000)
    surface: str | None = Field(default=None, max_length=MAX_CONTEXT_TEXT)
    device: str | None = Field(default=None, max_length=MAX_CONTEXT_TEXT)
    rating: float | None = Field(strict=True, default=None, ge=0, le=10)
    event_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_EVENT_ID,
        pattern=EVENT_ID_PATTERN,
        description="The client's id of the event: a retry with the same id is stored once. "
        "Without one, the request's `Idempotency-Key` header gives `<key>:<index>`.",
    )

    model_config = _examples(
        {"user_id": 42, "video_id": 1001, "event_type": "impression", "position": 3},
        {"user_id": 42, "video_id": 1001, "event_type": "play", "watch_seconds": 95.0},
    )


class EventBatch(_Strict):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS_PER_BATCH)

    model_config = _examples(
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
    )


class EventAck(_Strict):
    accepted: int = Field(description="Events in the batch, all durable when this answers.")
    stored: int = Field(description="Events newly stored.")
    duplicates: int = Field(
        description="Events whose id was already stored (a retry): not stored again."
    )

    model_config = _examples({"accepted": 2, "stored": 2, "duplicates": 0})


class UserState(_Strict):
    user_id: IdOut
    history: list[IdOut] = Field(description="Recent positive videos, newest first.")
    seen: int = Field(description="Videos the user has seen.")
    blocked_creators: list[int]
    features: dict[str, float | list[float | None] | None] = Field(
        description="The user's stored features (a list for a vector feature; null: NaN)."
    )
    model_version: str
    log_position: str | None = Field(description="This worker's position in the event log.")
    lag_s: float = Field(description="Age of the oldest event this worker has not applied.")

    model_config = _examples(
        {
            "user_id": 42,
            "history": [1001, 2002],
            "seen": 37,
            "blocked_creators": [],
            "features": {"user_watches_7d": 12.0},
            "model_version": "rec-20260201-3f2a9c",
            "log_position": "18234",
            "lag_s": 0.0,
        }
    )


class ReloadRequest(_Strict):
    model_dir: str = Field(
        min_length=1, max_length=4096, description="A model bundle directory on the server."
    )

    model_config = _examples({"model_dir": "/srv/models/rec-20260201-3f2a9c"})


class ReloadResponse(_Strict):
    model_version: str
    previous_version: str

    model_config = _examples(
        {"model_version": "rec-20260201-3f2a9c", "previous_version": "rec-20260125-77d0e1"}
    )


class ErrorResponse(_Strict):
    error: str
    detail: str | list[dict[str, object]] | None = None

    model_config = _examples(
        {
            "error": "invalid request",
            "detail": [
                {"loc": ["body", "k"], "msg": "Input should be >= 1", "type": "greater_than_equal"}
            ],
        },
        {"error": "unknown video_id 999"},
    )


class Health(_Strict):
    status: Literal["ok", "loading", "unavailable"]
    model_version: str | None = None
    reason: str | None = Field(default=None, description="Why not ready (when not).")

    model_config = _examples({"status": "ok", "model_version": "rec-20260201-3f2a9c"})
