"""Limits on a connection before its request reaches the app: how long a request's head
(request line and headers) may take to arrive, and how large it may be.

Why: uvicorn's httptools protocol has neither. A connection that never sends a request is
held until the client goes away, so a few thousand idle sockets exhaust the process's file
descriptors; and httptools buffers a header of any size, so one request can make the server
hold megabytes. :class:`LimitedHttpTools` adds both limits (the arrival-stamping protocol of
:mod:`.arrival`, which ``mlsd serve`` runs, derives from it):

- **head timeout** (:data:`HEADER_TIMEOUT_S`): a request's head must be complete within that
  many seconds of the connection opening or, on a keep-alive connection, of the request's
  first byte; else the connection is closed, without an answer (as nginx's
  ``client_header_timeout``). The idle time between a response and the next request is
  uvicorn's own keep-alive timeout (``timeout_keep_alive``), not this one, so a client may
  keep a connection for its next request as long as that allows;
- **head size** (:data:`MAX_HEADER_BYTES`): a head over that many bytes is answered 431
  ``{"error":"request header fields too large"}`` and the connection closed. The answer is
  followed by a *lingering close* (as Apache's): the server shuts down its sending side and
  reads and discards what the client still sends, for at most :data:`LINGER_S` seconds and
  :data:`LINGER_MAX_BYTES` bytes, so that the client, still sending its headers, can read the
  answer instead of being reset.

How to set them: assign the module constants before the server starts (each connection reads
them when it opens; forked workers inherit them, spawned ones re-import the defaults), and pass
:func:`uvicorn_options` to ``uvicorn.Config``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

#: Seconds a request's head may take, from the connection's opening or the request's first byte.
HEADER_TIMEOUT_S = 10.0
#: Bytes of a request's head (request line, headers and the blank line ending them).
MAX_HEADER_BYTES = 64 * 1024
#: Lingering close after a 431: seconds, and bytes discarded, before the connection is closed.
LINGER_S = 2.0
LINGER_MAX_BYTES = 16 * 1024 * 1024

_TOO_LARGE = json.dumps({"error": "request header fields too large"}).encode()


def uvicorn_options() -> dict[str, Any]:
    """Keyword options of ``uvicorn.Config`` that go with these limits.

    ``h11_max_incomplete_event_size``: the same head size limit for uvicorn's h11 protocol
    (``--http h11``), whose own default is 16 KiB. ``limit_concurrency`` is deliberately not
    set: uvicorn counts idle keep-alive connections against it and then answers 503 to every
    new request, so an attacker holding connections would fill it as easily; the head timeout
    bounds how long an idle connection lives instead, and real overload is shed by the queue
    budget (``PipelineConfig.queue_budget_ms``).
    """
    return {"h11_max_incomplete_event_size": MAX_HEADER_BYTES}


class LimitedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a head timeout and a head size limit (see the module
    docstring); ``header_timeout_s`` and ``max_header_bytes`` are read from the module's
    constants when the connection opens."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.header_timeout_s = HEADER_TIMEOUT_S
        self.max_header_bytes = MAX_HEADER_BYTES
        self._header_timer: asyncio.TimerHandle | None = None
        # bytes of the current head so far; None while a body is being read
        self._head_bytes: int | None = 0
        self._lingering = False
        self._discarded = 0
        self._linger_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._discarded += len(data)
            if self._discarded > LINGER_MAX_BYTES:
                self.transport.close()
            return
        # Within a head, feed the parser at most the bytes the head may still have: if it is
        # still incomplete once they are parsed, the head is over the limit. The bytes after
        # a complete head (a body, a pipelined request) are fed on, and counted again as the
        # next head once the request's body has ended. (The next head's bytes that come in
        # the same read as the end of a body go uncounted: the limit can be passed by at most
        # one read (about 256 KiB), which still bounds what a connection holds.)
        while self._head_bytes is not None:
            room = self.max_header_bytes - self._head_bytes
            if len(data) <= room:
                self._head_bytes += len(data)
                super().data_received(data)
                return
            head, data = data[:room], data[room:]
            self._head_bytes += room
            super().data_received(head)
            if self.transport.is_closing() or self._lingering:
                return
            if self._head_bytes is not None and self._head_bytes >= self.max_header_bytes:
                self._header_too_large()
                return
        if data:
            super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:  # from the request's first byte (or kept from connect)
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        self._head_bytes = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._head_bytes = 0  # what comes next is the next request's head
        super().on_message_complete()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _busy(self) -> bool:
        """A response is still due on this connection (the head being read is pipelined)."""
        return bool(self.pipeline) or (self.cycle is not None and not self.cycle.response_complete)

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self._busy():
            # a pipelined head waits for the responses before it (uvicorn stops reading while
            # they run): not the client's delay, so look again later
            self._arm_header_timer()
            return
        self.transport.close()

    def _header_too_large(self) -> None:
        self._cancel_header_timer()
        if self._busy():  # an answer now would come before the one still due: just close
            self.transport.close()
            return
        self.logger.warning(
            "Request header fields too large (over %d bytes).", self.max_header_bytes
        )
        content = [STATUS_LINE[431]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(_TOO_LARGE)).encode() + b"\r\n",
                b"connection: close\r\n\r\n",
                _TOO_LARGE,
            ]
        )
        self.transport.write(b"".join(content))
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        # lingering close: see the module docstring. The client's EOF closes the transport
        # (eof_received returns None); the timer bounds how long a client may keep sending.
        self._lingering = True
        self.transport.write_eof()
        self.flow.resume_reading()
        self._linger_timer = self.loop.call_later(LINGER_S, self.transport.close)
