"""``mlsd demo``: the whole video recommender end to end (delegates to
:func:`mlsd.systems.video_recommendation.demo.run_demo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mlsd.cli._common import console, status_log, user_errors


@user_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Runs directory.")] = Path("runs"),
    scale: Annotated[str, typer.Option(help="Simulated scale: tiny, small or large.")] = "small",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    serve: Annotated[
        bool, typer.Option("--serve", help="Leave the service running at the end (Ctrl-C stops).")
    ] = False,
    no_serve: Annotated[
        bool, typer.Option("--no-serve", help="Skip starting the HTTP service.")
    ] = False,
    port: Annotated[int | None, typer.Option(help="Service port (default: a free one).")] = None,
    backtest: Annotated[int, typer.Option(help="Backtest windows (0: none).")] = 3,
) -> None:
    """The whole video recommender, end to end, organised by the book's seven steps.

    Simulates a platform, validates and describes the data, checks feature skew, trains
    retrieval and the ranker, evaluates them against tuned baselines with a backtest, writes
    runs/<timestamp>/report.md and report.html, bundles the model, then starts the HTTP
    service, sends a few requests and prints one user's history beside their explained
    recommendations.
    """
    from mlsd.systems.video_recommendation.demo import run_demo

    with status_log("demo ...") as say:
        res = run_demo(
            out,
            scale=scale,
            seed=seed,
            serve=not no_serve,
            serve_forever=serve,
            port=port,
            backtest_windows=backtest,
            log=say,
            console=console,
        )
    f = res.figures
    t = Table(title="demo: offline evaluation (temporal holdout, k = 20)")
    t.add_column("model")
    t.add_column("recall@20", justify="right")
    t.add_column("ndcg@20", justify="right")
    for name in [n[: -len("_recall@20")] for n in f if n.endswith("_recall@20")]:
        t.add_row(name, f"{f[f'{name}_recall@20']:.4f}", f"{f[f'{name}_ndcg@20']:.4f}")
    console.print(t)
    console.print(f"report: {res.report_md} and {res.report_html}")
    console.print(f"model bundle: {res.bundle}")
    console.print(f"total: {res.seconds.get('total', 0):.0f} s")
