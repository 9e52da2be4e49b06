"""HTTP edge behaviour that does not depend on the model: validation, auth, limits, reload.

These tests use a small in-memory Servable because they are about the HTTP layer; the real
pipeline behind the real server is exercised in tests/serving/test_server.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from mlsd.errors import DataError
from mlsd.pipeline import RequestCtx, Served, ServedItem
from mlsd.serving.app import API_KEY_HEADER, create_app
from mlsd.serving.eventlog import read_events
from mlsd.serving.ingest import FileEventLog
from mlsd.serving.schemas import SimilarResponse
from tests.serving.stub_model import ReadOnlyServable

KEY = "test-key"


class TinyModel(ReadOnlyServable):
    """Recommends videos 1..n in order; knows videos 1..100."""

    def __init__(self, version: str = "v1") -> None:
        self.version = version
        self.applied: list[pa.Table] = []

    def serve(self, user_id: int, k: int, ctx: RequestCtx, explain: bool = False) -> Served:
        items = [ServedItem(i, 1.0 / i, "popular") for i in range(1, k + 1)]
        return Served(user_id, items, cold_start=user_id > 1000, n_candidates=k)

    def similar(self, video_id: int, k: int) -> list[ServedItem]:
        return [ServedItem(i, 0.5, "covisit") for i in range(1, k + 1)]

    def known_videos(self, video_ids: np.ndarray) -> np.ndarray:
        return (video_ids >= 1) & (video_ids <= 100)

    def apply_events(self, events: pa.Table) -> None:
        self.applied.append(events)


def _loader(model_dir: str) -> TinyModel:
    if "bad" in model_dir:
        raise DataError(f"{model_dir}: manifest.json missing")
    return TinyModel(version=Path(model_dir).name)


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    app = create_app(
        TinyModel(),
        loader=_loader,
        events=FileEventLog(tmp_path / "ev.jsonl"),
        api_key=KEY,
        max_body_bytes=50_000,
    )
    app.state.log_path = tmp_path / "ev.jsonl"
    return TestClient(app, raise_server_exceptions=False)


def _no_traceback(r) -> None:  # type: ignore[no-untyped-def]
    assert "Traceback" not in r.text
    assert r.status_code < 500, r.text


def test_recommendations_ok(client: TestClient) -> None:
    r = client.post("/v1/recommendations", json={"user_id": 5, "k": 3})
    assert r.status_code == 200
    body = r.json()
    assert [i["video_id"] for i in body["items"]] == [1, 2, 3]
    assert body["degraded"] is False and body["model_version"] == "v1"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"user_id": 5, "k": 0}, "k"),
        ({"user_id": 5, "k": 10_000}, "k"),
        ({"user_id": "abc"}, "user_id"),
        ({"user_id": 5, "colour": "red"}, "colour"),
        ({"user_id": 5, "context": {"device": 3}}, "device"),
        ({"k": 5}, "user_id"),
    ],
)
def test_bad_requests_are_422_naming_the_field(
    client: TestClient, payload: dict[str, object], field: str
) -> None:
    r = client.post("/v1/recommendations", json=payload)
    assert r.status_code == 422
    assert field in r.text
    _no_traceback(r)


def test_malformed_json_is_422(client: TestClient) -> None:
    r = client.post(
        "/v1/recommendations",
        content=b'{"user_id": 5,',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422
    _no_traceback(r)


def test_events_need_a_key(client: TestClient) -> None:
    ev = {"events": [{"user_id": 1, "video_id": 2, "event_type": "play"}]}
    assert client.post("/v1/events", json=ev).status_code == 401
    assert client.post("/v1/events", json=ev, headers={API_KEY_HEADER: "nope"}).status_code == 403
    r = client.post("/v1/events", json=ev, headers={API_KEY_HEADER: KEY})
    assert r.status_code == 200 and r.json() == {"accepted": 1, "stored": 1, "duplicates": 0}


def test_events_are_logged_durably_then_applied_off_the_request_path(
    client: TestClient,
) -> None:
    ev = {
        "events": [
            {"user_id": 1, "video_id": 2, "event_type": "play", "watch_seconds": 40},
            {"user_id": 1, "video_id": 3, "event_type": "like"},
        ]
    }
    assert client.post("/v1/events", json=ev, headers={API_KEY_HEADER: KEY}).status_code == 200
    logged = list(read_events(client.app.state.log_path))  # type: ignore[attr-defined]
    assert [r["video_id"] for r in logged] == [2, 3]
    state = client.app.state.service  # type: ignore[attr-defined]
    assert state.ingestion.tailer.wait_caught_up(5.0)
    model = state.holder.get()
    assert model.applied[-1].num_rows == 2
    assert model.applied[-1]["video_id"].to_pylist() == [2, 3]


def test_a_retried_batch_is_stored_once(client: TestClient) -> None:
    ev = {"events": [{"user_id": 1, "video_id": 2, "event_type": "play"}] * 2}
    h = {API_KEY_HEADER: KEY, "Idempotency-Key": "batch-7"}
    assert client.post("/v1/events", json=ev, headers=h).json() == {
        "accepted": 2,
        "stored": 2,
        "duplicates": 0,
    }
    assert client.post("/v1/events", json=ev, headers=h).json() == {
        "accepted": 2,
        "stored": 0,
        "duplicates": 2,
    }
    one = {"events": [{"user_id": 1, "video_id": 2, "event_type": "like", "event_id": "x-1"}]}
    assert client.post("/v1/events", json=one, headers={API_KEY_HEADER: KEY}).json()["stored"] == 1
    assert client.post("/v1/events", json=one, headers={API_KEY_HEADER: KEY}).json()["stored"] == 0
    ids = [r["event_id"] for r in read_events(client.app.state.log_path)]  # type: ignore[attr-defined]
    assert ids == ["batch-7:0", "batch-7:1", "x-1"]
    bad = client.post(
        "/v1/events", json=ev, headers={API_KEY_HEADER: KEY, "Idempotency-Key": "a b"}
    )
    assert bad.status_code == 422 and "Idempotency-Key" in bad.text


def test_unknown_video_in_events_is_422_naming_it(client: TestClient) -> None:
    ev = {
        "events": [
            {"user_id": 1, "video_id": 2, "event_type": "play"},
            {"user_id": 1, "video_id": 5555, "event_type": "play"},
        ]
    }
    r = client.post("/v1/events", json=ev, headers={API_KEY_HEADER: KEY})
    assert r.status_code == 422 and "5555" in r.text and "events[1]" in r.text
    assert list(read_events(client.app.state.log_path)) == []  # type: ignore[attr-defined]


def test_oversized_and_empty_batches(client: TestClient) -> None:
    many = {"events": [{"user_id": 1, "video_id": 2, "event_type": "play"}] * 1001}
    r = client.post("/v1/events", json=many, headers={API_KEY_HEADER: KEY})
    assert r.status_code in (413, 422)
    _no_traceback(r)
    r = client.post("/v1/events", json={"events": []}, headers={API_KEY_HEADER: KEY})
    assert r.status_code == 422
    big = b'{"events": [' + b" " * 60_000 + b"]}"
    r = client.post(
        "/v1/events", content=big, headers={API_KEY_HEADER: KEY, "content-type": "application/json"}
    )
    assert r.status_code == 413


def test_bad_event_fields(client: TestClient) -> None:
    for ev, field in [
        ({"user_id": 1, "video_id": 2, "event_type": "watch"}, "event_type"),
        ({"user_id": 1, "video_id": 2, "event_type": "play", "watch_seconds": -1}, "watch_seconds"),
        ({"user_id": 1, "video_id": 2, "event_type": "play", "extra": 1}, "extra"),
    ]:
        r = client.post("/v1/events", json={"events": [ev]}, headers={API_KEY_HEADER: KEY})
        assert r.status_code == 422 and field in r.text
        _no_traceback(r)


def test_similar_unknown_video_is_404(client: TestClient) -> None:
    ok = client.get("/v1/videos/5/similar?k=3")
    assert ok.status_code == 200
    body = SimilarResponse.model_validate_json(ok.content)  # the schema it documents
    assert body.video_id == 5 and [i.video_id for i in body.items] == [1, 2, 3]
    r = client.get("/v1/videos/999/similar")
    assert r.status_code == 404 and "999" in r.text
    assert client.get("/v1/videos/5/similar?k=0").status_code == 422


def test_reload_good_and_bad(client: TestClient) -> None:
    h = {API_KEY_HEADER: KEY}
    assert client.post("/admin/reload", json={"model_dir": "/m/v2"}).status_code == 401
    r = client.post("/admin/reload", json={"model_dir": "/m/v2"}, headers=h)
    assert r.status_code == 200 and r.json() == {"model_version": "v2", "previous_version": "v1"}
    r = client.post("/admin/reload", json={"model_dir": "/m/bad"}, headers=h)
    assert r.status_code == 409 and "still serving v2" in r.text
    assert client.get("/healthz").json()["model_version"] == "v2"


def test_health_ready_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    # ready once the tailer's first pass over the (empty) log is done, a moment after start
    deadline = time.monotonic() + 5
    while (r := client.get("/readyz")).status_code != 200 and time.monotonic() < deadline:
        assert r.json()["reason"] == "replaying the event log"
        time.sleep(0.01)
    assert r.status_code == 200
    client.post("/v1/recommendations", json={"user_id": 5000, "k": 2})
    text = client.get("/metrics").text
    assert "mlsd_request_latency_seconds_bucket" in text
    assert "mlsd_cold_start_total 1.0" in text


def test_openapi_schema_has_examples(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {
        "/v1/recommendations",
        "/v1/events",
        "/v1/videos/{video_id}/similar",
        "/admin/reload",
        "/healthz",
        "/readyz",
        "/metrics",
    } <= set(spec["paths"])
    schema = spec["components"]["schemas"]["RecommendationRequest"]
    assert schema.get("examples")


@pytest.mark.parametrize("threads", [0, 1])
def test_model_calls_on_the_loop_or_in_threads(threads: int) -> None:
    c = TestClient(create_app(TinyModel(), model_threads=threads), raise_server_exceptions=False)
    r = c.post("/v1/recommendations", json={"user_id": 5, "k": 2})
    assert r.status_code == 200 and len(r.json()["items"]) == 2
    assert c.get("/v1/videos/3/similar?k=2").status_code == 200
    with pytest.raises(ValueError, match="model_threads"):
        create_app(TinyModel(), model_threads=-1)


def test_strict_request_types(client: TestClient) -> None:
    """The schema says integer, boolean, date-time string: near misses are not coerced."""
    for body, field in [
        ({"user_id": "5"}, "user_id"),
        ({"user_id": 5, "explain": 0}, "explain"),
        ({"user_id": 5, "k": 2.0}, "k"),
        ({"user_id": 5, "context": {"time": 0}}, "time"),
    ]:
        r = client.post("/v1/recommendations", json=body)
        assert r.status_code == 422 and field in r.text, (body, r.text)
    ok = {"user_id": 5, "context": {"time": "2026-02-01T20:15:00Z"}}
    assert client.post("/v1/recommendations", json=ok).status_code == 200


def test_framework_errors_use_the_error_body(client: TestClient) -> None:
    r = client.get("/nope")
    assert r.status_code == 404 and r.json() == {"error": "Not Found"}
    r = client.get("/v1/recommendations")
    assert r.status_code == 405 and "error" in r.json()
    r = client.post(
        "/v1/recommendations", content=b"\xff\xfe", headers={"content-type": "application/json"}
    )
    assert r.status_code in (400, 422) and "error" in r.json()


def test_openapi_is_complete(client: TestClient) -> None:
    """Every operation has a summary, a description and documented errors; every schema has
    an example; the write endpoints declare the API-key security scheme."""
    spec = client.get("/openapi.json").json()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            assert op.get("summary") and op.get("description"), where
            if op.get("requestBody") or op.get("parameters"):
                assert "422" in op["responses"], where
            if path.startswith("/admin") or path == "/v1/events":
                assert op.get("security") == [{"APIKeyHeader": []}], where
                assert {"401", "403"} <= set(op["responses"]), where
            for p in op.get("parameters", []):
                assert "examples" in p["schema"] or "example" in p, (where, p["name"])
    for name, schema in spec["components"]["schemas"].items():
        assert schema.get("examples"), name
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == API_KEY_HEADER


def test_a_keep_alive_connection_is_recycled_after_max_requests() -> None:
    # Workers on SO_REUSEPORT sockets are handed connections, not requests: the server asks a
    # client to reconnect after max_requests_per_connection, so that the kernel spreads the
    # load again. On a real socket: the 3rd response says close and the server closes.
    import socket
    import threading
    import time

    import uvicorn

    from mlsd.serving.process import free_port

    app = create_app(TinyModel(), max_requests_per_connection=3, model_threads=0)
    port = free_port("127.0.0.1")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    body = b'{"user_id": 7, "k": 2}'
    raw = (
        b"POST /v1/recommendations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            f = sock.makefile("rb")
            closes = []
            for _ in range(3):
                sock.sendall(raw)
                status = f.readline()
                headers = {}
                while (line := f.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    headers[name.strip().lower()] = value.strip().lower()
                f.read(int(headers["content-length"]))
                assert status.startswith(b"HTTP/1.1 200")
                closes.append(headers.get("connection") == "close")
            assert closes == [False, False, True]
            assert f.read(1) == b""  # and the server closed the connection
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # a new one
            sock.sendall(raw)
            assert sock.makefile("rb").readline().startswith(b"HTTP/1.1 200")
    finally:
        server.should_exit = True
        th.join(10)
