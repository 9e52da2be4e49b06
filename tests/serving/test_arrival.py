"""Requests' waits count from their arrival: with model calls on the event loop
(``--threads 0``) a request parsed while another ran waits for it, and the queue budget must
see that wait (it sheds overload). A real uvicorn server, in a thread, with and without the
arrival-stamping protocol."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from mlsd.pipeline import RequestCtx, Served, ServedItem
from mlsd.serving.app import create_app
from mlsd.serving.arrival import ArrivalStampedHttpTools
from mlsd.serving.process import free_port
from tests.serving.stub_model import ReadOnlyServable

BUSY_S = 0.04


class SlowModel(ReadOnlyServable):
    """Busy for 40 ms a request (holding the event loop with ``model_threads=0``); records how
    long each request had waited when the model started on it."""

    version = "slow-1"

    def __init__(self) -> None:
        self.waits: list[float] = []

    def serve(self, user_id: int, k: int, ctx: RequestCtx, explain: bool = False) -> Served:
        start = time.perf_counter()
        assert ctx.received_at is not None
        self.waits.append(start - ctx.received_at)
        while time.perf_counter() - start < BUSY_S:
            pass
        return Served(user_id, [ServedItem(1, 1.0, "popular")], n_candidates=1)


def _serve(model: SlowModel, http: Any) -> Iterator[int]:
    port = free_port("127.0.0.1")
    app = create_app(model, model_threads=0)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, http=http, log_level="warning")
    )
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


def _burst(port: int, n: int) -> None:
    """``n`` requests at once, on ``n`` keep-alive connections; every response read."""
    body = b'{"user_id": 1, "k": 1}'
    raw = (
        b"POST /v1/recommendations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    conns = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]
    try:
        for c in conns:  # accepted and idle first: a connection accepted late hides its wait
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert c.recv(65536).startswith(b"HTTP/1.1 200")
        for c in conns:
            c.sendall(raw)
        for c in conns:
            assert c.recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        for c in conns:
            c.close()


@pytest.mark.server
@pytest.mark.parametrize("http", [ArrivalStampedHttpTools, "httptools"])
def test_waits_behind_a_model_call_on_the_event_loop_are_seen(http: Any) -> None:
    model = SlowModel()
    for port in _serve(model, http):
        _burst(port, 3)
    assert len(model.waits) == 3
    if http is ArrivalStampedHttpTools:
        # the third request was parsed while the first ran and waited for the second
        assert max(model.waits) >= 0.75 * BUSY_S, model.waits
    else:  # without the stamp the handler's own start is the arrival: the wait is invisible
        assert max(model.waits) < 0.5 * BUSY_S, model.waits
