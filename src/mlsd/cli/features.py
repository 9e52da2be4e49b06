"""``mlsd features ...``: the feature store from the command line (a Typer sub-app).

Every command delegates to :mod:`mlsd.features`; user errors print one line and exit 2, a
skew check that finds mismatches exits 1.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from mlsd.cli._common import console, simulated, user_errors
from mlsd.errors import ConfigError

if TYPE_CHECKING:
    from mlsd.data.dataset import Dataset
    from mlsd.features.online import OnlineStore

features_app = typer.Typer(
    rich_markup_mode="markdown",
    help="Feature store: registry, training sets, online materialization, skew check.",
    no_args_is_help=True,
)
DataPath = Annotated[
    Path | None, typer.Argument(help="A dataset directory (mlsd schema); or use --scale.")
]
ScaleOpt = Annotated[
    str | None, typer.Option(help="Simulate a tiny/small/large platform instead of reading PATH.")
]
SeedOpt = Annotated[int, typer.Option(help="Seed of the simulation and of the sampling.")]
RedisOpt = Annotated[
    str | None,
    typer.Option("--redis", help="Redis URL (redis://host:port/db); default: in-memory store."),
]
NamespaceOpt = Annotated[str, typer.Option(help="Key prefix in Redis.")]


def _dataset(path: Path | None, scale: str | None, seed: int) -> Dataset:
    """The dataset at PATH or the simulated platform of --scale; a ConfigError unless exactly
    one of them is given."""
    if path is None and scale is not None:
        return simulated(scale, seed)
    if path is not None and scale is None:
        from mlsd.data.dataset import load_dataset

        return load_dataset(path)
    raise ConfigError("give either a dataset PATH or --scale (tiny, small, large)")


def _store(redis_url: str | None, namespace: str) -> OnlineStore:
    """The Redis store at ``redis_url`` under ``namespace``; an in-memory one when it is None."""
    from mlsd.features import open_store

    return open_store(redis_url, namespace=namespace)


@features_app.command("list")
@user_errors
def list_features(
    entity: Annotated[str | None, typer.Option(help="Only this entity's features.")] = None,
) -> None:
    """List the registered video-recommendation features."""
    from mlsd.features.definitions import VIDEO_REC

    feats = VIDEO_REC.for_entity(entity) if entity else list(VIDEO_REC)
    t = Table(title=f"{len(feats)} features")
    for c in ("name", "entity", "source", "window", "dtype", "default", "description"):
        t.add_column(c)
    for f in feats:
        t.add_row(f.name, f.entity, f.source, f.window or "", f.dtype, f"{f.default:g}",
                  f.description + ("" if f.in_matrix else " [not a matrix column]"))  # fmt: skip
    console.print(t)


@features_app.command("materialize")
@user_errors
def materialize_cmd(
    path: DataPath = None,
    scale: ScaleOpt = None,
    seed: SeedOpt = 0,
    redis_url: RedisOpt = None,
    namespace: NamespaceOpt = "mlsd",
    at: Annotated[
        str | None, typer.Option(help="Only events before this ISO time (default: all).")
    ] = None,
) -> None:
    """Write every entity's latest feature values into the online store."""
    from mlsd.features.stream import materialize

    ds = _dataset(path, scale, seed)
    at_ms = None
    if at is not None:
        try:
            at_ms = int(datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError as e:
            raise ConfigError(f"--at {at!r}: not an ISO time like 2026-01-20T12:00:00Z") from e
    store = _store(redis_url, namespace)
    t0 = datetime.now()
    materialize(ds, store, at_ms=at_ms)
    secs = (datetime.now() - t0).total_seconds()
    where = redis_url or "memory"
    console.print(f"materialized {store.stats.writes:,} records into {where} in {secs:.1f} s")


@features_app.command("build")
@user_errors
def build_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output Parquet file.")],
    path: DataPath = None,
    scale: ScaleOpt = None,
    seed: SeedOpt = 0,
) -> None:
    """Build the point-in-time training matrix of every impression.

    Features only: join labels on (user_id, video_id, timestamp)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from mlsd.features.offline import build_training_set

    ds = _dataset(path, scale, seed)
    ev = ds.events
    rows = ev.filter(pc.equal(ev.column("event_type"), "impression"))
    rows = rows.select(["user_id", "video_id", "timestamp", "device", "surface"])
    timings: dict[str, float] = {}
    table = build_training_set(ds, rows, timings=timings)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out, compression="zstd")
    console.print(
        f"wrote {table.num_rows:,} rows x {table.num_columns} columns to {out} "
        f"(features built in {timings['total']:.1f} s)"
    )


@features_app.command("skew-check")
@user_errors
def skew_check_cmd(
    path: DataPath = None,
    scale: ScaleOpt = None,
    seed: SeedOpt = 0,
    points: Annotated[int, typer.Option(help="How many (user, video, time) points.")] = 200,
    redis_url: RedisOpt = None,
    namespace: NamespaceOpt = "mlsd-skew",
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the report as JSON here.")
    ] = None,
    show_all: Annotated[bool, typer.Option("--all", help="List every feature.")] = False,
) -> None:
    """Compute features offline and online at sampled points; report mismatches per feature.

    Exits 1 if any feature disagrees. With --redis the online path goes through Redis (the
    namespace is cleared first).
    """
    from mlsd.features.skew import skew_check

    ds = _dataset(path, scale, seed)
    store = _store(redis_url, namespace)
    if hasattr(store, "clear"):
        store.clear()
    report = skew_check(ds, n_points=points, seed=seed, store=store)
    t = Table(title=f"skew check: {report.n_points} points, rtol {report.rtol:g}, "
                    f"atol {report.atol:g}")  # fmt: skip
    for c in ("feature", "mismatches", "rate", "max |diff|", "first mismatch"):
        t.add_column(c)
    for f in report.features:
        if f.mismatches or show_all:
            ex = "" if f.example is None else (
                f"user {f.example['user_id']} video {f.example['video_id']}: "
                f"offline {f.example['offline']:.6g} online {f.example['online']:.6g}"
            )  # fmt: skip
            t.add_row(f.name, str(f.mismatches), f"{f.rate:.1%}", f"{f.max_abs_diff:.3g}", ex)
    if t.row_count:
        console.print(t)
    if json_out is not None:
        json_out.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    verdict = "[green]no skew[/green]" if report.ok else "[red]SKEW[/red]"
    console.print(f"{verdict}: {report.mismatches} mismatches over {len(report.features)} "
                  f"features x {report.n_points} points")  # fmt: skip
    if not report.ok:
        raise typer.Exit(1)
