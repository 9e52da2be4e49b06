"""Benchmark and fault harness of event ingestion (issue 16): one subcommand per scenario.

Each starts ``mlsd serve --workers 2`` (and ``redis-server`` where needed) on loopback as child
processes, drives it open loop (latency from the due time) and writes
``benchmarks/results/events_<scenario>.json`` with the machine, the settings, the raw figures
and ``checks``: each Must-show criterion as ``{"value", "limit", "pass"}``.

    python benchmarks/events.py mixed --model BUNDLE                  # 60 s per configuration
    python benchmarks/events.py mixed --model BUNDLE --write-batch 1 --write-rate 500
    python benchmarks/events.py kill9 --model BUNDLE --runs 5 --backend redis
    python benchmarks/events.py visibility --model BUNDLE
    python benchmarks/events.py redis_outage --model BUNDLE
    python benchmarks/events.py sighup --model BUNDLE                 # to a relabelled copy
    python benchmarks/events.py render                                # the README table

``--legacy`` leaves the event ids out of the writes, for a server before issue 16 (it refuses
them); the log is then checked by user, video and timestamp.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_result
from _events_infra import population
from _events_stats import all_pass

SCENARIOS = ("mixed", "kill9", "visibility", "redis_outage", "sighup")


def _pairs(batches: str, rates: str) -> list[tuple[int, float]]:
    """``--write-batch 1,50 --write-rate 500,200`` -> [(1, 500.0), (50, 200.0)]."""
    b = [int(x) for x in batches.split(",") if x.strip()]
    r = [float(x) for x in rates.split(",") if x.strip()]
    if len(b) != len(r) or not b or min(b) < 1 or min(r) <= 0:
        raise SystemExit(
            f"--write-batch {batches} and --write-rate {rates}: need as many "
            "positive batches as positive rates"
        )
    return list(zip(b, r, strict=True))


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="scenario", required=True)

    def scenario(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.add_argument("--model", required=True, type=Path, help="model bundle directory")
        p.add_argument(
            "--data",
            type=Path,
            default=None,
            help="training data (dir or events.parquet) for the users; default: the bundle's own",
        )
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--legacy", action="store_true", help="writes without event ids")
        p.add_argument("--name", default=f"events_{name}", help="results/<name>.json")
        return p

    m = scenario("mixed", "reads and writes at once, open loop")
    m.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    m.add_argument("--warmup", type=float, default=5.0, help="reads-only seconds first")
    m.add_argument("--read-rate", type=float, default=100.0)
    m.add_argument("--write-batch", default="1,50", help="events per write, one per config")
    m.add_argument("--write-rate", default="500,200", help="writes/s, one per config")
    m.add_argument("--max-event-rate", type=float, default=None, help="mlsd serve's option")
    m.add_argument("--threads", type=int, default=None, help="mlsd serve's --threads")
    m.add_argument("--timeout", type=float, default=2.0, help="client timeout, s")

    k = scenario("kill9", "kill -9 under writes with retries; log and state verified")
    k.add_argument("--runs", type=int, default=5)
    k.add_argument("--backend", choices=("file", "redis"), default="file")
    k.add_argument("--write-rate", type=float, default=100.0, help="write requests/s")
    k.add_argument("--write-batch", type=int, default=5, help="events per request")
    k.add_argument("--duration", type=float, default=10.0, help="seconds of scheduled writes")
    k.add_argument("--users", type=int, default=40, help="distinct users written")

    v = scenario("visibility", "a new user's events reach every worker")
    v.add_argument("--users", type=int, default=3, help="new users, one after another")
    v.add_argument("--interval", type=float, default=0.05, help="s between polls")

    o = scenario("redis_outage", "the Redis online store crashes and comes back empty")
    o.add_argument("--duration", type=float, default=20.0)
    o.add_argument("--read-rate", type=float, default=75.0)
    o.add_argument("--write-rate", type=float, default=5.0)
    o.add_argument("--kill-at", type=float, default=5.0, help="s into the load")
    o.add_argument("--down", type=float, default=2.0, help="s Redis stays down")
    o.add_argument("--settle", type=float, default=120.0, help="max s to wait for /readyz 200")

    s = scenario("sighup", "model reload by SIGHUP under fresh-connection reads")
    s.add_argument("--second", type=Path, default=None, help="bundle to switch to")
    s.add_argument("--rate", type=float, default=50.0)
    s.add_argument("--duration", type=float, default=30.0)
    s.add_argument("--switch-at", type=float, default=5.0)

    r = sub.add_parser("render", help="print the README table from the results files")
    r.add_argument("--results", type=Path, default=RESULTS)
    return ap


def run(a: argparse.Namespace) -> dict[str, Any]:
    """The scenario ``a.scenario`` with the parsed options: its result payload."""
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    pop = population(a.model, a.data)
    ids = not a.legacy
    if a.scenario == "mixed":
        from _events_mixed import run_mixed

        return run_mixed(
            a.model,
            pop,
            configs=_pairs(a.write_batch, a.write_rate),
            read_rate=a.read_rate,
            duration_s=a.duration,
            warmup_s=a.warmup,
            timeout_s=a.timeout,
            max_event_rate=a.max_event_rate,
            threads=a.threads,
            event_ids=ids,
            seed=a.seed,
            log=log,
        )
    if a.scenario == "kill9":
        from _events_kill9 import run_kill9

        return run_kill9(
            a.model,
            pop,
            runs=a.runs,
            backend=a.backend,
            rate=a.write_rate,
            batch=a.write_batch,
            duration_s=a.duration,
            n_users=a.users,
            seed=a.seed,
            event_ids=ids,
            log=log,
        )
    if a.scenario == "visibility":
        from _events_visibility import run_visibility

        return run_visibility(
            a.model, pop, users=a.users, interval_s=a.interval, seed=a.seed, log=log
        )
    if a.scenario == "redis_outage":
        from _events_outage import run_outage

        return run_outage(
            a.model,
            pop,
            read_rate=a.read_rate,
            write_rate=a.write_rate,
            duration_s=a.duration,
            kill_at_s=a.kill_at,
            settle_s=a.settle,
            down_s=a.down,
            event_ids=ids,
            seed=a.seed,
            log=log,
        )
    from _events_sighup import run_sighup

    return run_sighup(
        a.model,
        pop,
        second=a.second,
        rate=a.rate,
        duration_s=a.duration,
        switch_at_s=a.switch_at,
        seed=a.seed,
        log=log,
    )


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    if a.scenario == "render":
        from _render import Missing, Results
        from _render_events import events

        try:
            print(events(Results(a.results)))
        except Missing:
            print(f"no events_*.json results in {a.results}", file=sys.stderr)
            return 1
        return 0
    payload = run(a)
    payload = {"scenario": a.scenario, "model": str(a.model), **payload}
    path = write_result(a.name, payload)
    for name, c in payload["checks"].items():
        print(f"{'PASS' if c['pass'] else 'FAIL'}  {name}: {c['value']} (limit {c['limit']})")
    print(f"wrote {path}")
    return 0 if all_pass(payload["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
