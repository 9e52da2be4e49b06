"""Online-experiment benchmark (issue 19), in process:

    python benchmarks/experiments.py aa --model BUNDLE --data DATA [--days 7] [--n 200]

The closed loop runs ``--days`` simulated days after DATA (the world the bundle was trained
on), every visitor served by the bundle (prepared as ``mlsd serve`` prepares it). On that one
run, ``--n`` A/A experiments split the visitors 50/50 by their own salts: false-positive rate
of Welch's test at the horizon and of the mSPRT peeked daily (alpha 0.05). Also: SRM detection
when 5% of one arm's exposure logs (slates served) are dropped, in 100 splits; and CUPED on
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
import pyarrow as pa
import pyarrow.compute as pc
from _common import write_result

from mlsd.config import LabelConfig
from mlsd.data.dataset import load_dataset
from mlsd.data.labels import positives
from mlsd.experiments import assign, cuped, difference, srm
from mlsd.experiments.loop import aa_experiments, closed_loop
from mlsd.serving.bundle import load_bundle
from mlsd.serving.server import prepare

DAY_MS = 86_400_000


def pre_period(data: Path, user_ids: np.ndarray, days: int) -> np.ndarray:
    """Each user's valid watches in the last ``days`` of the logged window."""
    ds = load_dataset(data)
    pos = positives(ds.events, ds.videos, LabelConfig(), include_likes=False)
    t = pc.cast(pos.column("timestamp"), pa.int64()).to_numpy()
    end = int(pc.cast(ds.events.column("timestamp"), pa.int64()).to_numpy().max())
    users = pos.column("user_id").to_numpy()[t > end - days * DAY_MS]
    counts = np.bincount(users, minlength=int(user_ids.max()) + 1)
    return counts[user_ids].astype(np.float64)


def run_aa(model: Path, data: Path, *, days: int, n: int, seed: int) -> dict[str, Any]:
    meta = json.loads((data / "manifest.json").read_text())
    t0 = time.perf_counter()
    served = prepare(load_bundle(model))
    prepare_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    loop = closed_loop(meta, [served], days=days, seed=seed, say=print)
    loop_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    aa = aa_experiments(loop, n)
    aa_s = time.perf_counter() - t0

    rng = np.random.default_rng(seed)
    slates = loop.metrics["requests"].sum(axis=1)
    detected = 0
    for j in range(100):
        arm = assign(loop.user_ids, f"srm-{j}", [0.5, 0.5])
        a, b = int(slates[arm == 0].sum()), int(slates[arm == 1].sum())
        detected += srm([a, int(rng.binomial(b, 0.95))], [0.5, 0.5]).alarm

    y = loop.metrics["valid_watches"].sum(axis=1)
    x = pre_period(data, loop.user_ids, days)
    arm = assign(loop.user_ids, "cuped", [0.5, 0.5])
    adj, theta, reduction = cuped(y, x)
    raw, better = difference(y[arm == 0], y[arm == 1]), difference(adj[arm == 0], adj[arm == 1])
    checks = {
        "A/A fixed-horizon FPR in [0.03, 0.07]": {
            "value": aa["fixed_horizon_fpr"], "limit": "0.03-0.07",
            "pass": 0.03 <= aa["fixed_horizon_fpr"] <= 0.07},
        "A/A sequential FPR (daily peeks) <= 0.05": {
            "value": float(aa["sequential_fpr"]), "limit": 0.05,
            "pass": aa["sequential_fpr"] <= 0.05},
        "SRM: 5% of one arm's exposures dropped, detected in >= 95 of 100": {
            "value": detected, "limit": 95, "pass": detected >= 95},
    }  # fmt: skip
    return {
        "settings": {"model": str(model), "data": str(data), "days": days, "experiments": n,
                     "seed": seed},
        "seconds": {"prepare": round(prepare_s, 1), "loop": round(loop_s, 1),
                    "loop_per_day": [round(s, 1) for s in loop.seconds], "aa": round(aa_s, 2)},
        "visitors": len(loop.user_ids),
        "slates": int(slates.sum()),
        "valid_watches_per_visitor": float(y.mean()),
        "aa": {k: float(v) if isinstance(v, np.floating) else v for k, v in aa.items()},
        "srm_detected_of_100": detected,
        "cuped": {"theta": theta, "variance_reduction": reduction,
                  "ci_width_raw": raw.width, "ci_width_cuped": better.width,
                  "covariate": f"valid watches in the last {days} days of the log"},
        "checks": checks,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="scenario", required=True)
    a = sub.add_parser("aa", help="A/A false-positive rates, SRM detection, CUPED")
    a.add_argument("--model", type=Path, required=True)
    a.add_argument("--data", type=Path, required=True)
    a.add_argument("--days", type=int, default=7)
    a.add_argument("--n", type=int, default=200)
    a.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    res = run_aa(args.model, args.data, days=args.days, n=args.n, seed=args.seed)
    for name, c in res["checks"].items():
        print(f"{'PASS' if c['pass'] else 'FAIL'}  {name}: {c['value']} (limit {c['limit']})")
    print("CUPED:", res["cuped"])
    print(f"wrote {write_result('experiments_aa', res)}")
    return 0 if all(c["pass"] for c in res["checks"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
