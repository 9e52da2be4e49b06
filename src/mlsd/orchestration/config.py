"""``RetrainConfig``: what one retraining run reads, how it judges the challenger, and where it
writes. A pydantic model (YAML-loadable, unknown keys refused)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from mlsd.config import StrictModel

__all__ = ["GateConfig", "RetrainConfig"]


class GateConfig(StrictModel):
    """The gates a challenger must pass to be promoted (all of them)."""

    #: challenger NDCG@20 >= champion NDCG@20 * (1 - margin), on the latest holdout and on
    #: the backtest window's mean: non-inferiority with a relative margin
    ndcg_margin: float = Field(default=0.05, ge=0, lt=1)
    #: offline/online feature mismatches allowed at the skew check's sampled impressions
    max_skew_mismatches: int = Field(default=0, ge=0)
    skew_points: int = Field(default=200, ge=10)
    #: in-process latency of one request through every stage (``serve``), p99, milliseconds
    latency_p99_ms: float = Field(default=25.0, gt=0)
    latency_requests: int = Field(default=200, ge=20)
    #: bundle size: at most this many MB, and at most ``max_size_ratio`` x the champion's
    max_bundle_mb: float = Field(default=4096.0, gt=0)
    max_size_ratio: float = Field(default=2.0, gt=1)


class RetrainConfig(StrictModel):
    """One retraining run of registered model ``name``.

    Data: ``base`` (a dataset directory; default: the champion bundle's training data), plus
    ``new`` datasets (directories or event files, e.g. ``mlsd simulate --continue`` output)
    and the service's durable ``event_log`` (JSONL). The challenger is trained on everything
    before the latest ``holdout_days``, and it and the champion (its online state brought to
    the same cut by replaying the events after its training) are scored on that holdout and
    on ``backtest_windows`` earlier windows of the same length.
    """

    name: str = Field(min_length=1)
    registry_uri: str | None = None
    base: Path | None = None
    new: list[Path] = Field(default_factory=list)
    event_log: Path | None = None
    work_dir: Path = Path("mlsd-runs")
    pipeline_config: dict[str, Any] | None = None  # None: the champion's config
    holdout_days: float = Field(default=2.0, gt=0)
    backtest_windows: int = Field(default=1, ge=0, le=5)
    eval_users: int = Field(default=2000, ge=10)
    #: share of a new source's rows that may fail the data contract (quarantined) before the
    #: run stops at validate
    max_bad_share: float = Field(default=0.01, ge=0, le=1)
    gates: GateConfig = Field(default_factory=GateConfig)
    auto_promote: bool = False
    #: exercising the gates: "shuffle-labels" trains the challenger on events whose videos
    #: are shuffled within each user (labels no longer match items), which must be refused
    challenger_fault: Literal["none", "shuffle-labels"] = "none"
    seed: int = 0

    def run_id(self, champion: str) -> str:
        """Stable id of this run's inputs: a re-run after a crash resumes the same directory."""
        inputs: dict[str, Any] = self.model_dump(mode="json", exclude={"work_dir", "auto_promote"})
        inputs["champion"] = champion
        for key, paths in (("new", self.new), ("base", [self.base] if self.base else [])):
            inputs[f"{key}_stat"] = [_stat(p) for p in paths]
        if self.event_log is not None:
            inputs["event_log_stat"] = _stat(self.event_log)
        digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
        return digest[:12]


def _stat(path: Path) -> list[Any]:
    """Name, size and mtime of every file under ``path`` (cheap change detection)."""
    p = Path(path)
    files = sorted(p.rglob("*")) if p.is_dir() else [p]
    out: list[Any] = []
    for f in files:
        if f.is_file():
            st = f.stat()
            out.append([str(f.resolve()), st.st_size, st.st_mtime_ns])
    return out
