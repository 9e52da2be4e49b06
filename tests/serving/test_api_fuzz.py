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
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from mlsd.serving.app import API_KEY_HEADER, create_app
from mlsd.serving.eventlog import EventLog
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


def _app(model: Any) -> Any:
    return create_app(
        model,
        loader=_loader,
        event_log=EventLog(_TMP / "events.jsonl"),
        api_key=KEY,
        max_body_bytes=64_000,
    )


CONFIG = schemathesis.Config.from_dict(
    {
        "headers": {API_KEY_HEADER: KEY},
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
