"""Prometheus metrics of the service: one registry per app (so tests can run several apps), or,
in a pre-forked worker, the values of every worker of the service summed (multiprocess mode).

Multiprocess mode (:func:`enable_multiprocess`, called by the pre-fork supervisor in each
worker it forks, before the app is built): every metric writes its values to a file per process
in one directory, and a scrape of any worker reads all the files (prometheus-client's
``MultiProcessCollector``). Counters and histograms are summed over every worker that ever ran
(a worker that exits keeps its counts, so totals never go back); each gauge says how it
combines the workers' values (``multiprocess_mode``). Gauges use the ``live*`` modes: the
supervisor drops an exited worker's gauge files (``mark_process_dead``), whereas a plain
``max``/``min`` gauge would keep a dead worker's last value for good (a worker killed while
replaying would leave ``mlsd_online_state_ready`` at 0 forever).

Gauges whose value prometheus-client would read from a callback at each scrape
(``set_function``) cannot be shared between processes; in multiprocess mode the candidate
cache figures are written instead when a worker serves a request (at most once a second) and
when it answers a scrape, so a worker's figures lag its last request by up to a second.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector

if TYPE_CHECKING:  # annotations only: the supervisor imports this module, not the pipeline
    from mlsd.pipeline import Servable, Served, ServingStatus

__all__ = [
    "LATENCY_BUCKETS",
    "MULTIPROC_ENV",
    "ServingMetrics",
    "enable_multiprocess",
    "multiprocess_dir",
]

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

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own variable

# How often, at most, a worker in multiprocess mode writes its candidate cache figures while
# it serves requests (seconds): reading them costs a model call, too much for every request.
CACHE_REFRESH_S = 1.0


def enable_multiprocess(directory: str | Path) -> None:
    """Make this process's metrics write their values under ``directory`` (an existing
    directory shared by the workers, empty when the service starts) for
    :class:`ServingMetrics` to sum across processes.

    Call it in a freshly forked worker before any metric is created: metrics created before
    keep their in-process values and are not seen by other processes. prometheus-client
    chooses its value class when it is imported (from ``PROMETHEUS_MULTIPROC_DIR``), which the
    supervisor has already done before forking, hence both the variable and the class here.
    """
    os.environ[MULTIPROC_ENV] = str(directory)
    values.ValueClass = values.MultiProcessValue()


def multiprocess_dir() -> str | None:
    """The directory this process's metrics write to in multiprocess mode; None when they
    hold their values in memory (the variable set alone, after prometheus-client chose its
    value class, does not switch them: see :func:`enable_multiprocess`)."""
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory or values.ValueClass is values.MutexValue:
        return None
    return directory


class ServingMetrics:
    """Request and stage latencies, fallbacks, errors, candidate counts, events, reloads, the
    serving model's version, ranker and candidate cache, and the event ingestion figures.

    ``fallbacks`` is labelled by :attr:`~mlsd.pipeline.Served.degraded_kind` (a bounded set),
    never by the free-text reason.

    In multiprocess mode (:func:`multiprocess_dir` is set when it is created) the metrics
    belong to no registry and :attr:`registry` holds only the collector that reads every
    process's values: register nothing else in it (a metric also written to the directory
    would be exposed twice).
    """

    def __init__(self) -> None:
        self.multiprocess_dir = mp = multiprocess_dir()
        if mp is None:
            self.registry = r = CollectorRegistry()
            into: CollectorRegistry | None = r
        else:
            self.registry = CollectorRegistry()
            MultiProcessCollector(self.registry, path=mp)
            into = None  # values go to the directory; the collector exposes them
        self.into = into  # where a block's own metrics go (e.g. the drift monitor's)
        self.request_latency = Histogram(
            "mlsd_request_latency_seconds",
            "End-to-end handler latency.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=into,
        )
        self.stage_latency = Histogram(
            "mlsd_stage_latency_seconds",
            "Latency of each pipeline stage.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=into,
        )
        self.fallbacks = Counter(
            "mlsd_fallbacks_total", "Degraded responses by reason.", ["reason"], registry=into
        )
        self.errors = Counter(
            "mlsd_errors_total",
            "Error responses by endpoint and status.",
            ["endpoint", "status"],
            registry=into,
        )
        self.candidates = Histogram(
            "mlsd_candidates",
            "Candidates retrieved per request.",
            buckets=(0, 10, 50, 100, 200, 300, 400, 500, 750, 1000),
            registry=into,
        )
        self.cold_start = Counter(
            "mlsd_cold_start_total", "Requests for unknown users.", registry=into
        )
        self.events = Counter(
            "mlsd_events_total", "Events accepted.", ["event_type"], registry=into
        )
        self.reloads = Counter(
            "mlsd_reloads_total", "Model reloads by outcome.", ["outcome"], registry=into
        )
        # max over the live workers: during a SIGHUP reload the old and the new version both
        # read 1 (both serve) until the last old worker exits
        self.model_info = Gauge(
            "mlsd_model_loaded",
            "1 for the serving model version (each version a live worker serves).",
            ["version"],
            registry=into,
            multiprocess_mode="livemax",
        )
        # summed over the live workers: each worker counts the requests it served
        self.candidate_cache = Gauge(
            "mlsd_candidate_cache_requests",
            "Requests of the serving model that read the candidate cache (hit) or retrieved "
            "online (miss: a new user, or one whose events invalidated theirs); per model.",
            ["result"],
            registry=into,
            multiprocess_mode="livesum",
        )
        # min: 1 only when every live worker's ranker is native code
        self.ranker_compiled = Gauge(
            "mlsd_ranker_compiled",
            "1 when the serving model's ranker runs as native code, 0 on LightGBM.",
            registry=into,
            multiprocess_mode="livemin",
        )
        self._event_metrics(into)

        # labelled children, looked up once each: the per-request path skips the label lookup
        self._stages: dict[str, Any] = {}
        self._fallbacks: dict[str, Any] = {}
        self._status: Callable[[], ServingStatus] | None = None  # multiprocess mode only
        self._cache_written = 0.0

    def _event_metrics(self, into: CollectorRegistry | None) -> None:
        """The event ingestion figures (set by the ingestion code)."""
        self.events_duplicate = Counter(
            "mlsd_events_duplicate_total",
            "Events not stored again: their event_id was already in the log.",
            registry=into,
        )
        self.events_shed = Counter(
            "mlsd_events_shed_total",
            "Event requests refused with 429/503 by reason.",
            ["reason"],
            registry=into,
        )
        self.event_commit = Histogram(
            "mlsd_event_commit_seconds",
            "Durable append (group commit) latency.",
            buckets=LATENCY_BUCKETS,
            registry=into,
        )
        # the worst live worker: lag is what a reader of any worker may see
        self.event_apply_lag_seconds = Gauge(
            "mlsd_event_apply_lag_seconds",
            "Age of the oldest durable event not yet applied to this worker's online state.",
            registry=into,
            multiprocess_mode="livemax",
        )
        self.event_apply_lag_events = Gauge(
            "mlsd_event_apply_lag_events",
            "Durable events not yet applied to this worker's online state.",
            registry=into,
            multiprocess_mode="livemax",
        )
        # min: the service is ready only when every live worker is
        self.online_ready = Gauge(
            "mlsd_online_state_ready",
            "1 when the online state is caught up and its store populated; 0 while replaying "
            "or repopulating.",
            registry=into,
            multiprocess_mode="livemin",
        )
        self.replay_seconds = Gauge(
            "mlsd_replay_seconds",
            "Duration of the last replay of the event log into the online state.",
            registry=into,
            multiprocess_mode="livemax",
        )
        self.repopulate_seconds = Gauge(
            "mlsd_online_store_repopulate_seconds",
            "Duration of the last repopulation of the online store from the online state.",
            registry=into,
            multiprocess_mode="livemax",
        )

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
        if self._status is not None and time.monotonic() - self._cache_written >= CACHE_REFRESH_S:
            self._write_cache()

    def serving(self, model: Servable, previous: Servable | None = None) -> None:
        """``model`` now serves (in place of ``previous``, after a reload)."""
        if previous is not None:
            self.model_info.labels(previous.version).set(0)
        self.model_info.labels(model.version).set(1)
        self.ranker_compiled.set(int(model.status().ranker_compiled))
        if self._status is not None:
            self._write_cache()

    def watch_cache(self, status: Callable[[], ServingStatus]) -> None:
        """Read the candidate cache's hits and misses from ``status()`` (so they follow
        whichever model is live): at each scrape, or in multiprocess mode when requests are
        served and scraped (see the module's docstring)."""
        if self.multiprocess_dir is None:
            self.candidate_cache.labels("hit").set_function(lambda: float(status().cache_hits))
            self.candidate_cache.labels("miss").set_function(lambda: float(status().cache_misses))
            return
        self._status = status
        self._write_cache()

    def _write_cache(self) -> None:
        assert self._status is not None
        s = self._status()
        self.candidate_cache.labels("hit").set(float(s.cache_hits))
        self.candidate_cache.labels("miss").set(float(s.cache_misses))
        self._cache_written = time.monotonic()

    def exposition(self) -> bytes:
        """The Prometheus text exposition of :attr:`registry` (of every worker in
        multiprocess mode, this worker's callback figures written first)."""
        if self._status is not None:
            self._write_cache()
        return generate_latest(self.registry)
