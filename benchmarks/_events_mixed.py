"""Scenario ``mixed``: recommendation reads and event writes at once, open loop.

Reads (``POST /v1/recommendations``, users from the training log plus some new ones) and
writes (``POST /v1/events``, batches of ``write_batch`` events) each run on their own schedule
in one load-generator loop; a request's latency runs from its due time (no coordinated
omission), with a 2 s client timeout. Each configuration of (batch, rate) gets a fresh server.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _events_http import (
    EVENTS_BASE_MS,
    Event,
    event_id,
    events_request,
    json_body,
    recommendation_request,
)
from _events_infra import API_KEY, Population, pid_of, serve
from _events_stats import Check, at_most, equals, latency_ms, status_counts

from mlsd.serving.loadgen import Reply, Stream, StreamRun, drive_streams, run_coroutine

READ_P99_MS = 25.0
SHED_MAX_MS = 50.0
SHED = (429, 503)
# Keep-alive connections each stream opens before its first request and then uses in turn.
# Why: the kernel spreads connections, not requests, over the SO_REUSEPORT workers; a stream
# that needs only one or two connections at 100 rps can put nearly every read on one worker
# (measured: 6,103 reads on one, 397 on the other), as a single client would, not a fleet.
WARM_CONNECTIONS = 16


def write_requests(
    pop: Population,
    *,
    n: int,
    batch: int,
    rng: np.random.Generator,
    host: str,
    port: int,
    prefix: str = "mx",
    event_ids: bool = True,
) -> list[bytes]:
    """``n`` write requests of ``batch`` random events each (known and new users, catalog
    videos, one ms apart from ``EVENTS_BASE_MS``), with event ids unless ``event_ids`` is
    False."""
    users = pop.readers(n * batch, rng, new_share=0.2)
    videos = rng.choice(pop.videos, size=n * batch)
    kinds = rng.choice(["impression", "play", "like"], size=n * batch, p=[0.6, 0.3, 0.1])
    out = []
    for i in range(n):
        evs = []
        for j in range(batch):
            x = i * batch + j
            kind = str(kinds[x])
            evs.append(
                Event(
                    int(users[x]),
                    int(videos[x]),
                    kind,
                    EVENTS_BASE_MS + x,
                    60.0 if kind == "play" else None,
                    event_id(prefix, i, j) if event_ids else None,
                )
            )
        out.append(events_request(host, port, evs, api_key=API_KEY))
    return out


class Bodies:
    """What the answers said: events accepted per write, degraded reasons per read."""

    def __init__(self) -> None:
        self.accepted = 0
        self.stored = 0
        self.degraded: list[str | None] = []

    def on_write(self, i: int, reply: Reply) -> None:
        if reply.status == 200:
            doc = json_body(reply) or {}
            self.accepted += int(doc.get("accepted", 0) or 0)
            self.stored += int(doc.get("stored", 0) or 0)

    def on_read(self, i: int, reply: Reply) -> None:
        if reply.status == 200 and b'"degraded":true' in reply.body:
            self.degraded.append((json_body(reply) or {}).get("degraded_reason"))


def summarize(run: StreamRun) -> dict[str, Any]:
    """Status counts, latency of the 200s and of the shed answers (429/503), timeouts and
    connection errors (any other failed attempt that got no HTTP answer)."""
    st = run.status
    conn_errors = sum(
        n for k, n in run.errors.items() if k != "timeout" and not k.startswith("http")
    )
    return {
        "requests": len(st),
        "status": status_counts(st),
        "latency_ms": latency_ms(run.latency_s[st == 200]),
        "shed": int(np.isin(st, SHED).sum()),
        "shed_latency_ms": latency_ms(run.latency_s[np.isin(st, SHED)]),
        "timeouts": int(run.errors.get("timeout", 0)),
        "connection_errors": int(conn_errors),
        "errors_by_kind": run.errors,
        "scheduler_max_lag_ms": round(run.max_lag_s * 1000, 3),
        "peak_connections": run.peak_connections,
    }


def mixed_checks(reads: dict[str, Any], writes: dict[str, Any]) -> dict[str, Check]:
    """Read p99 <= 25 ms, no read error (non-200 or no answer), every shed write answered
    within 50 ms (vacuously true when none was shed), no write timeout."""
    read_errors = reads["requests"] - reads["status"].get("200", 0)
    shed_max = writes["shed_latency_ms"]["max"]
    shed = (
        at_most(shed_max, SHED_MAX_MS)
        if writes["shed"]
        else {"value": None, "limit": SHED_MAX_MS, "pass": True, "note": "no write was shed"}
    )
    return {
        "read p99 ms": at_most(reads["latency_ms"]["p99"], READ_P99_MS),
        "read errors": equals(read_errors, 0),
        "shed writes answered within (max ms)": shed,
        "write timeouts": equals(writes["timeouts"], 0),
    }


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` and its live children; None without psutil."""
    try:
        import psutil
    except ImportError:
        return None
    try:
        p = psutil.Process(pid)
        return float(sum(sum(q.cpu_times()[:2]) for q in [p, *p.children(recursive=True)]))
    except psutil.Error:
        return None


def one_config(
    model: str | Path,
    pop: Population,
    *,
    batch: int,
    write_rate: float,
    read_rate: float,
    duration_s: float,
    warmup_s: float,
    timeout_s: float,
    max_event_rate: float | None,
    event_ids: bool,
    rng: np.random.Generator,
    threads: int | None = None,
    workdir: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """A fresh server, reads-only warm-up, then the measured mixed load."""
    server = serve(
        model,
        event_log=workdir / f"events-b{batch}.jsonl",
        max_event_rate=max_event_rate,
        threads=threads,
        log_path=workdir / f"serve-b{batch}.log",
    )
    with server:
        host, port = server.host, server.port
        if warmup_s > 0:
            warm = [
                recommendation_request(host, port, u, time=None)
                for u in pop.readers(int(read_rate * warmup_s), rng)
            ]
            run_coroutine(
                drive_streams(
                    host,
                    port,
                    [
                        Stream(
                            "warm",
                            warm,
                            read_rate,
                            timeout_s=timeout_s,
                            warm_connections=WARM_CONNECTIONS,
                        )
                    ],
                )
            )
        n_reads, n_writes = int(read_rate * duration_s), int(write_rate * duration_s)
        reads = [
            recommendation_request(host, port, u, time=None) for u in pop.readers(n_reads, rng)
        ]
        writes = write_requests(
            pop,
            n=n_writes,
            batch=batch,
            rng=rng,
            host=host,
            port=port,
            prefix=f"mx{batch}",
            event_ids=event_ids,
        )
        bodies = Bodies()
        streams = [
            Stream(
                "reads",
                reads,
                read_rate,
                timeout_s=timeout_s,
                on_reply=bodies.on_read,
                warm_connections=WARM_CONNECTIONS,
            ),
            Stream(
                "writes",
                writes,
                write_rate,
                timeout_s=timeout_s,
                on_reply=bodies.on_write,
                warm_connections=WARM_CONNECTIONS,
            ),
        ]
        log(f"batch {batch} at {write_rate:g}/s + reads at {read_rate:g}/s for {duration_s:g} s")
        pid = pid_of(server)
        cpu0, gen0, t0 = cpu_seconds(pid), time.process_time(), time.perf_counter()
        runs = run_coroutine(drive_streams(host, port, streams))
        wall = time.perf_counter() - t0
        cpu1, gen1 = cpu_seconds(pid), time.process_time()
        tail = server.log_tail(5)
    r, w = summarize(runs["reads"]), summarize(runs["writes"])
    r["degraded"] = len(bodies.degraded)
    w["events_accepted"] = bodies.accepted
    w["events_stored"] = bodies.stored
    w["accepted_events_per_s"] = round(bodies.accepted / duration_s, 1)
    return {
        "write_batch": batch,
        "write_rate": write_rate,
        "read_rate": read_rate,
        "reads": r,
        "writes": w,
        "cpu_seconds": {
            "server": None if cpu0 is None or cpu1 is None else round(cpu1 - cpu0, 2),
            "load_generator": round(gen1 - gen0, 2),
            "wall": round(wall, 2),
        },
        "checks": mixed_checks(r, w),
        "server_log_tail": tail,
    }


def run_mixed(
    model: str | Path,
    pop: Population,
    *,
    configs: Sequence[tuple[int, float]] = ((1, 500.0), (50, 200.0)),
    read_rate: float = 100.0,
    duration_s: float = 60.0,
    warmup_s: float = 5.0,
    timeout_s: float = 2.0,
    max_event_rate: float | None = None,
    threads: int | None = None,
    event_ids: bool = True,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every (write batch, write rate) configuration in turn; the checks of each, prefixed
    with ``BATCHxRATE:``."""
    rng = np.random.default_rng(seed)
    out = []
    with tempfile.TemporaryDirectory(prefix="mlsd-mixed-") as tmp:
        for batch, rate in configs:
            out.append(
                one_config(
                    model,
                    pop,
                    batch=batch,
                    write_rate=rate,
                    read_rate=read_rate,
                    duration_s=duration_s,
                    warmup_s=warmup_s,
                    timeout_s=timeout_s,
                    max_event_rate=max_event_rate,
                    event_ids=event_ids,
                    rng=rng,
                    threads=threads,
                    workdir=Path(tmp),
                    log=log,
                )
            )
    checks = {
        f"{c['write_batch']}x{c['write_rate']:g}: {k}": v
        for c in out
        for k, v in c["checks"].items()
    }
    return {
        "settings": {
            "configs": [list(c) for c in configs],
            "read_rate": read_rate,
            "duration_s": duration_s,
            "warmup_s": warmup_s,
            "timeout_s": timeout_s,
            "max_event_rate": max_event_rate,
            "threads": threads,
            "event_ids": event_ids,
            "seed": seed,
            "users": pop.source,
        },
        "configs": out,
        "checks": checks,
    }
