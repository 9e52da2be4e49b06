"""Model lifecycle benchmark (issue 18): rollback under load through the registry.

    python benchmarks/lifecycle.py retrain --bundle-a V1 --data DATA
    python benchmarks/lifecycle.py rollback --bundle-a V1 [--bundle-b V2]

``retrain``: a fresh registry gets V1 (trained on DATA, a simulated world) as champion; the
world is continued 7 days; ``mlsd retrain`` (the library call) registers v2 with its gate
report and promotes it when every gate passes; then a challenger trained on labels shuffled
within users must be refused with the champion unchanged. Writes
``benchmarks/results/lifecycle_retrain.json`` (time of each step, gates, versions).


A fresh registry gets V1 and V2 (default V2: a relabelled copy of V1) with V1 as champion;
``mlsd serve --model models:/bench@champion --workers 2`` follows the alias. Reads arrive at
``--rate`` requests/s, each on a new connection, for the whole run. At ``promote_at_s``
``mlsd models promote bench 2`` runs (the service loads V2 and swaps); once V2 answers (and
``settle_s`` later) ``mlsd models rollback bench`` runs. Reported: when each version first
answered after its command, the requests that failed or never got an answer (must be 0), V2
answers after the first V1 answer that followed the rollback (must be 0), latency; the
Must-show check: the previous version served within 10 s of the rollback command.
Writes ``benchmarks/results/lifecycle_rollback.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _common import write_result
from _events_http import json_body, recommendation_request
from _events_infra import population
from _events_sighup import second_bundle
from _events_stats import latency_ms, status_counts

from mlsd.serving.loadgen import Reply, Stream, drive_streams, run_coroutine
from mlsd.serving.process import ServerProcess

NAME = "bench"
ROLLBACK_LIMIT_S = 10.0


def _cli(args: list[str], uri: str) -> tuple[float, float]:
    """Run ``mlsd ARGS``; (start, end) in perf_counter seconds."""
    t0 = time.perf_counter()
    env = {**os.environ, "MLSD_REGISTRY_URI": uri}
    subprocess.run([sys.executable, "-m", "mlsd.cli", *args], check=True, env=env,
                   capture_output=True, text=True)  # fmt: skip
    return t0, time.perf_counter()


def run_rollback(
    bundle_a: Path,
    bundle_b: Path | None,
    *,
    rate: float,
    duration_s: float,
    promote_at_s: float,
    settle_s: float,
    workers: int,
    seed: int,
) -> dict[str, Any]:
    a = bundle_a.resolve()
    b = bundle_b.resolve() if bundle_b is not None else second_bundle(a)
    va = json.loads((a / "manifest.json").read_text())["model_version"]
    vb = json.loads((b / "manifest.json").read_text())["model_version"]
    pop = population(a)
    rng = np.random.default_rng(seed)
    n = int(rate * duration_s)
    versions: list[str | None] = [None] * n
    marks: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="mlsd-rollback-") as tmp:
        uri = f"sqlite:///{tmp}/registry/mlflow.db"
        from mlsd.registry import Registry

        reg = Registry(uri)
        reg.register(a, NAME)
        reg.register(b, NAME)
        reg.promote(NAME, 1)
        server = ServerProcess(
            f"models:/{NAME}@champion", workers=workers, ready_timeout_s=600,
            event_log=Path(tmp) / "events.jsonl", log_path=Path(tmp) / "serve.log",
            env={"MLSD_REGISTRY_URI": uri}, extra_args=["--follow-interval", "1"],
        )  # fmt: skip
        with server:
            host, port = server.host, server.port
            reads = [recommendation_request(host, port, u, close=True) for u in pop.readers(n, rng)]
            t_first: dict[str, float] = {}

            def on_reply(i: int, reply: Reply) -> None:
                if reply.status == 200:
                    v = (json_body(reply) or {}).get("model_version")
                    versions[i] = v
                    if v is not None and v not in t_first:
                        t_first[v] = time.perf_counter()

            stream = Stream("reads", reads, rate, fresh_connections=True, timeout_s=2.0,
                            on_reply=on_reply)  # fmt: skip

            async def commands(t0: float) -> None:
                await asyncio.sleep(max(0.0, t0 + promote_at_s - time.perf_counter()))
                s, e = await asyncio.to_thread(_cli, ["models", "promote", NAME, "2"], uri)
                marks.update(promote_start_s=s - t0, promote_end_s=e - t0)
                while vb not in t_first and time.perf_counter() - t0 < duration_s - 15:
                    await asyncio.sleep(0.1)
                await asyncio.sleep(settle_s)
                t_first.pop(va, None)  # the first V1 answer after the rollback counts
                s, e = await asyncio.to_thread(_cli, ["models", "rollback", NAME], uri)
                marks.update(rollback_start_s=s - t0, rollback_end_s=e - t0)

            async def go() -> Any:
                t0 = time.perf_counter() + 0.05
                marks["t0"] = t0
                runs, _ = await asyncio.gather(
                    drive_streams(host, port, [stream], start=t0), commands(t0)
                )
                return runs["reads"]

            run = run_coroutine(go())
            tail = server.log_tail(8)
    t0 = marks.pop("t0")
    answered = run.due_s + run.latency_s
    first_b = (t_first[vb] - t0) if vb in t_first else None
    first_a = (t_first[va] - t0) if va in t_first else None
    after = [v for t, v in zip(answered.tolist(), versions, strict=True)
             if v is not None and first_a is not None and t > first_a]  # fmt: skip
    errors = int((run.status != 200).sum())
    lost = int(np.isnan(run.latency_s).sum())
    rb = marks.get("rollback_start_s")
    served_after = None if first_a is None or rb is None else round(first_a - rb, 3)
    checks = {
        "errors (non-200)": {"value": errors, "limit": 0, "pass": errors == 0},
        "requests without an answer": {"value": lost, "limit": 0, "pass": lost == 0},
        "previous version served after the rollback command (s)": {
            "value": served_after, "limit": ROLLBACK_LIMIT_S,
            "pass": served_after is not None and served_after <= ROLLBACK_LIMIT_S,
        },
        "promoted version answers after the rollback took effect": {
            "value": sum(v == vb for v in after), "limit": 0,
            "pass": first_a is not None and not any(v == vb for v in after),
        },
    }  # fmt: skip
    return {
        "settings": {"rate": rate, "duration_s": duration_s, "promote_at_s": promote_at_s,
                     "settle_s": settle_s, "workers": workers, "seed": seed,
                     "v1": va, "v2": vb, "bundle_a": str(a), "bundle_b": str(b),
                     "follow_interval_s": 1.0},
        "marks_s": {k: round(v, 3) for k, v in marks.items()},
        "first_v2_answer_s": None if first_b is None else round(first_b, 3),
        "first_v1_answer_after_rollback_s": None if first_a is None else round(first_a, 3),
        "rollback_served_after_command_s": served_after,
        "requests": n,
        "status": status_counts(run.status),
        "errors_by_kind": run.errors,
        "latency_ms": latency_ms(run.latency_s),
        "checks": checks,
        "server_log_tail": tail,
    }  # fmt: skip


def run_retrain(bundle_a: Path, data: Path, *, days: int, work: Path) -> dict[str, Any]:
    from mlsd.data.simulate.continuation import continue_world
    from mlsd.orchestration import RetrainConfig, retrain
    from mlsd.registry import Registry

    uri = f"sqlite:///{work}/registry/mlflow.db"
    reg = Registry(uri)
    reg.register(bundle_a, NAME)
    reg.promote(NAME, 1, reason="benchmark: v1")
    t0 = time.perf_counter()
    meta = json.loads((data / "manifest.json").read_text())
    week = continue_world(meta, days)
    week.write(work / "sim-more", manifest=week.meta)
    continue_s = time.perf_counter() - t0
    base = {"name": NAME, "registry_uri": uri, "new": [str(work / "sim-more")],
            "work_dir": str(work / "runs")}  # fmt: skip
    runs: dict[str, Any] = {}
    for label, extra in (
        ("retrain", {"auto_promote": True}),
        ("shuffled labels", {"auto_promote": True, "challenger_fault": "shuffle-labels",
                             "backtest_windows": 0}),
    ):  # fmt: skip
        before = reg.alias(NAME, "champion")
        t0 = time.perf_counter()
        out = retrain(RetrainConfig.model_validate({**base, **extra}), say=print)
        seconds = time.perf_counter() - t0
        after = reg.alias(NAME, "champion")
        runs[label] = {
            "seconds": round(seconds, 1),
            "step_seconds": {k: v.get("step_seconds") for k, v in out.items()
                             if isinstance(v, dict) and "step_seconds" in v},
            "windows": out["evaluate"]["windows"],
            "gates": out["gates"]["gates"],
            "passed": out["gates"]["passed"],
            "failed": out["gates"]["failed"],
            "registered": out["register"]["version"],
            "champion_before": before.version if before else None,
            "champion_after": after.version if after else None,
            "report": out["report"],
        }  # fmt: skip
    r, f = runs["retrain"], runs["shuffled labels"]
    checks = {
        "v2 registered and promoted (gates passed)": {
            "value": f"v{r['registered']}, champion v{r['champion_after']}", "limit": "v2",
            "pass": r["passed"] and r["registered"] == 2 and r["champion_after"] == 2},
        "shuffled-label challenger refused, champion unchanged": {
            "value": f"failed {', '.join(f['failed'])}; champion v{f['champion_after']}",
            "limit": "a failed gate, champion v2",
            "pass": (not f["passed"]) and f["champion_after"] == f["champion_before"]},
    }  # fmt: skip
    return {"settings": {"bundle_a": str(bundle_a), "data": str(data), "days": days},
            "continue_s": round(continue_s, 2), "events_added": week.events.num_rows,
            "runs": runs, "checks": checks}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="scenario", required=True)
    r = sub.add_parser("rollback", help="mlsd models rollback under load")
    r.add_argument("--bundle-a", type=Path, required=True, help="v1 bundle (the champion)")
    r.add_argument("--bundle-b", type=Path, help="v2 bundle (default: a relabelled copy of v1)")
    r.add_argument("--rate", type=float, default=100.0)
    r.add_argument("--duration", type=float, default=75.0)
    r.add_argument("--promote-at", type=float, default=5.0)
    r.add_argument("--settle", type=float, default=5.0)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", default="lifecycle_rollback")
    t = sub.add_parser("retrain", help="retrain on small: v2 promoted, shuffled labels refused")
    t.add_argument("--bundle-a", type=Path, required=True, help="v1 bundle, trained on --data")
    t.add_argument("--data", type=Path, required=True, help="the simulated world v1 saw")
    t.add_argument("--days", type=int, default=7)
    t.add_argument("--work-dir", type=Path, help="default: a temporary directory, removed")
    args = ap.parse_args(argv)
    if args.scenario == "retrain":
        with tempfile.TemporaryDirectory(prefix="mlsd-retrain-") as tmp:
            work = args.work_dir or Path(tmp)
            res = run_retrain(args.bundle_a.resolve(), args.data.resolve(), days=args.days,
                              work=work)  # fmt: skip
        return _finish(res, "lifecycle_retrain")
    res = run_rollback(args.bundle_a, args.bundle_b, rate=args.rate, duration_s=args.duration,
                       promote_at_s=args.promote_at, settle_s=args.settle,
                       workers=args.workers, seed=args.seed)  # fmt: skip
    return _finish(res, args.out)


def _finish(res: dict[str, Any], name: str) -> int:
    for label, c in res["checks"].items():
        print(f"{'PASS' if c['pass'] else 'FAIL'}  {label}: {c['value']} (limit {c['limit']})")
    print(f"wrote {write_result(name, res)}")
    return 0 if all(c["pass"] for c in res["checks"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
