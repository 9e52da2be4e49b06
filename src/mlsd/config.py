"""Typed configuration (pydantic, ``extra="forbid"``: a misspelled key is an error).

A system is described by one config object, loadable from YAML. Library code never reads
``sys.argv`` or environment variables for these values; the CLI builds config objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)

from mlsd.errors import ConfigError

Scale = Literal["tiny", "small", "large"]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TasteShift(StrictModel):
    """A scheduled, abrupt taste shift in the simulated world (see ``docs/simulator.md``).

    ``start_day`` days after the start of the first window simulated with this shift configured
    (the simulation's first day for ``simulate(cfg)``; the first continued day when a
    continuation or the closed loop adds it to its config), the topic preferences of
    ``share_of_users`` of the users (drawn once, deterministic for the simulation's seed and
    ``seed``) move to other topics: each affected user's topic logits are re-assigned by a random
    cycle over the topics (no topic keeps its own logit), blended with the old ones by
    ``strength`` (1: a full reshuffle). It happens once.
    """

    start_day: float = Field(ge=0)
    share_of_users: float = Field(default=1.0, gt=0, le=1)
    strength: float = Field(default=1.0, gt=0, le=1)
    seed: int = 0


class SimulationConfig(StrictModel):
    """Size and shape of the simulated video platform (see ``docs/simulator.md``).

    The three presets come from :meth:`for_scale`; any field can be overridden.
    """

    scale: str = "custom"
    seed: int = 0
    n_users: int = Field(gt=0)
    n_videos: int = Field(gt=0)
    n_creators: int = Field(gt=0)
    n_topics: int = Field(default=24, ge=2, le=64)
    days: int = Field(default=28, ge=1)
    # mean number of recommendation requests per user over the whole window
    requests_per_user: float = Field(default=10.0, gt=0)
    slate_size: int = Field(default=10, ge=1, le=50)
    start: str = "2026-01-05T00:00:00Z"  # a Monday, so day-of-week features are easy to read
    explicit_share: float = Field(default=0.03, ge=0, le=1)
    new_user_share: float = Field(default=0.10, ge=0, le=1)
    # share of videos uploaded during the window (the rest exist before it starts)
    fresh_upload_share: float = Field(default=0.15, ge=0, le=1)
    # taste drift: s.d. of the change in topic logits between window start and end
    taste_drift: float = Field(default=1.2, ge=0)
    chunk_requests: int = Field(default=100_000, gt=0)
    # a scheduled abrupt taste shift (None: tastes only drift)
    taste_shift: TasteShift | None = None

    @model_serializer(mode="wrap")
    def _without_unset_shift(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # no shift: no key, so that manifests (and their bytes) stay what they were
        out: dict[str, Any] = handler(self)
        if out.get("taste_shift", False) is None:
            del out["taste_shift"]
        return out

    @classmethod
    def for_scale(cls, scale: str, seed: int = 0, **overrides: Any) -> SimulationConfig:
        if scale not in SCALES:
            raise ConfigError(f"unknown scale {scale!r}; expected one of {', '.join(SCALES)}")
        return cls(**{**SCALES[scale], "scale": scale, "seed": seed, **overrides})


SCALES: dict[str, dict[str, Any]] = {
    # tests: well under 2 s
    "tiny": dict(n_users=300, n_videos=1_000, n_creators=60, days=14, requests_per_user=8.0),
    # demo default
    "small": dict(n_users=5_000, n_videos=20_000, n_creators=800, days=28, requests_per_user=16.0),
    # benchmarks: >= 200k users, 1M videos, 20M impressions
    "large": dict(
        n_users=200_000, n_videos=1_000_000, n_creators=20_000, days=28, requests_per_user=10.5
    ),
}


class LabelConfig(StrictModel):
    """The book's label rules (step 2: framing the ML task).

    Implicit positive: a play with at least ``min_watch_seconds`` of watching, or, for videos
    shorter than ``short_video_seconds``, a completion share of at least ``min_completion``.
    Explicit positive: a like. For rating data: ``rating >= min_rating``. A play whose
    watch time is unknown (interactions-only logs) counts as positive.
    """

    min_watch_seconds: float = Field(default=30.0, ge=0)
    short_video_seconds: float = Field(default=60.0, ge=0)
    min_completion: float = Field(default=0.5, gt=0, le=1)
    min_rating: float = 4.0


class SplitConfig(StrictModel):
    """Temporal split settings."""

    protocol: Literal["global-temporal", "per-user-temporal"] = "global-temporal"
    test_share: float = Field(default=0.2, gt=0, lt=1)


M = TypeVar("M", bound=BaseModel)


def load_yaml(path: str | Path, model: type[M]) -> M:
    """Load a YAML file into ``model``; errors name the file and the offending key."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config: {e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: invalid YAML: {e}") from e
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"{p}: key '{loc}': {first['msg']}") from e


SimulationConfig.model_rebuild()
__all__ = [
    "SCALES",
    "LabelConfig",
    "Scale",
    "SimulationConfig",
    "SplitConfig",
    "TasteShift",
    "load_yaml",
]
