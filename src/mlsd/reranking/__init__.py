"""Re-ranking: business rules applied to the ranked slate (the book's last serving stage).

Each rule is a :class:`Rule` (``name``, ``apply(slate, ctx) -> slate``) with explicit keyword
hyperparameters; a :class:`RuleChain` applies them in order and :func:`default_chain` builds
the standard chain from a typed :class:`RerankConfig`. Slates are numpy arrays of dense item
indices into a :class:`Catalog`, plus a log of :class:`RuleAction` records saying which rule
dropped, moved or inserted which item and why.
"""

from mlsd.reranking.catalog import DAY_MS, UNKNOWN_TIME, Catalog
from mlsd.reranking.chain import (
    DedupConfig,
    DiversityConfig,
    ExplorationConfig,
    FilterConfig,
    RerankConfig,
    RuleChain,
    default_chain,
)
from mlsd.reranking.dedup import CreatorDedup
from mlsd.reranking.diversity import TopicDiversity
from mlsd.reranking.exploration import Exploration
from mlsd.reranking.filters import BlockedCreators, DropWatched, ExplicitFilter, hard_filter_mask
from mlsd.reranking.slate import Rule, RuleAction, RuleContext, Slate

__all__ = [
    "DAY_MS",
    "UNKNOWN_TIME",
    "BlockedCreators",
    "Catalog",
    "CreatorDedup",
    "DedupConfig",
    "DiversityConfig",
    "DropWatched",
    "ExplicitFilter",
    "Exploration",
    "ExplorationConfig",
    "FilterConfig",
    "RerankConfig",
    "Rule",
    "RuleAction",
    "RuleChain",
    "RuleContext",
    "Slate",
    "TopicDiversity",
    "default_chain",
    "hard_filter_mask",
]
