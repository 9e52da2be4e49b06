"""``mlsd train`` and ``mlsd recommend``: the bring-your-own-data contract.

These commands (with ``mlsd evaluate``) are a stable interface that scripts rely on: options
keep their names, output columns keep their order (``user_id, rank, item_id, score``), and
every user error exits with status 2 and a one-line message. Each command is a thin wrapper of
library calls.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import typer
from rich.table import Table

from mlsd.cli._common import (
    EventsOpt,
    FormatOpt,
    UsersOpt,
    VideosOpt,
    console,
    load_events,
    pipeline_config,
    progress,
    user_errors,
)
from mlsd.errors import ConfigError, DataError

OUT_SUFFIXES = (".parquet", ".csv")


@user_errors
def train(
    events: EventsOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Model bundle directory to write.")],
    videos: VideosOpt = None,
    users: UsersOpt = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML PipelineConfig (see docs).")
    ] = None,
    fmt: FormatOpt = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing bundle.")] = False,
) -> None:
    """Train the two-stage recommender on an event log and write a model bundle.

    Retrieval (two-tower, co-visitation, popular sources), the LightGBM ranker and the rule
    chain are trained and saved with a manifest (version, data fingerprint, config, metrics).
    """
    from mlsd.pipeline import Recommender
    from mlsd.serving.bundle import save_bundle

    ds = load_events(events, videos, users, fmt)
    cfg = pipeline_config(config)
    rec = Recommender(cfg, progress=lambda m: console.log(m))
    with console.status("training (retrieval, features, ranker) ..."):
        rec.fit(ds)
    metrics = {"ranker": rec.ranker_.metrics_, "counts": rec.stats.counts}
    path = save_bundle(
        rec,
        out,
        config=cfg.model_dump(mode="json"),
        data_fingerprint=rec.data_fingerprints_["events"],  # hashed once, at fit
        metrics=metrics,
        overwrite=overwrite,
    )
    t = Table(title=f"trained {rec.version} -> {path}")
    t.add_column("what")
    t.add_column("value", justify="right")
    t.add_row("events", f"{ds.events.num_rows:,}")
    t.add_row("videos", f"{ds.videos.num_rows:,}")
    t.add_row("users", f"{ds.users.num_rows:,}")
    for k, v in rec.stats.counts.items():
        t.add_row(k.replace("_", " "), f"{v:,}")
    for obj, m in rec.ranker_.metrics_.items():
        t.add_row(f"ranker {obj} valid AUC", f"{m.get('valid_auc', float('nan')):.3f}")
    t.add_row("training time", f"{rec.stats.seconds.get('total', 0):.1f} s")
    console.print(t)


@user_errors
def recommend(
    model: Annotated[Path, typer.Option("--model", help="Model bundle from `mlsd train`.")],
    users: Annotated[Path, typer.Option("--users", help="Parquet/CSV with a user_id column.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .parquet or .csv.")],
    k: Annotated[int, typer.Option("--k", "-k", help="Recommendations per user.")] = 20,
    exclude_seen: Annotated[
        bool, typer.Option("--exclude-seen/--include-seen", help="Drop videos already watched.")
    ] = True,
) -> None:
    """Batch recommendations: columns user_id, rank, item_id, score.

    Unknown users get cold-start recommendations (popular per topic) and are counted in the
    summary. The output is written atomically (no partial file on failure).
    """
    from mlsd.serving.bundle import load_bundle

    if k < 1:
        raise ConfigError(f"--k {k}: expected an integer >= 1")
    _check_out(out)
    ids = _read_users(users)
    with console.status(f"loading {model} ..."):
        rec = load_bundle(model)
    with progress() as bar:
        task = bar.add_task("recommending", total=len(ids))
        batch = rec.recommend_batch(
            ids,
            k,
            exclude_seen=exclude_seen,
            progress=lambda n: bar.update(task, completed=n),
        )
    table = batch.to_table()
    _write_atomic(table, out)
    short = int(((batch.item_ids != -1).sum(axis=1) < k).sum())
    console.print(
        f"wrote {table.num_rows:,} rows for {len(ids):,} users to {out} "
        f"({int(batch.cold.sum()):,} unknown users got cold-start recommendations"
        + (f"; {short:,} users got fewer than {k}" if short else "")
        + ")"
    )


def _check_out(out: Path) -> None:
    if out.suffix.lower() not in OUT_SUFFIXES:
        raise ConfigError(f"--out {out}: expected a .parquet or .csv file name")


def _read_users(path: Path) -> np.ndarray:
    """The ``user_id`` column of a Parquet/CSV file as int64; a DataError naming the file and
    what is wrong when it cannot be read, lacks the column, or has empty or non-integer ids."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    try:
        is_pq = path.suffix.lower() == ".parquet"
        table = pq.read_table(path) if is_pq else pacsv.read_csv(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{path}: cannot read users ({e})") from e
    if "user_id" not in table.column_names:
        raise DataError(
            f"{path}: no 'user_id' column (columns present: {', '.join(table.column_names)})"
        )
    col = table.column("user_id")
    if col.null_count:
        raise DataError(f"{path}: column 'user_id' has {col.null_count:,} empty values")
    try:
        ids = np.asarray(col.to_numpy(zero_copy_only=False)).astype(np.int64)
    except (ValueError, TypeError) as e:
        raise DataError(f"{path}: column 'user_id': expected integer ids ({e})") from e
    if len(ids) == 0:
        raise DataError(f"{path}: no users listed")
    return ids


def _write_atomic(table: pa.Table, out: Path) -> None:
    """Write ``table`` to ``out`` (.parquet or .csv) through a temporary file in the same
    directory renamed over it, so that a failure never leaves a partial file."""
    _check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    try:
        if out.suffix.lower() == ".parquet":
            pq.write_table(table, tmp)
        else:
            pacsv.write_csv(table, tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
