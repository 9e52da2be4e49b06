"""Exploration: reserve a share of the top K for fresh or under-exposed videos.

Without it, a new video is never shown because it has no engagement, and it has no engagement
because it is never shown. A share of the top-K slots goes to eligible items the ranker did
*not* put in the top K: items further down the slate, or from an explicit pool (e.g. the
freshest uploads). Their positions and (by default) the items themselves are drawn at random
from ``ctx`` randomness, and they are flagged ``exploration=True`` so that training can
treat those impressions as randomised (inverse-propensity weighting, or simply a separate
bucket) instead of learning the ranker's own bias back.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from mlsd.errors import ConfigError, DataError
from mlsd.reranking._checks import check_int, check_number
from mlsd.reranking.catalog import DAY_MS, Catalog
from mlsd.reranking.filters import hard_filter_mask, in_sorted
from mlsd.reranking.slate import RuleAction, RuleContext, Slate

Pick = Literal["random", "best"]


class Exploration:
    """Put ``round(share * top_k)`` (halves up) eligible items at random top-K positions.

    Eligible: uploaded within ``fresh_days`` before ``ctx.time_ms`` (not after it; unknown
    upload time is never fresh), or with ``catalog.exposure < max_exposure``; set either to
    None to turn that criterion off (not both). Candidates are eligible items at positions
    >= top_k of the slate not already flagged, then eligible ``pool`` items (dense indices)
    not in the slate and passing the hard filters (watched, explicit, blocked creators:
    :func:`~mlsd.reranking.filters.hard_filter_mask`), so an inserted item can never bypass a
    filter. Pool items get score NaN and source ``pool_source``.

    ``pick="random"`` draws the items uniformly without replacement from the candidates (the
    propensity, slots / candidates, is written in each reason); ``"best"`` takes the first
    candidates (best-scored slate items, then pool order). Positions are drawn uniformly
    without replacement from ``[min_position, top_k)``, sorted, and filled in pick order; in
    a slate shorter than a drawn position the item goes at the end. With fewer candidates or
    positions than slots, fewer items are placed. Everything random comes from
    ``ctx.draws()``: the same generator state (or user and time) gives the same slate.

    Each placed item is logged as ``inserted`` (``from_pos`` None for pool items); items that
    shift down to make room are not logged. ``top_k`` None means ``ctx.k``.
    """

    def __init__(
        self,
        *,
        share: float = 0.1,
        top_k: int | None = None,
        fresh_days: float | None = 7.0,
        max_exposure: float | None = None,
        pool: np.ndarray | None = None,
        pick: Pick = "random",
        min_position: int = 1,
        pool_source: int = -1,
        name: str = "exploration",
    ) -> None:
        check_number("Exploration.share", share, 0.0, 1.0)
        check_int("Exploration.top_k", top_k, 1, allow_none=True)
        check_number("Exploration.fresh_days", fresh_days, 0.0, allow_none=True)
        check_number("Exploration.max_exposure", max_exposure, 0.0, allow_none=True)
        check_int("Exploration.min_position", min_position, 0)
        if fresh_days is None and max_exposure is None:
            raise ConfigError(
                "Exploration: fresh_days and max_exposure are both None; expected at least one "
                "criterion for what to explore"
            )
        if pick not in ("random", "best"):
            raise ConfigError(f"Exploration.pick: expected 'random' or 'best', got {pick!r}")
        if top_k is not None and min_position >= top_k:
            raise ConfigError(
                f"Exploration.min_position: {min_position} leaves no slot in the top {top_k}; "
                "expected min_position < top_k"
            )
        if (
            isinstance(pool_source, bool)
            or not isinstance(pool_source, int)
            or not (-128 <= pool_source <= 127)
        ):
            raise ConfigError(
                f"Exploration.pool_source: expected an int8 code, got {pool_source!r}"
            )
        if pool is not None:
            arr = np.asarray(pool)
            if arr.ndim != 1 or (arr.size and (arr.dtype.kind not in "iu" or arr.min() < 0)):
                raise ConfigError(
                    "Exploration.pool: expected a 1-D array of dense item indices >= 0, got "
                    f"shape {arr.shape} dtype {arr.dtype}"
                )
            _, first = np.unique(arr, return_index=True)
            pool = arr[np.sort(first)].astype(np.int64)  # duplicates removed, order kept
        self.share = float(share)
        self.top_k = top_k
        self.fresh_days = fresh_days
        self.max_exposure = max_exposure
        self.pool = pool
        self.pick: Pick = pick
        self.min_position = min_position
        self.pool_source = pool_source
        self.name = name

    def __repr__(self) -> str:
        return (
            f"Exploration(share={self.share:g}, top_k={self.top_k}, fresh_days={self.fresh_days}, "
            f"max_exposure={self.max_exposure}, pick={self.pick!r}, "
            f"min_position={self.min_position}, "
            f"pool={'None' if self.pool is None else len(self.pool)})"
        )

    def slots(self, k: int) -> int:
        """Number of exploration slots in a top ``k``: ``share * k`` rounded, halves up."""
        return math.floor(self.share * k + 0.5 + 1e-9)

    def _eligible(self, items: np.ndarray, cat: Catalog, now: int) -> np.ndarray:
        ok = np.zeros(len(items), bool)
        if self.fresh_days is not None:
            up = cat.upload_ms[items]
            ok |= (up <= now) & (up >= now - int(self.fresh_days * DAY_MS))
        if self.max_exposure is not None:
            ok |= cat.exposure[items] < self.max_exposure
        return ok

    def _why(self, item: int, cat: Catalog, now: int) -> str:
        up = int(cat.upload_ms[item])
        if self.fresh_days is not None and now - int(self.fresh_days * DAY_MS) <= up <= now:
            return f"fresh (uploaded {(now - up) / DAY_MS:.1f} days ago)"
        return f"under-exposed ({cat.exposure[item]:g} recent impressions)"

    def apply(self, slate: Slate, ctx: RuleContext) -> Slate:
        k = self.top_k or ctx.k
        n_slots = min(self.slots(k), max(0, k - self.min_position))
        if n_slots == 0:
            return slate
        cat, now, n = ctx.catalog, int(ctx.time_ms), len(slate)
        tail = np.arange(min(k, n), n)
        tail = tail[~slate.exploration[tail]]
        tail = tail[self._eligible(slate.items[tail], cat, now)]
        pool = np.zeros(0, np.int64)
        if self.pool is not None and self.pool.size:
            if int(self.pool.max()) >= cat.n:
                raise DataError(
                    f"Exploration.pool: item index {int(self.pool.max())} is outside the "
                    f"catalog (0..{cat.n - 1})"
                )
            pool = self.pool[self._eligible(self.pool, cat, now)]
            pool = pool[~in_sorted(pool, np.sort(slate.items))]
            pool = pool[~hard_filter_mask(pool, ctx)]
        n_cand = len(tail) + len(pool)
        m = min(n_slots, n_cand)
        if m == 0:
            return slate
        draw = ctx.draws()
        # Uniform draws without replacement (an ordered sample for the items)
        pick = (
            np.array(draw.sample(range(n_cand), m), np.int64)
            if self.pick == "random"
            else np.arange(m)
        )
        spots = draw.sample(range(self.min_position, k), m)
        positions = np.array(sorted(spots), np.int64)
        # Extended arrays: the slate, then the pool items picked; ``chosen`` indexes them.
        in_tail = pick < len(tail)
        from_pool = pick[~in_tail] - len(tail)
        n_pool = len(from_pool)
        chosen = np.empty(m, np.int64)
        chosen[in_tail] = tail[pick[in_tail]]
        chosen[~in_tail] = n + np.arange(n_pool)
        keep = np.ones(n + n_pool, bool)
        keep[chosen] = False
        base = np.flatnonzero(keep)
        out_len = len(base) + m
        # In a slate shorter than a drawn position, the item goes at the end (stays distinct).
        positions = np.minimum(positions, out_len - m + np.arange(m))
        order = np.empty(out_len, np.int64)
        slot = np.zeros(out_len, bool)
        slot[positions] = True
        order[positions] = chosen
        order[~slot] = base
        pool_items = pool[from_pool]
        items = np.concatenate([slate.items, pool_items])[order]
        explore = np.concatenate([slate.exploration, np.zeros(n_pool, bool)])
        explore[chosen] = True
        actions: list[RuleAction] = []
        if ctx.explain:  # see RuleContext.explain
            prop = f"drawn at random, {m} of {n_cand} eligible (p={m / n_cand:.3g})"
            how = prop if self.pick == "random" else f"best-scored {m} of {n_cand} eligible"
            for p, c in zip(positions.tolist(), chosen.tolist(), strict=True):
                why = f"exploration slot: {self._why(int(items[p]), cat, now)}; {how}"
                actions.append(
                    RuleAction(
                        self.name, int(items[p]), "inserted", why, int(c) if c < n else None, int(p)
                    )
                )
        return Slate(
            items=items,
            scores=np.concatenate([slate.scores, np.full(n_pool, np.nan)])[order],
            source=np.concatenate([slate.source, np.full(n_pool, self.pool_source, np.int8)])[
                order
            ],
            exploration=explore[order],
            actions=slate.actions + tuple(actions),
        )
