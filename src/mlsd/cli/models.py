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
from typing import TYPE_CHECKING, Annotated

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import typer
from rich.table import Table

from mlsd.cli._common import (
    EventsOpt,
    FormatOpt,
    ItemColOpt,
    RatingColOpt,
    RegistryUriOpt,
    TimeColOpt,
    UserColOpt,
    UsersFileColOpt,
    UsersOpt,
    VideosOpt,
    WeightColOpt,
    column_map,
    console,
    load_events,
    pipeline_config,
    progress,
    user_errors,
)
from mlsd.errors import ConfigError, DataError

if TYPE_CHECKING:
    from mlsd.data.ids import IdMap

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
    ranker: Annotated[
        str | None,
        typer.Option(
            "--ranker",
            help="Ranker: gbdt (LightGBM), deep (DCN-v2), distilled (small MLP taught by a "
            "GBDT) or int8 (deep, quantized). Default: the config's ranker_kind (gbdt).",
        ),
    ] = None,
    user_col: UserColOpt = None,
    item_col: ItemColOpt = None,
    time_col: TimeColOpt = None,
    weight_col: WeightColOpt = None,
    rating_col: RatingColOpt = None,
    register: Annotated[
        str | None,
        typer.Option(
            "--register",
            help="Register the bundle in the model registry under this name (the first "
            "version of a name becomes its champion).",
        ),
    ] = None,
    registry_uri: RegistryUriOpt = None,
) -> None:
    """Train the two-stage recommender on an event log and write a model bundle.

    Retrieval (two-tower, co-visitation, popular sources), the ranker (``--ranker``) and the
    rule chain are trained and saved with a manifest (version, data fingerprint, config,
    metrics); ``--register NAME`` also stores it as a new version in the registry.
    """
    from mlsd.pipeline import PipelineConfig, Recommender
    from mlsd.ranking import RANKER_KINDS
    from mlsd.serving.bundle import save_bundle

    if ranker is not None and ranker not in RANKER_KINDS:
        raise ConfigError(f"--ranker {ranker!r}: expected one of {', '.join(RANKER_KINDS)}")
    columns = column_map(user_col, item_col, time_col, weight_col, rating_col)
    ds = load_events(events, videos, users, fmt, columns)
    cfg = pipeline_config(config)
    if ranker is not None:
        cfg = PipelineConfig.model_validate({**cfg.model_dump(), "ranker_kind": ranker})
    rec = Recommender(cfg, progress=lambda m: console.log(m))
    with console.status("training (retrieval, features, ranker) ..."):
        rec.fit(ds)
    metrics = {
        "ranker": rec.ranker_.metrics_,
        "counts": rec.stats.counts,
        "seconds": {k: round(v, 2) for k, v in rec.stats.seconds.items()},  # by stage
    }
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
    t.add_row("ranker", cfg.ranker_kind)
    for obj, m in rec.ranker_.metrics_.items():
        t.add_row(f"ranker {obj} valid AUC", f"{m.get('valid_auc', float('nan')):.3f}")
    t.add_row("training time", f"{rec.stats.seconds.get('total', 0):.1f} s")
    console.print(t)
    if register:
        _register(path, register, registry_uri)


def _register(path: Path, name: str, uri: str | None) -> None:
    from mlsd.registry import Registry

    reg = Registry(uri)
    v = reg.register(path, name)
    console.print(f"registered {name} v{v.version} ({v.model_version}) in {reg.uri}")
    if reg.alias(name, "champion") is None:
        reg.promote(name, v.version, reason="first version")
        console.print(f"{name} v{v.version} is the champion (the first version)")


@user_errors
def recommend(
    model: Annotated[Path, typer.Option("--model", help="Model bundle from `mlsd train`.")],
    users: Annotated[
        Path, typer.Option("--users", help="Parquet/CSV with a user_id column (see --user-col).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .parquet or .csv.")],
    k: Annotated[int, typer.Option("--k", "-k", help="Recommendations per user.")] = 20,
    exclude_seen: Annotated[
        bool, typer.Option("--exclude-seen/--include-seen", help="Drop videos already watched.")
    ] = True,
    user_col: UsersFileColOpt = "user_id",
) -> None:
    """Batch recommendations: columns user_id, rank, item_id, score.

    Unknown users get cold-start recommendations (popular per topic) and are counted in the
    summary; a user listed more than once gets one list (first occurrence kept, the
    duplicates counted in the summary). The output is written atomically (no partial file on
    failure).
    """
    from mlsd.serving.bundle import load_bundle

    if k < 1:
        raise ConfigError(f"--k {k}: expected an integer >= 1")
    _check_out(out)
    given = _read_users(users, user_col)
    with console.status(f"loading {model} ..."):
        rec = load_bundle(model)
    maps = getattr(rec, "id_maps", {})  # string ids: how the model knows them
    ids = _user_codes(users, given, maps.get("user_id"), user_col)
    # a user listed twice gets one list: keep first occurrences, in file order
    keys = ids if "user_id" not in maps else np.asarray(given.to_numpy(zero_copy_only=False))
    first = _first_seen(keys)
    n_dup = len(ids) - len(first)
    if n_dup:
        given, ids = given.take(pa.array(first)), ids[first]
    with progress() as bar:
        task = bar.add_task("recommending", total=len(ids))
        batch = rec.recommend_batch(
            ids,
            k,
            exclude_seen=exclude_seen,
            progress=lambda n: bar.update(task, completed=n),
        )
    table = _original_ids(batch.to_table(), batch.item_ids, given, maps)
    _write_atomic(table, out)
    short = int(((batch.item_ids != -1).sum(axis=1) < k).sum())
    console.print(
        f"wrote {table.num_rows:,} rows for {len(ids):,} users to {out} "
        f"({int(batch.cold.sum()):,} unknown users got cold-start recommendations"
        + (f"; {short:,} users got fewer than {k}" if short else "")
        + (f"; {n_dup:,} duplicate user ids dropped, first kept" if n_dup else "")
        + ")"
    )


def _first_seen(keys: np.ndarray) -> np.ndarray:
    """Sorted positions of the first occurrence of each distinct value of ``keys``."""
    _, first = np.unique(keys, return_index=True)
    return np.sort(first)


def _check_out(out: Path) -> None:
    if out.suffix.lower() not in OUT_SUFFIXES:
        raise ConfigError(f"--out {out}: expected a .parquet or .csv file name")


def _read_users(path: Path, column: str = "user_id") -> pa.Array:
    """The user ids, ``column`` (``--user-col``) of a Parquet/CSV file, as read (CSV: text,
    the ids as written); a DataError naming the file and what is wrong when it cannot be
    read, lacks the column, or has empty ids."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    try:
        is_pq = path.suffix.lower() == ".parquet"
        text = pacsv.ConvertOptions(column_types={column: pa.string()})
        table = pq.read_table(path) if is_pq else pacsv.read_csv(path, convert_options=text)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{path}: cannot read users ({e})") from e
    if column not in table.column_names:
        raise DataError(
            f"{path}: no '{column}' column (columns present: {', '.join(table.column_names)})"
        )
    col = table.column(column).combine_chunks()
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    empty = col.null_count
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        empty += int(pc.sum(pc.equal(col, "")).as_py() or 0)
    if empty:
        raise DataError(f"{path}: column '{column}' has {empty:,} empty values")
    if len(col) == 0:
        raise DataError(f"{path}: no users listed")
    return col


def _user_codes(
    path: Path, given: pa.Array, users: IdMap | None, column: str = "user_id"
) -> np.ndarray:
    """The int64 ids the model knows the users ``given`` by: through the model's id map when
    it was trained on string ids (an id it does not know is a cold user), else the integers
    themselves (a DataError naming the file for a value that is not an integer)."""
    if users is not None:
        return users.encode(given)
    if pa.types.is_integer(given.type):
        return np.asarray(given.to_numpy(zero_copy_only=False)).astype(np.int64)
    try:
        return np.asarray(pc.cast(given, pa.int64()).to_numpy(zero_copy_only=False))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise DataError(
            f"{path}: column '{column}': expected integer ids, as the model was trained on ({e})"
        ) from e


def _original_ids(
    table: pa.Table, item_codes: np.ndarray, given: pa.Array, maps: dict[str, IdMap]
) -> pa.Table:
    """``table`` (from ``RecommendationBatch.to_table``) with ids as the user gave them: each
    row's ``user_id`` is the users file's value (as typed there, but a CSV file's integers are
    integers when the model's are), and ``item_id`` the item's original id when the model was
    trained on string item ids."""
    if "user_id" in maps:
        per_user = (item_codes != -1).sum(axis=1)  # the batch's padding
        rows = np.repeat(np.arange(len(given)), per_user)
        table = table.set_column(0, "user_id", given.take(pa.array(rows)))
    items = maps.get("video_id")
    if items is not None:
        i = table.column_names.index("item_id")
        codes = table.column("item_id").combine_chunks().to_numpy()
        table = table.set_column(i, "item_id", items.decode_arrow(codes))
    return table


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
