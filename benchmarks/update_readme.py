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


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {"simulate": simulate}


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
