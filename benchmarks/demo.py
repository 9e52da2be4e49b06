"""Benchmark: the demo as ``make demo`` runs it, without the HTTP service.

Simulates the platform, validates and describes it, checks training-serving skew, tunes the
baselines, trains the two-stage recommender, evaluates everything on the held-out last period
with a backtest, and writes the report (``mlsd.systems.video_recommendation.demo.run_demo``).
Records each model's recall@20 and ndcg@20, the candidate recall of each retrieval source and
of the merged list, the seconds of each stage and of the whole run, and the machine, in
``benchmarks/results/demo.json`` (the README's demo table is generated from it).

    python benchmarks/demo.py                    # small, seed 0, in a temporary directory
    python benchmarks/demo.py --out runs/bench   # keep the run (report, bundle) there
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result

from mlsd.systems.video_recommendation.demo import (
    CANDIDATE_RECALL_USERS,
    DEMO_PIPELINE,
    run_demo,
)

METRICS = ("recall@20", "ndcg@20")


def _models(figures: dict[str, float], segment: str = "") -> dict[str, dict[str, float]]:
    """``{"MostPop_recall@20": x, ...}`` as ``{"MostPop": {"recall@20": x, ...}, ...}``, in
    the order the demo reported them; ``segment`` (e.g. ``"new"``): that segment's figures,
    ``MostPop_new_recall@20``."""
    out: dict[str, dict[str, float]] = {}
    for key, value in figures.items():
        for metric in METRICS:
            tail = f"_{segment}_{metric}" if segment else f"_{metric}"
            if key.endswith(tail) and (segment or not key.endswith(f"_new_{metric}")):
                out.setdefault(key[: -len(tail)], {})[metric] = float(value)
    return out


def measure(out_root: Path, scale: str, seed: int) -> dict[str, Any]:
    load = os.getloadavg()  # other work on the machine slows the run (not its metrics)
    t0 = time.perf_counter()
    res = run_demo(out_root, scale=scale, seed=seed, serve=False, log=print)
    total = time.perf_counter() - t0
    saved = json.loads((res.out_dir / "figures.json").read_text())
    payload: dict[str, Any] = {
        "scale": scale,
        "seed": seed,
        "serve": False,
        "models": _models(res.figures),
        "new_users": _models(res.figures, "new"),
        "skew_mismatches": res.figures.get("skew_mismatches"),
        "seconds": {"total": total, "stages": dict(res.seconds)},
        "load_average_at_start": [round(x, 2) for x in load],
        "pipeline_config": DEMO_PIPELINE,
    }
    if saved.get("candidate_recall"):
        payload["candidate_recall"] = {
            "k": DEMO_PIPELINE["candidates"],
            "users": CANDIDATE_RECALL_USERS,
            "by_source": saved["candidate_recall"],
        }
    return payload


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", default="small", help="tiny, small or large")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--out", type=Path, default=None, help="runs directory to keep (default: a temporary one)"
    )
    ap.add_argument("--name", default="demo", help="results/<name>.json")
    a = ap.parse_args()
    if a.out is not None:
        payload = measure(a.out, a.scale, a.seed)
    else:
        with tempfile.TemporaryDirectory(prefix="mlsd-demo-") as tmp:
            payload = measure(Path(tmp), a.scale, a.seed)
    path = write_result(a.name, payload)
    print(json.dumps({k: payload[k] for k in ("models", "seconds")}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
