"""Benchmark: simulated-platform generation time and peak memory per scale.

Each scale runs in a fresh subprocess (so peak RSS is that run's alone): simulate, then write
the Parquet files. Goal (issue 2): ``large`` in at most 3 minutes and 8 GB on 2 cores.

    python benchmarks/simulate.py                 # tiny, small, large
    python benchmarks/simulate.py --scales tiny small
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result

CHILD = r"""
import json, resource, sys, time
from mlsd.config import SimulationConfig
from mlsd.data.simulate import simulate
scale, seed, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t0 = time.perf_counter()
ds = simulate(SimulationConfig.for_scale(scale, seed=seed))
t1 = time.perf_counter()
ds.write(out, manifest=ds.meta)
t2 = time.perf_counter()
print(json.dumps({"simulate_s": t1 - t0, "write_s": t2 - t1, "rows": ds.meta["rows"],
                  "events_by_type": ds.meta["events_by_type"]}))
"""

GOALS = {"large": {"max_total_s": 180.0, "max_peak_rss_gb": 8.0}}


def run_scale(scale: str, seed: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sim"
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, scale, str(seed), str(out)],
            stdout=subprocess.PIPE,
            text=True,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        stdout = proc.stdout.read() if proc.stdout else ""
        if status != 0:
            raise SystemExit(f"simulate {scale} failed with status {status}")
        res = json.loads(stdout.strip().splitlines()[-1])
        size = sum(f.stat().st_size for f in out.iterdir())
    res["total_s"] = res["simulate_s"] + res["write_s"]
    res["peak_rss_gb"] = usage.ru_maxrss / 1024**2  # ru_maxrss is in KiB on Linux
    res["parquet_mb"] = size / 1024**2
    goal = GOALS.get(scale)
    if goal:
        res["goal"] = goal
        res["meets_goal"] = (
            res["total_s"] <= goal["max_total_s"] and res["peak_rss_gb"] <= goal["max_peak_rss_gb"]
        )
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", nargs="+", default=["tiny", "small", "large"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    results = {}
    for scale in args.scales:
        r = run_scale(scale, args.seed)
        results[scale] = r
        print(
            f"{scale:>6}: {r['total_s']:7.1f} s  peak {r['peak_rss_gb']:.2f} GB  "
            f"{r['rows']['events']:,} events  {r['events_by_type']['impression']:,} impressions"
        )
    path = write_result("simulate", {"seed": args.seed, "scales": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
