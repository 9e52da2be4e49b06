"""Typed configurations of the trainable candidate sources (pydantic, ``extra="forbid"``).

A pipeline config holds these instead of free dictionaries, so a misspelled key or a value of
the wrong type is an error when the config is read, not a ``TypeError`` deep in training. Each
field is a keyword argument of the source's constructor with the same default (a test checks
that the two agree); the source's seed is the pipeline's.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from mlsd.config import StrictModel
from mlsd.retrieval.index import IndexKind

__all__ = ["ALSConfig", "EASEConfig", "ItemKNNConfig", "TwoTowerConfig"]


class TwoTowerConfig(StrictModel):
    """:class:`~mlsd.retrieval.TwoTowerSource` hyperparameters (see its docstring)."""

    dim: int = Field(default=64, ge=1)
    id_dim: int = Field(default=8, ge=1)
    topic_dim: int = Field(default=32, ge=1)
    creator_dim: int = Field(default=32, ge=1)
    user_id_dim: int = Field(default=8, ge=0)
    hidden: int = Field(default=128, ge=0)
    history_len: int = Field(default=30, ge=1)
    popularity_window_days: float = Field(default=7.0, gt=0)
    n_user_buckets: int = Field(default=1 << 17, ge=1)
    temperature: float = Field(default=0.1, gt=0)
    logq_correction: bool = True
    epochs: int = Field(default=5, ge=0)
    refresh_epochs: int = Field(default=1, ge=0)
    batch_size: int = Field(default=512, ge=2)
    lr: float = Field(default=3e-3, gt=0)
    num_threads: int | None = Field(default=1, ge=1)
    index_kind: IndexKind = "flat"
    name: str = "two_tower"
    exclude_seen: bool = True

    def kwargs(self) -> dict[str, Any]:
        """The constructor keyword arguments."""
        return self.model_dump()


class ALSConfig(StrictModel):
    """:class:`~mlsd.retrieval.als.ALSSource` hyperparameters (see its docstring)."""

    factors: int = Field(default=128, ge=1)
    regularization: float = Field(default=30.0, ge=0)
    alpha: float = Field(default=5.0, gt=0)
    iterations: int = Field(default=15, ge=1)
    history_len: int = Field(default=200, ge=1)
    index_kind: IndexKind = "flat"
    name: str = "als"
    exclude_seen: bool = True

    def kwargs(self) -> dict[str, Any]:
        """The constructor keyword arguments."""
        return self.model_dump()


class EASEConfig(StrictModel):
    """:class:`~mlsd.retrieval.item_item.EASESource` hyperparameters (see its docstring)."""

    l2: float | None = Field(default=None, gt=0)
    l2_scale: float = Field(default=1.0, gt=0)
    history_len: int = Field(default=200, ge=1)
    max_items: int = Field(default=12_500, ge=1)
    name: str = "ease"
    exclude_seen: bool = True

    def kwargs(self) -> dict[str, Any]:
        """The constructor keyword arguments."""
        return self.model_dump()


class ItemKNNConfig(StrictModel):
    """:class:`~mlsd.retrieval.item_item.ItemKNNSource` hyperparameters (see its docstring)."""

    n_neighbors: int = Field(default=200, ge=1)
    shrink: float = Field(default=10.0, ge=0)
    history_len: int = Field(default=200, ge=1)
    max_items: int = Field(default=200_000, ge=1)
    name: str = "itemknn"
    exclude_seen: bool = True

    def kwargs(self) -> dict[str, Any]:
        """The constructor keyword arguments."""
        return self.model_dump()
