"""The retraining pipeline as a Dagster job with a daily schedule (``pip install
mlsd[orchestration]``).

One op per step of :data:`mlsd.orchestration.STEPS`, chained by the run directory they share;
each op opens the run from the same :class:`RetrainConfig` (so it resumes a run another
attempt started) and runs its step unless done. The job's resource ``retrain`` holds the
config. Load the definitions with ``dagster dev -m mlsd.orchestration.dagster``; set the config
in the launchpad or through ``MLSD_RETRAIN_CONFIG`` (a YAML RetrainConfig file) for the
schedule.

Chosen over Airflow 3 by measurement (``docs/architecture.md``): Dagster 1.13 installs 25
packages (+53 MB) beside mlsd's pins and runs a job in process (``execute_in_process``, what
the tests use); Airflow 3.3 needs FastAPI 0.136, below mlsd's pin.
"""

# no `from __future__ import annotations`: Dagster reads the ops' annotations at definition

import json
import os
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from mlsd.orchestration.config import RetrainConfig
from mlsd.orchestration.pipeline import STEPS, run_step
from mlsd.orchestration.report import write_report
from mlsd.orchestration.run import Run

__all__ = ["RetrainResource", "daily_retrain", "defs", "retrain_job"]

CONFIG_ENV = "MLSD_RETRAIN_CONFIG"


class RetrainResource(dg.ConfigurableResource):
    """A :class:`RetrainConfig` as JSON (``config_json``), or from the YAML file named by
    ``MLSD_RETRAIN_CONFIG`` when empty."""

    config_json: str = ""

    def config(self) -> RetrainConfig:
        if self.config_json:
            return RetrainConfig.model_validate(json.loads(self.config_json))
        path = os.environ.get(CONFIG_ENV)
        if not path:
            raise dg.Failure(f"no retraining config: set config_json or {CONFIG_ENV}")
        return RetrainConfig.model_validate(yaml.safe_load(Path(path).read_text()))

    def open_run(self, log: Any) -> Run:
        return Run.open(self.config(), say=log.info)


def _run(step: str, context: dg.OpExecutionContext, retrain: RetrainResource) -> str:
    run = retrain.open_run(context.log)
    result = run_step(run, step)
    if step == "promote":
        write_report(run)
    context.add_output_metadata({"result": dg.MetadataValue.json(result)})
    return str(run.dir)


def _op(step: str, first: bool) -> dg.OpDefinition:
    def start(context: dg.OpExecutionContext, retrain: RetrainResource) -> str:
        return _run(step, context, retrain)

    def then(context: dg.OpExecutionContext, retrain: RetrainResource, after: str) -> str:
        return _run(step, context, retrain)

    return dg.op(
        name=step,
        ins={} if first else {"after": dg.In(str, description="the step before's run dir")},
        out=dg.Out(str, description="the run directory"),
        description=" ".join((STEPS[step].__doc__ or step).split("\n\n")[0].split()),
    )(start if first else then)


_OPS = {name: _op(name, i == 0) for i, name in enumerate(STEPS)}


@dg.job(description="Retrain, judge and (with auto_promote) promote a registered model.")
def retrain_job() -> None:
    out = None
    for op in _OPS.values():
        out = op() if out is None else op(after=out)


daily_retrain = dg.ScheduleDefinition(
    name="daily_retrain", job=retrain_job, cron_schedule="0 3 * * *", execution_timezone="UTC"
)

defs = dg.Definitions(
    jobs=[retrain_job],
    schedules=[daily_retrain],
    resources={"retrain": RetrainResource()},
)
