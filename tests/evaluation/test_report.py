"""Reports: sections render to Markdown and HTML; figures are real PNGs, embedded or as files."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from matplotlib.figure import Figure as MplFigure

from mlsd.evaluation.backtest import BacktestResult
from mlsd.evaluation.metrics import Evaluation
from mlsd.evaluation.protocol import Comparison, ModelResult, TuneResult
from mlsd.evaluation.report import (
    Assets,
    Figure,
    Group,
    Report,
    Table,
    Text,
    backtest_sections,
    comparison_sections,
    metrics_table,
)

PNG = b"\x89PNG\r\n\x1a\n"


def _comparison(shift: float = 0.0) -> Comparison:
    def result(name: str, ndcg: float, recall: float) -> ModelResult:
        m = {"ndcg@20": ndcg + shift, "recall@20": recall + shift, "creator_gini@20": ndcg}
        ev = Evaluation(
            metrics=m,
            segments={"light": dict(m), "heavy": dict(m)},
            n_users={"all": 10, "light": 4, "heavy": 6},
        )
        return ModelResult(name, ev, {}, 0.1, 0.01, 0)

    models = {"MostPop": result("MostPop", 0.1, 0.12), "EASE": result("EASE", 0.18, 0.22)}
    return Comparison("per-user: test", 20, models)


def _backtest() -> BacktestResult:
    t0 = datetime(2026, 1, 10, tzinfo=UTC)
    d = timedelta(days=2)
    return BacktestResult(
        [(t0 + i * d, t0 + (i + 1) * d) for i in range(3)],
        [_comparison(shift) for shift in (0.0, 0.01, -0.01)],
    )


def test_metrics_table_bolds_the_best_and_respects_lower_is_better() -> None:
    table = metrics_table(_comparison().table())
    md = table.markdown(Assets(), 2)
    assert "| model | ndcg@20 | recall@20 | creator_gini@20 |" in md
    assert "| EASE | **0.1800** | **0.2200** | 0.1800 |" in md
    assert "| MostPop | 0.1000 | 0.1200 | **0.1000** |" in md  # less concentration is better
    assert "<td><strong>0.1800</strong></td>" in table.html(Assets(), 2)


def test_text_escapes_html_and_renders_bullets() -> None:
    html = Text("Use `k=20` and **this**.\n\n- a <b>\n- c", title="Notes").html(Assets(), 3)
    assert "<h3>Notes</h3>" in html
    assert "<code>k=20</code>" in html and "<strong>this</strong>" in html
    assert "<li>a &lt;b&gt;</li><li>c</li>" in html


def test_report_writes_markdown_with_files_and_self_contained_html(tmp_path: Path) -> None:
    cmp = _comparison()
    tuned = {"EASE": TuneResult("ndcg@20", {"l2": 300.0}, 0.18, [{}, {}])}
    report = Report("Video recommendation: offline evaluation").add(
        Group("Step 5: evaluation").add(*comparison_sections(cmp, tuned=tuned)),
        *backtest_sections(_backtest()),
    )
    paths = report.write(tmp_path)
    md = paths["markdown"].read_text()
    assert md.startswith("# Video recommendation: offline evaluation")
    assert "## Step 5: evaluation" in md and "### Offline metrics" in md
    assert "l2=300.0" in md and "± " in md
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", md)
    assert len(images) == 2
    for ref in images:
        assert (tmp_path / ref).read_bytes().startswith(PNG)
    page = paths["html"].read_text()
    assert page.startswith("<!DOCTYPE html>") and "<h2>Step 5: evaluation</h2>" in page
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(embedded) == 2
    assert all(base64.b64decode(b).startswith(PNG) for b in embedded)
    assert "<script" not in page


def test_table_formats_nan_and_rejects_bad_figure_names() -> None:
    md = Table(["a", "b"], [["x", float("nan")], ["y", 0.5]]).markdown(Assets(), 2)
    assert "| x | – |" in md and "| y | 0.5000 |" in md
    with pytest.raises(ValueError, match="figure name"):
        Figure(MplFigure(), "bad name/..")
