"""Hand-made catalogs, hypothesis strategies and brute-force oracles for the re-ranking tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from hypothesis import strategies as st

from mlsd.reranking import DAY_MS, Catalog, RuleContext, Slate

NOW = 1_750_000_000_000  # request time of every test context


def catalog(
    creators: Sequence[int],
    *,
    topics: Sequence[int] | None = None,
    explicit: Sequence[bool] | None = None,
    age_days: Sequence[float] | None = None,
    exposure: Sequence[float] | None = None,
) -> Catalog:
    """Items 0..n-1 with external ids 1000+i; creator c has external id 100+c."""
    n = len(creators)
    n_creators = max(creators, default=-1) + 1
    upload = None
    if age_days is not None:
        upload = (NOW - np.asarray(age_days, dtype=np.float64) * DAY_MS).astype(np.int64)
    return Catalog.build(
        1000 + np.arange(n),
        creator=creators,
        topic=topics,
        is_explicit=explicit,
        upload_ms=upload,
        exposure=exposure,
        creator_ids=100 + np.arange(n_creators),
    )


def ctx(cat: Catalog, k: int = 10, **kw: object) -> RuleContext:
    return RuleContext(cat, k=k, time_ms=NOW, **kw)  # type: ignore[arg-type]


def slate(n: int | Sequence[int]) -> Slate:
    items = np.arange(n) if isinstance(n, int) else np.asarray(n)
    return Slate.from_arrays(items, -np.arange(len(items), dtype=np.float64))


def acts(s: Slate) -> list[tuple[str, int, str, int | None, int | None]]:
    """The action log without reasons: (rule, item, action, from_pos, to_pos)."""
    return [(a.rule, a.item, a.action, a.from_pos, a.to_pos) for a in s.actions]


# ---------------------------------------------------------------- hypothesis strategies


@dataclass
class Case:
    """One generated request: a catalog, a slate over part of it, a context and a pool."""

    catalog: Catalog
    slate: Slate
    k: int
    watched: np.ndarray
    blocked: np.ndarray
    allows_explicit: bool
    seed: int
    pool: np.ndarray

    def ctx(self) -> RuleContext:
        """A fresh context (fresh generator state) for every call, so runs can be replayed."""
        return RuleContext(
            self.catalog,
            k=self.k,
            time_ms=NOW,
            user_id=7,
            allows_explicit=self.allows_explicit,
            watched=self.watched,
            blocked_creators=self.blocked,
            rng=np.random.default_rng(self.seed),
        )


@st.composite
def cases(draw: st.DrawFn, max_items: int = 40, max_creators: int = 6) -> Case:
    n = draw(st.integers(1, max_items))
    n_creators = draw(st.integers(1, max_creators))
    creators = draw(st.lists(st.integers(-1, n_creators - 1), min_size=n, max_size=n))
    topics = draw(st.lists(st.integers(-1, 4), min_size=n, max_size=n))
    explicit = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    age = draw(st.lists(st.floats(-1, 30), min_size=n, max_size=n))
    exposure = draw(st.lists(st.integers(0, 100), min_size=n, max_size=n))
    cat = catalog(creators, topics=topics, explicit=explicit, age_days=age, exposure=exposure)
    perm = draw(st.permutations(range(n)))
    m = draw(st.integers(0, n))
    items = np.array(perm[:m], dtype=np.int64)
    rest = np.array(perm[m:], dtype=np.int64)
    sorted_scores = draw(st.booleans())
    scores = draw(st.lists(st.floats(-5, 5, allow_nan=False), min_size=m, max_size=m).map(np.array))
    if sorted_scores:
        scores = -np.sort(-scores)
    s = Slate.from_arrays(items, scores, source=np.arange(m) % 3)
    pick = st.lists(st.sampled_from(list(range(n))), max_size=n).map(
        lambda v: np.array(v, dtype=np.int64)
    )
    pool_size = draw(st.integers(0, len(rest)))
    return Case(
        catalog=cat,
        slate=s,
        k=draw(st.integers(1, 12)),
        watched=draw(pick),
        blocked=np.array(
            draw(st.lists(st.integers(0, n_creators - 1), max_size=3)), dtype=np.int64
        ),
        allows_explicit=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32 - 1)),
        pool=rest[:pool_size],
    )


# ---------------------------------------------------------------- oracles


def creator_counts_ok(creators: np.ndarray, cap: int) -> bool:
    known = creators[creators >= 0]
    return known.size == 0 or int(np.bincount(known).max()) <= cap


def no_adjacent(creators: np.ndarray) -> bool:
    return not np.any((creators[1:] == creators[:-1]) & (creators[1:] >= 0))


def can_fill(creators: Sequence[int], k: int, cap: int) -> bool:
    """Brute force: can some ordered choice of ``min(k, T)`` of these items (T = the most the
    cap allows) have at most ``cap`` per creator and no creator twice in a row?"""
    known: dict[int, int] = {}
    unknown = 0
    for c in creators:
        if c < 0:
            unknown += 1
        else:
            known[c] = known.get(c, 0) + 1
    avail = tuple(sorted(min(v, cap) for v in known.values())) + (1,) * unknown
    need = min(k, sum(avail))
    return _search(avail, -1, need)


@cache
def _search(avail: tuple[int, ...], prev: int, need: int) -> bool:
    if need == 0:
        return True
    for i, a in enumerate(avail):
        if a > 0 and i != prev:
            nxt = (*avail[:i], a - 1, *avail[i + 1 :])
            if _search(nxt, i, need - 1):
                return True
    return False
