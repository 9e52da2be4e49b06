"""Open-loop load test of the HTTP service (``benchmarks/serving.py``, ``mlsd bench serve``).

Open loop: request *i* is due at ``start + i / rate`` whatever happened to the earlier ones, and
its latency is measured from that due time to the last byte of the response. A slow server
therefore cannot slow the load down and hide its own queueing (coordinated omission, Tene);
requests that wait for a free connection are charged for the wait.

The generator (:mod:`.loadgen`) is one process, one asyncio loop and a minimal HTTP/1.1
keep-alive client on raw streams, so on a small machine it leaves the cores to the server it
measures; its own CPU time is reported.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mlsd.errors import ConfigError, DataError
from mlsd.serving.bundle import code_version, read_manifest
from mlsd.serving.loadgen import drive, recommendation_requests, run_loop
from mlsd.serving.process import ServerProcess

#: Issue 6's goal. Degraded answers (a fallback order, e.g. a request shed under overload) do
#: not count as served: the goal needs none, as it needs no errors.
GOAL = {"rate": 200.0, "duration_s": 60.0, "k": 20, "max_p50_ms": 10.0, "max_p99_ms": 25.0}
USER_CLASSES = ("heavy", "light", "new")


@dataclass
class UserMix:
    """User ids per class and the share of requests for each class."""

    ids: dict[str, np.ndarray]
    shares: dict[str, float]
    source: str

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` (class index, user id) pairs, classes in :data:`USER_CLASSES` order."""
        names = [c for c in USER_CLASSES if self.shares.get(c, 0) > 0 and len(self.ids.get(c, []))]
        p = np.array([self.shares[c] for c in names], dtype=float)
        which = rng.choice(len(names), size=n, p=p / p.sum())
        users = np.empty(n, dtype=np.int64)
        cls = np.empty(n, dtype=np.int8)
        for j, c in enumerate(names):
            m = which == j
            users[m] = rng.choice(self.ids[c], size=int(m.sum()))
            cls[m] = USER_CLASSES.index(c)
        return cls, users


def user_mix(
    *,
    data: str | Path | None = None,
    n_users: int | None = None,
    shares: dict[str, float] | None = None,
) -> UserMix:
    """Heavy, light and new (unknown) users.

    With ``data`` (a dataset directory or events file; by default a Recommender bundle's own
    training log): heavy = the most active 10% of users by event count, light = the less
    active half; new = ids above the largest known one.
    Without: known users are ``0..n_users-1`` split by id (no activity known), new above.
    """
    shares = shares or {"heavy": 0.3, "light": 0.5, "new": 0.2}
    if data is not None:
        import pyarrow.compute as pc

        user_col = _user_ids(Path(data))
        counts = pc.value_counts(user_col).flatten()
        users = counts[0].to_numpy(zero_copy_only=False).astype(np.int64)
        n_ev = counts[1].to_numpy(zero_copy_only=False)
        if len(users) < 4:
            raise DataError(f"{data}: only {len(users)} users with events; need at least 4")
        order = users[np.argsort(-n_ev, kind="stable")]
        heavy = order[: max(1, len(order) // 10)]
        light = order[len(order) // 2 :]
        top = int(users.max()) + 1
        src = f"{data}: heavy = top 10% of {len(users):,} users by events, light = bottom half"
    else:
        n = n_users or 1000
        ids = np.arange(n, dtype=np.int64)
        heavy, light, top = ids[: max(1, n // 10)], ids[n // 10 :], n
        src = f"ids 0..{n - 1} as known users (no activity data given)"
    new = np.arange(top + 1_000_000, top + 1_100_000, dtype=np.int64)
    return UserMix({"heavy": heavy, "light": light, "new": new}, shares, src)


def _user_ids(data: Path) -> Any:
    """The events' user_id column: read alone from Parquet (one column of a large log, not
    the whole table), else through the full loader (CSV, MovieLens...)."""
    import pyarrow.parquet as pq

    path = data / "events.parquet" if data.is_dir() else data
    if path.suffix == ".parquet" and path.is_file():
        try:
            return pq.read_table(path, columns=["user_id"]).column("user_id")
        except (OSError, KeyError, ValueError) as e:
            raise DataError(f"{path}: cannot read the user_id column ({e})") from e
    from mlsd.data.dataset import load_dataset

    return load_dataset(data).events.column("user_id")


def _n_users_from_manifest(manifest: dict[str, Any]) -> int | None:
    def find(obj: Any) -> int | None:
        if isinstance(obj, dict):
            if isinstance(obj.get("n_users"), int):
                return int(obj["n_users"])
            for v in obj.values():
                if (r := find(v)) is not None:
                    return r
        return None

    return find(manifest.get("config", {}))


# ---------------------------------------------------------------------------------------------
# reporting


def _pct(lat_s: np.ndarray) -> dict[str, float | None]:
    x = lat_s[np.isfinite(lat_s)] * 1000
    if not len(x):
        return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    p50, p95, p99 = np.percentile(x, [50, 95, 99])
    return {
        "count": len(x),
        "p50": round(float(p50), 3),
        "p95": round(float(p95), 3),
        "p99": round(float(p99), 3),
        "max": round(float(x.max()), 3),
        "mean": round(float(x.mean()), 3),
    }


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on (same fields as ``benchmarks/_common.py``)."""
    mem_gb = cpu = None
    try:
        with open("/proc/meminfo") as f:
            mem_gb = next(
                round(int(line.split()[1]) / 1024**2, 1)
                for line in f
                if line.startswith("MemTotal:")
            )
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_model": cpu or platform.processor(),
        "memory_gb": mem_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` and its live children (uvicorn workers)."""
    try:
        import psutil
    except ImportError:  # psutil is a dev dependency; the report just leaves the field out
        return None
    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
        return float(sum(sum(q.cpu_times()[:2]) for q in procs))
    except psutil.Error:
        return None


def run_sweep(
    model_dir: str | Path,
    *,
    rates: Sequence[float],
    duration_s: float = 60.0,
    warmup_s: float = 5.0,
    k: int = 20,
    workers: int = 1,
    model_threads: int | None = None,
    candidate_cache: bool = True,
    candidate_cache_dir: str | Path | None = None,
    data: str | Path | None = None,
    seed: int = 0,
    timeout_s: float = 5.0,
    log: Callable[[str], None] = lambda _: None,
) -> list[dict[str, Any]]:
    """Start ``mlsd serve`` on loopback and, at each of ``rates`` in turn against that one
    server process (a ``large`` bundle loads for minutes), warm it up and drive a measured
    open-loop run; stop it. One result per rate, in order (latency percentiles in ms from the
    due time, throughput, errors): one rate is a benchmark, several the latency-throughput
    curve. Each rate draws its users afresh."""
    if not rates or any(r <= 0 for r in rates) or duration_s <= 0 or warmup_s < 0:
        raise ConfigError("rates and duration must be positive and warmup non-negative")
    manifest = read_manifest(model_dir)
    bundled = Path(model_dir) / "artifacts" / "data" / "events.parquet"
    if data is None and bundled.is_file():  # a Recommender bundle carries its training log
        data = bundled
    mix = user_mix(data=data, n_users=_n_users_from_manifest(manifest))
    rng = np.random.default_rng(seed)
    out = []
    # a `large` bundle loads for minutes (1M-video indexes, online features, then the
    # candidates of 200k users retrieved ahead): wait for it
    with ServerProcess(
        model_dir,
        workers=workers,
        model_threads=model_threads,
        candidate_cache=candidate_cache,
        candidate_cache_dir=candidate_cache_dir,
        ready_timeout_s=1800.0,
    ) as server:
        log(f"server ready on {server.url} (pid {server.proc.pid if server.proc else '?'})")
        for rate in rates:
            res = _measure(server, mix, rng, rate, duration_s, warmup_s, k, timeout_s, log)
            res["load"].update(
                workers=workers, model_threads=model_threads, candidate_cache=candidate_cache
            )
            out.append({"model": _model_info(model_dir, manifest), **res})
    return out


def _model_info(model_dir: str | Path, manifest: dict[str, Any]) -> dict[str, Any]:
    return {
        "dir": str(model_dir),
        "kind": manifest["kind"],
        "version": manifest["model_version"],
        "code_version": manifest["code_version"],
        "data_fingerprint": manifest["data_fingerprint"],
    }


def _measure(
    server: ServerProcess,
    mix: UserMix,
    rng: np.random.Generator,
    rate: float,
    duration_s: float,
    warmup_s: float,
    k: int,
    timeout_s: float,
    log: Callable[[str], None],
) -> dict[str, Any]:
    n_warm, n = int(rate * warmup_s), int(rate * duration_s)
    _, warm_users = mix.sample(n_warm, rng)
    cls, users = mix.sample(n, rng)
    host, port = server.host, server.port
    if n_warm:
        log(f"warm-up: {warmup_s:g} s at {rate:g} rps")
        run_loop(
            drive(
                host,
                port,
                recommendation_requests(host, port, warm_users, k),
                rate=rate,
                timeout_s=timeout_s,
            )
        )
    reqs = recommendation_requests(host, port, users, k)
    log(f"measuring: {duration_s:g} s at {rate:g} rps ({n:,} requests)")
    pid = server.proc.pid if server.proc else 0
    cpu0, gen0 = _cpu_seconds(pid), time.process_time()
    run = run_loop(drive(host, port, reqs, rate=rate, timeout_s=timeout_s))
    cpu1, gen1 = _cpu_seconds(pid), time.process_time()
    server_log = server.log_tail(5)

    ok = run.status == 200
    n_errors = int(n - ok.sum())
    lat = _pct(run.latency_s[ok])
    by_class = {
        c: {**_pct(run.latency_s[ok & (cls == i)]), "requests": int((cls == i).sum())}
        for i, c in enumerate(USER_CLASSES)
    }
    server_cpu = None if cpu0 is None or cpu1 is None else round(cpu1 - cpu0, 2)
    meets = (
        n_errors == 0
        and int(run.degraded.sum()) == 0
        and lat["p50"] is not None
        and lat["p99"] is not None
        and lat["p50"] <= GOAL["max_p50_ms"]
        and lat["p99"] <= GOAL["max_p99_ms"]
        and rate >= GOAL["rate"]
        and duration_s >= GOAL["duration_s"]
        and k >= GOAL["k"]
    )
    return {
        "load": {
            "rate_rps": rate,
            "duration_s": duration_s,
            "warmup_s": warmup_s,
            "k": k,
            "endpoint": "POST /v1/recommendations",
            "users": {"source": mix.source, "shares": mix.shares},
            "open_loop": True,
        },
        "requests": n,
        "ok": int(ok.sum()),
        "errors": n_errors,
        "errors_by_kind": run.errors,
        "degraded": int(run.degraded.sum()),
        "achieved_rps": round(float(ok.sum()) / run.elapsed_s, 1) if run.elapsed_s else 0.0,
        "latency_ms": lat,
        "latency_ms_by_user": by_class,
        "peak_connections": run.peak_connections,
        "scheduler_max_lag_ms": round(run.max_lag_s * 1000, 3),
        "cpu_seconds": {
            "server": server_cpu,
            "load_generator": round(gen1 - gen0, 2),
            "wall": round(run.elapsed_s, 2),
        },
        "server_log_tail": server_log,
        "goal": GOAL,
        "meets_goal": bool(meets),
    }


def verdict(res: dict[str, Any]) -> str:
    """``"met"`` or ``"missed"`` for a run at the goal's rate (or above); a run below it
    neither meets nor misses the goal, which is stated at one rate."""
    if res["load"]["rate_rps"] < res["goal"]["rate"]:
        return "below the goal's rate"
    return "met" if res["meets_goal"] else "missed"


def result_document(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with the fields every benchmark result carries (time, code, machine)."""
    return {
        "benchmark": "serving",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_rev": code_version(),
        "machine": machine_info(),
        **payload,
    }


def write_result(payload: dict[str, Any], out: str | Path) -> Path:
    p = Path(out)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(result_document(payload), indent=2) + "\n")
    return p
