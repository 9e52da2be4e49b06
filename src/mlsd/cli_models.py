"""``mlsd train``, ``mlsd recommend`` and ``mlsd evaluate``: the bring-your-own-data contract.

These three commands are a stable interface that scripts rely on: options keep their names,
output columns keep their order (``user_id, rank, item_id, score``), and every user error
exits with status 2 and a one-line message. Each command is a thin wrapper of library calls.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import typer
from rich.console import Console
from rich.table import Table

from mlsd.errors import ConfigError, DataError

console = Console()

EventsOpt = Annotated[
    Path,
    typer.Option(
        "--events",
        help="Event log: an mlsd dataset directory, a Parquet/CSV events file, an "
        "interactions-only file (user_id,item_id,timestamp[,weight|rating]) or a MovieLens "
        "folder/file.",
    ),
]
VideosOpt = Annotated[
    Path | None, typer.Option("--videos", help="Videos catalog (Parquet/CSV, mlsd schema).")
]
UsersOpt = Annotated[Path | None, typer.Option("--users", help="Users table (Parquet/CSV).")]
FormatOpt = Annotated[str, typer.Option("--format", help="auto, mlsd, interactions or movielens.")]


def _load(events: Path, videos: Path | None, users: Path | None, fmt: str) -> Any:
    from mlsd.data.loaders import load

    with console.status(f"loading {events} ..."):
        return load(events, fmt=fmt, videos=videos, users=users)


def _config(path: Path | None) -> Any:
    from mlsd.config import load_yaml
    from mlsd.pipeline import PipelineConfig

    return load_yaml(path, PipelineConfig) if path is not None else PipelineConfig()


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
    from mlsd.cli import user_errors

    @user_errors
    def run() -> None:
        from mlsd.pipeline import Recommender
        from mlsd.serving.bundle import fingerprint_table, save_bundle

        ds = _load(events, videos, users, fmt)
        cfg = _config(config)
        rec = Recommender(cfg, progress=lambda m: console.log(m))
        with console.status("training (retrieval, features, ranker) ..."):
            rec.fit(ds)
        metrics = {"ranker": rec.ranker_.metrics_, "counts": rec.stats.counts}
        path = save_bundle(
            rec,
            out,
            config=cfg.model_dump(mode="json"),
            data_fingerprint=fingerprint_table(ds.events),
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

    run()


def _read_users(path: Path) -> np.ndarray:
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
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    try:
        if out.suffix.lower() == ".parquet":
            pq.write_table(table, tmp)
        elif out.suffix.lower() == ".csv":
            pacsv.write_csv(table, tmp)
        else:
            raise ConfigError(f"--out {out}: expected a .parquet or .csv file name")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
    from mlsd.cli import _progress, user_errors

    @user_errors
    def run() -> None:
        from mlsd.serving.bundle import load_bundle

        if k < 1:
            raise ConfigError(f"--k {k}: expected an integer >= 1")
        if out.suffix.lower() not in (".parquet", ".csv"):
            raise ConfigError(f"--out {out}: expected a .parquet or .csv file name")
        ids = _read_users(users)
        with console.status(f"loading {model} ..."):
            rec = load_bundle(model)
        with _progress() as progress:
            task = progress.add_task("recommending", total=len(ids))
            batch = rec.recommend_batch(
                ids,
                k,
                exclude_seen=exclude_seen,
                progress=lambda n: progress.update(task, completed=n),
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

    run()


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
) -> None:
    """Offline evaluation: the pipeline beside tuned baselines (MostPop, ItemKNN, EASE, ALS).

    Without a sub-command: tune the baselines on a validation slice of the training side, fit
    everything, and score Recall/NDCG/MAP/MRR@K, coverage, diversity, novelty and creator
    concentration per user segment on the test slice; prints a table and writes report.md and
    report.html (with plots) to --out. `mlsd evaluate retrieval` measures candidate recall.
    """
    if ctx.invoked_subcommand is not None:
        return
    from mlsd.cli import user_errors

    @user_errors
    def run() -> None:
        from mlsd.evaluation.report import Report
        from mlsd.systems.video_recommendation.evaluate import evaluate_system

        proto: Any = {
            "global-temporal": "temporal",
            "temporal": "temporal",
            "per-user-temporal": "per-user",
            "per-user": "per-user",
        }.get(protocol)
        if proto is None:
            raise ConfigError(
                f"--protocol {protocol!r}: expected global-temporal or per-user-temporal"
            )
        if events is None:
            from mlsd.config import SimulationConfig
            from mlsd.data.simulate import simulate

            with console.status(f"simulating '{scale}' ..."):
                ds = simulate(SimulationConfig.for_scale(scale, seed=seed))
            source = f"simulated '{scale}' (seed {seed})"
        else:
            ds = _load(events, videos, users, fmt)
            source = str(events)
        cfg = _config(config) if config is not None else None
        if cfg is not None:
            cfg = cfg.model_copy(
                update={"label_split": "global" if proto == "temporal" else "per-user"}
            )
        with console.status("evaluating ...") as status:

            def say(m: str) -> None:
                console.log(m)
                status.update(m)

            run_ = evaluate_system(
                ds,
                protocol=proto,
                k=k,
                test_share=test_share,
                test_days=test_days,
                config=cfg,
                backtest_windows=backtest,
                log=say,
            )
        table = run_.table()
        t = Table(title=f"{source}: {run_.holdout.summary()}")
        t.add_column("model")
        cols = [f"recall@{k}", f"ndcg@{k}", f"map@{k}", "mrr", f"coverage@{k}"]
        cols = [c for c in cols if any(c in r for r in table.values())]
        for c in cols:
            t.add_column(c, justify="right")
        for name, row in table.items():
            t.add_row(name, *(f"{row.get(c, float('nan')):.4f}" for c in cols))
        console.print(t)
        report = Report(f"mlsd evaluate: {source}")
        report.add(*run_.sections())
        paths = report.write(out)
        console.print(f"report: {paths['markdown']} and {paths['html']}")

    run()


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
    from mlsd.cli import user_errors

    @user_errors
    def run() -> None:
        from mlsd.systems.video_recommendation.demo import run_demo

        with console.status("demo ...") as status:

            def say(m: str) -> None:
                console.log(m)
                status.update(m)

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

    run()
