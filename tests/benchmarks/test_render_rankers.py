"""The README's ranker table is rendered from ``results/rankers.json``: one row per ranker, a
column per dataset, the served column only when served runs were measured, and a reduced-size
run marked as such."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _render import Missing, Results
from _render_rankers import rankers

KINDS = ("gbdt", "gbdt_compiled", "deep", "distilled", "int8")


def _run(ndcg: float, max_users: int | None, served: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "holdout": "temporal: 10 test users",
        "ranker_rows": 1234,
        "features": 65,
        "max_users": max_users,
        "rankers": {
            k: {
                "ndcg@20": ndcg + i / 100,
                "rank_500": {"p50_ms": 0.5 + i, "p99_ms": 2.0 + i, "calls": 300},
                "size_bytes": 1500 * 10**i,
            }
            for i, k in enumerate(KINDS)
        },
    }
    if served:
        out["served"] = {
            k: {"latency_ms": {"p99": 10.0 + i}}
            for i, k in enumerate(("gbdt", "deep", "distilled", "int8"))
        }
    return out


def _write(tmp_path: Path, runs: dict[str, Any]) -> Results:
    doc = {"benchmark": "rankers", "measured_at": "2026-12-04T00:00:00", "k": 20, "runs": runs}
    (tmp_path / "rankers.json").write_text(json.dumps(doc))
    return Results(tmp_path)


def test_full_run_table(tmp_path: Path) -> None:
    text = rankers(
        _write(tmp_path, {"small": _run(0.1, None, True), "beauty": _run(0.02, None, False)})
    )
    rows = [r for r in text.splitlines() if r.startswith("|")]
    assert rows[0].startswith("| ranker | `small` (simulated) NDCG@20 | Amazon Beauty NDCG@20 |")
    assert rows[0].endswith("| served p99 (small) |")
    assert len(rows) == 2 + len(KINDS)
    assert rows[2] == "| GBDT (LightGBM) | 0.1000 | 0.0200 | 0.50 ms | 2.00 ms | 2 kB | - |"
    # the server compiles the GBDT: its served figure is the compiled row's
    assert rows[3].endswith("| 10.0 ms |") and rows[6].endswith("| 13.0 ms |")
    assert "| 1.50 MB |" in rows[5]
    assert "Smoke run" not in text


def test_reduced_run_is_marked_and_served_column_absent(tmp_path: Path) -> None:
    text = rankers(_write(tmp_path, {"small": _run(0.1, 800, False)}))
    assert "served" not in text.splitlines()[0]
    assert "**Smoke run at reduced size** (`small` (simulated): 800 users)" in text


def test_missing_results(tmp_path: Path) -> None:
    with pytest.raises(Missing):
        rankers(Results(tmp_path))
