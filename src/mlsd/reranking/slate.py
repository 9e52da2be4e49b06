"""The slate a re-ranking rule works on, the request context, and the ``Rule`` protocol.

A :class:`Slate` is a handful of parallel numpy arrays (dense item indices, best first) plus a
log of :class:`RuleAction` records: every item a rule dropped, moved on purpose or inserted,
with the reason, so that serving can explain a slate and tests can assert on it. Rules never
modify a slate in place; they return a new one whose log is the old log plus their actions.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

import numpy as np

from mlsd.errors import ConfigError, DataError
from mlsd.reranking.catalog import Catalog

ActionKind = Literal["dropped", "moved", "inserted"]


class RuleAction(NamedTuple):
    """What one rule did to one item, and why.

    ``item`` is the dense item index. Positions are 0-based and relative to the slate the
    rule received (``from_pos``) and returned (``to_pos``): ``dropped`` has ``to_pos`` None;
    ``inserted`` has ``from_pos`` None when the item came from outside the slate (a pool),
    else its position in the received slate. Items that only shift because another item was
    dropped, moved or inserted around them get no record. (A NamedTuple, not a dataclass:
    rules create dozens per request and a tuple is several times cheaper to build.)
    """

    rule: str
    item: int
    action: ActionKind
    reason: str
    from_pos: int | None = None
    to_pos: int | None = None


def _empty_ints() -> np.ndarray:
    return np.zeros(0, np.int64)


@dataclass(frozen=True, slots=True, eq=False)
class Slate:
    """An ordered list of candidates, best first, and what the rules did to it.

    - ``items`` int64: dense item indices (unique);
    - ``scores`` float64: ranker scores (NaN for items that were never scored, e.g. inserted
      from an exploration pool);
    - ``source`` int8: retrieval source code of each item (opaque here; -1 = inserted by a
      rule from outside the candidates);
    - ``exploration`` bool: True for items placed by an exploration rule (log them as such:
      their position was chosen at random, not by the ranker);
    - ``actions``: the log, oldest first.

    Build one with :meth:`from_arrays`, which validates; rules use :meth:`take`, which does
    not. Treat the arrays as read-only.
    """

    items: np.ndarray
    scores: np.ndarray
    source: np.ndarray
    exploration: np.ndarray
    actions: tuple[RuleAction, ...] = ()

    @classmethod
    def from_arrays(
        cls,
        items: Sequence[int] | np.ndarray,
        scores: Sequence[float] | np.ndarray | None = None,
        *,
        source: Sequence[int] | np.ndarray | None = None,
        exploration: Sequence[bool] | np.ndarray | None = None,
    ) -> Slate:
        """A slate from ranked candidates (best first; the order given is kept, it is not
        re-sorted by score). ``scores`` defaults to ``-position`` (the given order),
        ``source`` to 0, ``exploration`` to False.

        Raises :class:`~mlsd.errors.DataError` for arrays that are not 1-D or not of equal
        length, non-integer or negative items, or an item listed twice.
        """
        it = np.asarray(items)
        if it.ndim != 1:
            raise DataError(f"slate items: expected a 1-D array, got shape {it.shape}")
        n = len(it)
        if n and it.dtype.kind not in "iu":
            raise DataError(f"slate items: expected integer item indices, got dtype {it.dtype}")
        it = it.astype(np.int64, copy=True)
        if n and int(it.min()) < 0:
            raise DataError(f"slate items: negative item index {int(it.min())}")
        srt = np.sort(it)  # a sort, not np.unique: this runs on every served request
        twice = srt[1:][srt[1:] == srt[:-1]]
        if len(twice):
            raise DataError(
                f"slate items: item {int(twice[0])} appears more than once; "
                "expected each candidate once"
            )

        def column(name: str, values: object, default: np.ndarray, dtype: type) -> np.ndarray:
            if values is None:
                return default
            arr = np.asarray(values)
            if arr.shape != (n,):
                raise DataError(f"slate {name}: expected shape ({n},), got {arr.shape}")
            return arr.astype(dtype, copy=True)

        return cls(
            items=it,
            scores=column("scores", scores, -np.arange(n, dtype=np.float64), np.float64),
            source=column("source", source, np.zeros(n, np.int8), np.int8),
            exploration=column("exploration", exploration, np.zeros(n, bool), np.bool_),
        )

    def __len__(self) -> int:
        return len(self.items)

    def take(self, positions: np.ndarray, actions: Iterable[RuleAction] = ()) -> Slate:
        """A new slate with the items at ``positions`` (in that order) and ``actions``
        appended to the log. Positions must be distinct and in range (not checked)."""
        return Slate(
            items=self.items[positions],
            scores=self.scores[positions],
            source=self.source[positions],
            exploration=self.exploration[positions],
            actions=self.actions + tuple(actions),
        )

    def truncate(self, k: int) -> Slate:
        """The first ``k`` items. Items cut are not logged: they were simply not shown."""
        if k >= len(self.items):
            return self
        return self.take(np.arange(k))

    def dropped(self) -> np.ndarray:
        """Dense indices of the items some rule dropped, in the order they were dropped."""
        return np.array([a.item for a in self.actions if a.action == "dropped"], dtype=np.int64)

    def explain(self, catalog: Catalog) -> list[dict[str, Any]]:
        """The action log with external video ids, as JSON-ready dicts (for serving)."""
        ids = catalog.item_ids
        return [
            {
                "rule": a.rule,
                "video_id": int(ids[a.item]),
                "action": a.action,
                "reason": a.reason,
                "from_pos": a.from_pos,
                "to_pos": a.to_pos,
            }
            for a in self.actions
        ]


@dataclass(frozen=True, eq=False)
class RuleContext:
    """Everything a rule may need about the request, besides the slate.

    - ``catalog``: item attributes;
    - ``k``: slate length requested (rules whose ``top_k`` is None act on the first ``k``);
    - ``time_ms``: request time, ms since the epoch (freshness is measured from it);
    - ``user_id``: external user id (-1 if anonymous), for logs and default seeding;
    - ``allows_explicit``: False when unknown (the safe default);
    - ``watched``: dense item indices the user has already watched (stored sorted);
    - ``blocked_creators``: dense creator indices the user blocked or marked "not interested"
      (stored sorted);
    - ``rng``: randomness for exploration; None derives a generator from
      ``(user_id, time_ms)`` (see :meth:`generator`), so a replayed request gets the same slate;
    - ``explain``: False lets rules leave the ``moved`` and ``inserted`` actions out of the log
      (formatting their reasons cost a serving request ~0.3 ms, and only explanations read
      them; the slate is the same and its ``exploration`` flags still mark inserted items).
      ``dropped`` actions are always logged.

    Arrays are converted to int64 on construction; ``k`` < 1 raises
    :class:`~mlsd.errors.ConfigError`.
    """

    catalog: Catalog
    k: int
    time_ms: int
    user_id: int = -1
    allows_explicit: bool = False
    watched: np.ndarray = field(default_factory=_empty_ints)
    blocked_creators: np.ndarray = field(default_factory=_empty_ints)
    rng: np.random.Generator | None = None
    explain: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int | np.integer) or self.k < 1:
            raise ConfigError(f"RuleContext.k: expected an integer >= 1, got {self.k!r}")
        for name in ("watched", "blocked_creators"):
            arr = np.asarray(getattr(self, name))
            if arr.size and arr.dtype.kind not in "iu":
                raise DataError(f"RuleContext.{name}: expected integer indices, got {arr.dtype}")
            # Sorted, so that membership is a binary search (np.isin builds a lookup table
            # over the whole value range: ~100x slower on a 500-item slate).
            object.__setattr__(self, name, np.sort(arr.astype(np.int64, copy=False).reshape(-1)))
        if self.rng is not None and not isinstance(self.rng, np.random.Generator):
            raise ConfigError(
                f"RuleContext.rng: expected a numpy Generator, got {type(self.rng).__name__}"
            )

    def generator(self) -> np.random.Generator:
        """``rng`` if given, else a generator seeded from ``(user_id, time_ms)``."""
        if self.rng is not None:
            return self.rng
        mask = (1 << 64) - 1
        return np.random.default_rng([int(self.user_id) & mask, int(self.time_ms) & mask])

    def draws(self) -> random.Random:
        """A Python ``random.Random`` for a rule's few draws: seeded by one draw from ``rng``
        when given, else from ``(user_id, time_ms)`` (a replayed request draws the same).

        Why not :meth:`generator`: a rule that draws two or three numbers a request would
        spend ~40 us building a numpy generator and ~10 us a permutation; seeding Python's
        Mersenne Twister and sampling takes ~10 us in all.
        """
        mask = (1 << 64) - 1
        if self.rng is not None:
            return random.Random(int(self.rng.integers(0, 1 << 63)))
        return random.Random(((int(self.user_id) & mask) << 64) | (int(self.time_ms) & mask))


@runtime_checkable
class Rule(Protocol):
    """A business rule: takes a slate, returns a new slate and logs what it changed.

    Contract (checked for every rule by the tests): ``apply`` never modifies its input, never
    returns an item that was not in the input (exploration from an explicit pool excepted),
    never returns an item twice, and logs a ``dropped`` action for every item it removes.
    """

    name: str

    def apply(self, slate: Slate, ctx: RuleContext) -> Slate:
        """Return the re-ranked slate."""
        ...
