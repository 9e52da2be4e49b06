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
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


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


@dataclass
class Reply:
    """One HTTP response: status, headers (names lower-cased, values stripped), body, and
    whether the connection may carry another request."""

    status: int
    headers: dict[str, str]
    body: bytes
    keep: bool


async def exchange(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], raw: bytes) -> Reply:
    """Send one request (raw HTTP/1.1 bytes), read one response with a Content-Length.

    Raises ``ValueError`` for a response without Content-Length (chunked is not supported),
    ``asyncio.IncompleteReadError`` when the server closes mid-response, ``OSError`` on a
    broken connection.
    """
    reader, writer = conn
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, keep = None, True
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if not name:
            continue
        headers[name.decode("latin-1")] = value.strip().decode("latin-1")
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            keep = False
    if length is None:
        raise ValueError("response without Content-Length")
    body = await reader.readexactly(length)
    return Reply(status, headers, body, keep)


async def _exchange(
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], raw: bytes
) -> tuple[int, bytes, bool]:
    """Send one request, read one response: (status, body, keep the connection)."""
    r = await exchange(conn, raw)
    return r.status, r.body, r.keep


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


# ---------------------------------------------------------------------------------------------
# several request streams in one loop, each with its own rate, connections and retry policy

#: Given the last reply (None when there was none: timeout, refused, reset) and the number of
#: attempts made so far, the seconds to wait before the next attempt, or None to stop.
RetryPolicy = Callable[[Reply | None, int], float | None]


@dataclass
class Stream:
    """One open-loop stream: request *i* is due ``start_s + i / rate`` seconds after the common
    start. ``fresh_connections`` opens (and closes) a connection per attempt, so the connect
    time is in the latency; otherwise a keep-alive pool of ``max_connections`` is used.
    ``on_reply(i, reply)`` sees every reply of every attempt. With ``retry``, a request is sent
    again until the policy says stop or ``give_up_s`` have passed since its due time; its
    latency then runs from the due time to its last reply."""

    name: str
    requests: Sequence[bytes]
    rate: float
    start_s: float = 0.0
    fresh_connections: bool = False
    max_connections: int = 256
    warm_connections: int = 0
    timeout_s: float = 5.0
    on_reply: Callable[[int, Reply], None] | None = None
    retry: RetryPolicy | None = None
    give_up_s: float = 60.0


@dataclass
class StreamRun:
    """Per request of one stream: due time (s after the common start), latency (s, NaN when no
    attempt was answered), last status (0: no answer), attempts; ``errors`` counts every failed
    attempt by kind (``timeout``, an exception name, ``http NNN`` for statuses >= 400)."""

    name: str
    due_s: np.ndarray
    latency_s: np.ndarray
    status: np.ndarray
    attempts: np.ndarray
    errors: dict[str, int] = field(default_factory=dict)
    max_lag_s: float = 0.0
    peak_connections: int = 0


async def drive_streams(
    host: str, port: int, streams: Sequence[Stream], *, start: float | None = None
) -> dict[str, StreamRun]:
    """Drive ``streams`` concurrently in the running loop until every request is finished.

    ``start`` is the common zero on the ``time.perf_counter`` clock (default: 10 ms after each
    stream's ``warm_connections`` are open; they are opened stream after stream),
    so that a caller's side tasks (a fault injected at t = 5 s) share the schedule's clock.
    Stream names must be unique; a rate must be positive.
    """
    if len({s.name for s in streams}) != len(streams) or any(s.rate <= 0 for s in streams):
        raise ValueError("streams need unique names and positive rates")
    now = time.perf_counter
    t0 = now() + 0.01 if start is None else start
    runs: dict[str, StreamRun] = {}

    async def attempt(s: Stream, pool: _Pool | None, raw: bytes, run: StreamRun) -> Reply | None:
        conn = None
        keep = False
        try:
            async with asyncio.timeout(s.timeout_s):
                conn = await (asyncio.open_connection(host, port) if pool is None else pool.get())
                reply = await exchange(conn, raw)
            keep = reply.keep and pool is not None
            if reply.status >= 400:
                run.errors[f"http {reply.status}"] = run.errors.get(f"http {reply.status}", 0) + 1
            return reply
        except TimeoutError:
            run.errors["timeout"] = run.errors.get("timeout", 0) + 1
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
            kind = type(e).__name__
            run.errors[kind] = run.errors.get(kind, 0) + 1
        finally:
            if conn is not None:
                if not keep:
                    conn[1].close()
                if pool is not None:
                    await pool.put(conn if keep else None)
        return None

    async def one(s: Stream, pool: _Pool | None, run: StreamRun, i: int, due: float) -> None:
        n = 0
        while True:
            n += 1
            reply = await attempt(s, pool, s.requests[i], run)
            run.attempts[i] = n
            if reply is not None:
                run.latency_s[i] = now() - due
                run.status[i] = reply.status
                if s.on_reply is not None:
                    s.on_reply(i, reply)
            else:
                run.status[i] = 0
                run.latency_s[i] = np.nan  # the last attempt got no answer
            wait = None if s.retry is None else s.retry(reply, n)
            if wait is None or now() + wait - due > s.give_up_s:
                return
            await asyncio.sleep(wait)

    async def schedule(s: Stream) -> None:
        n = len(s.requests)
        run = StreamRun(
            s.name,
            s.start_s + np.arange(n) / s.rate,
            np.full(n, np.nan),
            np.zeros(n, dtype=np.int16),
            np.zeros(n, dtype=np.int16),
        )
        runs[s.name] = run
        pool = pools[s.name]
        mine: set[asyncio.Task[None]] = set()
        for i in range(n):
            due = t0 + float(run.due_s[i])
            delay = due - now()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                run.max_lag_s = max(run.max_lag_s, -delay)
            t = asyncio.create_task(one(s, pool, run, i, due))
            mine.add(t)
            t.add_done_callback(mine.discard)
        if mine:
            await asyncio.wait(set(mine))
        if pool is not None:
            run.peak_connections = pool.peak
            pool.close()

    # Warm connections are opened stream after stream, before the clock starts: opened
    # concurrently they interleave, and a server that hands connections to its workers in turn
    # (mlsd serve's pre-fork supervisor) would give one stream's every connection to one worker.
    pools: dict[str, _Pool | None] = {}
    for s in streams:
        pool = None if s.fresh_connections else _Pool(host, port, s.max_connections)
        if pool is not None and s.warm_connections:
            warm = [await pool.get() for _ in range(min(s.warm_connections, s.max_connections))]
            for conn in warm:
                await pool.put(conn)
        pools[s.name] = pool
    if start is None:
        t0 = now() + 0.01
    await asyncio.gather(*(schedule(s) for s in streams))
    return runs


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """:func:`run_loop` for any coroutine: on uvloop when installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
