"""Scenario ``redis_outage``: the online store (Redis) crashes and comes back empty.

The server runs with ``--online-store redis://`` (a throwaway ``redis-server`` without
persistence) and a file event log. The answers to a fixed probe set are recorded; then reads
and light writes (new users only, so the probes' states do not change) run while Redis is
SIGKILLed, left down ~2 s and restarted empty on the same port; ``/readyz`` is polled every
100 ms throughout. Reported: every read answered 200 (degraded ones counted, by reason),
/readyz 503 from the detection of the empty store until it is repopulated, the time from the
restart to /readyz 200, and the probes' answers equal to those of a reference server that
replays the same log into a fresh Redis database (the writes move video features, so the
answers before the outage are no reference).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _events_http import fetch, get, json_body, recommendation_request
from _events_infra import Population, RedisProcess, copy_log, serve
from _events_mixed import Bodies, summarize, write_requests
from _events_stats import Check, at_most, count_reasons, equals, readiness, segments

from mlsd.serving.loadgen import Stream, drive_streams, exchange, run_coroutine

PROBE_TIMES = ("2026-02-01T20:15:00Z", "2026-02-01T08:00:00Z")


def probe(host: str, port: int, probes: list[tuple[int, str]]) -> list[dict[str, Any]]:
    """The answer to each ``(user, context.time)``: its video ids, degraded flag and status."""
    out = []
    for u, t in probes:
        r = fetch(host, port, recommendation_request(host, port, u, time=t, close=True))
        body = json_body(r) if r.status == 200 else None
        out.append(
            {
                "user": u,
                "time": t,
                "status": r.status,
                "items": None if body is None else [i["video_id"] for i in body["items"]],
                "degraded": None if body is None else body.get("degraded"),
            }
        )
    return out


def probe_diff(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, Any]:
    """Probes whose items differ (or failed, or were degraded, on either side)."""
    bad = [
        {"user": b["user"], "time": b["time"], "before": b["items"], "after": a["items"]}
        for b, a in zip(before, after, strict=True)
        if b["items"] is None or b["items"] != a["items"] or b["degraded"] or a["degraded"]
    ]
    return {"probes": len(before), "different": len(bad), "examples": bad[:5]}


async def poll_readyz(
    host: str,
    port: int,
    t0: float,
    samples: list[tuple[float, int]],
    stop: asyncio.Event,
    interval_s: float = 0.1,
) -> None:
    """``(t, status)`` of ``GET /readyz`` on a fresh connection every ``interval_s`` until
    ``stop`` is set (status 0: no answer within 1 s)."""
    raw = get(host, port, "/readyz")
    k = 0
    while not stop.is_set():
        due = t0 + k * interval_s
        k += 1
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        status = 0
        try:
            async with asyncio.timeout(1.0):
                conn = await asyncio.open_connection(host, port)
                try:
                    status = (await exchange(conn, raw)).status
                finally:
                    conn[1].close()
        except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError):
            pass
        samples.append((time.perf_counter() - t0, status))


def outage_checks(
    reads: dict[str, Any], ready: dict[str, Any], probes: dict[str, Any]
) -> dict[str, Check]:
    non200 = reads["requests"] - reads["status"].get("200", 0)
    return {
        "non-200 read answers": equals(non200, 0),
        "/readyz 503 once the empty store is detected": {
            "value": ready["first_503_s"],
            "limit": "a 503 after the restart",
            "pass": ready["first_503_s"] is not None,
        },
        "/readyz 200 before repopulated (flaps)": equals(ready["flaps"], 0),
        "repopulate s (restart to /readyz 200)": {
            **at_most(ready["repopulate_s"], float("inf")),
            "limit": None,
        },
        "probe answers differing from a replay of the same log": equals(probes["different"], 0),
    }


def run_outage(
    model: str | Path,
    pop: Population,
    *,
    read_rate: float = 75.0,
    write_rate: float = 5.0,
    duration_s: float = 20.0,
    kill_at_s: float = 5.0,
    down_s: float = 2.0,
    settle_s: float = 120.0,
    n_probes: int = 20,
    event_ids: bool = True,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """One outage: load for ``duration_s``; Redis killed at ``kill_at_s``, restarted empty
    ``down_s`` later; /readyz polled until 200 after the restart (at most ``settle_s`` after
    the load); then the probes asked again."""
    rng = np.random.default_rng(seed)
    users = rng.choice(pop.known_users, size=n_probes, replace=False).tolist()
    probes = [(int(u), PROBE_TIMES[i % len(PROBE_TIMES)]) for i, u in enumerate(users)]
    with tempfile.TemporaryDirectory(prefix="mlsd-outage-") as tmp, RedisProcess() as redis:
        server = serve(
            model,
            event_log=Path(tmp) / "events.jsonl",
            online_store=redis.url(),
            log_path=Path(tmp) / "serve.log",
        )
        with server:
            host, port = server.host, server.port
            before = probe(host, port, probes)
            n_r, n_w = int(read_rate * duration_s), int(write_rate * duration_s)
            readers = pop.readers(n_r, rng)
            bodies = Bodies()
            # writes touch new users only: the probes' answers must not change
            writer_pop = Population(pop.new_users, pop.new_users, pop.videos, pop.source)
            streams = [
                Stream(
                    "reads",
                    [recommendation_request(host, port, u) for u in readers],
                    read_rate,
                    timeout_s=2.0,
                    on_reply=bodies.on_read,
                ),
                Stream(
                    "writes",
                    write_requests(
                        writer_pop,
                        n=n_w,
                        batch=1,
                        rng=rng,
                        host=host,
                        port=port,
                        prefix="ro",
                        event_ids=event_ids,
                    ),
                    write_rate,
                    timeout_s=2.0,
                    on_reply=bodies.on_write,
                ),
            ]
            samples: list[tuple[float, int]] = []
            marks: dict[str, float] = {}

            async def outage(t0: float) -> None:
                await asyncio.sleep(max(0.0, t0 + kill_at_s - time.perf_counter()))
                marks["kill_s"] = time.perf_counter() - t0
                await asyncio.to_thread(redis.kill)
                await asyncio.sleep(down_s)
                await asyncio.to_thread(redis.start)
                marks["restart_s"] = time.perf_counter() - t0
                k, r = marks["kill_s"], marks["restart_s"]
                log(f"redis killed at {k:.2f} s, back empty at {r:.2f} s")

            async def go() -> Any:
                t0 = time.perf_counter() + 0.05
                stop = asyncio.Event()
                poller = asyncio.create_task(poll_readyz(host, port, t0, samples, stop))
                runs, _ = await asyncio.gather(
                    drive_streams(host, port, streams, start=t0), outage(t0)
                )
                end = time.perf_counter() + settle_s
                while time.perf_counter() < end:
                    r = readiness(samples, marks["restart_s"])
                    if r["ready_s"] is not None and samples[-1][0] > r["ready_s"] + 1.0:
                        break  # ready again, and still ready a second later
                    await asyncio.sleep(0.2)
                stop.set()
                await poller
                return runs

            runs = run_coroutine(go())
            after = probe(host, port, probes)
            tail = server.log_tail(5)
        # "exact": what a server that never saw the outage answers from the same log (writes
        # to any user move video features, so the answers before the outage are no reference)
        copy_log(Path(tmp) / "events.jsonl", Path(tmp) / "reference.jsonl")
        reference = serve(
            model,
            event_log=Path(tmp) / "reference.jsonl",
            online_store=redis.url(1),
            log_path=Path(tmp) / "reference.log",
        )
        with reference:
            expected = probe(reference.host, reference.port, probes)
    reads = summarize(runs["reads"])
    reads["degraded"] = len(bodies.degraded)
    reads["degraded_share"] = round(len(bodies.degraded) / max(1, reads["requests"]), 4)
    reads["degraded_reasons"] = count_reasons(bodies.degraded)
    ready = readiness(samples, marks["restart_s"])
    diff = probe_diff(expected, after)
    diff["changed_since_before_outage"] = probe_diff(before, after)["different"]
    return {
        "settings": {
            "read_rate": read_rate,
            "write_rate": write_rate,
            "duration_s": duration_s,
            "kill_at_s": kill_at_s,
            "down_s": down_s,
            "probes": n_probes,
            "event_ids": event_ids,
            "seed": seed,
        },
        **marks,
        "reads": reads,
        "writes": {**summarize(runs["writes"]), "events_accepted": bodies.accepted},
        "readyz": {**ready, "timeline": segments(samples)},
        "probes": diff,
        "checks": outage_checks(reads, ready, diff),
        "server_log_tail": tail,
    }
