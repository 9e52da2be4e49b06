"""``mlsd evaluate`` and ``mlsd evaluate retrieval``: offline evaluation (thin: each delegates
to a library call).

``mlsd evaluate`` without a sub-command is part of the bring-your-own-data contract (see
:mod:`mlsd.cli.models`): its options and report paths are stable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from mlsd.cli._common import (
    FormatOpt,
    ItemColOpt,
    RatingColOpt,
    TimeColOpt,
    UserColOpt,
    UsersOpt,
    VideosOpt,
    WeightColOpt,
    column_map,
    console,
    load_events,
    pipeline_config,
    progress,
    simulated,
    status_log,
    user_errors,
)
from mlsd.errors import ConfigError

if TYPE_CHECKING:
    from mlsd.evaluation.protocol import Comparison
    from mlsd.retrieval.evaluate import RetrievalReport

evaluate_app = typer.Typer(rich_markup_mode="markdown", invoke_without_command=True)

# The protocol names users type, and the short names the library takes.
PROTOCOLS: dict[str, Any] = {
    "global-temporal": "temporal",
    "temporal": "temporal",
    "per-user-temporal": "per-user",
    "per-user": "per-user",
}


@evaluate_app.callback()
@user_errors
def evaluate_main(
    ctx: typer.Context,
    events: Annotated[
        Path | None,
        typer.Option("--events", help="Event log (as for `mlsd train`); omit to simulate."),
    ] = None,
    videos: VideosOpt = None,
    users: UsersOpt = None,
    fmt: FormatOpt = "auto",
    protocol: Annotated[
        str,
        typer.Option(
            help="global-temporal (train before a cut, test on the next --test-days) or "
            "per-user-temporal (each user's last --test-share of positives)."
        ),
    ] = "global-temporal",
    test_share: Annotated[float, typer.Option(help="Per-user test share.")] = 0.2,
    test_days: Annotated[float, typer.Option(help="Global test period, days.")] = 7.0,
    k: Annotated[int, typer.Option("--k", "-k", help="List length for the metrics.")] = 20,
    backtest: Annotated[
        int, typer.Option(help="Rolling-origin backtest windows (0: none, else >= 3).")
    ] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Report directory.")] = Path(
        "runs/evaluate"
    ),
    config: Annotated[Path | None, typer.Option("--config", help="YAML PipelineConfig.")] = None,
    scale: Annotated[str, typer.Option(help="Simulated scale when --events is omitted.")] = "small",
    seed: Annotated[int, typer.Option(help="Simulation seed when --events is omitted.")] = 0,
    min_test_users: Annotated[
        int,
        typer.Option(
            help="Refuse (exit 2) to score fewer test users than this: their metrics are noise. "
            "Lower it to score them anyway."
        ),
    ] = 10,
    user_col: UserColOpt = None,
    item_col: ItemColOpt = None,
    time_col: TimeColOpt = None,
    weight_col: WeightColOpt = None,
    rating_col: RatingColOpt = None,
) -> None:
    """Offline evaluation: the pipeline beside tuned baselines (MostPop, ItemKNN, EASE, ALS).

    Without a sub-command: tune the baselines on a validation slice of the training side, fit
    everything, and score Recall/NDCG/MAP/MRR@K, coverage, diversity, novelty and creator
    concentration per user segment on the test slice; prints a table of accuracy, a table of
    the beyond-accuracy metrics per model and user segment (new, light, heavy), and writes
    report.md and report.html (with plots) to --out. `mlsd evaluate retrieval` measures
    candidate recall.

    A log without timestamps (or with one time for every event) is split per user at random
    (seeded) whatever --protocol says, and a note says so; the global cut ignores time
    outliers (rows far beyond the rest of the log).
    """
    if ctx.invoked_subcommand is not None:
        return
    from mlsd.evaluation.report import Report
    from mlsd.systems.video_recommendation.evaluate import evaluate_system

    proto = PROTOCOLS.get(protocol)
    if proto is None:
        raise ConfigError(f"--protocol {protocol!r}: expected global-temporal or per-user-temporal")
    columns = column_map(user_col, item_col, time_col, weight_col, rating_col)
    if events is None:
        if columns:
            raise ConfigError("--user-col/--item-col/...: name columns of --events; none given")
        with console.status(f"simulating '{scale}' ..."):
            ds = simulated(scale, seed)
        source = f"simulated '{scale}' (seed {seed})"
    else:
        ds = load_events(events, videos, users, fmt, columns)
        source = str(events)
    cfg = None
    if config is not None:
        split = "global" if proto == "temporal" else "per-user"
        cfg = pipeline_config(config).model_copy(update={"label_split": split})
    with status_log("evaluating ...") as say:
        run = evaluate_system(
            ds,
            protocol=proto,
            k=k,
            test_share=test_share,
            test_days=test_days,
            config=cfg,
            backtest_windows=backtest,
            log=say,
            min_test_users=min_test_users,
        )
    table = run.table()
    t = Table(title=f"{source}: {run.holdout.summary()}")
    t.add_column("model")
    cols = [f"recall@{k}", f"ndcg@{k}", f"map@{k}", f"mrr@{k}", f"coverage@{k}"]
    cols = [c for c in cols if any(c in r for r in table.values())]
    for c in cols:
        t.add_column(c, justify="right")
    t.add_column("unknown users", justify="right")
    for name, row in table.items():
        unknown = run.comparison.results[name].n_unknown_users
        t.add_row(
            name,
            *(f"{row.get(c, float('nan')):.4f}" for c in cols),
            "-" if unknown is None else f"{unknown:,}",
        )
    console.print(t)
    console.print(beyond_by_segment(run.comparison))
    report = Report(f"mlsd evaluate: {source}")
    report.add(*run.sections())
    paths = report.write(out)
    console.print(f"report: {paths['markdown']} and {paths['html']}")


def beyond_by_segment(comparison: Comparison) -> Table:
    """Coverage, intra-list diversity, novelty and creator concentration of every model,
    overall and per user segment (:func:`mlsd.evaluation.report.beyond_rows`), definitions
    in the caption."""
    from mlsd.evaluation.report import BEYOND_CAPTION, beyond_rows

    cols, rows = beyond_rows(comparison)
    t = Table(title=f"beyond accuracy @{comparison.k} by user segment", caption=BEYOND_CAPTION)
    for i, c in enumerate(cols):
        t.add_column(c, justify="left" if i < 2 else "right")
    for row in rows:
        cells = [f"{v:,}" if isinstance(v, int) else f"{v:.4f}" for v in row[2:]]
        t.add_row(row[0], row[1], *[c.replace("nan", "-") for c in cells])
    return t


@evaluate_app.command("retrieval")
@user_errors
def retrieval(
    path: Annotated[
        Path | None,
        typer.Argument(help="A dataset directory or events file; omit to simulate one."),
    ] = None,
    scale: Annotated[str, typer.Option(help="Simulated scale when no PATH is given.")] = "small",
    seed: Annotated[int, typer.Option(help="Seed of the simulation and of training.")] = 0,
    k: Annotated[int, typer.Option("--k", "-k", help="Candidates per user.")] = 500,
    test_days: Annotated[
        float, typer.Option(help="Length of the next period (the end of the log), in days.")
    ] = 7.0,
    max_users: Annotated[
        int | None, typer.Option(help="Evaluate a random subset of this many users.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Two-tower training epochs.")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the report as JSON here.")
    ] = None,
) -> None:
    """Candidate recall@K of every retrieval source and of their merged union.

    Sources are fitted on everything before the next period; recall@K is the share of a user's
    next-period valid watches (not watched before) found among their K candidates, averaged over
    users. See mlsd.retrieval.evaluate for the protocol.
    """
    from mlsd.data.dataset import load_dataset
    from mlsd.retrieval import default_sources, evaluate_retrieval

    if path is not None:
        ds = load_dataset(path)
        what = str(path)
    else:
        ds = simulated(scale, seed)
        what = f"simulated '{scale}' (seed {seed})"
    overrides = {} if epochs is None else {"epochs": epochs}
    with progress() as bar:  # one bar per two-tower epoch
        report = evaluate_retrieval(
            ds,
            sources=default_sources(seed=seed, **overrides),
            k=k,
            test_days=test_days,
            seed=seed,
            max_users=max_users,
            log=lambda msg: bar.console.print(msg, markup=False),
            progress=bar,
        )
    console.print(render(report, what))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        console.print(f"wrote {json_out}")


def render(report: RetrievalReport, what: str) -> Table:
    """The report as a Rich table: one row per source, then the merged union."""
    t = Table(
        title=(
            f"candidate recall@K on {what}: next {report.test_days:g} days from "
            f"{report.split_time[:16]}, {report.n_users:,} users "
            f"({report.n_cold_users:,} without history), {report.n_future:,} new valid watches"
        ),
        caption="@K: recall@K; cold: users without history; hits: share of the merged "
        "list's hits tagged with the source",
    )
    t.add_column("source", no_wrap=True)
    for c in report.cutoffs:
        t.add_column(f"@{c}", justify="right")
    t.add_column(f"cold@{report.k}", justify="right")
    t.add_column("hits", justify="right")
    t.add_column("fit s", justify="right")
    t.add_column("query s", justify="right")
    rows = [*report.sources, *([report.merged] if report.merged else [])]
    for r in rows:
        merged = r is report.merged
        share = "" if r.merged_hit_share is None else f"{r.merged_hit_share:.1%}"
        fit = "" if merged else f"{report.fit_s.get(r.name, 0.0):.1f}"
        cells = [f"{r.recall[c]:.3f}" for c in report.cutoffs]
        t.add_row(
            f"[bold]{r.name}[/bold]" if merged else r.name,
            *cells,
            f"{r.recall_cold[report.k]:.3f}" if r.recall_cold else "",
            share,
            fit,
            f"{r.query_s:.1f}",
        )
    return t
