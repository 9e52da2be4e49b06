"""Requests of the event-ingestion benchmark (``events.py``) as raw HTTP/1.1 bytes, and a
blocking one-request-per-connection client for the checks that need a fresh connection (the
supervisor hands each new connection to the next worker, so consecutive fresh connections
reach the workers in turn).

The API contract (issue 16): ``POST /v1/events`` with ``X-API-Key`` and an optional
``Idempotency-Key``; events may carry an ``event_id`` (1-128 of ``[A-Za-z0-9._:-]``);
``GET /admin/users/{id}`` returns the answering worker's online state; every response names
its worker in ``X-Served-By``.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlsd.serving.loadgen import Reply

EVENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
#: The request time of every recommendation the benchmark sends: with a fixed time the answer
#: is a deterministic function of the model and the user's online state.
CONTEXT_TIME = "2026-02-01T20:15:00Z"
#: Events are stamped from here on, one millisecond apart (before CONTEXT_TIME, after most of
#: the small simulation's training log): explicit, so a replay sees the same timestamps.
EVENTS_BASE_MS = int(datetime(2026, 2, 1, 20, 0, tzinfo=UTC).timestamp() * 1000)


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC with milliseconds, e.g. ``2026-02-01T20:00:00.001Z``."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def http_request(
    method: str,
    path: str,
    *,
    host: str,
    port: int,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    close: bool = False,
) -> bytes:
    """One HTTP/1.1 request as bytes; a body is sent as JSON with its Content-Length.
    ``close`` asks the server to close the connection after the response."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    for name, value in (headers or {}).items():
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name}: line breaks are not allowed ({value!r})")
        lines.append(f"{name}: {value}")
    if close:
        lines.append("Connection: close")
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def recommendation_request(
    host: str,
    port: int,
    user_id: int,
    *,
    k: int = 20,
    time: str | None = CONTEXT_TIME,
    close: bool = False,
) -> bytes:
    """``POST /v1/recommendations`` for ``user_id`` (``context.time`` fixed unless None)."""
    doc: dict[str, Any] = {"user_id": int(user_id), "k": int(k)}
    if time is not None:
        doc["context"] = {"time": time}
    body = json.dumps(doc, separators=(",", ":")).encode()
    return http_request("POST", "/v1/recommendations", host=host, port=port, body=body, close=close)


@dataclass(frozen=True)
class Event:
    """One event as the benchmark sends it; ``timestamp_ms`` is explicit (epoch ms, UTC)."""

    user_id: int
    video_id: int
    event_type: str
    timestamp_ms: int
    watch_seconds: float | None = None
    event_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "user_id": self.user_id,
            "video_id": self.video_id,
            "event_type": self.event_type,
            "timestamp": iso_ms(self.timestamp_ms),
        }
        if self.watch_seconds is not None:
            doc["watch_seconds"] = float(self.watch_seconds)
        if self.event_id is not None:
            doc["event_id"] = self.event_id
        return doc

    @property
    def key(self) -> str:
        """What identifies the event in the log: its event_id, else user/video/time (unique in
        what this benchmark sends, so a log without event ids can still be checked)."""
        return self.event_id or f"{self.user_id}/{self.video_id}/{self.timestamp_ms}"


def event_id(prefix: str, request: int, j: int) -> str:
    """A stable event id ``PREFIX-REQUEST-J``; raises ``ValueError`` when it would not match
    the contract's ``[A-Za-z0-9._:-]{1,128}``."""
    eid = f"{prefix}-{request}-{j}"
    if not EVENT_ID.fullmatch(eid):
        raise ValueError(f"event id {eid!r}: expected 1-128 characters of [A-Za-z0-9._:-]")
    return eid


def log_record_key(record: Mapping[str, Any], sent: Container[str] | None = None) -> str:
    """:attr:`Event.key` of a record read back from the event log (timestamp: epoch ms, or an
    ISO-8601 string). With ``sent`` (the keys of what was sent), a record whose event_id is not
    among them is keyed by user/video/time: a server gives events sent without an id one of
    its own (e.g. derived from the Idempotency-Key)."""
    eid = record.get("event_id")
    if eid and (sent is None or eid in sent):
        return str(eid)
    ts = record.get("timestamp")
    if isinstance(ts, str):
        ts = int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)
    return f"{record.get('user_id')}/{record.get('video_id')}/{ts}"


def events_request(
    host: str,
    port: int,
    events: Sequence[Event],
    *,
    api_key: str,
    idempotency_key: str | None = None,
    close: bool = False,
) -> bytes:
    """``POST /v1/events`` with the batch ``events`` (at least one)."""
    if not events:
        raise ValueError("an events request needs at least one event")
    body = json.dumps({"events": [e.to_json() for e in events]}, separators=(",", ":")).encode()
    headers = {"X-API-Key": api_key}
    if idempotency_key is not None:
        if not EVENT_ID.fullmatch(idempotency_key):
            raise ValueError(f"idempotency key {idempotency_key!r}: expected [A-Za-z0-9._:-]")
        headers["Idempotency-Key"] = idempotency_key
    return http_request(
        "POST", "/v1/events", host=host, port=port, body=body, headers=headers, close=close
    )


# --- replies ----------------------------------------------------------------------------------


def parse_reply(data: bytes) -> Reply:
    """A whole response read from a connection the server closed (or that carried exactly one
    response); raises ``ValueError`` when the head is incomplete or the body is short."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError(f"incomplete response head ({len(data)} bytes)")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    n = int(headers.get("content-length", len(rest)))
    if len(rest) < n:
        raise ValueError(f"response body {len(rest)} bytes, Content-Length says {n}")
    return Reply(status, headers, rest[:n], headers.get("connection", "").lower() != "close")


def fetch(host: str, port: int, raw: bytes, timeout_s: float = 2.0) -> Reply:
    """Send ``raw`` on a fresh connection and read one response (blocking). ``raw`` should ask
    for ``Connection: close``; reading stops at the end of the body either way. Raises
    ``OSError`` (refused, reset, timeout) or ``ValueError`` (malformed response)."""
    with socket.create_connection((host, port), timeout=timeout_s) as s:
        s.sendall(raw)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            head, sep, rest = data.partition(b"\r\n\r\n")
            if sep:
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if m and len(rest) >= int(m.group(1)):
                    break
    return parse_reply(data)


def served_by(reply: Reply) -> str | None:
    """The answering worker (``X-Served-By``), None when the server does not say."""
    return reply.headers.get("x-served-by")


def json_body(reply: Reply) -> Any:
    """The reply's JSON body, None when it is not JSON."""
    try:
        return json.loads(reply.body)
    except ValueError:
        return None


def get(host: str, port: int, path: str, *, api_key: str | None = None) -> bytes:
    """A ``GET`` that closes its connection (one per fresh-connection request)."""
    headers = {"X-API-Key": api_key} if api_key else None
    return http_request("GET", path, host=host, port=port, headers=headers, close=True)


def on_each_worker(
    host: str,
    port: int,
    raw: bytes,
    *,
    workers: int = 2,
    max_tries: int | None = None,
    timeout_s: float = 2.0,
) -> dict[str, Reply]:
    """Send ``raw`` on fresh connections until ``workers`` distinct ``X-Served-By`` answered
    (at most ``max_tries``, default ``4 * workers``): the reply of each worker, by its id.
    A server without the header gives one entry, ``"?"``; fewer entries than ``workers``
    means the round robin did not reach them all."""
    out: dict[str, Reply] = {}
    for _ in range(max_tries or 4 * workers):
        reply = fetch(host, port, raw, timeout_s)
        out.setdefault(served_by(reply) or "?", reply)
        if len(out) >= workers or "?" in out:
            break
    return out


def user_states(
    host: str, port: int, users: Iterable[int], *, api_key: str, workers: int = 2
) -> dict[int, dict[str, Any]]:
    """``GET /admin/users/{u}`` on every worker: ``{user: {worker: state or {"status": s}}}``
    (a non-200 answer is kept as its status, so a missing endpoint shows as 404s)."""
    out: dict[int, dict[str, Any]] = {}
    for u in users:
        replies = on_each_worker(
            host, port, get(host, port, f"/admin/users/{int(u)}", api_key=api_key), workers=workers
        )
        out[int(u)] = {
            w: (json_body(r) if r.status == 200 else {"status": r.status})
            for w, r in replies.items()
        }
    return out
