"""``mlsd retrain``: the retraining pipeline, run locally (no orchestrator needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mlsd.cli._common import RegistryUriOpt, console, err_console, user_errors


@user_errors
def retrain(
    name: Annotated[
        str,
        typer.Argument(
            help="Registered model to retrain (its champion is "
            "the baseline and the source of the base data)."
        ),
    ],
    new: Annotated[
        list[Path] | None,
        typer.Option(
            "--new",
            help="New data: a dataset directory or events file (repeatable), "
            "e.g. the output of `mlsd simulate --continue`.",
        ),
    ] = None,
    event_log: Annotated[
        Path | None, typer.Option("--event-log", help="The service's durable event log (JSONL).")
    ] = None,
    base: Annotated[
        Path | None,
        typer.Option(help="Base dataset (default: the champion bundle's training data)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="YAML RetrainConfig (gates, holdout, backtest ...); the "
            "options given here override it.",
        ),
    ] = None,
    work_dir: Annotated[
        Path, typer.Option(help="Where runs keep their artifacts (<work-dir>/NAME/RUN_ID).")
    ] = Path("mlsd-runs"),
    auto_promote: Annotated[
        bool, typer.Option(help="Promote the challenger to champion when every gate passes.")
    ] = False,
    holdout_days: Annotated[
        float | None, typer.Option(help="Length of the holdout (and of each backtest window).")
    ] = None,
    backtest_windows: Annotated[
        int | None, typer.Option(help="Earlier windows to compare the models on (0: none).")
    ] = None,
    challenger_fault: Annotated[
        str,
        typer.Option(
            help="Exercise the gates: 'shuffle-labels' trains the challenger on "
            "labels shuffled within users.",
            hidden=False,
        ),
    ] = "none",
    registry_uri: RegistryUriOpt = None,
) -> None:
    """Retrain NAME on its base data plus new data, judge the challenger against the champion
    (NDCG@20 non-inferiority on the latest holdout and a backtest, skew check, latency, bundle
    size), register it, and promote it only when every gate passes and --auto-promote.

    Re-running the same command after a crash resumes the run: finished steps are skipped.
    Writes report.md and report.html in the run directory. Exit status 2 when the run stops
    (bad data, no champion); 1 when the challenger fails a gate; 0 otherwise.
    """
    import yaml

    from mlsd.errors import ConfigError
    from mlsd.orchestration import RetrainConfig, RunStopped
    from mlsd.orchestration import retrain as run_retrain

    raw: dict[str, Any] = {}
    if config is not None:
        try:
            raw = yaml.safe_load(config.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{config}: {e}") from e
    given = {"name": name, "new": new or None, "event_log": event_log, "base": base,
             "work_dir": work_dir, "auto_promote": auto_promote or None,
             "holdout_days": holdout_days, "backtest_windows": backtest_windows,
             "challenger_fault": None if challenger_fault == "none" else challenger_fault,
             "registry_uri": registry_uri}  # fmt: skip
    try:
        cfg = RetrainConfig.model_validate(
            {**raw, **{k: v for k, v in given.items() if v is not None}}
        )
    except ValueError as e:
        raise ConfigError(f"retrain config: {e}") from e
    try:
        with console.status("retraining ...") as status:
            result = run_retrain(
                cfg,
                say=lambda m: console.log(m),
                on_step=lambda s: status.update(f"retraining: {s} ..."),
            )
    except RunStopped as e:
        if e.report is not None:
            err_console.print(f"report: {e.report}")
        raise
    console.print(f"report: {result['report']}")
    console.print(result.summary(name))
    if not result["gates"]["passed"]:
        raise typer.Exit(1)
