"""``mlsd simulate``, ``mlsd data validate`` and ``mlsd data describe``: make, check and
summarise datasets. Each command delegates to :mod:`mlsd.data`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mlsd.cli._common import (
    FormatOpt,
    ItemColOpt,
    RatingColOpt,
    TimeColOpt,
    UserColOpt,
    WeightColOpt,
    column_map,
    console,
    progress,
    user_errors,
)
from mlsd.errors import DataError

data_app = typer.Typer(
    rich_markup_mode="markdown",
    help="Inspect and validate event logs and catalogs.",
    no_args_is_help=True,
)

DatasetPath = Annotated[Path, typer.Argument(help="A dataset directory or an events file.")]


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
    continue_from: Annotated[
        Path | None,
        typer.Option(
            "--continue",
            help="Continue the simulated world in this directory for --days more days (same "
            "users, creators and videos, new uploads; tastes keep drifting). OUT gets the new "
            "days' events and the whole world's entity tables.",
        ),
    ] = None,
) -> None:
    """Simulate a video platform: users, creators, videos and an event log.

    Writes users/creators/videos/events Parquet files and a manifest.json to OUT. Deterministic:
    the same scale and seed give byte-identical files. With ``--continue DIR --days N`` the
    world of DIR goes on for N more days (``mlsd simulate --continue data/sim --days 7 --out
    data/sim-week5``); a continued directory can be continued again.
    """
    from mlsd.config import SimulationConfig
    from mlsd.data.simulate import simulate as run_sim

    if continue_from is not None:
        _continue(continue_from, days, out)
        return
    overrides = {k: v for k, v in {"days": days, "n_users": users, "n_videos": videos}.items() if v}
    cfg = SimulationConfig.for_scale(scale, seed=seed, **overrides)
    with progress() as bar:
        ds = run_sim(cfg, progress=bar)
    ds.write(out, manifest=ds.meta)
    _print_counts(ds, f"simulated '{scale}' platform (seed {seed}) -> {out}")


def _continue(source: Path, days: int | None, out: Path) -> None:
    from mlsd.data.dataset import read_manifest
    from mlsd.data.simulate.continuation import continue_world

    if days is None:
        raise DataError("--continue needs --days N: how many more days to simulate")
    mf = source / "manifest.json"
    if not mf.is_file():
        raise DataError(f"{mf}: not found; --continue expects a directory mlsd simulate wrote")
    if out.resolve() == source.resolve():
        raise DataError(f"--out {out}: the same as --continue; write the new days elsewhere")
    meta = read_manifest(source)
    with progress() as bar:
        ds = continue_world(meta, days, progress=bar)
    ds.write(out, manifest=ds.meta)
    _print_counts(ds, f"{source} continued for {days} days -> {out}")


def _print_counts(ds: Any, title: str) -> None:
    t = Table(title=title)
    t.add_column("table")
    t.add_column("rows", justify="right")
    for k, tab in ds.tables().items():
        t.add_row(k, f"{tab.num_rows:,}")
    console.print(t)


@data_app.command("validate")
@user_errors
def data_validate(
    path: DatasetPath,
    videos: Annotated[
        Path | None, typer.Option(help="Videos file (overrides the directory's).")
    ] = None,
    users: Annotated[
        Path | None, typer.Option(help="Users file (overrides the directory's).")
    ] = None,
    fmt: FormatOpt = "auto",
    repair: Annotated[
        bool, typer.Option(help="Drop offending rows instead of failing; report how many and why.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="With --repair: write the repaired dataset here.")
    ] = None,
    user_col: UserColOpt = None,
    item_col: ItemColOpt = None,
    time_col: TimeColOpt = None,
    weight_col: WeightColOpt = None,
    rating_col: RatingColOpt = None,
) -> None:
    """Check a dataset against the mlsd data contracts.

    Exits 0 when valid; exits 2 listing every problem with its file, column, first row and what
    was expected. With --repair, bad rows are dropped and counted (nothing is dropped silently).
    Warns (still exit 0) about a log without timestamps and about time outliers.
    """
    from rich.markup import escape

    from mlsd.data.loaders import load
    from mlsd.data.timing import time_notes

    columns = column_map(user_col, item_col, time_col, weight_col, rating_col)
    ds = load(path, fmt=fmt, videos=videos, users=users, repair=repair, columns=columns)
    report = ds.report
    console.print(f"[green]valid[/green]: {path}")
    if report is not None:
        console.print(report.summary(), soft_wrap=True, markup=False)
        for p in report.problems:
            console.print(f"  repaired: {p}", markup=False, soft_wrap=True)
    for note in time_notes(ds):  # no timestamps, or time outliers: valid, but worth a word
        console.print(f"[yellow]warning[/yellow]: {escape(note)}", soft_wrap=True)
    if out is not None:
        ds.write(out, manifest=ds.meta or None)
        console.print(f"wrote {out}")


@data_app.command("describe")
@user_errors
def data_describe(
    path: DatasetPath,
    fmt: FormatOpt = "auto",
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
