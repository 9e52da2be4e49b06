"""Fill the measured figures of README.md and docs/benchmarks.md from ``benchmarks/results``.

Every table, and every sentence that carries a measured figure, sits between
``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``; :data:`BLOCKS` maps NAME to a function
of the results files that returns its Markdown (``_render``, ``_render_serving``,
``_render_events`` and ``_render_rankers``). Text outside the markers is left alone, so prose
there carries no figures. Run after any benchmark:

    python benchmarks/update_readme.py           # rewrite both files
    python benchmarks/update_readme.py --check   # exit 1 with a diff when either is stale
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _render as tables
import _render_events as events
import _render_experiments as experiments
import _render_lifecycle as lifecycle
import _render_rankers as rankers
import _render_serving as serving
from _render import Missing, Results

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
DOCS = ROOT / "docs" / "benchmarks.md"
MARKER = re.compile(r"(<!-- bench:([\w-]+) -->)(.*?)(<!-- /bench:\2 -->)", re.S)

BLOCKS: dict[str, Callable[[Results], str]] = {
    "demo": tables.demo,
    "demo-candidates": tables.demo_candidates,
    "demo-stages": tables.demo_stages,
    "simulate": tables.simulate,
    "features": tables.features,
    "features-stages": tables.features_stages,
    "retrieval-summary": tables.retrieval_summary,
    "retrieval-sources": tables.retrieval_sources,
    "retrieval-index": tables.retrieval_index,
    "evaluation-summary": tables.evaluation_summary,
    "evaluation": tables.evaluation,
    "byod": tables.byod,
    "train": tables.train,
    "rankers": rankers.rankers,
    "serving-current": serving.serving_current,
    "serving-runs": serving.serving_runs,
    "serving-at-goal": serving.serving_at_goal,
    "serving-round-first": serving.serving_round_first,
    "serving-round-cache": serving.serving_round_cache,
    "serving-round-prefork": serving.serving_round_prefork,
    "serving-round-latest": serving.serving_round_latest,
    "serving-drift": serving.serving_drift,
    "serving-startup": serving.serving_startup,
    "serving-redesign": serving.serving_redesign,
    "events": events.events,
    "lifecycle": lifecycle.lifecycle,
    "experiments": experiments.experiments,
    "experiments-pairs": experiments.experiments_pairs,
    "monitoring": experiments.monitoring,
}
# The benchmark script that writes a block's results, for the placeholder when they are missing.
SCRIPTS = {
    "demo": "demo.py",
    "byod": "byod.py",
    "train_large": "train.py",
    "serving": "serving.py --model BUNDLE",
    "redesign_serving": "serving.py --model BUNDLE (see docs/benchmarks.md)",
    "events_mixed": "events.py mixed --model BUNDLE (and its other scenarios)",
    "lifecycle_retrain": "lifecycle.py retrain --bundle-a BUNDLE --data DATA (and rollback)",
    "experiments_aa": "experiments.py aa --model BUNDLE --data DATA (and ab)",
    "experiments_pairs": "experiments.py pairs --model BUNDLE --data DATA --offline-data NEXT",
    "monitoring_drift": "monitoring.py --model BUNDLE --data DATA",
}


def render(text: str, results: Results, where: str = "") -> str:
    """``text`` with every block between markers replaced by what the results give. A block
    written on one line stays on one line (a figure inside a sentence)."""

    def fill(m: re.Match[str]) -> str:
        name = m.group(2)
        if name not in BLOCKS:
            raise SystemExit(
                f"{where}: unknown block <!-- bench:{name} --> (known: {list(BLOCKS)})"
            )
        try:
            body = BLOCKS[name](results)
        except Missing as e:
            script = SCRIPTS.get(str(e), f"{e}.py")
            body = f"_No results yet: run `python benchmarks/{script}`._"
        if "\n" not in m.group(3) and "\n" not in body:
            return f"{m.group(1)}{body}{m.group(4)}"
        return f"{m.group(1)}\n{body}\n{m.group(4)}"

    return MARKER.sub(fill, text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 with a diff when a file differs from what the results give",
    )
    ap.add_argument("--readme", type=Path, default=README)
    ap.add_argument("--docs", type=Path, default=DOCS)
    ap.add_argument("--results", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    results = Results(a.results)
    stale = []
    for path in (a.readme, a.docs):
        if not path.exists():
            print(f"{path}: no such file", file=sys.stderr)
            return 2
        old = path.read_text()
        new = render(old, results, str(path))
        if new == old:
            continue
        stale.append(path)
        if a.check:
            sys.stdout.writelines(
                difflib.unified_diff(
                    old.splitlines(keepends=True),
                    new.splitlines(keepends=True),
                    f"{path} (as is)",
                    f"{path} (from {a.results})",
                )
            )
        else:
            path.write_text(new)
            print(f"updated {path}")
    if a.check and stale:
        names = ", ".join(str(p) for p in stale)
        print(f"\n{names}: out of date; run python benchmarks/update_readme.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
