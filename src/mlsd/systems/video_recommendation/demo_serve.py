"""The demo's step 6 on loopback: start ``mlsd serve`` on the model bundle, send a few requests
(a heavy user with explanations, a typical user, an unknown user), print the heavy user's recent
history beside the explained recommendations, and stop the service."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mlsd.data.dataset import Dataset
from mlsd.errors import MlsdError
from mlsd.pipeline import Recommender

__all__ = ["free_port", "serve_and_query", "start_server", "stop_server"]


def free_port() -> int:
    """A TCP port free on loopback now (another process may take it before it is bound)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    bundle: Path, port: int, log_path: Path, api_key: str, *, candidate_cache: bool
) -> subprocess.Popen[bytes]:
    """``mlsd serve`` of ``bundle`` on loopback ``port`` in a child process, logging served
    events to ``log_path`` and its stderr to ``log_path`` with suffix ``.server.log``. Returns
    at once: :func:`serve_and_query` waits until it is ready."""
    env = dict(os.environ, MLSD_API_KEY=api_key)
    cmd = [
        sys.executable,
        "-m",
        "mlsd.cli",
        "serve",
        "--model",
        str(bundle),
        "--port",
        str(port),
        "--event-log",
        str(log_path),
    ]
    if not candidate_cache:
        cmd.append("--no-candidate-cache")
    with open(log_path.with_suffix(".server.log"), "wb") as err:  # the child keeps its own fd
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)


def stop_server(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """Stop the service as Ctrl-C would (SIGINT), killing it after ``timeout_s``."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()


def _wait_ready(
    url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 180.0
) -> None:
    import httpx

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if proc.poll() is not None:
            raise MlsdError(f"the service exited with status {proc.returncode}; see {log}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise MlsdError(f"the service was not ready after {timeout_s:.0f} s")


def serve_and_query(
    proc: subprocess.Popen[bytes],
    rec: Recommender,
    ds: Dataset,
    port: int,
    out: Path,
    *,
    keep: bool,
    say: Callable[[str], None],
    console: Any,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Wait for the service ``proc`` on ``port``, then recommend 10 videos to a heavy user
    (explained), a typical one and an unknown one. Returns the three response bodies and one
    line per request for the report; with a rich ``console``, prints the heavy user's history
    and recommendations; with ``keep``, serves until Ctrl-C. Raises MlsdError if the service
    exits or is not ready within 180 s."""
    import httpx

    url = f"http://127.0.0.1:{port}"
    lines: list[str] = []
    served: list[dict[str, Any]] = []
    say(f"starting the service on {url} ...")
    _wait_ready(url, proc, (out / "events.jsonl").with_suffix(".server.log"))
    users = rec.history_.users()
    lengths = rec.history_.lengths(users)
    heavy = int(users[np.argmax(lengths)])
    picks = [heavy, int(users[len(users) // 2]), 10**9]  # heavy, typical, unknown user
    with httpx.Client(base_url=url, timeout=10.0) as client:
        for u in picks:
            t0 = time.perf_counter()
            r = client.post(
                "/v1/recommendations",
                json={
                    "user_id": u,
                    "k": 10,
                    "context": {"device": "mobile", "surface": "home"},
                    "explain": u == heavy,
                },
            )
            ms = (time.perf_counter() - t0) * 1000
            body = r.json()
            served.append(body)
            lines.append(
                f"user {u}: HTTP {r.status_code} in {ms:.1f} ms, {len(body.get('items', []))} "
                f"items, degraded={body.get('degraded')}, cold_start={body.get('cold_start')}"
            )
    if console is not None:
        _print_user(console, rec, ds, heavy, served[0])
    if keep:
        say(f"serving on {url} (Ctrl-C to stop)")
        with contextlib.suppress(KeyboardInterrupt):
            proc.wait()
    return served, lines


def _print_user(
    console: Any, rec: Recommender, ds: Dataset, user: int, body: dict[str, Any]
) -> None:
    from rich.table import Table as RichTable

    vids = ds.videos
    vid = np.asarray(vids.column("video_id").to_numpy(zero_copy_only=False))
    topic = np.asarray(vids.column("topic").to_numpy(zero_copy_only=False), dtype=object)
    title = (
        np.asarray(vids.column("title").to_numpy(zero_copy_only=False), dtype=object)
        if "title" in vids.column_names
        else np.full(len(vid), "", object)
    )
    order = np.argsort(vid)

    def info(v: int) -> tuple[str, str]:
        i = order[np.searchsorted(vid[order], v)]
        return str(topic[i]), str(title[i])[:40]

    hist = rec.history_of(user, 8)
    t = RichTable(title=f"user {user}: recent valid watches")
    t.add_column("video")
    t.add_column("topic")
    t.add_column("title")
    for v in hist.tolist():
        t.add_row(str(v), *info(v))
    console.print(t)
    t = RichTable(title=f"user {user}: recommendations (explained)")
    for c in ("#", "video", "topic", "score", "source", "why"):
        t.add_column(c)
    for i, it in enumerate(body.get("items", [])[:10], 1):
        expl = it.get("explanation") or {}
        comp = expl.get("components") or {}
        why = ", ".join(
            f"{k}={v:.2f}" for k, v in comp.items() if k.startswith("p_") or k == "two_tower_score"
        )
        acts = expl.get("actions") or []
        if acts:
            why += "; " + "; ".join(acts)
        flag = " (explore)" if it.get("exploration") else ""
        t.add_row(
            str(i),
            str(it["video_id"]),
            info(int(it["video_id"]))[0],
            f"{it['score']:.3f}",
            it.get("source", "") + flag,
            why,
        )
    console.print(t)
