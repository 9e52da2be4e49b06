"""Prometheus metrics of the service: one registry per app (so tests can run several apps)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mlsd.pipeline import Servable, Served, ServingStatus

# Latency buckets in seconds, dense below 50 ms (the book's p99 budget for this system).
LATENCY_BUCKETS = (
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.025,
    0.03,
    0.04,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class ServingMetrics:
    """Request and stage latencies, fallbacks, errors, candidate counts, events, reloads and
    the serving model's version, ranker and candidate cache.

    ``fallbacks`` is labelled by :attr:`~mlsd.pipeline.Served.degraded_kind` (a bounded set),
    never by the free-text reason.
    """

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.request_latency = Histogram(
            "mlsd_request_latency_seconds",
            "End-to-end handler latency.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_latency = Histogram(
            "mlsd_stage_latency_seconds",
            "Latency of each pipeline stage.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter(
            "mlsd_fallbacks_total", "Degraded responses by reason.", ["reason"], registry=r
        )
        self.errors = Counter(
            "mlsd_errors_total",
            "Error responses by endpoint and status.",
            ["endpoint", "status"],
            registry=r,
        )
        self.candidates = Histogram(
            "mlsd_candidates",
            "Candidates retrieved per request.",
            buckets=(0, 10, 50, 100, 200, 300, 400, 500, 750, 1000),
            registry=r,
        )
        self.cold_start = Counter(
            "mlsd_cold_start_total", "Requests for unknown users.", registry=r
        )
        self.events = Counter("mlsd_events_total", "Events accepted.", ["event_type"], registry=r)
        self.reloads = Counter(
            "mlsd_reloads_total", "Model reloads by outcome.", ["outcome"], registry=r
        )
        self.model_info = Gauge(
            "mlsd_model_loaded", "1 for the serving model version.", ["version"], registry=r
        )
        self.candidate_cache = Gauge(
            "mlsd_candidate_cache_requests",
            "Requests of the serving model that read the candidate cache (hit) or retrieved "
            "online (miss: a new user, or one whose events invalidated theirs); per model.",
            ["result"],
            registry=r,
        )
        self.ranker_compiled = Gauge(
            "mlsd_ranker_compiled",
            "1 when the serving model's ranker runs as native code, 0 on LightGBM.",
            registry=r,
        )

        # labelled children, looked up once each: the per-request path skips the label lookup
        self._stages: dict[str, Any] = {}
        self._fallbacks: dict[str, Any] = {}

    def observe(self, served: Served) -> None:
        """Record one served recommendation: its stages' latencies, candidate count, fallback
        kind (when degraded) and cold start."""
        for stage, ms in served.stage_ms.items():
            h = self._stages.get(stage)
            if h is None:
                h = self._stages[stage] = self.stage_latency.labels(stage)
            h.observe(ms / 1000)
        self.candidates.observe(served.n_candidates)
        kind = served.degraded_kind
        if kind is not None:
            c = self._fallbacks.get(kind)
            if c is None:
                c = self._fallbacks[kind] = self.fallbacks.labels(kind)
            c.inc()
        if served.cold_start:
            self.cold_start.inc()

    def serving(self, model: Servable, previous: Servable | None = None) -> None:
        """``model`` now serves (in place of ``previous``, after a reload)."""
        if previous is not None:
            self.model_info.labels(previous.version).set(0)
        self.model_info.labels(model.version).set(1)
        self.ranker_compiled.set(int(model.status().ranker_compiled))

    def watch_cache(self, status: Callable[[], ServingStatus]) -> None:
        """Read the candidate cache's hits and misses from ``status()`` at each scrape (so they
        follow whichever model is live)."""
        self.candidate_cache.labels("hit").set_function(lambda: float(status().cache_hits))
        self.candidate_cache.labels("miss").set_function(lambda: float(status().cache_misses))
