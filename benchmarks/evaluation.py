"""Offline quality of the full pipeline against tuned baselines, on simulated and real data.

Two runs, each through :func:`mlsd.systems.video_recommendation.evaluate.evaluate_system`
(baselines tuned by grid search on a validation slice of the training side, never the test
slice; every model fitted on the full training side and scored once on the test slice):

- ``small`` (simulated, seed 0): temporal holdout, the last 7 days; EASE included (its dense
  solve over ~15k items takes a couple of minutes, which is why the demo leaves it out);
- MovieLens 100k (``../shared/data/ml-100k``): ratings >= 4 are positives, per-user temporal
  80/20, full ranking with each user's training items excluded;
- Amazon Beauty (``../shared/data/amazon-beauty``): 198,502 reviews, every one a positive,
  day-precision times, per-user temporal 80/20 (the same protocol).

New users' figures (the ``new`` segment) are kept beside the overall ones.

Writes ``benchmarks/results/evaluation.json``; ``update_readme.py`` renders the README table.

    python benchmarks/evaluation.py [--only small|ml100k|beauty]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_result

from mlsd.config import SimulationConfig
from mlsd.data.loaders import load
from mlsd.data.simulate import simulate
from mlsd.systems.video_recommendation import evaluate as ev

ML100K = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"
BEAUTY = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon-beauty" / "events.csv"


def _run(name: str, data: Any, protocol: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    old = ev.EASE_MAX_ITEMS
    ev.EASE_MAX_ITEMS = 50_000  # measure EASE here even on `small`
    try:
        run = ev.evaluate_system(data, protocol=protocol, k=20, log=lambda m: print(f"  {m}"))  # type: ignore[arg-type]
    finally:
        ev.EASE_MAX_ITEMS = old
    table = run.table()
    keys = ("recall@20", "ndcg@20", "map@20", "mrr", "coverage@20")
    models = {m: {k: row[k] for k in keys if k in row} for m, row in table.items()}
    best = {
        k: max((r[k] for n, r in models.items() if n != "pipeline"), default=0.0)
        for k in ("recall@20", "ndcg@20")
    }
    pipe = models.get("pipeline", {})
    new = {m: {k: row[k] for k in ("recall@20", "ndcg@20") if k in row}
           for m, row in run.table("new").items()}  # fmt: skip
    return {
        "new_users": new,
        "dataset": name,
        "protocol": protocol,
        "holdout": run.holdout.summary(),
        "models": models,
        "tuned": {n: t.params for n, t in run.tuned.items()},
        "fit_seconds": {n: r.fit_seconds for n, r in run.comparison.results.items()},
        "pipeline_beats_every_baseline": {k: bool(pipe.get(k, 0.0) > v) for k, v in best.items()},
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", choices=["small", "ml100k", "beauty"], default=None)
    args = ap.parse_args()
    runs: dict[str, Any] = {}
    if args.only in (None, "small"):
        print("small (simulated), temporal holdout")
        runs["small"] = _run(
            "simulated small (seed 0)",
            simulate(SimulationConfig.for_scale("small", seed=0)),
            "temporal",
        )
    if args.only in (None, "ml100k"):
        if not ML100K.exists():
            raise SystemExit(f"{ML100K}: MovieLens 100k not found")
        print("MovieLens 100k, per-user temporal 80/20")
        runs["ml100k"] = _run("MovieLens 100k", load(ML100K), "per-user")
    if args.only in (None, "beauty"):
        if not BEAUTY.exists():
            raise SystemExit(f"{BEAUTY}: Amazon Beauty not found")
        print("Amazon Beauty, per-user temporal 80/20")
        runs["beauty"] = _run("Amazon Beauty", load(BEAUTY), "per-user")
    path = Path(__file__).resolve().parent / "results" / "evaluation.json"
    if args.only is not None and path.exists():
        import json

        old = json.loads(path.read_text()).get("runs", {})
        runs = {**old, **runs}
    out = write_result("evaluation", {"runs": runs})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
