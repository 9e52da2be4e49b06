"""Rewrite the README's benchmark tables from ``benchmarks/results/*.json``.

Each table sits between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` markers; a
renderer per benchmark turns its JSON into Markdown rows. Run after any benchmark:

    python benchmarks/update_readme.py
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def _machine(d: dict[str, Any]) -> str:
    m = d.get("machine", {})
    return (
        f"_Measured {d.get('measured_at', '?')[:10]} at {d.get('git_rev', '?')} on "
        f"{m.get('cpus', '?')} cores ({m.get('cpu_model', '?')}), "
        f"{m.get('memory_gb', '?')} GB._"
    )


def simulate(d: dict[str, Any]) -> str:
    rows = [
        "| scale | events | impressions | time (simulate + write) | peak memory | goal |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for scale, r in d["scales"].items():
        goal = ""
        if "goal" in r:
            g = r["goal"]
            verdict = "**met**" if r["meets_goal"] else "**missed**"
            goal = f"<= {g['max_total_s']:.0f} s and <= {g['max_peak_rss_gb']:.0f} GB: {verdict}"
        rows.append(
            f"| {scale} | {r['rows']['events']:,} | {r['events_by_type']['impression']:,} | "
            f"{r['total_s']:.2f} s | {r['peak_rss_gb']:.2f} GB | {goal} |"
        )
    return "\n".join(rows) + "\n\n" + _machine(d)


def serving(d: dict[str, Any]) -> str:
    load, lat, m = d["load"], d["latency_ms"], d["model"]
    g = d["goal"]
    verdict = "**met**" if d["meets_goal"] else "**missed**"
    rows = [
        "| model | load | achieved | errors | p50 | p95 | p99 | max | goal |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
        f"| {m['kind']} `{m['version']}` | {load['rate_rps']:g} rps x {load['duration_s']:g} s, "
        f"k={load['k']}, {load['workers']} worker(s) | {d['achieved_rps']:g} rps | "
        f"{d['errors']} | {lat['p50']:.1f} ms | {lat['p95']:.1f} ms | {lat['p99']:.1f} ms | "
        f"{lat['max']:.1f} ms | {g['rate']:g} rps, 0 errors, p50 <= {g['max_p50_ms']:g} ms, "
        f"p99 <= {g['max_p99_ms']:g} ms: {verdict} |",
    ]
    cpu = d.get("cpu_seconds", {})
    note = (
        f"Open loop, latency from each request's due time; users: {load['users']['source']}. "
        f"CPU over the run: server {cpu.get('server')} s, load generator "
        f"{cpu.get('load_generator')} s, wall {cpu.get('wall')} s."
    )
    return "\n".join(rows) + "\n\n" + note + "\n\n" + _machine(d)


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {"simulate": simulate, "serving": serving}


def render_all(readme: str) -> str:
    for name, fn in RENDERERS.items():
        path = RESULTS / f"{name}.json"
        if not path.exists():
            continue
        body = fn(json.loads(path.read_text()))
        pat = re.compile(rf"(<!-- bench:{name} -->).*?(<!-- /bench:{name} -->)", re.S)
        readme = pat.sub(lambda m, b=body: f"{m.group(1)}\n{b}\n{m.group(2)}", readme)
    return readme


def main() -> None:
    p = ROOT / "README.md"
    p.write_text(render_all(p.read_text()))
    print(f"updated {p}")


if __name__ == "__main__":
    main()
