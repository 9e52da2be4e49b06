"""``mlsd evaluate ...``: offline evaluation commands (thin: each delegates to a library call)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mlsd.cli_models import evaluate_main

evaluate_app = typer.Typer(rich_markup_mode="markdown", invoke_without_command=True)
evaluate_app.callback()(evaluate_main)

console = Console()


@evaluate_app.command("retrieval")
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
    from mlsd.cli import err_console, user_errors
    from mlsd.config import SimulationConfig
    from mlsd.data.dataset import load_dataset
    from mlsd.data.simulate import simulate
    from mlsd.retrieval import default_sources, evaluate_retrieval

    @user_errors
    def run() -> None:
        if path is not None:
            ds = load_dataset(path)
            what = str(path)
        else:
            ds = simulate(SimulationConfig.for_scale(scale, seed=seed))
            what = f"simulated '{scale}' (seed {seed})"
        overrides = {} if epochs is None else {"epochs": epochs}
        with _progress(err_console) as progress:
            report = evaluate_retrieval(
                ds,
                sources=default_sources(seed=seed, **overrides),
                k=k,
                test_days=test_days,
                seed=seed,
                max_users=max_users,
                log=lambda msg: progress.console.print(msg, markup=False),
                progress=progress,
            )
        console.print(render(report, what))
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
            console.print(f"wrote {json_out}")

    run()


def _progress(out: Console) -> Progress:
    """One bar per two-tower epoch, on stderr; left on screen only on a terminal."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=out,
        transient=not out.is_terminal,
    )


def render(report: object, what: str) -> Table:
    """The report as a Rich table: one row per source, then the merged union."""
    from mlsd.retrieval.evaluate import RetrievalReport

    assert isinstance(report, RetrievalReport)
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
