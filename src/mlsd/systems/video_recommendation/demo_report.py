"""The demo's report, one section per step of the book's framework, from what the run measured
(:class:`DemoFacts`); :func:`mlsd.systems.video_recommendation.demo.run_demo` writes it as
``report.md`` and ``report.html``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure as MplFigure

from mlsd.config import LabelConfig
from mlsd.data.dataset import Dataset
from mlsd.data.describe import Description
from mlsd.data.schema import ValidationReport
from mlsd.evaluation.report import Figure, Group, Report, Table, Text
from mlsd.features import VIDEO_REC, SkewReport
from mlsd.pipeline import Recommender
from mlsd.systems.video_recommendation.evaluate import EvaluationRun

__all__ = ["DemoFacts", "seven_step_report"]


@dataclass
class DemoFacts:
    """What the report tells: the run's setting and what each step produced.

    ``served`` holds one line per request sent to the service (empty: not served);
    ``seconds`` the wall time per stage; ``pipeline_settings`` and ``backtest_users`` the
    demo's lighter pipeline configuration and users scored per backtest window."""

    scale: str
    seed: int
    data: Dataset
    description: Description
    validation: ValidationReport
    labels: LabelConfig
    n_positives: int
    skew: SkewReport
    evaluation: EvaluationRun
    recommender: Recommender
    candidate_recall: dict[str, float]
    bundle: Path
    served: list[str]
    seconds: dict[str, float]
    pipeline_settings: dict[str, Any]
    backtest_users: int


def seven_step_report(f: DemoFacts) -> Report:
    """The report: requirements, framing, data and features, models, offline evaluation,
    deployment, monitoring; three figures (completion, when ``describe`` plotted it; ranker
    importance; those of the evaluation sections)."""
    ds, desc, labels, rec, skew = f.data, f.description, f.labels, f.recommender, f.skew
    report = Report(f"mlsd demo: video recommendation on simulated '{f.scale}' (seed {f.seed})")
    report.add(
        Group("1. Clarify requirements").add(
            Text(
                "Goal: more **valid watches** (the book's engagement objective) on a video "
                "platform, with a p99 latency budget of 50 ms. The simulated platform has "
                f"{ds.users.num_rows:,} users, {ds.videos.num_rows:,} videos and "
                f"{ds.events.num_rows:,} events over {desc.days:.0f} days "
                "(impressions, plays with watch time, likes, shares, dislikes); some videos are "
                "explicit and some users do not allow them; creators must not crowd a slate."
            )
        ),
        Group("2. Frame the problem as an ML task").add(
            Text(
                f"Implicit positive = a play of at least {labels.min_watch_seconds:g} s (or "
                f"{labels.min_completion:.0%} of a video shorter than "
                f"{labels.short_video_seconds:g} s); "
                f"explicit = a like. {f.n_positives:,} positive (user, video) pairs. Two "
                "stages: candidate generation (recall) then a pointwise ranker predicting "
                "P(valid watch) and "
                "P(like), combined with weights, then business rules."
            )
        ),
        Group("3. Data preparation and feature engineering").add(
            Text(
                f"Validation: {'passed' if not f.validation.problems else f.validation.problems}"
                f". Valid-watch rate {desc.valid_watch_rate or 0:.1%} of plays, CTR "
                f"{desc.ctr or 0:.1%}, like rate {desc.like_rate or 0:.1%}, sparsity "
                f"{desc.sparsity:.4%}. {len(VIDEO_REC.matrix_features())} features from one "
                f"registry. Skew check offline vs online at {skew.n_points} sampled requests: "
                f"**{skew.mismatches} mismatches**."
            ),
            *([fig] if (fig := _completion_figure(desc.plot_path)) else []),
        ),
        Group("4. Model development").add(
            Table(
                ["source", f"recall@{rec.config.candidates}"],
                [[k, v] for k, v in f.candidate_recall.items()],
                "Candidate recall on the test users",
                "Share of each test user's next-period positives among the candidates.",
            ),
            Table(
                ["objective", "valid AUC", "valid log-loss", "valid ECE"],
                [
                    [o, m.get("valid_auc"), m.get("valid_logloss"), m.get("valid_ece")]
                    for o, m in rec.ranker_.metrics_.items()
                ],
                "Ranker validation",
            ),
            Text(
                f"Ranker rows: {rec.stats.counts.get('ranker_rows', 0):,} "
                f"({rec.stats.counts.get('ranker_positives', 0):,} watch positives); training "
                f"took {rec.stats.seconds.get('total', 0):.0f} s."
            ),
            _importance_figure(rec),
        ),
        Group("5. Offline evaluation").add(
            *f.evaluation.sections(),
            Text(
                f"The demo's pipeline uses a lighter configuration than the library default, "
                f"to fit its time budget: `{json.dumps(f.pipeline_settings)}`. Each backtest "
                f"window scores {f.backtest_users:,} sampled test users (the same ones for "
                "every model); the holdout above scores all of them."
            ),
        ),
        Group("6. Deployment and serving").add(
            Text(
                f"Bundle: `{f.bundle}` (manifest, LightGBM text, torch weights, FAISS index, "
                "Parquet). "
                + (
                    "Served over HTTP on loopback:\n" + "\n".join(f"- {x}" for x in f.served)
                    if f.served
                    else "Not served in this run."
                )
            )
        ),
        Group("7. Monitoring").add(
            Text(
                "The service exports Prometheus metrics at `/metrics`: latency histograms per "
                "stage, "
                "fallbacks (degraded responses), errors and candidate counts. Drift monitoring and "
                "retraining are the next blocks on the roadmap.\n"
                + "\n".join(f"- {k}: {v:.1f} s" for k, v in f.seconds.items())
            )
        ),
    )
    return report


def _importance_figure(rec: Recommender) -> Figure:
    imp = rec.ranker_.feature_importance("watch")
    top = sorted(imp.items(), key=lambda kv: -kv[1])[:15][::-1]
    fig = MplFigure(figsize=(6.0, 4.2))
    ax = fig.subplots()
    total = sum(imp.values()) or 1.0
    ax.barh([n for n, _ in top], [v / total for _, v in top])
    ax.set_xlabel("share of total gain")
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return Figure(fig, "ranker_importance", "Ranker (watch objective): top features by gain")


def _completion_figure(path: str | None) -> Figure | None:
    if not path or not Path(path).exists():
        return None
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    fig = MplFigure(figsize=(6.0, 3.6))
    ax = fig.subplots()
    ax.imshow(img)
    ax.axis("off")
    return Figure(fig, "completion", "Watch completion (data describe)")
