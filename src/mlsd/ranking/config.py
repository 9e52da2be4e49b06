"""Typed configuration of the GBDT ranker (pydantic, ``extra="forbid"``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from mlsd.config import StrictModel

__all__ = ["RankerConfig"]


class RankerConfig(StrictModel):
    """:class:`~mlsd.ranking.GBDTRanker` settings as a pipeline trains it.

    ``weights``: objective -> weight of its calibrated probability in the final score (the
    objectives a pipeline labels are ``watch`` and ``like``). The other fields are the
    ranker's keyword arguments with its defaults, except two a pipeline sets: ``num_threads``
    is 1 (LightGBM's OpenMP threads spin while waiting; on a shared 2-core machine two threads
    were several times slower than one) and ``seed`` None takes the pipeline's seed.
    """

    weights: dict[str, float] = Field(default_factory=lambda: {"watch": 1.0, "like": 0.5})
    n_estimators: int = Field(default=400, ge=1)
    learning_rate: float = Field(default=0.05, gt=0)
    num_leaves: int = Field(default=63, ge=2)
    min_child_samples: int = Field(default=50, ge=0)
    feature_fraction: float = Field(default=0.9, gt=0, le=1)
    bagging_fraction: float = Field(default=0.8, gt=0, le=1)
    lambda_l2: float = Field(default=1.0, ge=0)
    early_stopping_rounds: int = Field(default=30, ge=0)
    num_threads: int = Field(default=1, ge=0)
    seed: int | None = None

    @field_validator("weights")
    @classmethod
    def _weights(cls, w: dict[str, float]) -> dict[str, float]:
        if not w:
            raise ValueError("give at least one objective a weight")
        return w

    def kwargs(self, seed: int) -> dict[str, Any]:
        """:class:`~mlsd.ranking.GBDTRanker` keyword arguments (besides ``weights``), with
        ``seed`` when the config leaves it unset."""
        out = self.model_dump(exclude={"weights"})
        if out["seed"] is None:
            out["seed"] = seed
        return out
