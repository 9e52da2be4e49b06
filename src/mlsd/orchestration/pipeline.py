"""The retraining pipeline: the steps in order, each skipped when a previous attempt of the
same run finished it (``mlsd retrain`` and the Dagster job both call :data:`STEPS`).

collect -> validate -> train -> evaluate -> gates -> register -> promote
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlsd.orchestration.config import RetrainConfig
from mlsd.orchestration.data_steps import collect, validate
from mlsd.orchestration.gates import gates, promote, register
from mlsd.orchestration.model_steps import evaluate_models, train
from mlsd.orchestration.report import write_report
from mlsd.orchestration.run import Run, RunStopped
from mlsd.registry import Registry

__all__ = ["STEPS", "RetrainResult", "retrain", "run_step"]

Step = Callable[[Run], dict[str, Any]]
STEPS: dict[str, Step] = {
    "collect": collect,
    "validate": validate,
    "train": train,
    "evaluate": evaluate_models,
    "gates": gates,
    "register": register,
    "promote": promote,
}


class RetrainResult(dict[str, Any]):
    """The finished run's step results (``collect`` ... ``promote``) plus ``run_dir``,
    ``report`` and ``seconds``."""

    def summary(self, name: str) -> str:
        """One line: the version registered, the gates' verdict and what became champion."""
        g, p = self["gates"], self["promote"]
        return (
            f"{name} v{self['register']['version']}: gates "
            + ("passed" if g["passed"] else "FAILED (" + ", ".join(g["failed"]) + ")")
            + ("; promoted to champion" if p["promoted"] else f"; champion stays v{p['champion']}")
            + (f" ({self['seconds']:.0f} s)" if "seconds" in self else "")
        )


def run_step(run: Run, name: str) -> dict[str, Any]:
    """Run step ``name`` unless already done; its result. A :class:`RunStopped` writes the
    report (saying where and why it stopped) before it propagates."""
    if run.done(name):
        run.say(f"{name}: done in an earlier attempt, skipped")
        return run.results[name]
    t0 = time.perf_counter()
    try:
        result = STEPS[name](run)
    except RunStopped as e:
        e.report = write_report(run, stopped=str(e))
        raise
    result = {**result, "step_seconds": round(time.perf_counter() - t0, 2)}
    run.finish(name, result)
    return result


def retrain(
    cfg: RetrainConfig,
    *,
    say: Callable[[str], None] = print,
    registry: Registry | None = None,
    on_step: Callable[[str], None] | None = None,
) -> RetrainResult:
    """Every step of the run of ``cfg``; returns the results. Raises :class:`RunStopped`
    when a step refuses to go on (its report written)."""
    t0 = time.perf_counter()
    run = Run.open(cfg, say=say, registry=registry)
    for name in STEPS:
        if on_step is not None:
            on_step(name)
        run_step(run, name)
    report = write_report(run)
    out = RetrainResult(run.results)
    out.update(run_dir=str(run.dir), report=str(report), seconds=time.perf_counter() - t0)
    return out


def report_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / "report.html"
