"""A/B experiments in the service: an experiment config (arms -> models or configs, traffic
split, salt, metrics, minimum detectable effect), the servable that routes each user to their
arm's model, and the exposure log.

Assignment is a hash of ``(user, salt)`` (:mod:`.assignment`): every worker and the offline
analysis agree on a user's arm without sharing state. Each response names the experiment and
arm (``experiment`` in the body; ``model_version`` is the arm's); each event stored by
``POST /v1/events`` gets ``experiment`` and ``arm`` fields; each slate served is appended to
the exposure log (one JSON line: time, experiment, arm, user, items, model version), which
the sample-ratio-mismatch check counts.

Every arm's model sees every event (their online states evolve as the platform's does; a
user's events come from what their arm served). Arms keep separate online states, so an
experiment runs on the embedded online store only.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import yaml
from pydantic import Field, ValidationError, model_validator

from mlsd.config import StrictModel
from mlsd.errors import BundleError, ConfigError
from mlsd.pipeline.servable import Servable, ServingOptions
from mlsd.pipeline.types import RequestCtx, Served, ServedItem, ServingStatus
from mlsd.serving.assignment import assign

__all__ = ["ArmConfig", "ExperimentConfig", "ExperimentServable", "ExposureLog", "load_config"]

PRIMARY_METRICS = ("valid_watches", "watch_seconds", "plays", "likes", "dislikes", "ctr")


class ArmConfig(StrictModel):
    """One arm: ``model`` (a bundle directory, relative to the config file, or a registry
    model ``models:/NAME@ALIAS`` / ``models:/NAME/VERSION``, resolved by the CLI; None: the
    service's ``--model``), ``policy`` (``model``: the bundle's pipeline; or a baseline fitted
    on its training data: ``most-popular``, ``als``, ``itemknn``, ``ease``), ``params`` (the
    baseline's hyperparameters) and ``rerank`` (overrides of the pipeline's re-ranking config,
    e.g. ``{exploration: {enabled: false}}``)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    model: str | None = None
    policy: str = "model"
    params: dict[str, Any] = Field(default_factory=dict)
    rerank: dict[str, Any] = Field(default_factory=dict)


class ExperimentConfig(StrictModel):
    """An experiment: ``name``, ``salt`` (default: the name; a new salt reshuffles users),
    ``arms`` (the first is the control), ``split`` (traffic weights, one per arm; default
    equal), ``metrics`` (the first is primary; per-user totals of the closed loop:
    ``valid_watches``, ``watch_seconds``, ``plays``, ``likes``, ``dislikes``, or ``ctr``, a
    ratio metric: plays / impressions), ``mde`` (the minimum detectable effect, relative to
    the control's mean, that the planner sizes the experiment for), ``alpha`` and ``power``."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    salt: str | None = None
    arms: list[ArmConfig] = Field(min_length=2)
    split: list[float] | None = None
    metrics: list[str] = Field(default_factory=lambda: list(PRIMARY_METRICS))
    mde: float = Field(default=0.02, gt=0, lt=1)
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    power: float = Field(default=0.8, gt=0.5, lt=1)

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must differ: {names}")
        if self.split is not None and (
            len(self.split) != len(self.arms) or min(self.split) < 0 or sum(self.split) <= 0
        ):
            raise ValueError(f"split {self.split}: one non-negative weight per arm")
        unknown = [m for m in self.metrics if m not in PRIMARY_METRICS]
        if unknown or not self.metrics:
            raise ValueError(f"metrics {unknown}: expected some of {', '.join(PRIMARY_METRICS)}")
        return self

    @property
    def salt_(self) -> str:
        return self.salt or self.name

    @property
    def weights(self) -> list[float]:
        return list(self.split) if self.split is not None else [1.0] * len(self.arms)


def load_config(path: str | Path) -> ExperimentConfig:
    """An experiment config from YAML (or JSON); :class:`ConfigError` naming the file and the
    field for a bad one. Relative arm ``model`` paths are made relative to the file."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text())
    except OSError as e:
        raise ConfigError(f"experiment config {p}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"experiment config {p}: not YAML ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"experiment config {p}: expected a mapping with name and arms")
    try:
        cfg = ExperimentConfig.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "(top level)"
        raise ConfigError(f"experiment config {p}: {where}: {first['msg']}") from None
    arms = [
        a.model_copy(update={"model": str((p.parent / a.model).resolve())})
        if a.model and not a.model.startswith("models:/") and not Path(a.model).is_absolute()
        else a
        for a in cfg.arms
    ]
    return cfg.model_copy(update={"arms": arms})


class ExposureLog:
    """Appends one JSON line per slate served to ``path`` (``O_APPEND``: the lines of several
    worker processes interleave whole). Opened lazily in each process (after a fork)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._pid = -1

    def write(self, record: dict[str, Any]) -> None:
        if self._fd is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._pid = os.getpid()
        os.write(self._fd, orjson.dumps(record) + b"\n")


class ExperimentServable:
    """Routes each request to the model of the user's arm (``arms``: (name, model) in the
    config's order) and marks the answer with the experiment and arm; applies every event to
    every arm; logs exposures to ``exposures`` (None: not logged). Implements
    :class:`~mlsd.pipeline.Servable`; ``version`` is ``experiment:NAME``."""

    def __init__(
        self,
        config: ExperimentConfig,
        arms: Sequence[tuple[str, Servable]],
        exposures: ExposureLog | None = None,
    ) -> None:
        if [n for n, _ in arms] != [a.name for a in config.arms]:
            raise ConfigError("experiment: one model per configured arm, in the config's order")
        self.config = config
        self.arm_names = [n for n, _ in arms]
        self.models = [m for _, m in arms]
        self.exposures = exposures
        self.version = f"experiment:{config.name}"
        self._lock = threading.Lock()
        maps = getattr(self.models[0], "id_maps", None)
        if maps:
            self.id_maps = maps

    # ------------------------------------------------------------------ routing --
    def arm_of(self, user_ids: np.ndarray) -> np.ndarray:
        """``int8[n]``: each user's arm index (the service's hash of user and salt)."""
        return assign(np.asarray(user_ids, np.int64), self.config.salt_, self.config.weights)

    def event_labels(self, user_id: int) -> dict[str, str]:
        """What each stored event of ``user_id`` carries: the experiment and the user's arm."""
        arm = self.arm_names[int(self.arm_of(np.array([user_id]))[0])]
        return {"experiment": self.config.name, "arm": arm}

    def serve(self, user_id: int, k: int, ctx: RequestCtx, explain: bool = False) -> Served:
        i = int(self.arm_of(np.array([user_id]))[0])
        model = self.models[i]
        served = model.serve(user_id, k, ctx, explain)
        served.experiment, served.arm = self.config.name, self.arm_names[i]
        served.model_version = model.version
        if self.exposures is not None:
            self.exposures.write(
                {
                    "time_ms": int(ctx.time_ms),
                    "logged_ms": int(time.time() * 1000),
                    "experiment": self.config.name,
                    "arm": served.arm,
                    "user_id": int(user_id),
                    "items": [int(it.video_id) for it in served.items],
                    "model_version": model.version,
                    "degraded": served.degraded,
                }
            )
        return served

    # ------------------------------------------------------- every arm alike --
    def _distinct(self) -> list[Servable]:
        return list({id(m): m for m in self.models}.values())

    def similar(self, video_id: int, k: int) -> list[ServedItem]:
        return self.models[0].similar(video_id, k)

    def known_videos(self, video_ids: np.ndarray) -> np.ndarray:
        known = np.ones(len(video_ids), dtype=bool)
        for m in self._distinct():
            known &= np.asarray(m.known_videos(video_ids), dtype=bool)
        return known

    def apply_events(self, events: pa.Table) -> None:
        for m in self._distinct():
            m.apply_events(events)

    def refresh_candidates(self, limit: int = 64) -> int:
        return sum(m.refresh_candidates(limit) for m in self._distinct())

    def online_snapshot(self) -> bytes:
        """Each distinct arm model's snapshot, length-prefixed, after this version."""
        parts = [self.version.encode()] + [m.online_snapshot() for m in self._distinct()]
        return b"".join(struct.pack("<Q", len(p)) + p for p in parts)

    def restore_online(self, blob: bytes) -> None:
        parts, at = [], 0
        try:
            while at < len(blob):
                (n,) = struct.unpack_from("<Q", blob, at)
                parts.append(blob[at + 8 : at + 8 + n])
                at += 8 + n
        except struct.error:
            raise BundleError(f"{self.version}: bytes that are no experiment snapshot") from None
        models = self._distinct()
        if not parts or parts[0] != self.version.encode() or len(parts) != len(models) + 1:
            raise BundleError(f"snapshot is not of {self.version} with {len(models)} models")
        for m, p in zip(models, parts[1:], strict=True):
            m.restore_online(p)

    def rewrite_online_store(self) -> int:
        return sum(m.rewrite_online_store() for m in self._distinct())

    def online_store_problem(self) -> str | None:
        return next((p for m in self._distinct() if (p := m.online_store_problem())), None)

    def repopulate_online_store(self) -> int:
        return sum(m.repopulate_online_store() for m in self._distinct())

    def user_state(self, user_id: int) -> dict[str, Any]:
        i = int(self.arm_of(np.array([user_id]))[0])
        return {
            "experiment": self.config.name,
            "arm": self.arm_names[i],
            **self.models[i].user_state(user_id),
        }

    def prepare(self, options: ServingOptions, say: Callable[[str], None]) -> None:
        for name, m in zip(self.arm_names, self.models, strict=True):
            if any(m is p for p in self.models[: self.arm_names.index(name)]):
                continue
            m.prepare(options, _prefixed(say, f"arm {name}: "))

    def status(self) -> ServingStatus:
        parts = [m.status() for m in self._distinct()]
        return ServingStatus(
            ranker_compiled=all(p.ranker_compiled for p in parts),
            cache_hits=sum(p.cache_hits for p in parts),
            cache_misses=sum(p.cache_misses for p in parts),
        )


def build_arms(
    config: ExperimentConfig, default_model: str | Path, load: Callable[[str | Path], Servable]
) -> list[tuple[str, Servable]]:
    """One model per arm: each arm's bundle (default: ``default_model``) loaded once with
    ``load``, a baseline fitted on it for a baseline policy, re-ranking overrides applied to a
    fresh load of its own. Raises :class:`ConfigError` for a registry URI left unresolved or
    overrides the model cannot take."""
    from mlsd.serving.baseline_arm import BaselineArm

    loaded: dict[str, Servable] = {}
    arms: list[tuple[str, Servable]] = []
    for arm in config.arms:
        path = str(arm.model or default_model)
        if path.startswith("models:/"):
            raise ConfigError(f"arm {arm.name}: registry model {path} must be resolved first")
        if arm.rerank:  # its own copy: the overrides change its rules
            model = load(path)
            _override_rerank(model, arm.rerank, arm.name)
        else:
            if path not in loaded:
                loaded[path] = load(path)
            model = loaded[path]
        if arm.policy != "model":
            model = BaselineArm(model, arm.policy, arm.params)
        arms.append((arm.name, model))
    return arms


def _override_rerank(model: Any, overrides: dict[str, Any], arm: str) -> None:
    from mlsd.reranking import RerankConfig, default_chain

    cfg = getattr(getattr(model, "config", None), "rerank", None)
    if cfg is None or not hasattr(model, "rules"):
        raise ConfigError(f"arm {arm}: rerank overrides need a pipeline bundle")
    merged = _merge(cfg.model_dump(mode="json"), overrides)
    try:
        new = RerankConfig.model_validate(merged)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"arm {arm}: rerank.{where}: {first['msg']}") from None
    model.rules = default_chain(new)


def _prefixed(say: Callable[[str], None], prefix: str) -> Callable[[str], None]:
    return lambda message: say(prefix + message)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
