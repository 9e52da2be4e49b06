"""Online-experiment benchmarks (issue 19):

    python benchmarks/experiments.py aa --model BUNDLE --data DATA [--days 7] [--n 200]
    python benchmarks/experiments.py ab --model BUNDLE --data DATA [--days 7] [--workers 2]
    python benchmarks/experiments.py pairs --model BUNDLE --data DATA --offline-data NEXT

``ab``: the pipeline vs MostPop through a real ``mlsd serve --experiment`` over HTTP (requests
with the simulated time, events through ``POST /v1/events``); writes experiments_ab.json.
``pairs``: MostPop, ALS, the pipeline and the pipeline without exploration in process, each
arm's offline NDCG@20 on NEXT (``mlsd simulate --continue DATA``: the days after the training
data, logged by the platform's policy) beside each pair's online lift; experiments_pairs.json.

The closed loop runs ``--days`` simulated days after DATA (the world the bundle was trained
on), every visitor served by the bundle (prepared as ``mlsd serve`` prepares it). On that one
run, ``--n`` A/A experiments split the visitors 50/50 by their own salts: false-positive rate
of Welch's test at the horizon and of the mSPRT peeked daily (alpha 0.05). Also SRM (see
:func:`srm_trials`: A/A alarms on users and, for contrast, on slates; detection of 5% of one
arm's users' exposure logs lost, in 100 splits of a 50,000-user world); and CUPED on
the primary metric (valid watches per user), with the user's valid watches in the last
``--days`` of DATA as the pre-period covariate: variance reduction and the CI width before
and after. Writes ``benchmarks/results/experiments_aa.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _common import write_result

from mlsd.experiments import assign, cuped, difference, srm
from mlsd.experiments.analysis import pre_period
from mlsd.experiments.loop import aa_experiments, closed_loop
from mlsd.serving.bundle import load_bundle
from mlsd.serving.server import prepare

DAY_MS = 86_400_000


SRM_USERS = 50_000  # the population of the detection trials (see srm_trials)


def srm_trials(loop: Any, *, seed: int, trials: int = 100) -> dict[str, Any]:
    """Sample-ratio mismatch, counted on the unit of assignment (users with an exposure).

    Validity (A/A, the loop's visitors, ``trials`` salts): the naive chi-square on slates
    (a user's slates are not independent) against the one on users. Detection: an arm whose
    exposure logs are lost for 5% of its users (a client build that fails to log) among the
    visitors of 7 days of a simulated world of SRM_USERS users, at p < 0.001, in ``trials``
    splits. Power needs ~19k users per arm for a 5% loss (the chi-square's non-centrality
    0.00128 n must reach 24.4 for 95% power at 0.001), more than ``small``'s 5,000 users."""
    from mlsd.config import SimulationConfig
    from mlsd.data.simulate import requests
    from mlsd.data.simulate.world import build_world

    slates = loop.metrics["requests"].sum(axis=1)
    naive = users_alarms = 0
    for j in range(trials):
        arm = assign(loop.user_ids, f"srm-aa-{j}", [0.5, 0.5])
        naive += srm([int(slates[arm == 0].sum()), int(slates[arm == 1].sum())], [0.5, 0.5]).alarm
        users_alarms += srm(np.bincount(arm, minlength=2).tolist(), [0.5, 0.5]).alarm
    cfg = SimulationConfig.for_scale("small", seed=seed, n_users=SRM_USERS, days=7)
    world = build_world(cfg)
    users, *_ = requests(world, np.random.default_rng(seed))
    visitors = np.unique(users) + 1
    rng = np.random.default_rng(seed + 1)
    detected = aa_alarms = 0
    for j in range(trials):
        arm = assign(visitors, f"srm-{j}", [0.5, 0.5])
        counts = np.bincount(arm, minlength=2)
        aa_alarms += srm(counts.tolist(), [0.5, 0.5]).alarm
        kept_b = int(rng.binomial(counts[1], 0.95))  # 5% of arm b's users' logs lost
        detected += srm([int(counts[0]), kept_b], [0.5, 0.5]).alarm
    return {
        "aa_splits": trials,
        "aa_alarms_users_small": users_alarms,
        "aa_alarms_naive_slates_small": naive,
        "world_users": SRM_USERS,
        "visitors": len(visitors),
        "aa_alarms_users_world": aa_alarms,
        "detected_of_100": detected,
    }


def run_aa(model: Path, data: Path, *, days: int, n: int, seed: int) -> dict[str, Any]:
    meta = json.loads((data / "manifest.json").read_text())
    t0 = time.perf_counter()
    served = prepare(load_bundle(model))
    prepare_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    loop = closed_loop(meta, served, days=days, seed=seed, say=print)
    loop_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    aa = aa_experiments(loop, n)
    aa_s = time.perf_counter() - t0

    srm_part = srm_trials(loop, seed=seed)
    detected = srm_part["detected_of_100"]

    y = loop.metrics["valid_watches"].sum(axis=1)
    x = pre_period(data, loop.user_ids, days)
    arm = assign(loop.user_ids, "cuped", [0.5, 0.5])
    adj, theta, reduction = cuped(y, x)
    raw, better = difference(y[arm == 0], y[arm == 1]), difference(adj[arm == 0], adj[arm == 1])
    checks = {
        "A/A fixed-horizon FPR in [0.03, 0.07]": {
            "value": aa["fixed_horizon_fpr"], "limit": "0.03-0.07",
            "pass": bool(0.03 <= aa["fixed_horizon_fpr"] <= 0.07)},
        "A/A sequential FPR (daily peeks) <= 0.05": {
            "value": float(aa["sequential_fpr"]), "limit": 0.05,
            "pass": bool(aa["sequential_fpr"] <= 0.05)},
        "SRM: 5% of one arm's exposure logs lost, detected in >= 95 of 100": {
            "value": detected, "limit": 95, "pass": detected >= 95},
        "SRM on users: A/A alarms over the splits <= 1%": {
            "value": aa["srm_alarms"] / n, "limit": 0.01, "pass": aa["srm_alarms"] / n <= 0.01},
    }  # fmt: skip
    return {
        "settings": {"model": str(model), "data": str(data), "days": days, "experiments": n,
                     "seed": seed},
        "seconds": {"prepare": round(prepare_s, 1), "loop": round(loop_s, 1),
                    "loop_per_day": [round(s, 1) for s in loop.seconds], "aa": round(aa_s, 2)},
        "visitors": len(loop.user_ids),
        "slates": int(loop.metrics["requests"].sum()),
        "valid_watches_per_visitor": float(y.mean()),
        "aa": {k: float(v) if isinstance(v, np.floating) else v for k, v in aa.items()},
        "srm": srm_part,
        "cuped": {"theta": theta, "variance_reduction": reduction,
                  "ci_width_raw": raw.width, "ci_width_cuped": better.width,
                  "covariate": f"valid watches in the last {days} days of the log"},
        "checks": checks,
    }  # fmt: skip


AB_CONFIG = """name: pipeline-vs-mostpop
salt: ab-http-1
arms:
  - name: most-popular
    policy: most-popular
  - name: pipeline
metrics: [valid_watches, watch_seconds, plays, likes, dislikes, ctr]
mde: 0.02
"""

PAIRS_CONFIG = """name: offline-vs-online
salt: pairs-1
arms:
  - name: most-popular
    policy: most-popular
  - name: als
    policy: als
  - name: pipeline
  - name: pipeline-no-exploration
    rerank: {exploration: {enabled: false}}
metrics: [valid_watches, watch_seconds, plays, likes, dislikes, ctr]
mde: 0.02
"""


def _mlsd(*args: str, env: dict[str, str] | None = None) -> None:
    import os
    import subprocess

    exe = str(Path(sys.executable).with_name("mlsd"))
    subprocess.run([exe, *args], check=True, env={**os.environ, **(env or {})})


def run_ab(model: Path, data: Path, *, days: int, seed: int, workers: int) -> dict[str, Any]:
    """The pipeline vs MostPop through a real ``mlsd serve --experiment`` (HTTP)."""
    import tempfile

    from mlsd.serving.process import ServerProcess

    work = Path(tempfile.mkdtemp(prefix="mlsd-ab-"))
    cfg = work / "ab.yaml"
    cfg.write_text(AB_CONFIG)
    key = "bench-key"
    log = work / "events.jsonl"
    server = ServerProcess(
        model, workers=workers, api_key=key, event_log=log, ready_timeout_s=600,
        log_path=work / "serve.log",
        extra_args=["--experiment", str(cfg), "--max-event-rate", "0"],
    )  # fmt: skip
    t0 = time.perf_counter()
    with server:
        start_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        _mlsd(
            "experiment", "run", "--config", str(cfg), "--data", str(data), "--url", server.url,
            "--days", str(days), "--seed", str(seed), "--out", str(work / "run"),
            "--exposures", str(log) + ".exposures.jsonl", env={"MLSD_API_KEY": key},
        )  # fmt: skip
        loop_s = time.perf_counter() - t0
    a = json.loads((work / "run" / "analysis.json").read_text())
    lift = a["metrics"]["valid_watches"]["vs_control"]["pipeline"]["lift"]
    checks = {
        "lift CI of valid watches per user excludes 0": {
            "value": [lift["low"], lift["high"]],
            "limit": "0 outside",
            "pass": lift["low"] > 0,
        },
        "SRM check passes (exposure log users)": {
            "value": a["srm"]["p_value"],
            "limit": ">= 0.001",
            "pass": not a["srm"]["alarm"],
        },
    }
    return {
        "settings": {
            "model": str(model),
            "data": str(data),
            "days": days,
            "seed": seed,
            "workers": workers,
            "config": AB_CONFIG,
        },
        "seconds": {"service_start": round(start_s, 1), "loop": round(loop_s, 1)},
        "report": str(work / "run" / "report.html"),
        "analysis": a,
        "checks": checks,
    }


def run_pairs(model: Path, data: Path, offline: Path, *, days: int, seed: int) -> dict[str, Any]:
    """Four arms in process (same code path as the service): offline NDCG@20 on the logged
    window ``offline`` beside each pair's online lift."""
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="mlsd-pairs-"))
    cfg = work / "pairs.yaml"
    cfg.write_text(PAIRS_CONFIG)
    t0 = time.perf_counter()
    _mlsd(
        "experiment",
        "run",
        "--config",
        str(cfg),
        "--data",
        str(data),
        "--model",
        str(model),
        "--days",
        str(days),
        "--seed",
        str(seed),
        "--offline-data",
        str(offline),
        "--out",
        str(work / "run"),
    )
    a = json.loads((work / "run" / "analysis.json").read_text())
    off = json.loads((work / "run" / "offline.json").read_text())
    pairs = [
        {
            "a": p["a"],
            "b": p["b"],
            "offline_ndcg_a": off[p["a"]],
            "offline_ndcg_b": off[p["b"]],
            "online_lift": p["lift"],
        }
        for p in a["pairs"]
    ]
    agree = sum(
        (p["offline_ndcg_b"] > p["offline_ndcg_a"]) == (p["online_lift"]["value"] > 0)
        for p in pairs
    )
    return {
        "settings": {
            "model": str(model),
            "data": str(data),
            "offline_data": str(offline),
            "days": days,
            "seed": seed,
            "config": PAIRS_CONFIG,
        },
        "seconds": {"total": round(time.perf_counter() - t0, 1)},
        "report": str(work / "run" / "report.html"),
        "offline_ndcg": off,
        "pairs": pairs,
        "direction_agrees": agree,
        "analysis": a,
        "checks": {
            "offline-vs-online table for >= 3 pairs": {
                "value": len(pairs),
                "limit": 3,
                "pass": len(pairs) >= 3,
            }
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="scenario", required=True)
    common = argparse.ArgumentParser(add_help=False)  # what every scenario takes
    common.add_argument("--model", type=Path, required=True)
    common.add_argument("--data", type=Path, required=True)
    common.add_argument("--days", type=int, default=7)
    common.add_argument("--seed", type=int, default=0)
    a = sub.add_parser("aa", parents=[common], help="A/A false-positive rates, SRM, CUPED")
    a.add_argument("--n", type=int, default=200)
    b = sub.add_parser("ab", parents=[common], help="pipeline vs MostPop through HTTP")
    b.add_argument("--workers", type=int, default=2)
    c = sub.add_parser("pairs", parents=[common], help="offline NDCG vs online lift, 4 arms")
    c.add_argument("--offline-data", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.scenario == "ab":
        res = run_ab(args.model, args.data, days=args.days, seed=args.seed, workers=args.workers)
    elif args.scenario == "pairs":
        res = run_pairs(args.model, args.data, args.offline_data, days=args.days, seed=args.seed)
    else:
        res = run_aa(args.model, args.data, days=args.days, n=args.n, seed=args.seed)
    for name, c in res["checks"].items():
        print(f"{'PASS' if c['pass'] else 'FAIL'}  {name}: {c['value']} (limit {c['limit']})")
    if "cuped" in res:
        print("CUPED:", res["cuped"])
    print(f"wrote {write_result(f'experiments_{args.scenario}', res)}")
    return 0 if all(c["pass"] for c in res["checks"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
