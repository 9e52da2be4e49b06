"""Benchmark: the HTTP service under an open-loop load (``mlsd bench serve`` runs the same code).

Starts ``mlsd serve --model MODEL`` on a loopback port as a child process, waits for /readyz,
warms it up, then sends ``POST /v1/recommendations`` (k=20) at a fixed rate for a fixed time,
scheduled by the clock whatever the responses do; a request's latency runs from its due time
to the last byte of its response (no coordinated omission). Users are a mix of heavy, light and
new (unknown) users; heavy and light come from the training log's activity (``--data``, or
by default the log a Recommender bundle carries).
Reports p50/p95/p99/max latency, achieved throughput, errors, degraded responses, the server's
and the load generator's CPU time, and the machine.

Goal (issue 6): large catalog, 500 candidates ranked, k=20, 200 rps for 60 s on 2 cores with
0 errors, p50 <= 10 ms and p99 <= 25 ms.

    python benchmarks/serving.py --model runs/large-bundle --data data/large
    python benchmarks/serving.py --model runs/large-bundle --rate 400 --duration 30 --workers 2
    python benchmarks/serving.py --model runs/large-bundle --rates 100,150,200 --duration 60 \
        --warmup 30 --workers 2 --threads 0 --candidate-cache-dir runs/large-cache \
        --name serving_large_cache
        # the README's rows: one server, one run per rate (results/serving_large_cache_<rate>rps
        # .json each); the cache directory is filled at the first start and reused after

The server retrieves every known user's candidates ahead before it reports ready (on `large`
~20 min on 2 cores; ``--no-candidate-cache`` skips that and retrieves on every request);
``--candidate-cache-dir DIR`` keeps them there, so the next run memory-maps them in seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result

from mlsd.serving.loadtest import run_sweep, verdict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, type=Path, help="model bundle directory")
    ap.add_argument("--rate", type=float, default=200.0, help="requests per second")
    ap.add_argument("--rates", default=None, help="comma-separated rates, one server: a sweep")
    ap.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    ap.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds first")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    ap.add_argument("--threads", type=int, default=None, help="model threads per worker")
    ap.add_argument(
        "--no-candidate-cache",
        dest="candidate_cache",
        action="store_false",
        help="serve without retrieving known users' candidates ahead (mlsd serve's option)",
    )
    ap.add_argument(
        "--candidate-cache-dir",
        type=Path,
        default=None,
        help="keep the retrieved-ahead candidates there between runs (mlsd serve's option)",
    )
    ap.add_argument("--data", type=Path, default=None, help="training data, for heavy/light users")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="serving", help="results/<name>.json")
    a = ap.parse_args()
    sweep = bool(a.rates)
    rates = [float(r) for r in a.rates.split(",") if r.strip()] if sweep else [a.rate]
    runs = run_sweep(
        a.model,
        rates=rates,
        duration_s=a.duration,
        warmup_s=a.warmup,
        k=a.k,
        workers=a.workers,
        model_threads=a.threads,
        candidate_cache=a.candidate_cache,
        candidate_cache_dir=a.candidate_cache_dir,
        data=a.data,
        seed=a.seed,
        log=lambda m: print(m, file=sys.stderr),
    )
    for rate, res in zip(rates, runs, strict=True):
        path = write_result(f"{a.name}_{rate:g}rps" if sweep else a.name, res)
        print(json.dumps({k: res[k] for k in ("requests", "errors", "achieved_rps",
                                              "latency_ms")}))  # fmt: skip
        print(f"{rate:g} rps: goal: {verdict(res)}; wrote {path}")


if __name__ == "__main__":
    main()
