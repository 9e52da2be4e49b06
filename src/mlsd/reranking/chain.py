"""Composing rules: ``RuleChain``, the typed ``RerankConfig`` and ``default_chain``.

The default order is the book's: hard filters first (watched, explicit, blocked creators:
cheap, and nothing after them should waste a slot on an item that will go), then topic
diversity (MMR re-orders by score, so it must run before anything that places items for
other reasons), then exploration (which picks slots inside the diversified top K), then
creator dedup last, so that its invariants hold on the slate actually served, exploration
items included (dedup may shift an exploration item by a slot or two; the served position is
what gets logged), then truncation to ``ctx.k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from mlsd.config import StrictModel
from mlsd.errors import ConfigError, DataError
from mlsd.reranking.dedup import CreatorDedup
from mlsd.reranking.diversity import TopicDiversity
from mlsd.reranking.exploration import Exploration
from mlsd.reranking.filters import BlockedCreators, DropWatched, ExplicitFilter
from mlsd.reranking.slate import Rule, RuleContext, Slate


class RuleChain:
    """Apply ``rules`` in order, then (``truncate=True``) keep the first ``ctx.k`` items.

    A chain is itself a :class:`~mlsd.reranking.slate.Rule`. Before the first rule it checks
    that every slate item is a valid index of ``ctx.catalog`` (DataError otherwise), so rules
    can index catalog arrays without checks. Items cut by truncation are not logged.
    """

    def __init__(self, rules: Sequence[Rule], *, truncate: bool = True, name: str = "chain"):
        rules = tuple(rules)
        for r in rules:
            if not isinstance(r, Rule):
                raise ConfigError(
                    f"RuleChain: {r!r} is not a Rule (expected a 'name' and an 'apply' method)"
                )
        names = [r.name for r in rules]
        dup = sorted({x for x in names if names.count(x) > 1})
        if dup:
            raise ConfigError(
                f"RuleChain: rule name(s) {', '.join(dup)} used twice; expected unique names "
                "(the action log tells rules apart by name)"
            )
        self.rules = rules
        self.truncate = truncate
        self.name = name

    def __repr__(self) -> str:
        return f"RuleChain([{', '.join(map(repr, self.rules))}], truncate={self.truncate})"

    def apply(self, slate: Slate, ctx: RuleContext) -> Slate:
        if len(slate) and int(slate.items.max()) >= ctx.catalog.n:
            bad = int(slate.items.max())
            raise DataError(
                f"slate item {bad} is outside the catalog (dense indices 0..{ctx.catalog.n - 1})"
            )
        for rule in self.rules:
            slate = rule.apply(slate, ctx)
        return slate.truncate(ctx.k) if self.truncate else slate


class FilterConfig(StrictModel):
    """Which hard filters run."""

    drop_watched: bool = True
    explicit: bool = True
    blocked_creators: bool = True


class DiversityConfig(StrictModel):
    """:class:`~mlsd.reranking.diversity.TopicDiversity` knobs (``lambda_``: 1 = relevance
    only, 0 = novelty only)."""

    enabled: bool = True
    lambda_: float = Field(default=0.8, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=1)


class ExplorationConfig(StrictModel):
    """:class:`~mlsd.reranking.exploration.Exploration` knobs."""

    enabled: bool = True
    share: float = Field(default=0.1, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=1)
    fresh_days: float | None = Field(default=7.0, ge=0)
    max_exposure: float | None = Field(default=None, ge=0)
    pick: Literal["random", "best"] = "random"
    min_position: int = Field(default=1, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> ExplorationConfig:
        if self.fresh_days is None and self.max_exposure is None:
            raise ValueError("fresh_days and max_exposure cannot both be null")
        if self.top_k is not None and self.min_position >= self.top_k:
            raise ValueError(f"min_position {self.min_position} must be < top_k {self.top_k}")
        return self


class DedupConfig(StrictModel):
    """:class:`~mlsd.reranking.dedup.CreatorDedup` knobs."""

    enabled: bool = True
    max_per_creator: int = Field(default=2, ge=1)
    top_k: int | None = Field(default=None, ge=1)


class RerankConfig(StrictModel):
    """The re-ranking stage of a system: which rules run and their hyperparameters.

    ``top_k`` None everywhere means "the requested slate length" (``ctx.k``).
    """

    filters: FilterConfig = FilterConfig()
    diversity: DiversityConfig = DiversityConfig()
    exploration: ExplorationConfig = ExplorationConfig()
    dedup: DedupConfig = DedupConfig()
    truncate: bool = True


def default_chain(
    config: RerankConfig | None = None,
    *,
    exploration_pool: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
) -> RuleChain:
    """The rule chain a config describes, in the module's order (see the module docstring).

    ``exploration_pool`` (dense item indices) and ``embeddings`` (``(catalog.n, d)``, for
    diversity by cosine similarity instead of topic) are data, not config, so they are passed
    here.
    """
    cfg = config or RerankConfig()
    rules: list[Rule] = []
    if cfg.filters.drop_watched:
        rules.append(DropWatched())
    if cfg.filters.explicit:
        rules.append(ExplicitFilter())
    if cfg.filters.blocked_creators:
        rules.append(BlockedCreators())
    if cfg.diversity.enabled:
        d = cfg.diversity
        rules.append(TopicDiversity(lambda_=d.lambda_, top_k=d.top_k, embeddings=embeddings))
    if cfg.exploration.enabled and cfg.exploration.share > 0:
        e = cfg.exploration
        rules.append(
            Exploration(
                share=e.share,
                top_k=e.top_k,
                fresh_days=e.fresh_days,
                max_exposure=e.max_exposure,
                pool=exploration_pool,
                pick=e.pick,
                min_position=e.min_position,
            )
        )
    if cfg.dedup.enabled:
        rules.append(CreatorDedup(max_per_creator=cfg.dedup.max_per_creator, top_k=cfg.dedup.top_k))
    return RuleChain(rules, truncate=cfg.truncate)
