"""Candidate recall: the metric, the protocol, and the Must-show figures on ``small``."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from mlsd.cli import app
from mlsd.config import SimulationConfig
from mlsd.data.dataset import Dataset
from mlsd.data.simulate import simulate
from mlsd.retrieval import PAD, RetrievalReport, evaluate_retrieval
from mlsd.retrieval.evaluate import NextPeriod, candidate_recall


def test_candidate_recall_per_cutoff() -> None:
    cands = np.array([[1, 2, 3, 4], [9, 8, PAD, PAD]], dtype=np.int64)
    future = np.array([[3, 7], [8, PAD]], dtype=np.int64)
    rec = candidate_recall(cands, future, np.array([2, 1]), [1, 3, 4])
    assert rec[1].tolist() == [0.0, 0.0]
    assert rec[3].tolist() == [0.5, 1.0]
    assert rec[4].tolist() == [0.5, 1.0]


def test_next_period_excludes_what_was_watched_before(tiny_period: NextPeriod) -> None:
    p = tiny_period
    assert len(p.users) > 0 and (p.n_future > 0).all()
    assert (p.n_future == (p.future != PAD).sum(axis=1)).all()
    seen, _ = p.history.recent(p.users)
    for fut, s in zip(p.future, seen, strict=True):
        assert not (set(fut.tolist()) - {PAD}) & (set(s.tolist()) - {PAD})
    train_ms = np.asarray(p.train_positives.column("timestamp").cast("int64"))
    assert (train_ms < p.split_ms).all()
    assert p.cold.any(), "tiny has users who signed up in the last days: cold start"


@pytest.fixture(scope="module")
def small_report() -> RetrievalReport:
    ds = simulate(SimulationConfig.for_scale("small", seed=0))
    return evaluate_retrieval(ds, k=500, test_days=7.0, seed=0, max_users=2000)


@pytest.mark.slow
def test_must_show_recall_on_small(small_report: RetrievalReport) -> None:
    r = small_report
    popular = r.recall("popular")
    # Two-tower alone beats popular-only.
    assert r.recall("two_tower") > 1.15 * popular
    # Merged is at least as good as every single source and at least 2x popular-only (the
    # issue's goal; measured on all users: 2.12x on seed 0, 2.08x on seed 1; docs/simulator.md
    # explains why the logging policy is personalised enough for that to be possible).
    assert r.recall("merged") >= 2.0 * popular
    assert r.recall("merged") >= max(s.recall[500] for s in r.sources) - 0.01
    # Cold-start users get a full list from the fallbacks, about as good as popular-only for
    # them: the personalised logging policy shows them videos by hidden tastes and favourite
    # creators that nothing in the log reveals yet (measured on this subset: merged 0.28,
    # popular 0.29; 0.41 for both under the first, popularity-heavy policy).
    assert r.merged is not None and r.merged.filled == 1.0
    pop_cold = next(s for s in r.sources if s.name == "popular").recall_cold[500]
    assert r.merged.recall_cold[500] >= 0.9 * pop_cold > 0.2
    shares = [s.merged_hit_share or 0.0 for s in r.sources]
    assert sum(shares) == pytest.approx(1.0)


def test_cli_prints_the_per_source_table(tiny: Dataset, tmp_path: object) -> None:
    out = tmp_path / "report.json"  # type: ignore[operator]
    res = CliRunner().invoke(
        app,
        ["evaluate", "retrieval", "--scale", "tiny", "--test-days", "4", "--epochs", "1",
         "--k", "100", "--json", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    for name in ("two_tower", "covisit", "topic_popular", "popular", "merged", "@100"):
        assert name in res.output
    assert out.exists()  # type: ignore[attr-defined]


def test_cli_reports_bad_options_without_a_traceback() -> None:
    res = CliRunner().invoke(app, ["evaluate", "retrieval", "--scale", "huge"])
    assert res.exit_code == 2
    assert "unknown scale" in res.output
