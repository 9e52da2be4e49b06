"""The settings of ``mlsd serve``: one typed object, built by the CLI from its options or, in a
uvicorn worker process, from the ``MLSD_*`` environment variables it was given.

A bad value raises :class:`~mlsd.errors.ConfigError` naming where it came from: the CLI option
(``--workers 0; expected an integer >= 1``) or the variable
(``MLSD_WORKERS='two': expected an integer >= 1``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from annotated_types import Ge
from pydantic import BeforeValidator, Field, TypeAdapter, ValidationError

from mlsd.config import StrictModel
from mlsd.errors import ConfigError
from mlsd.serving.middleware import DEFAULT_MAX_REQUESTS_PER_CONNECTION
from mlsd.serving.model_calls import DEFAULT_MODEL_THREADS

__all__ = ["ENV", "OPTIONS", "ServeSettings"]

#: The environment variable of each setting (what :meth:`ServeSettings.from_env` reads).
ENV = {
    "model_dir": "MLSD_MODEL_DIR",
    "online_store": "MLSD_ONLINE_STORE",
    "api_key": "MLSD_API_KEY",
    "event_log": "MLSD_EVENT_LOG",
    "workers": "MLSD_WORKERS",
    "model_threads": "MLSD_MODEL_THREADS",
    "candidate_cache": "MLSD_CANDIDATE_CACHE",
    "candidate_cache_dir": "MLSD_CANDIDATE_CACHE_DIR",
    "candidate_refresh": "MLSD_CANDIDATE_REFRESH",
    "max_requests_per_connection": "MLSD_MAX_REQUESTS_PER_CONNECTION",
    "max_event_rate": "MLSD_MAX_EVENT_RATE",
    "snapshot_dir": "MLSD_SNAPSHOT_DIR",
    "experiment": "MLSD_EXPERIMENT",
    "exposure_log": "MLSD_EXPOSURE_LOG",
    "monitor_interval": "MLSD_MONITOR_INTERVAL",
    "monitor_reference": "MLSD_MONITOR_REFERENCE",
    "feature_fault": "MLSD_FEATURE_FAULT",
}
#: The ``mlsd serve`` option of each setting (what a bad keyword value is reported as).
OPTIONS = {
    "model_dir": "--model",
    "online_store": "--online-store",
    "api_key": "--api-key",
    "event_log": "--event-log",
    "workers": "--workers",
    "model_threads": "--threads",
    "candidate_cache": "--candidate-cache",
    "candidate_cache_dir": "--candidate-cache-dir",
    "candidate_refresh": "--candidate-refresh",
    "max_requests_per_connection": "--max-requests-per-connection",
    "max_event_rate": "--max-event-rate",
    "snapshot_dir": "--snapshot-dir",
    "experiment": "--experiment",
    "exposure_log": "--exposure-log",
    "monitor_interval": "--monitor-interval",
    "monitor_reference": "--monitor-reference",
    "feature_fault": "--feature-fault",
}


def _path_text(v: object) -> object:
    return str(v) if isinstance(v, Path) else v


# an empty variable of these: not set
_OPTIONAL = frozenset(
    (
        "api_key",
        "event_log",
        "candidate_cache_dir",
        "snapshot_dir",
        "experiment",
        "exposure_log",
        "feature_fault",
    )
)
_ONLINE_STORE = r"^(?:memory$|redis://)"
DEFAULT_MAX_EVENT_RATE = 1000.0  # events/s for the whole service (split among its workers)


class ServeSettings(StrictModel):
    """What ``mlsd serve`` runs: the bundle, the online store (``memory`` or
    ``redis://HOST:PORT``), the write endpoints' key, the event log (a file path or
    ``redis://HOST:PORT/DB`` for a Redis stream), worker processes, model threads per worker
    (0: on the event loop), the candidate cache (its directory, and whether a user's
    candidates made stale by their events are retrieved again in the background or on their
    next request), requests per keep-alive
    connection (0: no limit), the events per second admitted (0: no limit), where
    snapshots of the online state go (default: beside a file event log), an experiment
    config (:mod:`mlsd.serving.experiment`; arms without a model serve ``model_dir``) and
    where its exposure log goes (default: ``exposures.jsonl`` beside the event log; none
    without either), the drift monitor's period in seconds (0: off) and drift reference
    (:mod:`mlsd.serving.monitor`), and injected feature
    faults (a drill: ``NAME=VALUE``, the feature served as that constant).

    Keyword construction as any pydantic model; a bad value raises
    :class:`~mlsd.errors.ConfigError` naming the ``mlsd serve`` option.
    """

    model_dir: Path
    online_store: str = Field(default="memory", pattern=_ONLINE_STORE)
    api_key: str | None = Field(default=None, repr=False)  # a secret: kept out of logs
    event_log: Annotated[str, BeforeValidator(_path_text)] | None = Field(
        default=None, min_length=1
    )
    workers: int = Field(default=1, ge=1)
    model_threads: int = Field(default=DEFAULT_MODEL_THREADS, ge=0)
    candidate_cache: bool = True
    candidate_cache_dir: Path | None = None
    candidate_refresh: Literal["background", "request"] = "background"
    max_requests_per_connection: int = Field(default=DEFAULT_MAX_REQUESTS_PER_CONNECTION, ge=0)
    max_event_rate: float = Field(default=DEFAULT_MAX_EVENT_RATE, ge=0)
    snapshot_dir: Path | None = None
    experiment: Path | None = None
    exposure_log: Path | None = None
    monitor_interval: float = Field(default=15.0, ge=0)
    monitor_reference: Literal["deployment", "training"] = "deployment"
    feature_fault: str | None = None

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise ConfigError(_describe(e, data)) from None

    def to_env(self) -> dict[str, str]:
        """The ``MLSD_*`` variables that :meth:`from_env` reads back as these settings."""
        env = {
            ENV["model_dir"]: str(self.model_dir),
            ENV["online_store"]: self.online_store,
            ENV["workers"]: str(self.workers),
            ENV["model_threads"]: str(self.model_threads),
            ENV["max_requests_per_connection"]: str(self.max_requests_per_connection),
            ENV["candidate_cache"]: "1" if self.candidate_cache else "0",
            ENV["candidate_refresh"]: self.candidate_refresh,
            ENV["max_event_rate"]: repr(self.max_event_rate),
        }
        if self.api_key is not None:
            env[ENV["api_key"]] = self.api_key
        if self.event_log is not None:
            env[ENV["event_log"]] = str(self.event_log)
        if self.candidate_cache_dir is not None:
            env[ENV["candidate_cache_dir"]] = str(self.candidate_cache_dir)
        if self.snapshot_dir is not None:
            env[ENV["snapshot_dir"]] = str(self.snapshot_dir)
        if self.experiment is not None:
            env[ENV["experiment"]] = str(self.experiment)
        if self.exposure_log is not None:
            env[ENV["exposure_log"]] = str(self.exposure_log)
        env[ENV["monitor_interval"]] = repr(self.monitor_interval)
        env[ENV["monitor_reference"]] = self.monitor_reference
        if self.feature_fault is not None:
            env[ENV["feature_fault"]] = self.feature_fault
        return env

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServeSettings:
        """The settings in ``environ`` (default: ``os.environ``). A variable that is not set
        keeps its setting's default, as does an empty one of an optional setting; each other
        is parsed as its setting's type and bounds, and a bad one raises
        :class:`~mlsd.errors.ConfigError` naming the variable and its value."""
        env = os.environ if environ is None else environ
        if not env.get(ENV["model_dir"]):
            raise ConfigError(f"{ENV['model_dir']} is not set; it names the model bundle to serve")
        values: dict[str, Any] = {}
        for name, var in ENV.items():
            raw = env.get(var)
            if raw is None or (not raw and name in _OPTIONAL):
                continue
            try:
                values[name] = _adapter(name).validate_python(raw)
            except ValidationError:
                raise ConfigError(f"{var}={raw!r}: expected {_expected(name)}") from None
        return cls(**values)


@functools.cache
def _adapter(name: str) -> TypeAdapter[Any]:
    """A validator of one setting alone: its type and its bounds, as the model declares them."""
    info = ServeSettings.model_fields[name]
    tp: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return TypeAdapter(tp)


def _describe(error: ValidationError, data: Mapping[str, Any]) -> str:
    """The first problem of ``error`` as ``OPTION VALUE; expected ...``."""
    first = error.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else ""
    if first["type"] == "extra_forbidden":
        return f"unknown setting {name!r}; expected one of {', '.join(OPTIONS)}"
    option = OPTIONS.get(name, name)
    if first["type"] == "missing":
        return f"{option} is required"
    return f"{option} {data.get(name)!r}; expected {_expected(name)}"


def _expected(name: str) -> str:
    """What setting ``name`` takes, in words (integers with their lower bound)."""
    info = ServeSettings.model_fields[name]
    if info.annotation in (int, float):
        what = "an integer" if info.annotation is int else "a number"
        low = next((m.ge for m in info.metadata if isinstance(m, Ge)), None)
        return what if low is None else f"{what} >= {low}"
    return _EXPECTED[name]


_EXPECTED = {
    "model_dir": "a path",
    "online_store": "'memory' or redis://HOST:PORT",
    "api_key": "a string",
    "event_log": "a file path or redis://HOST:PORT/DB",
    "candidate_cache": "1 or 0 (true or false)",
    "candidate_cache_dir": "a path",
    "candidate_refresh": "'background' or 'request'",
    "snapshot_dir": "a path",
    "experiment": "a path",
    "exposure_log": "a path",
    "feature_fault": "NAME=NUMBER[,NAME=NUMBER]",
    "monitor_reference": "'deployment' or 'training'",
}
