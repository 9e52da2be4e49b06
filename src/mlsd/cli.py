"""The ``mlsd`` command line: a thin Typer front door; every command delegates to the library.

User errors (any :class:`~mlsd.errors.MlsdError`) print a short message and exit with status 2,
without a traceback. Set ``MLSD_DEBUG=1`` to see the traceback anyway.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from mlsd.cli_evaluate import evaluate_app
from mlsd.cli_features import features_app
from mlsd.cli_models import demo, recommend, train
from mlsd.cli_serve import bench_app, serve
from mlsd.errors import DataValidationError, MlsdError

app = typer.Typer(
    rich_markup_mode="markdown",
    name="mlsd",
    help="Machine-learning system design, running: simulate, validate, train, evaluate, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    rich_markup_mode="markdown",
    help="Inspect and validate event logs and catalogs.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(features_app, name="features")
app.command("train")(train)
app.command("recommend")(recommend)
app.command("demo")(demo)
app.add_typer(bench_app, name="bench")
app.command("serve")(serve)

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Turn MlsdError into a one-line message on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MlsdError as e:
            if os.environ.get("MLSD_DEBUG"):
                raise
            if isinstance(e, DataValidationError) and len(e.problems) > 1:
                err_console.print(
                    f"[red]error:[/red] {len(e.problems)} problems found", soft_wrap=True
                )
                for p in e.problems:
                    err_console.print(f"  - {p}", soft_wrap=True, markup=False)
                if e.note:
                    err_console.print(f"  ({e.note})", soft_wrap=True, markup=False)
            else:
                err_console.print("[red]error:[/red] ", end="")
                err_console.print(str(e), soft_wrap=True, markup=False)
            raise typer.Exit(e.exit_code) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@user_errors
def simulate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (created).")] = Path(
        "data/sim"
    ),
    scale: Annotated[
        str, typer.Option(help="tiny (tests), small (demo) or large (benchmarks).")
    ] = "small",
    seed: Annotated[
        int, typer.Option(help="Random seed; the same seed gives identical files.")
    ] = 0,
    days: Annotated[int | None, typer.Option(help="Override the number of simulated days.")] = None,
    users: Annotated[int | None, typer.Option(help="Override the number of users.")] = None,
    videos: Annotated[int | None, typer.Option(help="Override the number of videos.")] = None,
) -> None:
    """Simulate a video platform: users, creators, videos and an event log.

    Writes users/creators/videos/events Parquet files and a manifest.json to OUT. Deterministic:
    the same scale and seed give byte-identical files.
    """
    from mlsd.config import SimulationConfig
    from mlsd.data.simulate import simulate as run_sim

    overrides = {k: v for k, v in {"days": days, "n_users": users, "n_videos": videos}.items() if v}
    cfg = SimulationConfig.for_scale(scale, seed=seed, **overrides)
    with _progress() as progress:
        ds = run_sim(cfg, progress=progress)
    ds.write(out, manifest=ds.meta)
    t = Table(title=f"simulated '{scale}' platform (seed {seed}) -> {out}")
    t.add_column("table")
    t.add_column("rows", justify="right")
    for k, tab in ds.tables().items():
        t.add_row(k, f"{tab.num_rows:,}")
    console.print(t)


@data_app.command("validate")
@user_errors
def data_validate(
    path: Annotated[Path, typer.Argument(help="A dataset directory or an events file.")],
    videos: Annotated[
        Path | None, typer.Option(help="Videos file (overrides the directory's).")
    ] = None,
    users: Annotated[
        Path | None, typer.Option(help="Users file (overrides the directory's).")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="auto, mlsd, interactions or movielens.")
    ] = "auto",
    repair: Annotated[
        bool, typer.Option(help="Drop offending rows instead of failing; report how many and why.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="With --repair: write the repaired dataset here.")
    ] = None,
) -> None:
    """Check a dataset against the mlsd data contracts.

    Exits 0 when valid; exits 2 listing every problem with its file, column, first row and what
    was expected. With --repair, bad rows are dropped and counted (nothing is dropped silently).
    """
    from mlsd.data.loaders import load

    ds = load(path, fmt=fmt, videos=videos, users=users, repair=repair)
    report = ds.report
    console.print(f"[green]valid[/green]: {path}")
    if report is not None:
        console.print(report.summary(), soft_wrap=True, markup=False)
        for p in report.problems:
            console.print(f"  repaired: {p}", markup=False, soft_wrap=True)
    if out is not None:
        ds.write(out, manifest=ds.meta or None)
        console.print(f"wrote {out}")


@data_app.command("describe")
@user_errors
def data_describe(
    path: Annotated[Path, typer.Argument(help="A dataset directory or an events file.")],
    fmt: Annotated[
        str, typer.Option("--format", help="auto, mlsd, interactions or movielens.")
    ] = "auto",
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Where to write the watch-completion histogram PNG "
            "(default: <PATH>/describe_completion.png or next to the file)."
        ),
    ] = None,
    top: Annotated[int, typer.Option(help="How many top creators and topics to list.")] = 10,
) -> None:
    """Summarise a dataset: counts, date range, label rates, top creators and topics, sparsity,
    and a PNG histogram of watch completion."""
    from mlsd.data.describe import describe_dataset, render_description
    from mlsd.data.loaders import load

    ds = load(path, fmt=fmt)
    if plot is None:
        base = path if path.is_dir() else path.parent
        plot = base / "describe_completion.png"
    desc = describe_dataset(ds, plot_path=plot, top=top)
    render_description(desc, console)


def _progress() -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=not sys.stderr.isatty(),
    )


if __name__ == "__main__":  # pragma: no cover
    app()
