"""Property-based fuzzing of the HTTP API from its own OpenAPI schema (schemathesis).

For every operation schemathesis generates valid and invalid requests (bodies, path and query
parameters, headers, with and without the API key) and checks each response: no 5xx, a status
code and content type the schema documents, a body that matches the documented schema, invalid
input rejected with a 4xx, and (our own check) no traceback text in any body.

The stub model keeps the run fast; a smaller run goes against a real Recommender bundle.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from mlsd.serving.app import API_KEY_HEADER, create_app
from mlsd.serving.ingest import FileEventLog
from tests.serving.stub_model import StubModel

KEY = "fuzz-key"
_TMP = Path(tempfile.mkdtemp(prefix="mlsd-fuzz-"))  # the app is built at import (parametrize)


@pytest.fixture(scope="module", autouse=True)
def _remove_tmp() -> Iterator[None]:
    yield
    shutil.rmtree(_TMP, ignore_errors=True)


def _loader(model_dir: str) -> StubModel:
    from mlsd.errors import DataError

    raise DataError(f"{model_dir}: not a model bundle (fuzzing never reloads)")


_APPS = iter(range(1_000_000))


def _app(model: Any) -> Any:
    # each app its own log: a later app sharing one would first replay the events an earlier
    # app's fuzzing wrote (received minutes ago), and refuse writes as "behind the log" (503)
    # until it caught up
    return create_app(
        model,
        loader=_loader,
        events=FileEventLog(_TMP / f"events-{next(_APPS)}.jsonl"),
        api_key=KEY,
        max_body_bytes=64_000,
    )


CONFIG = schemathesis.Config.from_dict(
    {
        # the key as the schema's security scheme (not a plain header): schemathesis then also
        # probes each operation without it and with a wrong one
        "auth": {"openapi": {"APIKeyHeader": {"api_key": KEY}}},
        "checks": {
            # a valid but unknown video_id is a documented 404/422, not a schema violation
            "positive_data_acceptance": {"enabled": False},
            # too many events can also be refused by the body-size limit first
            "negative_data_rejection": {"expected-statuses": [400, 401, 403, 404, 413, 422]},
        },
    }
)

schema = schemathesis.openapi.from_asgi("/openapi.json", _app(StubModel()), config=CONFIG)


@schemathesis.check
def no_traceback(ctx: Any, response: Any, case: Any) -> bool | None:
    text = response.text
    if "Traceback" in text or 'File "' in text:
        raise AssertionError(f"traceback text in the response body: {text[:200]}")
    if response.status_code >= 500:
        raise AssertionError(f"{response.status_code}: {text[:200]}")
    return None


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_conforms_to_its_schema(case: Any) -> None:
    case.call_and_validate(additional_checks=[no_traceback])


def test_every_operation_is_fuzzed() -> None:
    ops = {(r.ok().method.upper(), r.ok().path) for r in schema.get_all_operations()}
    assert {
        ("POST", "/v1/recommendations"),
        ("GET", "/v1/videos/{video_id}/similar"),
        ("POST", "/v1/events"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("POST", "/admin/reload"),
    } <= ops


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_real_model_api_conforms(real_bundle: Path, mode: GenerationMode) -> None:
    """A smaller run of the /v1 endpoints against a real Recommender bundle."""
    from mlsd.serving.bundle import load_bundle

    real = schemathesis.openapi.from_asgi(
        "/openapi.json", _app(load_bundle(real_bundle)), config=CONFIG
    ).include(path_regex="^/v1/")

    @given(case=real.as_strategy(mode))
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        case.call_and_validate(additional_checks=[no_traceback])

    run()


# -- times at the edges of the representable range ---------------------------------------------

_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(2262, 4, 11, 23, 47, 16, tzinfo=UTC)


@st.composite
def _edge_times(draw: st.DrawFn) -> tuple[str, bool]:
    """(ISO-8601 text, whether it lies in the accepted range) of a time within a few
    microseconds (or milliseconds) of a bound, in any offset from -14:00 to +14:00, or naive."""
    bound = draw(st.sampled_from([_EARLIEST, _LATEST]))
    step = draw(st.sampled_from([timedelta(microseconds=1), timedelta(milliseconds=1)]))
    t = bound + draw(st.integers(-2, 2)) * step
    if draw(st.booleans()):
        text = t.replace(tzinfo=None).isoformat()
    else:
        minutes = draw(st.integers(-14 * 60, 14 * 60))
        text = t.astimezone(timezone(timedelta(minutes=minutes))).isoformat()
    return text, _EARLIEST <= t <= _LATEST


def _time_case(path: str, text: str) -> Any:
    if path == "/v1/events":
        body = {"events": [{"user_id": 1, "video_id": 1, "event_type": "play", "timestamp": text}]}
    else:
        body = {"user_id": 1, "k": 2, "context": {"time": text}}
    return schema[path]["POST"].Case(
        body=body, media_type="application/json", headers={API_KEY_HEADER: KEY}
    )


_FAR = [("0001-01-01T00:00:00+14:00", False), ("9999-12-31T23:59:59.999999-14:00", False)]


@pytest.mark.parametrize("path", ["/v1/events", "/v1/recommendations"])
@given(edge=st.one_of(_edge_times(), st.sampled_from(_FAR)))
@example(edge=("1970-01-01T00:00:00Z", True))
@example(edge=("2262-04-11T23:47:16Z", True))
@example(edge=("1969-12-31T23:59:59.999999Z", False))
@example(edge=("2262-04-11T23:47:16.000001Z", False))
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_times_at_the_edges_of_the_range(path: str, edge: tuple[str, bool]) -> None:
    """Any time is answered 200 or 422, never 5xx: outside the representable range a 422
    naming the field; inside it the request's own answer (events also meet the data
    contract's narrower range, a 422 of its own)."""
    text, inside = edge
    case = _time_case(path, text)
    response = case.call_and_validate(additional_checks=[no_traceback])
    assert response.status_code in (200, 422), response.text
    field = (
        ["body", "events", 0, "timestamp"] if path == "/v1/events" else ["body", "context", "time"]
    )
    locs = [d["loc"] for d in response.json().get("detail") or [] if isinstance(d, dict)]
    if inside:
        assert field not in locs, response.text
        if path == "/v1/recommendations":
            assert response.status_code == 200, response.text
    else:
        assert (response.status_code, locs) == (422, [field]), response.text
