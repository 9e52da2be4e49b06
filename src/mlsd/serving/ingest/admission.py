"""Admission control of the write path: which event requests to refuse, before they cost.

Reads come first: a write the service cannot afford is answered at once with 429 (over the
configured event rate: the client sends too much) or 503 (the service is behind: the durable
log's queue is long, events wait to be applied, or the log is unavailable), each with a
``Retry-After``, instead of queueing until reads starve and the client times out.

The rate is a token bucket per worker process (the service's ``max_event_rate`` split evenly
among its workers, which each get an even share of connections). A request is admitted while
the bucket is not empty and then takes one token per event, so the bucket may go into debt by
one batch; requests that arrive during the debt are refused before their body is read. Why
debt rather than a check per event count: the count is known only after the body is parsed,
and refusing before reading it is what keeps shedding cheap.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Refusal:
    """Why a write is refused: ``status`` 429 or 503, ``reason`` (a metric label),
    ``detail`` (the response's text) and ``retry_after_s`` (whole seconds, >= 1)."""

    status: int
    reason: str
    detail: str
    retry_after_s: int


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` banked; thread-safe. ``rate`` 0: no
    limit."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate < 0:
            raise ValueError(f"rate {rate}; expected >= 0")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(rate, 1.0))
        self.tokens = self.burst
        self._t = time.monotonic()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self._t) * self.rate)
        self._t = now

    def available(self) -> bool:
        """Whether a request may start (the bucket is not in debt)."""
        if self.rate == 0:
            return True
        with self._lock:
            self._refill()
            return self.tokens > 0

    def take(self, n: int) -> None:
        """Take ``n`` tokens (the bucket may go into debt)."""
        if self.rate == 0:
            return
        with self._lock:
            self._refill()
            self.tokens -= n

    def wait_s(self) -> float:
        """Seconds until the bucket is out of debt."""
        if self.rate == 0:
            return 0.0
        with self._lock:
            self._refill()
            return max(0.0, -self.tokens) / self.rate


class Admission:
    """Decides whether an event request may proceed (see the module docstring).

    ``rate``: events per second for this process (0: no limit); ``pending()`` events queued
    for the durable log and ``max_pending`` its bound; ``lag_s()`` how far this process's
    online state is behind the log and ``max_lag_s`` its bound; ``max_in_flight`` write
    requests in progress at once.
    """

    def __init__(
        self,
        *,
        rate: float,
        pending: Callable[[], int],
        max_pending: int,
        lag_s: Callable[[], float],
        max_lag_s: float,
        max_in_flight: int = 256,
    ) -> None:
        self.bucket = TokenBucket(rate, burst=max(rate, 1.0))
        self.pending = pending
        self.max_pending = max_pending
        self.lag_s = lag_s
        self.max_lag_s = max_lag_s
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    def check(self) -> Refusal | None:
        """A refusal for a new request, or None to admit it (then call :meth:`charge` with
        its event count once parsed, and :meth:`done` when it is answered)."""
        if self.in_flight >= self.max_in_flight:
            return Refusal(503, "in_flight", f"{self.in_flight} event requests in progress", 1)
        if self.pending() >= self.max_pending:
            return Refusal(503, "log_queue", "the durable log's queue is full", 1)
        lag = self.lag_s()
        if lag > self.max_lag_s:
            return Refusal(503, "apply_lag", f"events are applied {lag:.1f} s behind the log", 1)
        if not self.bucket.available():
            wait = self.bucket.wait_s()
            return Refusal(
                429,
                "rate",
                f"over the event rate of {self.bucket.rate:g} events/s per worker",
                max(1, math.ceil(wait)),
            )
        return None

    def enter(self) -> None:
        """A request was admitted (one more in flight)."""
        self.in_flight += 1

    def charge(self, n_events: int) -> None:
        """The admitted request carries ``n_events`` events."""
        self.bucket.take(n_events)

    def done(self) -> None:
        """An admitted request was answered."""
        self.in_flight -= 1
