"""Typed configuration of the rankers (pydantic, ``extra="forbid"``): the GBDT's settings,
with the deep ranker's and the distilled student's nested in it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from mlsd.config import StrictModel

__all__ = ["NeuralRankerConfig", "RankerConfig", "StudentConfig"]


class NeuralRankerConfig(StrictModel):
    """:class:`~mlsd.ranking.DeepRanker` settings (its keyword arguments and defaults; ``seed``
    None takes the pipeline's). Also the network the ``int8`` ranker quantizes."""

    hidden: tuple[int, ...] = (128, 64)
    cross_layers: int = Field(default=2, ge=0)
    learning_rate: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-6, ge=0)
    batch_size: int = Field(default=1024, ge=1)
    max_epochs: int = Field(default=30, ge=1)
    patience: int = Field(default=3, ge=1)
    num_threads: int = Field(default=1, ge=1)
    seed: int | None = None

    @field_validator("hidden")
    @classmethod
    def _hidden(cls, h: tuple[int, ...]) -> tuple[int, ...]:
        if any(w < 1 for w in h):
            raise ValueError(f"hidden widths {h}: expected integers >= 1")
        return h

    def kwargs(self, seed: int) -> dict[str, Any]:
        """:class:`~mlsd.ranking.DeepRanker` keyword arguments (besides ``weights``)."""
        out = self.model_dump()
        if out["seed"] is None:
            out["seed"] = seed
        return out


class StudentConfig(NeuralRankerConfig):
    """The distilled student: a small MLP (no cross layers) trained on ``teacher``'s
    calibrated probabilities (``gbdt`` or ``deep``, trained first on the same rows), mixed
    with the labels by ``hard_label_weight``."""

    hidden: tuple[int, ...] = (32,)
    cross_layers: int = Field(default=0, ge=0)
    learning_rate: float = Field(default=3e-3, gt=0)  # a small network: larger steps
    teacher: Literal["gbdt", "deep"] = "gbdt"
    hard_label_weight: float = Field(default=0.0, ge=0, le=1)

    def kwargs(self, seed: int) -> dict[str, Any]:
        out = super().kwargs(seed)
        del out["teacher"]
        return out


class RankerConfig(StrictModel):
    """:class:`~mlsd.ranking.GBDTRanker` settings as a pipeline trains it.

    ``weights``: objective -> weight of its calibrated probability in the final score (the
    objectives a pipeline labels are ``watch`` and ``like``). The other fields are the
    ranker's keyword arguments with its defaults, except two a pipeline sets: ``num_threads``
    is 1 (LightGBM's OpenMP threads spin while waiting; on a shared 2-core machine two threads
    were several times slower than one) and ``seed`` None takes the pipeline's seed.
    ``objective``: ``binary`` (pointwise log-loss), ``lambdarank`` (listwise, within each
    user's rows) or ``auto``: the pipeline fits both and keeps LambdaRank unless the pointwise
    model's NDCG@20 on its validation users is clearly better
    (:class:`~mlsd.pipeline.ranking.RankingStage`).
    """

    weights: dict[str, float] = Field(default_factory=lambda: {"watch": 1.0, "like": 0.5})
    objective: Literal["binary", "lambdarank", "auto"] = "auto"
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
    deep: NeuralRankerConfig = NeuralRankerConfig()
    student: StudentConfig = StudentConfig()

    @field_validator("weights")
    @classmethod
    def _weights(cls, w: dict[str, float]) -> dict[str, float]:
        if not w:
            raise ValueError("give at least one objective a weight")
        return w

    def kwargs(self, seed: int) -> dict[str, Any]:
        """:class:`~mlsd.ranking.GBDTRanker` keyword arguments (besides ``weights``), with
        ``seed`` when the config leaves it unset."""
        out = self.model_dump(exclude={"weights", "deep", "student"})
        if out["seed"] is None:
            out["seed"] = seed
        if out["objective"] == "auto":  # chosen by the pipeline (both fitted); alone: binary
            out["objective"] = "binary"
        return out
