"""Scenario ``kill9``: writes with retries through a ``kill -9`` of the whole server.

Every write request carries a stable ``Idempotency-Key`` and stable event ids and is sent
again with the same bytes until a 200 acknowledges it (timeouts, resets, refused connections
and 5xx after a backoff, 429/503 after their ``Retry-After``), across the restart. At a random
moment the server's whole process group is SIGKILLed and a new server started on the same log
and port. Then: (a) the log holds every acknowledged event exactly once and nothing never sent;
(b) the restarted server's online state equals that of a reference server started on a copy of
the final log, on both workers of both.
"""

from __future__ import annotations

import asyncio
import email.utils
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from _events_http import (
    EVENTS_BASE_MS,
    Event,
    event_id,
    events_request,
    json_body,
    log_record_key,
    user_states,
)
from _events_infra import (
    API_KEY,
    Population,
    RedisProcess,
    copy_log,
    pid_of,
    read_log,
    serve,
)
from _events_stats import compare_servers, latency_ms, verify_log

from mlsd.serving.loadgen import Reply, Stream, drive_streams, run_coroutine
from mlsd.serving.process import ServerProcess

EVENT_TYPES = ("impression", "play", "like", "share", "dislike")


@dataclass
class WritePlan:
    """The write requests of one run, each with its key, its events and its raw bytes."""

    keys: list[str]
    events: list[list[Event]]
    raw: list[bytes]

    @property
    def users(self) -> list[int]:
        return sorted({e.user_id for batch in self.events for e in batch})


def plan_writes(
    pop: Population,
    *,
    run_id: str,
    n_requests: int,
    batch: int,
    n_users: int,
    rng: np.random.Generator,
    host: str,
    port: int,
    event_ids: bool = True,
) -> WritePlan:
    """``n_requests`` batches of ``batch`` events over ``n_users`` users (three in four known,
    the rest new), random known videos, timestamps one ms apart from ``EVENTS_BASE_MS`` (so
    every event is unique even without an id). ``event_ids=False`` leaves the ids out (a
    server before issue 16 refuses them); the Idempotency-Key is always sent."""
    n_known = max(1, (3 * n_users) // 4)
    users = np.concatenate(
        [
            rng.choice(pop.known_users, size=min(n_known, len(pop.known_users)), replace=False),
            pop.new_users[: n_users - n_known],
        ]
    )
    keys, events, raw = [], [], []
    ts = EVENTS_BASE_MS
    for i in range(n_requests):
        batch_events = []
        for j in range(batch):
            kind = str(rng.choice(EVENT_TYPES, p=[0.5, 0.3, 0.1, 0.05, 0.05]))
            watch = round(float(rng.uniform(1, 600)), 3) if kind == "play" else None
            eid = event_id(run_id, i, j) if event_ids else None
            batch_events.append(
                Event(int(rng.choice(users)), int(rng.choice(pop.videos)), kind, ts, watch, eid)
            )
            ts += 1
        key = f"{run_id}-{i}"
        keys.append(key)
        events.append(batch_events)
        raw.append(events_request(host, port, batch_events, api_key=API_KEY, idempotency_key=key))
    return WritePlan(keys, events, raw)


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds (an integer; a decimal is accepted) or an
    HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def write_retry(reply: Reply | None, attempts: int, *, cap_s: float = 2.0) -> float | None:
    """The retry policy of the writes: done on 2xx; give up on another 4xx (the request is
    wrong, sending it again cannot help); after ``Retry-After`` on 429/503 (backoff when the
    header is missing); after an exponential backoff from 50 ms, capped at ``cap_s``, on no
    answer (timeout, refused, reset) and on other 5xx."""
    backoff = min(0.05 * 2 ** (attempts - 1), cap_s)
    if reply is None:
        return backoff
    if 200 <= reply.status < 300:
        return None
    if reply.status in (429, 503):
        after = retry_after_s(reply.headers.get("retry-after"))
        return backoff if after is None else min(after, 10.0)
    if reply.status >= 500:
        return backoff
    return None


@dataclass
class Acks:
    """What the 200 answers said, per request."""

    n: int
    acked: np.ndarray = field(init=False)
    stored: np.ndarray = field(init=False)
    duplicates: np.ndarray = field(init=False)
    ack_s: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.acked = np.zeros(self.n, dtype=bool)
        self.stored = np.zeros(self.n, dtype=np.int64)
        self.duplicates = np.zeros(self.n, dtype=np.int64)
        self.ack_s = np.full(self.n, np.nan)

    def on_reply(self, t0: float) -> Callable[[int, Reply], None]:
        def record(i: int, reply: Reply) -> None:
            if reply.status != 200:
                return
            doc = json_body(reply) or {}
            self.acked[i] = True
            self.stored[i] += int(doc.get("stored", 0) or 0)
            self.duplicates[i] += int(doc.get("duplicates", 0) or 0)
            self.ack_s[i] = time.perf_counter() - t0

        return record


def one_run(
    model: str | Path,
    pop: Population,
    *,
    run: int,
    backend: str,
    redis: RedisProcess | None,
    workdir: Path,
    rate: float,
    batch: int,
    duration_s: float,
    kill_window_s: tuple[float, float],
    n_users: int,
    rng: np.random.Generator,
    event_ids: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """One kill-and-restart run against a fresh log; the figures and verifications as a dict."""
    if backend == "redis":
        if redis is None:
            raise ValueError("backend 'redis' needs a RedisProcess")
        import redis as redis_py

        client = redis_py.Redis(host=redis.host, port=redis.port)
        client.flushall()
        client.close()
        event_log, ref_log = redis.url(0), redis.url(1)
    else:
        event_log, ref_log = str(workdir / f"run{run}.jsonl"), str(workdir / f"run{run}-ref.jsonl")
    server = serve(model, event_log=event_log, log_path=workdir / f"run{run}-a.log").start()
    host, port = server.host, server.port
    plan = plan_writes(
        pop,
        run_id=f"k9r{run}",
        n_requests=int(rate * duration_s),
        batch=batch,
        n_users=n_users,
        rng=rng,
        host=host,
        port=port,
        event_ids=event_ids,
    )
    kill_at = float(rng.uniform(*kill_window_s))
    log(f"run {run}: {len(plan.raw)} requests of {batch} at {rate:g}/s; kill -9 at {kill_at:.2f} s")
    restarted: list[ServerProcess] = []
    times: dict[str, float] = {}

    async def crash(t0: float) -> None:
        await asyncio.sleep(max(0.0, t0 + kill_at - time.perf_counter()))
        times["kill_s"] = time.perf_counter() - t0
        await asyncio.to_thread(server.kill)
        new = serve(model, event_log=event_log, port=port, log_path=workdir / f"run{run}-b.log")
        restarted.append(new)
        times["start_s"] = time.perf_counter() - t0
        await asyncio.to_thread(new.start)
        times["ready_s"] = time.perf_counter() - t0

    async def go() -> Any:
        t0 = time.perf_counter() + 0.05
        acks = Acks(len(plan.raw))
        stream = Stream(
            "writes",
            plan.raw,
            rate,
            max_connections=64,
            timeout_s=2.0,
            on_reply=acks.on_reply(t0),
            retry=write_retry,
            give_up_s=600.0,
        )
        runs, _ = await asyncio.gather(drive_streams(host, port, [stream], start=t0), crash(t0))
        return runs["writes"], acks

    try:
        wr, acks = run_coroutine(go())
        final = restarted[-1]
        sent = [e.key for b in plan.events for e in b]
        acked = [e.key for b, ok in zip(plan.events, acks.acked, strict=True) if ok for e in b]
        time.sleep(1.5)  # events reach every worker's online state within ~1 s (the contract)
        sent_set = set(sent)
        log_keys = [log_record_key(r, sent_set) for r in read_log(event_log)]
        log_check = verify_log(log_keys, sent=sent, acked=acked)
        copy_log(event_log, ref_log)
        ref = serve(model, event_log=ref_log, log_path=workdir / f"run{run}-ref.log")
        t_ref = time.perf_counter()
        with ref:
            ref_ready_s = time.perf_counter() - t_ref
            states = _compare(final, ref, plan.users)
    finally:
        for s in (server, *restarted):
            s.stop()
    return {
        "run": run,
        "requests": len(plan.raw),
        "events_sent": len(sent),
        "acked_requests": int(acks.acked.sum()),
        "acked_events": len(acked),
        "stored_events": int(acks.stored.sum()),
        "duplicates_seen": int(acks.duplicates.sum()),
        "retried_requests": int((wr.attempts > 1).sum()),
        "attempts": int(wr.attempts.sum()),
        "errors_by_kind": wr.errors,
        "ack_latency_ms": latency_ms(wr.latency_s[acks.acked]),
        "kill_at_s": _span(times, None, "kill_s"),
        "restart_to_ready_s": _span(times, "kill_s", "ready_s"),
        "start_to_ready_s": _span(times, "start_s", "ready_s"),
        "reference_start_to_ready_s": round(ref_ready_s, 3),
        "log": log_check,
        "online_state": states,
        "server_log_tail": restarted[-1].log_tail(5) if restarted else "",
    }


def _span(times: dict[str, float], start: str | None, end: str) -> float | None:
    """Seconds from mark ``start`` (None: from the load's start) to mark ``end``; None when a
    mark is missing."""
    if end not in times or (start is not None and start not in times):
        return None
    return round(times[end] - (times[start] if start else 0.0), 3)


def _compare(final: ServerProcess, ref: ServerProcess, users: list[int]) -> dict[str, Any]:
    """Both servers' states of ``users`` compared; asked again for up to ~3 s while they differ
    (the events reach the workers asynchronously)."""
    deadline = time.monotonic() + 3.0
    while True:
        got = user_states(final.host, final.port, users, api_key=API_KEY)
        want = user_states(ref.host, ref.port, users, api_key=API_KEY)
        res = compare_servers(got, want)
        if not res["mismatches"] or time.monotonic() > deadline:
            res["servers"] = {"restarted": pid_of(final), "reference": pid_of(ref)}
            return res
        time.sleep(0.5)


def run_kill9(
    model: str | Path,
    pop: Population,
    *,
    runs: int = 5,
    backend: str = "file",
    rate: float = 100.0,
    batch: int = 5,
    duration_s: float = 10.0,
    kill_window_s: tuple[float, float] = (2.0, 8.0),
    n_users: int = 40,
    seed: int = 0,
    event_ids: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """``runs`` kill-and-restart runs on ``backend`` (``file`` or ``redis``); per-run figures
    and the checks: every acknowledged event in the log exactly once, nothing unknown, every
    request acknowledged, and no online-state mismatch in any run."""
    if backend not in ("file", "redis"):
        raise ValueError(f"backend {backend!r}: expected 'file' or 'redis'")
    rng = np.random.default_rng(seed)
    out = []
    with tempfile.TemporaryDirectory(prefix="mlsd-kill9-") as tmp:
        redis = RedisProcess().start() if backend == "redis" else None
        try:
            for r in range(runs):
                out.append(
                    one_run(
                        model,
                        pop,
                        run=r,
                        backend=backend,
                        redis=redis,
                        workdir=Path(tmp),
                        rate=rate,
                        batch=batch,
                        duration_s=duration_s,
                        kill_window_s=kill_window_s,
                        n_users=n_users,
                        rng=rng,
                        event_ids=event_ids,
                        log=log,
                    )
                )
        finally:
            if redis is not None:
                redis.kill()
    return {
        "settings": {
            "runs": runs,
            "backend": backend,
            "write_rate": rate,
            "write_batch": batch,
            "duration_s": duration_s,
            "kill_window_s": list(kill_window_s),
            "users": n_users,
            "seed": seed,
            "event_ids": event_ids,
        },
        "runs": out,
        "checks": kill9_checks(out),
    }


def kill9_checks(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The Must-show checks over all runs (each value summed over the runs)."""

    def total(f: Callable[[dict[str, Any]], int]) -> int:
        return int(sum(f(r) for r in runs))

    unacked = total(lambda r: r["requests"] - r["acked_requests"])
    lost = total(lambda r: r["log"]["missing"])
    dup = total(lambda r: r["log"]["duplicated"])
    unknown = total(lambda r: r["log"]["unknown"])
    mism = total(lambda r: r["online_state"]["mismatches"])
    return {
        "every request acknowledged (unacked)": {
            "value": unacked,
            "limit": 0,
            "pass": unacked == 0,
        },
        "acked events lost from the log": {"value": lost, "limit": 0, "pass": lost == 0},
        "events in the log more than once": {"value": dup, "limit": 0, "pass": dup == 0},
        "events in the log never sent": {"value": unknown, "limit": 0, "pass": unknown == 0},
        "online-state mismatches vs reference": {"value": mism, "limit": 0, "pass": mism == 0},
        "runs": {"value": len(runs), "limit": 1, "pass": len(runs) >= 1},
    }
