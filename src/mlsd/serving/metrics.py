"""Prometheus metrics of the service: one registry per app (so tests can run several apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
    """Request and stage latencies, fallbacks, errors, candidate counts, events."""

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
