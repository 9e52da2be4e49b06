"""`mlsd demo` end to end on the tiny platform: report by the seven steps, bundle, service."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlsd.systems.video_recommendation.demo import run_demo

STEPS = (
    "1. Clarify requirements",
    "2. Frame the problem as an ML task",
    "3. Data preparation and feature engineering",
    "4. Model development",
    "5. Offline evaluation",
    "6. Deployment and serving",
    "7. Monitoring",
)


@pytest.mark.server
def test_demo_on_tiny_writes_the_report_and_serves(tmp_path: Path) -> None:
    res = run_demo(tmp_path, scale="tiny", seed=0, serve=True, backtest_windows=3)
    md = res.report_md.read_text()
    for step in STEPS:
        assert f"## {step}" in md, step
    assert "Backtest" in md
    html = res.report_html.read_text()
    assert html.count("<img") >= 3 and "data:image/png;base64," in html
    assert res.figures["skew_mismatches"] == 0
    for name in ("MostPop", "ItemKNN", "ALS", "pipeline"):
        assert f"{name}_ndcg@20" in res.figures, name
    assert (res.bundle / "manifest.json").exists()
    heavy, typical, unknown = res.served
    assert len(typical["items"]) == 10
    assert len(heavy["items"]) == 10 and heavy["items"][0]["explanation"]["components"]
    assert not heavy["degraded"], heavy.get("degraded_reason")
    assert unknown["cold_start"] and len(unknown["items"]) == 10
