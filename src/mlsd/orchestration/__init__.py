"""The retraining pipeline as re-runnable steps (collect, validate, train, evaluate, gates,
register, promote) over named artifacts in a run directory; ``mlsd retrain`` runs them in
process, :mod:`mlsd.orchestration.dagster` as a scheduled Dagster job (optional extra)."""

from __future__ import annotations

from mlsd.orchestration.config import GateConfig, RetrainConfig
from mlsd.orchestration.pipeline import STEPS, RetrainResult, retrain, run_step
from mlsd.orchestration.run import Run, RunStopped

__all__ = [
    "STEPS",
    "GateConfig",
    "RetrainConfig",
    "RetrainResult",
    "Run",
    "RunStopped",
    "retrain",
    "run_step",
]
