"""Scenario ``sighup``: a model reload by signal under load, on fresh connections.

``--model`` is a symlink; reads arrive at a fixed rate, each on a NEW connection (so the
latency includes the connect, and every request meets whatever worker is next). At
``switch_at_s`` the symlink is retargeted to a second bundle and the server gets SIGHUP.
Reported: latency p99 and max, errors (must be none), when the answers' ``model_version``
switched, and that no old version answered after the first new one.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _events_http import json_body, recommendation_request
from _events_infra import Population, pid_of, point, relabel_bundle, serve
from _events_stats import Check, equals, latency_ms, status_counts, version_switch

from mlsd.serving.loadgen import Reply, Stream, drive_streams, run_coroutine

CACHE = Path(tempfile.gettempdir()) / "mlsd-events-bench"


def second_bundle(model: str | Path, cache: Path = CACHE) -> Path:
    """A copy of ``model`` that reports another version (``<version>-b``), cached in
    ``cache`` (see :func:`_events_infra.relabel_bundle`)."""
    version = json.loads((Path(model) / "manifest.json").read_text())["model_version"]
    cache.mkdir(parents=True, exist_ok=True)
    return relabel_bundle(model, cache / f"{version}-b", f"{version}-b")


def sighup_checks(switch: dict[str, Any], errors: int, sighup_s: float | None) -> dict[str, Check]:
    return {
        "errors (non-200 or no answer)": equals(errors, 0),
        "old version answers after the switch": equals(switch["old_after_switch"], 0),
        "switched to the new version": {
            "value": switch["first_new_s"],
            "limit": "an answer of the new version",
            "pass": switch["first_new_s"] is not None and sighup_s is not None,
        },
        "answers of another version": equals(switch["other"], 0),
    }


def run_sighup(
    model: str | Path,
    pop: Population,
    *,
    second: str | Path | None = None,
    rate: float = 50.0,
    duration_s: float = 30.0,
    switch_at_s: float = 5.0,
    timeout_s: float = 2.0,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Reads for ``duration_s`` at ``rate`` on fresh connections; retarget + SIGHUP at
    ``switch_at_s``. ``second`` defaults to a relabelled copy of ``model``."""
    first = Path(model).resolve()
    other = Path(second).resolve() if second is not None else second_bundle(first)
    old = json.loads((first / "manifest.json").read_text())["model_version"]
    new = json.loads((other / "manifest.json").read_text())["model_version"]
    if old == new:
        raise ValueError(f"{first} and {other} have the same model_version {old}")
    rng = np.random.default_rng(seed)
    n = int(rate * duration_s)
    versions: list[str | None] = [None] * n
    marks: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="mlsd-sighup-") as tmp:
        link = Path(tmp) / "model"
        point(link, first)
        server = serve(link, event_log=Path(tmp) / "events.jsonl", log_path=Path(tmp) / "s.log")
        with server:
            host, port = server.host, server.port
            reads = [recommendation_request(host, port, u, close=True) for u in pop.readers(n, rng)]

            def on_reply(i: int, reply: Reply) -> None:
                if reply.status == 200:
                    versions[i] = (json_body(reply) or {}).get("model_version")

            stream = Stream(
                "reads", reads, rate, fresh_connections=True, timeout_s=timeout_s, on_reply=on_reply
            )

            async def retarget(t0: float) -> None:
                await asyncio.sleep(max(0.0, t0 + switch_at_s - time.perf_counter()))
                point(link, other)
                os.kill(pid_of(server), signal.SIGHUP)
                marks["sighup_s"] = time.perf_counter() - t0
                log(f"SIGHUP at {marks['sighup_s']:.2f} s: {old} -> {new}")

            async def go() -> Any:
                t0 = time.perf_counter() + 0.05
                runs, _ = await asyncio.gather(
                    drive_streams(host, port, [stream], start=t0), retarget(t0)
                )
                return runs["reads"]

            run = run_coroutine(go())
            tail = server.log_tail(5)
    answered_s = run.due_s + run.latency_s  # NaN where nothing answered
    switch = version_switch(answered_s.tolist(), versions, old, new)
    sighup_s = marks.get("sighup_s")
    if switch["first_new_s"] is not None and sighup_s is not None:
        switch["switch_after_sighup_s"] = round(switch["first_new_s"] - sighup_s, 3)
    errors = int((run.status != 200).sum())
    return {
        "settings": {
            "rate": rate,
            "duration_s": duration_s,
            "switch_at_s": switch_at_s,
            "timeout_s": timeout_s,
            "old": old,
            "new": new,
            "second": str(other),
            "seed": seed,
        },
        "sighup_s": sighup_s,
        "requests": n,
        "status": status_counts(run.status),
        "errors_by_kind": run.errors,
        "latency_ms": latency_ms(run.latency_s),
        "switch": switch,
        "checks": sighup_checks(switch, errors, sighup_s),
        "server_log_tail": tail,
    }
