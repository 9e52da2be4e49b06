"""Builders that turn evaluation results into report sections: tables of metrics (overall, per
segment, tuning, backtest mean ± std) and plots (bars per model, metric per backtest window)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure as MplFigure

from mlsd.evaluation.backtest import BacktestResult
from mlsd.evaluation.protocol import Comparison, TuneResult
from mlsd.evaluation.report.sections import Figure, Section, Table, Text
from mlsd.evaluation.segments import SEGMENTS

__all__ = [
    "BEYOND_CAPTION",
    "backtest_plot",
    "backtest_sections",
    "backtest_table",
    "beyond_rows",
    "beyond_table",
    "comparison_sections",
    "metric_bars",
    "metrics_table",
    "models_table",
    "segment_table",
    "tuning_table",
]


def _metric_order(table: Mapping[str, Mapping[str, float]]) -> list[str]:
    seen: dict[str, None] = {}
    for row in table.values():
        for m in row:
            seen.setdefault(m, None)
    return list(seen)


def metrics_table(
    table: Mapping[str, Mapping[str, float]],
    metrics: Sequence[str] | None = None,
    *,
    title: str | None = "Offline metrics",
    caption: str | None = None,
    row_label: str = "model",
) -> Table:
    """``model -> metric -> value`` (e.g. :meth:`Comparison.table`) as a table, best bold.
    ``metrics`` picks and orders the columns (default: all, in first-seen order); concentration
    (``creator_gini@k``) counts as lower-is-better."""
    cols = list(metrics) if metrics is not None else _metric_order(table)
    rows = [[name] + [float(row.get(m, math.nan)) for m in cols] for name, row in table.items()]
    lower = [c for c in cols if c.startswith("creator_gini")]
    return Table([row_label, *cols], rows, title, caption, bold_best=True, lower_better=lower)


def metric_bars(
    table: Mapping[str, Mapping[str, float]],
    metrics: Sequence[str] = ("ndcg@20", "recall@20"),
    *,
    name: str = "metric_bars",
    title: str | None = None,
    caption: str | None = None,
) -> Figure:
    """Grouped bar chart: one group per model, one bar per metric, values printed on bars."""
    models = list(table)
    fig = MplFigure(figsize=(max(5.0, 1.3 * len(models) + 2), 3.6))
    ax = fig.subplots()
    width = 0.8 / max(len(metrics), 1)
    for j, m in enumerate(metrics):
        xs = [i + (j - (len(metrics) - 1) / 2) * width for i in range(len(models))]
        vals = [float(table[mod].get(m, math.nan)) for mod in models]
        bars = ax.bar(xs, vals, width, label=m)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    ax.set_xticks(range(len(models)), models)
    ax.set_ylabel("value")
    ax.legend(frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    ax.margins(y=0.15)
    return Figure(fig, name, title, caption)


def segment_table(
    comparison: Comparison,
    metric: str = "ndcg@20",
    *,
    title: str | None = None,
) -> Table:
    """``metric`` per model and user segment (new / light / heavy), with each segment's number
    of evaluated users in the header."""
    first = next(iter(comparison.results.values()))
    segs = [s for s in SEGMENTS if s in first.evaluation.segments]
    cols = ["model", "all"] + [f"{s} (n={first.evaluation.n_users.get(s, 0):,})" for s in segs]
    rows = [
        [name, r.evaluation.metrics.get(metric, math.nan)]
        + [r.evaluation.segments[s].get(metric, math.nan) for s in segs]
        for name, r in comparison.results.items()
    ]
    return Table(cols, rows, title or f"{metric} by user segment", bold_best=True)


BEYOND: tuple[str, ...] = ("coverage", "ild", "novelty", "creator_gini")
BEYOND_CAPTION = (
    "coverage@k: share of the catalog (every video of the videos table) recommended to at "
    "least one user of the row (catalog coverage, Ge, Delgado-Battenfeld & Jannach, RecSys "
    "2010). ild@k: intra-list diversity, per list 1 - the mean similarity of its item pairs "
    "(same topic: 1, else 0), averaged over users (Ziegler et al., WWW 2005). novelty@k: mean "
    "self-information -log2 p of the recommended items in bits, p = (training users of the "
    "item + 1) / (training users + 1), averaged over users (Zhou et al., PNAS 2010). "
    "creator_gini@k: Gini coefficient of the recommendation slots per creator, over every "
    "creator of the catalog (0: even exposure; near 1: a few creators get all; lower is "
    "better; Damgaard & Weiner 2000). A dash: the catalog lacks what the metric needs "
    "(topics, creators) or the segment has no users. Definitions: mlsd.evaluation.beyond."
)


def beyond_rows(comparison: Comparison) -> tuple[list[str], list[list[Any]]]:
    """The beyond-accuracy metrics at ``k`` of every model, overall (segment ``all``) and per
    user segment: ``(columns, rows)``, columns ``model, segment, users, coverage@k, ild@k,
    novelty@k, creator_gini@k``, NaN where a metric was not computed. No rows when no model
    has any (the evaluation had no catalog side information)."""
    k = comparison.k
    metrics = [f"{m}@{k}" for m in BEYOND]
    cols = ["model", "segment", "users", *metrics]
    rows: list[list[Any]] = []
    for name, r in comparison.results.items():
        ev = r.evaluation
        for seg in ("all", *SEGMENTS):
            vals = ev.metrics if seg == "all" else ev.segments.get(seg)
            if vals is None:
                continue
            rows.append(
                [name, seg, ev.n_users.get(seg, 0)] + [vals.get(m, math.nan) for m in metrics]
            )
    if not any(isinstance(v, float) and not math.isnan(v) for row in rows for v in row[3:]):
        return cols, []
    return cols, rows


def beyond_table(
    comparison: Comparison, *, title: str | None = "Beyond accuracy by user segment"
) -> Table | None:
    """:func:`beyond_rows` as a table with the definitions as caption; None without rows."""
    cols, rows = beyond_rows(comparison)
    return Table(cols, rows, title, BEYOND_CAPTION) if rows else None


def tuning_table(tuned: Mapping[str, TuneResult], *, title: str | None = "Tuning") -> Table:
    """Best hyperparameters per model with their validation score and number of trials."""
    rows = [
        [
            name,
            ", ".join(f"{k}={v}" for k, v in t.params.items()) or "(none)",
            t.score,
            len(t.trials),
        ]
        for name, t in tuned.items()
    ]
    metric = next(iter(tuned.values())).metric if tuned else "score"
    return Table(["model", "best hyperparameters", f"valid {metric}", "trials"], rows, title)


def comparison_sections(
    comparison: Comparison,
    *,
    metrics: Sequence[str] | None = None,
    bars: Sequence[str] | None = None,
    tuned: Mapping[str, TuneResult] | None = None,
    name: str = "comparison",
) -> list[Section]:
    """Metrics table, bar chart of ``bars`` (default NDCG@k and Recall@k), segment table, the
    beyond-accuracy table per segment (when computed) and, when given, the tuning table, for
    one :class:`Comparison`."""
    k = comparison.k
    bars = bars or (f"ndcg@{k}", f"recall@{k}")
    table = comparison.table()
    out: list[Section] = [
        Text(f"Holdout: {comparison.holdout}."),
        metrics_table(table, metrics),
        metric_bars(table, bars, name=f"{name}_bars", title=" and ".join(bars) + " per model"),
        segment_table(comparison, f"ndcg@{k}"),
    ]
    beyond = beyond_table(comparison)
    if beyond is not None:
        out.append(beyond)
    out.append(models_table(comparison))
    if tuned:
        out.append(tuning_table(tuned))
    return out


def models_table(comparison: Comparison) -> Table:
    """Per model: fit and recommend seconds, and how many test users it met unseen in training
    (served a cold-start list; a dash when the model does not say)."""
    rows = [
        [
            name,
            r.fit_seconds,
            r.recommend_seconds,
            r.n_unknown_users if r.n_unknown_users is not None else math.nan,
        ]
        for name, r in comparison.results.items()
    ]
    return Table(
        ["model", "fit s", "recommend s", "unknown test users"],
        rows,
        "Models",
        "Unknown test users: asked for, but without any positive in the training data.",
        digits=2,
    )


def backtest_table(
    result: BacktestResult,
    metrics: Sequence[str] = ("ndcg@20", "recall@20"),
    *,
    title: str | None = "Backtest: mean ± std over windows",
) -> Table:
    """``mean ± std`` across windows per model and metric (text cells)."""
    summary = result.summary()
    rows = []
    for model in result.models:
        cells: list[Any] = [model]
        for m in metrics:
            mean, std = summary[model].get(m, (math.nan, math.nan))
            cells.append(f"{mean:.4f} ± {std:.4f}")
        rows.append(cells)
    cap = f"{len(result.windows)} windows: " + ", ".join(
        f"[{a:%Y-%m-%d %H:%M}, {b:%Y-%m-%d %H:%M})" for a, b in result.windows
    )
    return Table(["model", *metrics], rows, title, cap)


def backtest_plot(
    result: BacktestResult,
    metric: str = "ndcg@20",
    *,
    name: str = "backtest",
    title: str | None = None,
) -> Figure:
    """One line per model: ``metric`` on each window, x = window origin."""
    fig = MplFigure(figsize=(6.0, 3.4))
    ax = fig.subplots()
    labels = [f"{a:%Y-%m-%d}" for a, _ in result.windows]
    for model in result.models:
        ax.plot(range(len(labels)), result.values(model, metric), marker="o", label=model)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel("window origin")
    ax.set_ylabel(metric)
    ax.legend(frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return Figure(fig, name, title or f"Backtest: {metric} per window")


def backtest_sections(
    result: BacktestResult, metrics: Sequence[str] = ("ndcg@20", "recall@20")
) -> list[Section]:
    """Table of mean ± std and a line plot of the first metric."""
    return [backtest_table(result, metrics), backtest_plot(result, metrics[0])]
