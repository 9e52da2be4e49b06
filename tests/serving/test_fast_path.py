"""The fast path of ``POST /v1/recommendations``
(:class:`mlsd.serving.fast_path.FastRecommendations`) answers exactly as FastAPI's route does:
same status, same body, on generated request bodies valid and not; what it accepts, the schema
accepts with the same values; its responses validate against the response schema; metrics are
labelled as before."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsd.pipeline import RequestCtx, Served, ServedItem
from mlsd.serving.app import create_app
from mlsd.serving.encoding import response_json
from mlsd.serving.fast_path import parse_recommendation
from mlsd.serving.schemas import MAX_ID, MAX_K, RecommendationRequest, RecommendationResponse
from tests.serving.stub_model import ReadOnlyServable


class EchoModel(ReadOnlyServable):
    """Items that spell out what the request said, so a misread field shows in the body."""

    version = "echo-1"

    def serve(self, user_id: int, k: int, ctx: RequestCtx, explain: bool = False) -> Served:
        items = [
            ServedItem(
                user_id % 1000 + i,
                (user_id % 97) / (i + 1),
                f"{ctx.device}|{ctx.surface}",
                exploration=i == 1,
                components={"explained": 1.0, "nan": math.nan} if explain else {},
                actions=["rule: moved"] if explain else [],
            )
            for i in range(k)
        ]
        degraded = user_id % 5 == 0
        return Served(
            user_id, items, degraded_kind="ranker_failed" if degraded else None,
            cold_start=user_id > 10**6, n_candidates=k,
            degraded_reason=f"ranker failed: Boom after {user_id} ms" if degraded else None,
            stage_ms={"ranking": 0.5},
        )  # fmt: skip


@pytest.fixture(scope="module")
def clients() -> tuple[TestClient, TestClient]:
    fast = TestClient(create_app(EchoModel(), model_threads=0))
    slow = TestClient(create_app(EchoModel(), model_threads=0, fast_path=False))
    return fast, slow


_number = st.one_of(
    st.integers(-3, MAX_K + 2),
    st.sampled_from([MAX_ID, MAX_ID + 1, 2**70, 10**7]),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=3),
    st.none(),
)
_text = st.one_of(st.none(), st.text(max_size=36), st.integers(0, 9), st.booleans())
_context = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "device": _text,
            "surface": _text,
            "time": st.sampled_from([None, "2026-02-01T20:15:00Z", "yesterday", 3]),
            "lang": st.just("en"),
        },
    ),
    st.sampled_from([None, 3, "home", []]),
)
_body = st.fixed_dictionaries(
    {},
    optional={
        "user_id": _number,
        "k": _number,
        "explain": st.sampled_from([True, False, 0, 1, None, "true"]),
        "context": _context,
        "page": st.just(2),
    },
)


def _post(c: TestClient, raw: bytes, content_type: str = "application/json") -> Any:
    return c.post("/v1/recommendations", content=raw, headers={"Content-Type": content_type})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_body, mode=st.sampled_from(["json", "json", "json", "mangled", "utf16"]))
def test_fast_path_answers_as_fastapi(
    clients: tuple[TestClient, TestClient], body: dict[str, Any], mode: str
) -> None:
    raw = json.dumps(body).encode()
    if mode == "mangled":
        raw = raw[: len(raw) // 2]
    elif mode == "utf16":
        raw = json.dumps(body).encode("utf-16")
    fast, slow = clients
    a, b = _post(fast, raw), _post(slow, raw)
    assert a.status_code == b.status_code, (raw, a.text, b.text)
    assert a.json() == b.json()
    parsed = parse_recommendation(raw)
    if parsed is not None:  # sound: the schema takes it, with the same values
        req = RecommendationRequest.model_validate(json.loads(raw))
        c = req.context
        assert parsed == (req.user_id, req.k, c.device, c.surface, req.explain)
        assert c.time is None and a.status_code == 200


def test_fast_path_takes_the_common_requests_and_leaves_the_rest() -> None:
    assert parse_recommendation(b'{"user_id": 7}') == (7, 20, None, None, False)
    body = b'{"user_id":7,"k":5,"context":{"device":"ios","surface":"home"},"explain":true}'
    assert parse_recommendation(body) == (7, 5, "ios", "home", True)
    for bad in (
        b'{"user_id": true}', b'{"user_id": 7.0}', b'{"user_id": -1}', b'{"k": 3}',
        b'{"user_id": 7, "k": 0}', b'{"user_id": 7, "k": 201}', b'{"user_id": 7, "x": 1}',
        b'{"user_id": 7, "context": {"time": "2026-02-01T20:15:00Z"}}',
        b'{"user_id": 7, "context": {"device": "' + b"a" * 33 + b'"}}', b"[7]", b"{",
    ):  # fmt: skip
        assert parse_recommendation(bad) is None, bad


def test_other_content_types_and_chunked_bodies_go_through_fastapi(
    clients: tuple[TestClient, TestClient],
) -> None:
    fast, slow = clients
    raw = b'{"user_id": 3, "k": 2}'
    for ct in ("text/plain", "application/vnd.api+json", "application/json; charset=utf-8"):
        a, b = _post(fast, raw, ct), _post(slow, raw, ct)
        assert (a.status_code, a.json()) == (b.status_code, b.json()), ct

    def chunks() -> Any:  # no Content-Length: the body arrives in pieces
        yield b'{"user_id": 3,'
        yield b' "k": 2}'

    headers = {"Content-Type": "application/json"}
    a = fast.post("/v1/recommendations", content=chunks(), headers=headers)
    assert a.status_code == 200 and [i["video_id"] for i in a.json()["items"]] == [3, 4]


def test_responses_validate_and_non_finite_numbers_are_not_sent() -> None:
    items = [
        ServedItem(1, math.inf, "als", components={"p": math.nan, "q": 0.5}, actions=["a"]),
        ServedItem(2, math.nan, "popular"),
    ]
    served = Served(5, items, degraded_kind="ranker_failed", degraded_reason="x")
    for explain in (False, True):
        body = response_json(5, served, "v", explain)
        r = RecommendationResponse.model_validate_json(body)
        assert [i.score for i in r.items] == [0.0, 0.0]
        if explain:
            assert r.items[0].explanation is not None
            assert r.items[0].explanation.components == {"q": 0.5}
        else:
            assert r.items[0].explanation is None


def test_metrics_keep_their_labels_and_fallbacks_are_labelled_by_kind(
    clients: tuple[TestClient, TestClient],
) -> None:
    fast, slow = clients
    for uid in (10, 15, 11):  # two degraded ("ranker failed ... after N ms"), one not
        assert _post(fast, json.dumps({"user_id": uid}).encode()).status_code == 200
        assert _post(slow, json.dumps({"user_id": uid}).encode()).status_code == 200
    assert (
        'mlsd_request_latency_seconds_count{endpoint="/v1/recommendations"}'
        in slow.get("/metrics").text
    )
    text = fast.get("/metrics").text
    line = next(x for x in text.splitlines() if x.startswith("mlsd_fallbacks_total{"))
    assert line.startswith('mlsd_fallbacks_total{reason="ranker_failed"}')
    assert 'reason="ranker failed' not in text  # not one series per reason text
    assert 'mlsd_request_latency_seconds_count{endpoint="/v1/recommendations"}' in text
    assert 'mlsd_stage_latency_seconds_count{stage="ranking"}' in text
