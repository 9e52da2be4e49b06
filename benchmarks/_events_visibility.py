"""Scenario ``visibility``: how soon a new user's events change the answers of every worker.

A brand-new user id; one ``POST /v1/events`` of a few plays; then a recommendation request
(fixed ``context.time``) every 50 ms, each on a fresh connection so that the workers answer in
turn, until every worker (by ``X-Served-By``) has answered ``cold_start: false``. Then 20 more
fresh-connection requests must all be warm and carry the same list of videos.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _events_http import (
    EVENTS_BASE_MS,
    Event,
    events_request,
    fetch,
    json_body,
    recommendation_request,
    served_by,
)
from _events_infra import API_KEY, Population, serve
from _events_stats import Check, at_most, equals, first_warm, same_answers

VISIBLE_WITHIN_S = 1.0


def _ask(host: str, port: int, user: int) -> tuple[str | None, dict[str, Any] | None]:
    """One fresh-connection recommendation: (worker, body); body None when it failed."""
    try:
        reply = fetch(host, port, recommendation_request(host, port, user, close=True))
    except (OSError, ValueError):
        return None, None
    body = json_body(reply) if reply.status == 200 else None
    return served_by(reply), body


def one_user(
    host: str,
    port: int,
    user: int,
    videos: np.ndarray,
    *,
    interval_s: float = 0.05,
    deadline_s: float = 5.0,
    confirm: int = 20,
    workers: int = 2,
) -> dict[str, Any]:
    """Post ``len(videos)`` plays of ``user``, then poll until every worker is warm (or
    ``deadline_s`` after the acknowledgement) and confirm with ``confirm`` more requests."""
    _, before = _ask(host, port, user)
    evs = [
        Event(user, int(v), "play", EVENTS_BASE_MS + 1000 * j, 120.0)
        for j, v in enumerate(videos.tolist())
    ]
    t_send = time.perf_counter()
    ack = fetch(host, port, events_request(host, port, evs, api_key=API_KEY, close=True))
    t_ack = time.perf_counter()
    obs: list[tuple[float, str | None, bool | None]] = []
    k = 0
    while True:
        due = t_ack + k * interval_s
        k += 1
        if (delay := due - time.perf_counter()) > 0:
            time.sleep(delay)
        worker, body = _ask(host, port, user)
        t = time.perf_counter() - t_ack
        obs.append((t, worker, None if body is None else bool(body.get("cold_start"))))
        warm = first_warm(obs, workers)
        if warm["visible_s"] is not None or t > deadline_s:
            break
    answers = [_ask(host, port, user) for _ in range(confirm)]
    return {
        "user": user,
        "events": len(evs),
        "ack_status": ack.status,
        "ack_ms": round((t_ack - t_send) * 1000, 3),
        "cold_before": None if before is None else before.get("cold_start"),
        "polls": len(obs),
        **warm,
        "confirm": {
            **same_answers([b for _, b in answers]),
            "workers": sorted({w or "?" for w, _ in answers}),
        },
    }


def visibility_checks(users: list[dict[str, Any]], workers: int = 2) -> dict[str, Check]:
    """Every user visible on every worker within 1 s of the acknowledgement (the slowest
    counts; a user never visible fails), and every confirmation warm and identical."""
    seen = [u["visible_s"] for u in users]
    worst = None if not seen or any(s is None for s in seen) else max(seen)
    bad = sum(1 for u in users if not u["confirm"]["ok"])
    both = sum(1 for u in users if len(u["confirm"]["workers"]) >= workers)
    return {
        "visible on every worker (slowest, s)": at_most(worst, VISIBLE_WITHIN_S),
        "confirmations not all warm and identical": equals(bad, 0),
        "confirmations that reached every worker": equals(both, len(users)),
        "cold before the events": equals(sum(1 for u in users if u["cold_before"]), len(users)),
    }


def run_visibility(
    model: str | Path,
    pop: Population,
    *,
    users: int = 3,
    plays: int = 5,
    interval_s: float = 0.05,
    confirm: int = 20,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """``users`` brand-new users in turn against one server (memory store, file log)."""
    rng = np.random.default_rng(seed)
    new = rng.choice(pop.new_users, size=users, replace=False)
    out = []
    with tempfile.TemporaryDirectory(prefix="mlsd-visibility-") as tmp:
        server = serve(model, event_log=Path(tmp) / "events.jsonl", log_path=Path(tmp) / "s.log")
        with server:
            for u in new.tolist():
                res = one_user(
                    server.host,
                    server.port,
                    int(u),
                    rng.choice(pop.videos, size=plays, replace=False),
                    interval_s=interval_s,
                    confirm=confirm,
                )
                log(f"user {u}: visible after {res['visible_s']} s; {res['confirm']}")
                out.append(res)
            tail = server.log_tail(5)
    return {
        "settings": {
            "users": users,
            "plays": plays,
            "interval_s": interval_s,
            "confirm": confirm,
            "seed": seed,
        },
        "users": out,
        "checks": visibility_checks(out),
        "server_log_tail": tail,
    }
