"""Hard filters: rules that remove items a user must not see.

Each drops items and keeps the order of the rest; every dropped item gets a ``dropped``
:class:`~mlsd.reranking.slate.RuleAction` with its position in the slate the rule received.
:func:`hard_filter_mask` is the same logic for items from outside the slate (exploration
pools), so an inserted item can never bypass a filter.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mlsd.reranking.slate import RuleAction, RuleContext, Slate


def _drop(slate: Slate, drop: np.ndarray, rule: str, reason: Callable[[int], str]) -> Slate:
    """``slate`` without the positions where ``drop`` is True, each logged with ``reason(item)``."""
    gone = np.flatnonzero(drop)
    if gone.size == 0:
        return slate
    actions = [
        RuleAction(rule, item, "dropped", reason(item), p, None)
        for p, item in zip(gone.tolist(), slate.items[gone].tolist(), strict=True)
    ]
    return slate.take(np.flatnonzero(~drop), actions)


def in_sorted(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Membership of ``values`` in the sorted array ``sorted_set`` (binary search)."""
    if sorted_set.size == 0:
        return np.zeros(len(values), bool)
    pos = np.searchsorted(sorted_set, values)
    pos[pos == len(sorted_set)] = 0
    return sorted_set[pos] == values


def watched_mask(items: np.ndarray, ctx: RuleContext) -> np.ndarray:
    """True where the user already watched the item."""
    return in_sorted(items, ctx.watched)


def explicit_mask(items: np.ndarray, ctx: RuleContext) -> np.ndarray:
    """True where the item is explicit and the user does not allow explicit content."""
    if ctx.allows_explicit:
        return np.zeros(len(items), bool)
    return ctx.catalog.is_explicit[items]


def blocked_mask(items: np.ndarray, ctx: RuleContext) -> np.ndarray:
    """True where the item's creator is one the user blocked (unknown creators never are)."""
    if ctx.blocked_creators.size == 0:
        return np.zeros(len(items), bool)
    cre = ctx.catalog.creator[items]
    return (cre >= 0) & in_sorted(cre, ctx.blocked_creators)


def hard_filter_mask(items: np.ndarray, ctx: RuleContext) -> np.ndarray:
    """True where any of the three hard filters would drop the item."""
    return watched_mask(items, ctx) | explicit_mask(items, ctx) | blocked_mask(items, ctx)


class DropWatched:
    """Drop items the user has already watched (``ctx.watched``)."""

    def __init__(self, *, name: str = "drop_watched") -> None:
        self.name = name

    def apply(self, slate: Slate, ctx: RuleContext) -> Slate:
        return _drop(slate, watched_mask(slate.items, ctx), self.name, lambda _: "already watched")

    def __repr__(self) -> str:
        return "DropWatched()"


class ExplicitFilter:
    """Drop explicit items unless ``ctx.allows_explicit`` (unknown preference = not allowed)."""

    def __init__(self, *, name: str = "explicit_filter") -> None:
        self.name = name

    def apply(self, slate: Slate, ctx: RuleContext) -> Slate:
        return _drop(
            slate,
            explicit_mask(slate.items, ctx),
            self.name,
            lambda _: "explicit content; the user does not allow it",
        )

    def __repr__(self) -> str:
        return "ExplicitFilter()"


class BlockedCreators:
    """Drop items whose creator is in ``ctx.blocked_creators`` (blocked or "not interested").

    Reasons name the creator by external id (``catalog.creator_ids``).
    """

    def __init__(self, *, name: str = "blocked_creators") -> None:
        self.name = name

    def apply(self, slate: Slate, ctx: RuleContext) -> Slate:
        cat = ctx.catalog
        said: dict[int, str] = {}

        def reason(item: int) -> str:
            c = int(cat.creator[item])
            if c not in said:
                cid = int(cat.creator_ids[c])
                said[c] = f"creator {cid} is blocked by the user (not interested)"
            return said[c]

        return _drop(slate, blocked_mask(slate.items, ctx), self.name, reason)

    def __repr__(self) -> str:
        return "BlockedCreators()"
