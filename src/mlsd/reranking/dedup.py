"""Creator de-duplication: at most N items per creator in the top K, and no two adjacent.

The top K is filled position by position, each time with the first remaining item (in slate
order) that keeps three conditions: its creator has fewer than N items in the top K so far,
its creator differs from the item just above, and the items left can still fill the rest of
the top K under both constraints. The third condition is a counting test (see
:func:`_feasible_after`), so the greedy never paints itself into a corner: whenever *some*
arrangement of the available items satisfies both constraints, the result does. Items it
passes over keep their relative order and move down; they are logged as ``moved``.

When no arrangement exists, two fallbacks apply, in this order:

- adjacency is relaxed: if every item left under the cap is by the creator of the item above,
  the first of them is placed anyway and logged as ``moved`` (``from_pos`` may equal
  ``to_pos``) with a reason saying so;
- the cap is never relaxed: if every item left belongs to a creator that already has N items
  in the top K, the top K cannot be filled, and those items are ``dropped`` (logged), so the
  slate comes out shorter than K. The cap is a hard business rule; a shorter slate is the
  visible, logged consequence.

Items of unknown creator (-1) count as distinct creators: never capped, never adjacent.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from mlsd.reranking._checks import check_int
from mlsd.reranking.slate import RuleAction, RuleContext, Slate


class _Availability:
    """How many more items each creator can still contribute to the top K.

    ``avail[c] = min(items of c not yet placed, cap - items of c placed)``; each item of
    unknown creator is a creator of its own with availability 1. ``hist[v]`` counts creators
    with availability ``v`` and ``total`` sums availabilities.
    """

    def __init__(self, creators: np.ndarray | list[int], cap: int) -> None:
        # Counted in Python (Counter is C): on a 500-item slate ~3x faster than np.unique
        counts = Counter(creators.tolist() if isinstance(creators, np.ndarray) else creators)
        unknown = sum(counts.pop(c) for c in [c for c in counts if c < 0])
        self.cap = cap
        self.avail: dict[int, int] = {c: min(m, cap) for c, m in counts.items()}
        self.unknown = unknown
        hist = [0] * (cap + 1)
        for v in self.avail.values():
            hist[v] += 1
        hist[1] += unknown
        self.hist: list[int] = hist
        self.total = sum(self.avail.values()) + unknown

    def of(self, c: int) -> int:
        return self.avail[c] if c >= 0 else 1

    def place(self, c: int) -> None:
        a = self.of(c)
        self.hist[a] -= 1
        self.hist[a - 1] += 1
        self.total -= 1
        if c >= 0:
            self.avail[c] = a - 1
        else:
            self.unknown -= 1

    def feasible_after(self, c: int, slots: int) -> bool:
        """Whether, after placing one item of creator ``c``, the items left can fill
        ``min(slots, total left)`` positions with no creator twice in a row, the first of
        them not by ``c``.

        A multiset of ``L`` items can be laid out with no two equal neighbours and a first
        item different from ``c`` iff no creator has more than ``ceil(L/2)`` of them and
        ``c`` has at most ``floor(L/2)``. Choosing which items to use, that is iff
        ``sum_x min(avail_x, limit_x) >= L`` with those limits. Checked against brute force in
        ``tests/reranking/test_dedup.py``.
        """
        total = self.total - 1
        need = min(slots, total)
        lo, hi = need // 2, (need + 1) // 2
        if lo >= self.cap:  # every limit is above every availability
            return True
        a = self.of(c)
        hist = self.hist
        excess = 0
        for v in range(hi + 1, self.cap + 1):
            cnt = hist[v] - (v == a) + (v == a - 1)
            excess += cnt * (v - hi)
        if c >= 0:
            left = a - 1
            excess += max(0, left - lo) - max(0, left - hi)
        return total - excess >= need


_WINDOW = 64  # slate positions scanned at a time by ``arrange``

# Why an item was passed over at a position (kind, position): formatted only if it moved.
_CAP, _ADJACENT, _AHEAD, _FORCED = "cap", "adjacent", "ahead", "forced"


def arrange(
    creators: np.ndarray, k: int, cap: int, explain: bool = True
) -> tuple[list[int], list[int], dict[int, tuple[str, int]], list[int]]:
    """The creator-dedup ordering of positions ``0..len(creators)-1``.

    Returns ``(top, rest, why, dropped)``: the positions placed in the top ``k`` in order,
    the other kept positions in their original order, why each position passed over was
    skipped (first reason; left empty when not ``explain``), and the positions dropped (see
    module docstring).
    """
    cre: list[int] = creators.tolist()
    n = len(cre)
    state = _Availability(cre, cap)
    avail = state.avail
    # Only a window at the head of the slate is scanned, extended whenever a scan reaches its
    # end: the top k of a 500-item slate comes from its first few dozen items, and positions
    # never scanned keep their place (nothing before them moves past them), so the result is
    # the one of a scan of the whole slate. The bookkeeping below is then O(window), not O(n).
    nxt = 0  # the first position not scanned yet
    pending: list[int] = []  # not placed yet, in slate order (scanned positions only)
    # Not placed, and their creator is at the cap: never will be. Items are parked as soon as
    # their creator fills its cap (or when scanned, if it already has), so a scan never
    # passes over them; on slates led by a few creators they were most of the scanning.
    parked: list[int] = []
    top: list[int] = []
    why: dict[int, tuple[str, int]] = {}
    dropped: list[int] = []

    def extend(p: int) -> None:
        """Scan windows into ``pending`` (capped items to ``parked``) until one adds an item
        or the slate ends."""
        nonlocal nxt
        while nxt < n:
            lo, nxt = nxt, min(n, nxt + _WINDOW)
            before = len(pending)
            for q in range(lo, nxt):
                c = cre[q]
                if c >= 0 and avail[c] == 0:
                    parked.append(q)
                    if explain:
                        why[q] = (_CAP, p)
                else:
                    pending.append(q)
            if len(pending) > before:
                return

    prev = -1
    for p in range(k):
        if not pending:
            extend(p)
        if not pending:  # parked items cannot fill position p either
            dropped, parked = sorted(parked), []
            break
        chosen = fallback = forced = -1
        infeasible: set[int] = set()
        idx = 0
        while idx < len(pending):
            q = pending[idx]
            c = cre[q]
            if c >= 0 and c == prev:
                if forced < 0:
                    forced = idx
            elif c not in infeasible:
                if state.feasible_after(c, k - p - 1):
                    chosen = idx
                    break
                if fallback < 0:
                    fallback = idx
                infeasible.add(c)
            idx += 1
            if idx == len(pending):  # the scan goes on into the next window
                extend(p)
        kind = ""
        if chosen < 0:
            if fallback >= 0:
                chosen = fallback
            else:  # pending is not empty, every item is by prev's creator: adjacency relaxed
                chosen, kind = forced, _FORCED
        if explain:
            for q in pending[:chosen]:
                if q not in why:
                    why[q] = (_ADJACENT, p) if cre[q] == prev >= 0 else (_AHEAD, p)
        q = pending.pop(chosen)
        if kind and explain:
            why[q] = (kind, p)
        top.append(q)
        prev = cre[q]
        state.place(prev)
        if prev >= 0 and avail[prev] == 0:  # the creator is full: park the rest of its items
            alive = []
            for q in pending:
                if cre[q] == prev:
                    parked.append(q)
                    if explain:
                        why.setdefault(q, (_CAP, p + 1))
                else:
                    alive.append(q)
            pending = alive
    rest = sorted(pending + parked) if parked else pending
    rest.extend(range(nxt, n))  # never scanned: after every scanned position
    return top, rest, why, dropped


class CreatorDedup:
    """At most ``max_per_creator`` items per creator in the top ``top_k`` and never two
    adjacent items by one creator there (see the module docstring for the algorithm and for
    what happens when the available items make that impossible).

    ``top_k`` None means ``ctx.k``. Cost: O(top_k) when the slate already complies, else
    O(top_k x items scanned), typically a few per position.
    """

    def __init__(
        self,
        *,
        max_per_creator: int = 2,
        top_k: int | None = None,
        name: str = "creator_dedup",
    ) -> None:
        check_int("CreatorDedup.max_per_creator", max_per_creator, 1)
        check_int("CreatorDedup.top_k", top_k, 1, allow_none=True)
        self.max_per_creator = max_per_creator
        self.top_k = top_k
        self.name = name

    def __repr__(self) -> str:
        return f"CreatorDedup(max_per_creator={self.max_per_creator}, top_k={self.top_k})"

    def apply(self, slate: Slate, ctx: RuleContext) -> Slate:
        n = len(slate)
        k = min(self.top_k or ctx.k, n)
        cap = self.max_per_creator
        if k == 0:
            return slate
        cre = ctx.catalog.creator[slate.items]
        head = cre[:k]
        known = np.sort(head[head >= 0])
        # In sorted order a creator with more than ``cap`` items has x[i] == x[i + cap].
        if not np.any((head[1:] == head[:-1]) & (head[1:] >= 0)) and not np.any(
            known[cap:] == known[: len(known) - cap]
        ):
            return slate
        top, rest, why, dropped = arrange(cre, k, cap, ctx.explain)
        order = np.fromiter(top + rest, np.int64, len(top) + len(rest))
        if not why and not dropped:  # nothing to log (not explaining, nothing dropped)
            return slate.take(order)
        to_pos = np.full(n, -1, np.int64)
        to_pos[order] = np.arange(len(order))
        return slate.take(order, self._log(slate, ctx, cre, k, to_pos, why, dropped))

    def _log(
        self,
        slate: Slate,
        ctx: RuleContext,
        cre: np.ndarray,
        k: int,
        to_pos: np.ndarray,
        why: dict[int, tuple[str, int]],
        dropped: list[int],
    ) -> list[RuleAction]:
        """The actions: items pushed down (with the first reason they were passed over),
        forced adjacencies, and drops. Reasons are formatted once per creator where possible."""
        cap, items, cids = self.max_per_creator, slate.items.tolist(), ctx.catalog.creator_ids
        cre_l: list[int] = cre.tolist()
        cap_reason: dict[int, str] = {}
        actions: list[RuleAction] = []
        for q in sorted(why):
            kind, p = why[q]
            t = int(to_pos[q])
            if t < 0 or (t <= q and kind != _FORCED):
                continue
            c = cre_l[q]
            cid = int(cids[c]) if c >= 0 else -1  # unknown creators are only ever "ahead"
            if kind == _CAP:
                reason = cap_reason.get(c, "")
                if not reason:
                    reason = cap_reason[c] = f"creator {cid} is at its cap of {cap} in the top {k}"
            elif kind == _ADJACENT:
                reason = f"same creator ({cid}) as the item at position {p - 1}"
            elif kind == _AHEAD:
                reason = (
                    f"kept back at position {p} so that the rest of the top {k} can "
                    "alternate creators"
                )
            else:
                reason = (
                    f"placed next to another item of creator {cid}: no other creator's "
                    f"item is left for position {p}"
                )
            actions.append(RuleAction(self.name, items[q], "moved", reason, q, t))
        filled = int(((to_pos >= 0) & (to_pos < k)).sum())
        for q in dropped:
            cid = int(cids[cre_l[q]])
            reason = (
                f"creator {cid} is at its cap of {cap} in the top {k} and no other "
                f"creator's item is left to fill position {filled}"
            )
            actions.append(RuleAction(self.name, items[q], "dropped", reason, q, None))
        return actions
