"""One retraining run's state: its directory of named artifacts, the registry, the champion,
and the record of the steps that finished.

A step is done when its record ``steps/<step>.json`` exists: written atomically after every
artifact of the step is in place, so a run killed mid-step re-runs that step and skips the ones
before it. The run directory is ``<work_dir>/<name>/<run_id>``, where the run id hashes the
inputs (:meth:`RetrainConfig.run_id`): the same command after a crash resumes the same run.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlsd.errors import MlsdError
from mlsd.orchestration.config import RetrainConfig
from mlsd.registry import Registry, VersionInfo

__all__ = ["Run", "RunStopped", "write_json"]


class RunStopped(MlsdError):
    """A step refused to go on (bad data, no champion); nothing after it ran. ``report`` is
    the path of the report written for it."""

    def __init__(self, message: str, report: Path | None = None) -> None:
        super().__init__(message)
        self.report = report


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class Run:
    """The context every step gets: config, registry, champion, run directory, a progress
    callback ``say(message)``."""

    cfg: RetrainConfig
    registry: Registry
    champion: VersionInfo
    dir: Path
    say: Callable[[str], None] = print
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def open(
        cls,
        cfg: RetrainConfig,
        *,
        say: Callable[[str], None] = print,
        registry: Registry | None = None,
    ) -> Run:
        """The run of ``cfg``: its champion resolved in the registry, its directory created
        (or found, with the steps already done)."""
        reg = registry or Registry(cfg.registry_uri)
        champion = reg.alias(cfg.name, "champion")
        if champion is None:
            raise RunStopped(
                f"{cfg.name} has no champion in {reg.uri}: train and register a first version "
                f"(mlsd train ... --register {cfg.name})"
            )
        run_dir = (
            cfg.work_dir / cfg.name / cfg.run_id(f"{champion.version}:{champion.model_version}")
        )
        run_dir.mkdir(parents=True, exist_ok=True)
        run = cls(cfg, reg, champion, run_dir, say)
        for step in sorted((run_dir / "steps").glob("*.json")):
            run.results[step.stem] = json.loads(step.read_text())
        write_json(run_dir / "config.json", cfg.model_dump(mode="json"))
        return run

    @property
    def run_id(self) -> str:
        return self.dir.name

    def path(self, name: str) -> Path:
        """The artifact ``name`` of this run (a file or directory in the run directory)."""
        return self.dir / name

    def done(self, step: str) -> bool:
        return step in self.results

    def finish(self, step: str, result: dict[str, Any]) -> None:
        """Record ``step`` as done with its ``result`` (after its artifacts are in place)."""
        write_json(self.dir / "steps" / f"{step}.json", result)
        self.results[step] = result

    def champion_bundle(self) -> Path:
        return self.registry.bundle_path(self.champion)
