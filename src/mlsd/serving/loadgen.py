"""The open-loop load generator: one asyncio loop, a minimal HTTP/1.1 keep-alive client.

Request *i* is due at ``start + i / rate`` whatever happened to the earlier ones, and its
latency is measured from that due time to the last byte of the response, so a slow server
cannot slow the load down and hide its own queueing (coordinated omission, Tene); requests that
wait for a free connection are charged for the wait. Raw streams instead of an HTTP client
library keep the generator's own CPU cost small, so that it leaves the cores to the server.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class _Pool:
    """Keep-alive connections to one server; at most ``limit`` open at once.

    Idle connections are reused oldest first, so none sits idle long enough for the server's
    keep-alive timeout to close it under a request; one the server did close is dropped.
    """

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port, self.limit = host, port, limit
        self.idle: deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = deque()
        self.open = 0
        self.peak = 0
        self.freed = asyncio.Condition()

    async def get(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while True:
            while self.idle:
                conn = self.idle.popleft()
                if not conn[0].at_eof():
                    return conn
                conn[1].close()
                self.open -= 1
            if self.open < self.limit:
                self.open += 1
                self.peak = max(self.peak, self.open)
                try:
                    return await asyncio.open_connection(self.host, self.port)
                except BaseException:
                    self.open -= 1
                    async with self.freed:
                        self.freed.notify()
                    raise
            async with self.freed:
                await self.freed.wait()

    async def put(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
        if conn is None:
            self.open -= 1
        else:
            self.idle.append(conn)
        async with self.freed:
            self.freed.notify()

    def close(self) -> None:
        for _, w in self.idle:
            w.close()
        self.idle.clear()


async def _exchange(
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], raw: bytes
) -> tuple[int, bytes, bool]:
    """Send one request, read one response: (status, body, keep the connection)."""
    reader, writer = conn
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, keep = None, True
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            keep = False
    if length is None:
        raise ValueError("response without Content-Length")
    body = await reader.readexactly(length)
    return status, body, keep


@dataclass
class Run:
    latency_s: np.ndarray
    status: np.ndarray
    degraded: np.ndarray
    errors: dict[str, int] = field(default_factory=dict)
    max_lag_s: float = 0.0
    elapsed_s: float = 0.0
    peak_connections: int = 0


async def drive(
    host: str,
    port: int,
    requests: list[bytes],
    *,
    rate: float,
    timeout_s: float = 5.0,
    max_connections: int = 256,
    warm_connections: int = 8,
) -> Run:
    """Send ``requests`` (raw HTTP/1.1 bytes) open-loop at ``rate`` per second."""
    # time.perf_counter, not loop.time(): uvloop's clock has millisecond resolution
    now = time.perf_counter
    n = len(requests)
    run = Run(np.full(n, np.nan), np.zeros(n, dtype=np.int16), np.zeros(n, dtype=bool))
    pool = _Pool(host, port, max_connections)
    warm = [await pool.get() for _ in range(min(warm_connections, max_connections))]
    for conn in warm:
        await pool.put(conn)

    def error(kind: str) -> None:
        run.errors[kind] = run.errors.get(kind, 0) + 1

    async def one(i: int, due: float) -> None:
        conn = None
        keep = False
        try:
            async with asyncio.timeout(timeout_s):
                conn = await pool.get()
                status, body, keep = await _exchange(conn, requests[i])
            run.latency_s[i] = now() - due
            run.status[i] = status
            run.degraded[i] = b'"degraded":true' in body
            if status >= 400:
                error(f"http {status}")
        except TimeoutError:
            error("timeout")
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
            error(type(e).__name__)
        finally:
            if conn is not None:
                if not keep:  # broken, timed out mid-response or closed by the server
                    conn[1].close()
                await pool.put(conn if keep else None)

    tasks: set[asyncio.Task[None]] = set()
    start = now() + 0.01
    for i in range(n):
        due = start + i / rate
        delay = due - now()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            run.max_lag_s = max(run.max_lag_s, -delay)
        t = asyncio.create_task(one(i, due))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(set(tasks))
    run.elapsed_s = now() - start
    run.peak_connections = pool.peak
    pool.close()
    return run


def run_loop(coro: Coroutine[Any, Any, Run]) -> Run:
    """Run on uvloop when installed (a cheaper loop leaves more CPU to the server)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def recommendation_requests(host: str, port: int, users: np.ndarray, k: int) -> list[bytes]:
    out = []
    for u in users.tolist():
        body = b'{"user_id":%d,"k":%d}' % (u, k)
        out.append(
            b"POST /v1/recommendations HTTP/1.1\r\nHost: %s:%d\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (host.encode(), port, len(body), body)
        )
    return out
