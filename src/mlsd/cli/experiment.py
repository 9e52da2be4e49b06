"""``mlsd experiment run | analyze``: online A/B experiments on the simulated platform."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mlsd.cli._common import console, err_console, user_errors

experiment_app = typer.Typer(
    rich_markup_mode="markdown",
    no_args_is_help=True,
    help="Online A/B experiments: the simulated platform's users served by the real service, "
    "analysed with CIs, CUPED, SRM and always-valid sequential tests.",
)

ConfigOpt = Annotated[
    Path,
    typer.Option(
        "--config", "-c", help="Experiment config (YAML: name, salt, arms, split, metrics, mde)."
    ),
]


def _say(message: str) -> None:
    err_console.print(message, markup=False)


@experiment_app.command("run")
@user_errors
def run(
    config: ConfigOpt,
    data: Annotated[
        Path,
        typer.Option(
            help="The simulated dataset the arms' models were trained on: the loop continues "
            "its world (same users and catalog, tastes drifting on)."
        ),
    ],
    url: Annotated[
        str | None,
        typer.Option(
            help="A running `mlsd serve --experiment CONFIG` to send requests and events to "
            "(over HTTP). Without it, the arms are loaded in this process (same code path)."
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option("--model", "-m", help="In process: the bundle arms without a model serve."),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="MLSD_API_KEY", help="The service's write key.")
    ] = None,
    days: Annotated[int, typer.Option(min=1, help="Simulated days.")] = 7,
    seed: Annotated[int, typer.Option(help="Seed of the simulated visits and responses.")] = 0,
    exposures: Annotated[
        Path | None,
        typer.Option(help="The service's exposure log: the SRM check counts its users."),
    ] = None,
    offline_data: Annotated[
        Path | None,
        typer.Option(
            help="In process: a logged window after the training data (e.g. `mlsd simulate "
            "--continue`); each arm's offline NDCG@20 on it goes beside the online lift."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output directory.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="HTTP requests in flight.")] = 8,
) -> None:
    """Run the closed loop for `--days` and write the analysis and report."""
    from mlsd.data.dataset import read_manifest
    from mlsd.experiments.analysis import analyze, pre_period, save_result, write_report
    from mlsd.experiments.loop import closed_loop
    from mlsd.serving.experiment import load_config

    cfg = load_config(config)
    meta = read_manifest(data)
    out_dir = out or Path("runs/experiments") / cfg.name
    offline = None
    if url is not None:
        from mlsd.experiments.http_client import HttpClient

        client: Any = HttpClient(
            url, api_key, tuple(a.name for a in cfg.arms), concurrency=concurrency
        )
    else:
        if model is None and any(a.model is None for a in cfg.arms):
            raise typer.BadParameter("in process, --model is needed for arms without a model")
        from mlsd.serving.experiment import ExperimentServable, build_arms
        from mlsd.serving.server import ServeSettings, model_loader

        settings = ServeSettings(model_dir=model or Path(str(cfg.arms[0].model)))
        arms = build_arms(cfg, settings.model_dir, model_loader(settings))
        if offline_data is not None:
            from mlsd.experiments.offline import offline_ndcg

            offline = offline_ndcg(arms, offline_data, int(meta["window"]["end_ms"]), say=_say)
        client = ExperimentServable(cfg, arms)
    result = closed_loop(meta, client, days=days, seed=seed, say=_say)
    save_result(result, out_dir / "loop.npz")
    pre = pre_period(data, result.user_ids, days) if cfg.metrics[0] == "valid_watches" else None
    counts = None
    if exposures is not None:
        from mlsd.experiments.analysis import exposure_counts

        counts = exposure_counts(exposures, cfg.name)
    a = analyze(result, cfg, pre_period=pre, exposures=counts)
    if url is not None:
        a["http"] = {
            k: getattr(client, k)
            for k in ("requests", "events_sent", "shed", "seconds_requests", "seconds_events")
        }
    paths = write_report(a, out_dir, offline)
    if offline is not None:
        (out_dir / "offline.json").write_text(json.dumps(offline, indent=2))
    _summary(a)
    console.print(f"report: {paths['html']}", markup=False)


@experiment_app.command("analyze")
@user_errors
def analyze_cmd(
    config: ConfigOpt,
    run_dir: Annotated[
        Path, typer.Option("--run", help="A directory `mlsd experiment run` wrote.")
    ],
    data: Annotated[
        Path | None,
        typer.Option(help="The dataset before the experiment (CUPED's pre-period covariate)."),
    ] = None,
    exposures: Annotated[
        Path | None, typer.Option(help="The service's exposure log (for the SRM check).")
    ] = None,
) -> None:
    """Analyse a saved run again (e.g. with the exposure log) and rewrite its report."""
    from mlsd.experiments.analysis import (
        analyze,
        exposure_counts,
        load_result,
        pre_period,
        write_report,
    )
    from mlsd.serving.experiment import load_config

    cfg = load_config(config)
    result = load_result(run_dir / "loop.npz")
    days = next(iter(result.metrics.values())).shape[1]
    pre = pre_period(data, result.user_ids, days) if data is not None else None
    counts = exposure_counts(exposures, cfg.name) if exposures is not None else None
    a = analyze(result, cfg, pre_period=pre, exposures=counts)
    offline_file = run_dir / "offline.json"
    offline = json.loads(offline_file.read_text()) if offline_file.exists() else None
    paths = write_report(a, run_dir, offline)
    _summary(a)
    console.print(f"report: {paths['html']}", markup=False)


def _summary(a: dict[str, Any]) -> None:
    primary = a["primary"]
    console.print(
        f"SRM: p = {a['srm']['p_value']:.3g} ({'ALARM' if a['srm']['alarm'] else 'pass'})",
        markup=False,
    )
    for arm, vs in a["metrics"][primary]["vs_control"].items():
        lift = vs["lift"]
        console.print(
            f"{arm} vs {a['arms'][0]}: {primary} per user {100 * lift['value']:+.2f}% "
            f"[{100 * lift['low']:+.2f}%, {100 * lift['high']:+.2f}%], p = "
            f"{lift.get('p_value', float('nan')):.3g}, always-valid p = {vs['always_valid_p']:.3g}",
            markup=False,
        )
