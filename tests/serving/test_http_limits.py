"""The HTTP edge under hostile input: times outside the representable range, connections that
never send a request, oversized heads and bodies, and write requests without the API key.

Times and the key check go through the ASGI app; the connection limits and the 413 through a
real uvicorn server (the protocol ``mlsd serve`` runs, in a thread) and raw sockets, since they
are about what a client sees on the wire.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from pydantic import ValidationError

from mlsd.serving import limits
from mlsd.serving.app import API_KEY_HEADER, create_app
from mlsd.serving.arrival import ArrivalStampedHttpTools
from mlsd.serving.encoding import epoch_ms
from mlsd.serving.eventlog import EventLog
from mlsd.serving.middleware import BodySizeLimit, RequireKey
from mlsd.serving.process import free_port
from mlsd.serving.schemas import EventIn, RequestContext
from tests.serving.stub_model import StubModel

KEY = "limits-key"
MAX_BODY = 1 << 20

# -- times -------------------------------------------------------------------------------------

INSIDE = [
    "1970-01-01T00:00:00Z",
    "1970-01-01T00:00:00",  # naive: UTC
    "1969-12-31T23:00:00-01:00",  # the lower bound, in another zone
    "2262-04-11T23:47:16Z",
    "2262-04-11T23:47:16",
    "2262-04-12T09:47:16+10:00",  # the upper bound, in another zone
    "2026-02-01T20:15:00.000999Z",
]
OUTSIDE = [
    "1969-12-31T23:59:59.999999Z",
    "1969-12-31T23:59:59.999999",
    "1970-01-01T00:00:00+00:01",
    "2262-04-11T23:47:16.000001Z",
    "2262-04-11T23:47:16.000001",
    "2262-04-11T23:47:16-00:01",
    "0001-01-01T00:00:00+14:00",  # before year 1 in UTC: converting it overflows
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59-14:00",  # after year 9999 in UTC
    "9999-12-31T23:59:59.999999Z",
]


@pytest.mark.parametrize("text", INSIDE)
def test_times_in_the_representable_range_are_accepted(text: str) -> None:
    assert EventIn(user_id=1, video_id=1, event_type="play", timestamp=text).timestamp is not None
    assert RequestContext(time=text).time is not None


@pytest.mark.parametrize("text", OUTSIDE)
def test_times_outside_the_representable_range_are_refused(text: str) -> None:
    with pytest.raises(ValidationError) as e:
        EventIn(user_id=1, video_id=1, event_type="play", timestamp=text)
    assert e.value.errors()[0]["loc"] == ("timestamp",)
    with pytest.raises(ValidationError) as e:
        RequestContext(time=text)
    assert e.value.errors()[0]["loc"] == ("time",)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:00.000999Z", 0),  # milliseconds are floored, not rounded
        ("1970-01-01T14:00:00.0019+14:00", 1),
        ("2108-01-29T04:45:42.313Z", 4357255542313),  # float rounding: ...312
        ("2262-04-11T23:47:15.000999Z", 9223372035000),  # float rounding: ...001
        ("2262-04-11T23:47:16Z", 9223372036000),
        ("2262-04-11T23:47:16", 9223372036000),
        ("2262-04-12T09:47:16+10:00", 9223372036000),
    ],
)
def test_epoch_ms_is_exact_for_accepted_times(text: str, ms: int) -> None:
    t = EventIn(user_id=1, video_id=1, event_type="play", timestamp=text).timestamp
    assert epoch_ms(t) == ms


def test_epoch_ms_of_now() -> None:
    before = time.time_ns() // 10**6
    assert before <= epoch_ms(None) <= time.time_ns() // 10**6
    assert epoch_ms(datetime(2026, 2, 1, tzinfo=UTC)) == 1769904000000


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    app = create_app(
        StubModel(), events=EventLog(tmp_path / "ev.jsonl"), api_key=KEY, max_body_bytes=50_000
    )
    return TestClient(app, raise_server_exceptions=False)


def test_an_event_time_outside_the_range_is_a_422_naming_it(client: TestClient) -> None:
    event = {"user_id": 1, "video_id": 1, "event_type": "play"}
    events = [event] * 3 + [{**event, "timestamp": "0001-01-01T00:00:00+14:00"}]
    r = client.post("/v1/events", json={"events": events}, headers={API_KEY_HEADER: KEY})
    assert r.status_code == 422, r.text
    assert [d["loc"] for d in r.json()["detail"]] == [["body", "events", 3, "timestamp"]]
    r = client.post(
        "/v1/recommendations",
        json={"user_id": 1, "context": {"time": "9999-12-31T23:59:59-14:00"}},
    )
    assert r.status_code == 422, r.text
    assert [d["loc"] for d in r.json()["detail"]] == [["body", "context", "time"]]
    r = client.post(
        "/v1/recommendations", json={"user_id": 1, "context": {"time": "2262-04-11T23:47:16Z"}}
    )
    assert r.status_code == 200, r.text


def test_the_openapi_schema_documents_the_range(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for model, field in (("EventIn", "timestamp"), ("RequestContext", "time")):
        text = schemas[model]["properties"][field]["description"]
        assert "1970-01-01T00:00:00Z" in text and "2262-04-11T23:47:16Z" in text, text


# -- the API key before the body ---------------------------------------------------------------

WRITES = [("/v1/events", b"{not json"), ("/v1/events", b'{"events": [' + b"1," * 20_000)]
WRITES += [("/admin/reload", b"[[["), ("/admin/reload", b'{"model_dir": 7}')]


@pytest.mark.parametrize(("path", "body"), WRITES)
def test_write_endpoints_check_the_key_before_the_body(
    client: TestClient, path: str, body: bytes
) -> None:
    json_type = {"content-type": "application/json"}
    r = client.post(path, content=body, headers=json_type)
    assert (r.status_code, r.json()) == (401, {"error": f"missing {API_KEY_HEADER} header"})
    r = client.post(path, content=body, headers={**json_type, API_KEY_HEADER: ""})
    assert r.status_code == 401
    r = client.post(path, content=body, headers={**json_type, API_KEY_HEADER: "wrong"})
    assert (r.status_code, r.json()) == (403, {"error": f"invalid {API_KEY_HEADER}"})
    r = client.post(path, content=body, headers={**json_type, API_KEY_HEADER: KEY})
    assert r.status_code in (400, 422), r.text


def test_a_refusal_is_counted_under_its_route(client: TestClient) -> None:
    client.post("/v1/events", content=b"{")
    client.post("/admin/reload", content=b"{", headers={API_KEY_HEADER: "wrong"})
    client.post("/admin/nothing-here", content=b"{")
    text = client.get("/metrics").text
    assert 'mlsd_errors_total{endpoint="/v1/events",status="401"} 1.0' in text
    assert 'mlsd_errors_total{endpoint="/admin/*",status="403"} 1.0' in text
    assert 'mlsd_errors_total{endpoint="/admin/*",status="401"} 1.0' in text


def test_other_paths_need_no_key(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.post("/v1/recommendations", json={"user_id": 1, "k": 2}).status_code == 200
    r = client.post(
        "/v1/recommendations", content=b"{", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422


def _asgi(app: Any, scope: dict[str, Any], receive: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    asyncio.run(app({"type": "http", "headers": [], **scope}, receive, send))
    return sent


def test_require_key_answers_without_reading_the_body() -> None:
    async def inner(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app behind the key check was called")

    async def receive() -> dict[str, Any]:
        raise AssertionError("the body was read")

    guard = RequireKey(inner, api_key=KEY)
    for scope, status in [
        ({"method": "POST", "path": "/v1/events"}, 401),
        ({"method": "GET", "path": "/admin/anything"}, 401),
        ({"method": "POST", "path": "/admin/reload", "headers": [(b"x-api-key", b"no")]}, 403),
    ]:
        sent = _asgi(guard, scope, receive)
        assert sent[0]["status"] == status
    # no key configured: every key is wrong
    sent = _asgi(
        RequireKey(inner, api_key=None),
        {"method": "POST", "path": "/v1/events", "headers": [(b"x-api-key", b"")]},
        receive,
    )
    assert sent[0]["status"] == 401
    sent = _asgi(
        RequireKey(inner, api_key=None),
        {"method": "POST", "path": "/v1/events", "headers": [(b"x-api-key", b"k")]},
        receive,
    )
    assert sent[0]["status"] == 403


def test_a_body_that_stalls_past_the_limit_gets_its_413_and_a_close() -> None:
    async def inner(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        raise AssertionError("the whole body was read")

    chunks = [b"x" * (MAX_BODY + 1)]

    async def receive() -> dict[str, Any]:
        if chunks:
            return {"type": "http.request", "body": chunks.pop(), "more_body": True}
        await asyncio.Event().wait()  # the client stops sending
        raise AssertionError

    t0 = time.perf_counter()
    sent = _asgi(BodySizeLimit(inner, MAX_BODY, drain_max_s=0.2), {"method": "POST"}, receive)
    assert 0.2 <= time.perf_counter() - t0 < 2
    assert sent[0]["status"] == 413
    assert (b"connection", b"close") in sent[0]["headers"]


# -- a real server, raw sockets ----------------------------------------------------------------


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    log = EventLog(tmp_path_factory.mktemp("limits") / "ev.jsonl")
    app = create_app(StubModel(), events=log, api_key=KEY, max_body_bytes=MAX_BODY)
    port = free_port("127.0.0.1")
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=ArrivalStampedHttpTools,
        log_level="error",
        timeout_keep_alive=5,
        **limits.uvicorn_options(),
    )
    server = uvicorn.Server(config)
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        t.join(10)


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=3)


_LEFTOVER: dict[int, bytes] = {}  # bytes read past one response (pipelined answers), per socket


def _read_response(s: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One whole response (uvicorn answers these with a Content-Length). Bytes of the next
    response read with this one are kept for the next call: pipelined answers may arrive in
    one segment."""
    buf = _LEFTOVER.pop(id(s), b"")
    while b"\r\n\r\n" not in buf:
        data = s.recv(65536)
        assert data, f"connection closed before a whole head: {buf[:200]!r}"
        buf += data
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), lines[0]
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    n = int(headers["content-length"])
    while len(body) < n:
        data = s.recv(65536)
        assert data, "connection closed before the whole body"
        body += data
    if len(body) > n:
        _LEFTOVER[id(s)] = body[n:]
    return int(lines[0].split()[1]), headers, body[:n]


def _closed(s: socket.socket) -> bool:
    """The server closed the connection (EOF or reset) before the socket's timeout."""
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


HEALTH = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.server
def test_a_connection_that_sends_no_request_is_closed(
    port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "HEADER_TIMEOUT_S", 0.3)
    idle, partial, served = _connect(port), _connect(port), _connect(port)
    with idle, partial, served:
        partial.sendall(b"GET /healthz HTTP/1.1\r\nHost")
        served.sendall(HEALTH)
        assert _read_response(served)[0] == 200
        t0 = time.monotonic()
        assert _closed(idle) and _closed(partial)
        assert time.monotonic() - t0 < 1.5
        # after a response the idle time is the keep-alive's (5 s here), not the head's
        time.sleep(0.5)
        served.sendall(b"GET /healthz HTTP/1.1\r\n")
        time.sleep(0.1)  # a head in two parts, within the timeout
        served.sendall(b"Host: x\r\n\r\n")
        assert _read_response(served)[0] == 200
        # a head begun after a response has the timeout from its first byte
        served.sendall(b"GET /healthz HTTP/1.1\r\n")
        t0 = time.monotonic()
        assert _closed(served)
        assert 0.25 < time.monotonic() - t0 < 1.5


def _head_of(size: int) -> bytes:
    """A GET /healthz whose head is exactly ``size`` bytes."""
    start, end = b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b"\r\n"
    pad = size - len(start) - len(end) - len(b"X-Pad: \r\n")
    return start + b"X-Pad: " + b"a" * pad + b"\r\n" + end


@pytest.mark.server
def test_a_head_over_the_limit_is_answered_431(port: int) -> None:
    with _connect(port) as s:
        s.sendall(_head_of(limits.MAX_HEADER_BYTES))
        assert _read_response(s)[0] == 200
        s.sendall(_head_of(limits.MAX_HEADER_BYTES) * 2)  # pipelined, each within the limit
        assert _read_response(s)[0] == 200
        assert _read_response(s)[0] == 200
    with _connect(port) as s:
        s.sendall(_head_of(limits.MAX_HEADER_BYTES + 1))
        status, headers, body = _read_response(s)
        assert (status, json.loads(body)) == (431, {"error": "request header fields too large"})
        assert headers["connection"] == "close" and _closed(s)
    with _connect(port) as s:
        # 8 MB of headers, more than the sockets' buffers hold: the server reads on (and
        # discards) after its answer, so the client sends them all, then reads the answer
        big = b"".join(b"X-Big-%d: %s\r\n" % (i, b"b" * 8000) for i in range(1000))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
        status, _, body = _read_response(s)
        assert status == 431 and _closed(s)


@pytest.mark.server
def test_a_body_after_a_small_head_is_not_counted_as_head(port: int) -> None:
    event = {"user_id": 1, "video_id": 1, "event_type": "play", "watch_seconds": 95.5}
    event |= {"surface": "s" * 32, "device": "d" * 32, "request_id": 2**40, "position": 3}
    body = json.dumps({"events": [event] * 1000})
    assert 3 * limits.MAX_HEADER_BYTES < len(body) < MAX_BODY
    with _connect(port) as s:
        s.sendall(
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"X-API-Key: %s\r\nContent-Length: %d\r\n\r\n%s"
            % (KEY.encode(), len(body), body.encode())
        )
        status, _, answer = _read_response(s)
        assert status == 200, answer


def _post_head(extra: bytes) -> bytes:
    return (
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-API-Key: " + KEY.encode() + b"\r\n" + extra + b"\r\n"
    )


def _chunked(total: int, size: int = 65536) -> Iterator[bytes]:
    for i in range(0, total, size):
        n = min(size, total - i)
        yield b"%x\r\n%s\r\n" % (n, b"x" * n)
    yield b"0\r\n\r\n"


@pytest.mark.server
@pytest.mark.parametrize("close", [False, True])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_an_oversize_body_gets_a_whole_413(port: int, close: bool, framing: str) -> None:
    n = 5_000_000 if framing == "content-length" else 2 << 20
    if framing == "content-length":
        head = _post_head(b"Content-Length: %d\r\n" % n)
        parts: Iterator[bytes] = iter([b"x" * n])
    else:
        head, parts = _post_head(b"Transfer-Encoding: chunked\r\n"), _chunked(n)
    if close:
        head = head[:-2] + b"Connection: close\r\n\r\n"
    with _connect(port) as s:
        s.sendall(head)
        for p in parts:  # a client sends its whole body before it reads: no reset meanwhile
            s.sendall(p)
        status, headers, body = _read_response(s)
        assert status == 413 and json.loads(body)["error"] == "request body too large"
        if close:
            assert _closed(s)
        else:  # the connection is still in step: the next request is answered
            assert headers.get("connection") != "close"
            s.sendall(HEALTH)
            assert _read_response(s)[0] == 200


@pytest.mark.server
@pytest.mark.parametrize(
    "extra",
    [b"Content-Length: 100000000\r\n", b"Content-Length: 2000000\r\nExpect: 100-continue\r\n"],
)
def test_a_body_not_worth_reading_gets_413_at_once(port: int, extra: bytes) -> None:
    with _connect(port) as s:
        s.sendall(_post_head(extra))  # and no body
        status, headers, _ = _read_response(s)
        assert status == 413 and headers["connection"] == "close"
