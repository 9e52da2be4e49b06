"""Creator dedup: exact orders, logged moves and drops, and the feasibility test vs brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsd.errors import ConfigError
from mlsd.reranking import CreatorDedup, Slate
from mlsd.reranking.dedup import _Availability, arrange
from tests.reranking.helpers import _search, acts, can_fill, catalog, ctx, no_adjacent, slate

A, B, C = 0, 1, 2  # creators; external ids 100, 101, 102


def run(creators: list[int], k: int, cap: int, top_k: int | None = None) -> tuple[Slate, Slate]:
    rule = CreatorDedup(max_per_creator=cap, top_k=top_k)
    s = slate(len(creators))
    return s, rule.apply(s, ctx(catalog(creators), k=k))


def test_cap_moves_the_extra_item_below_the_top_k() -> None:
    _, out = run([A, A, B, C], k=3, cap=1)
    assert out.items.tolist() == [0, 2, 3, 1]
    assert acts(out) == [("creator_dedup", 1, "moved", 1, 3)]
    assert out.actions[0].reason == "creator 100 is at its cap of 1 in the top 3"


def test_adjacent_items_of_one_creator_are_split() -> None:
    _, out = run([A, A, B, B], k=4, cap=2)
    assert out.items.tolist() == [0, 2, 1, 3]
    assert acts(out) == [("creator_dedup", 1, "moved", 1, 2)]
    assert out.actions[0].reason == "same creator (100) as the item at position 0"


def test_lookahead_avoids_a_dead_end() -> None:
    # Greedy in order would give X Y Y; the only valid top 3 is Y X Y.
    _, out = run([A, B, B], k=3, cap=2)
    assert out.items.tolist() == [1, 0, 2]
    assert acts(out) == [("creator_dedup", 0, "moved", 0, 1)]
    assert "so that the rest of the top 3 can alternate creators" in out.actions[0].reason


def test_when_adjacency_is_impossible_it_is_relaxed_and_logged() -> None:
    # Three of A and one B cannot fill 4 slots without two A's in a row.
    _, out = run([A, A, A, B], k=4, cap=3)
    assert out.items.tolist() == [0, 3, 1, 2]
    assert acts(out) == [
        ("creator_dedup", 1, "moved", 1, 2),
        ("creator_dedup", 2, "moved", 2, 3),
    ]
    assert out.actions[1].reason == (
        "placed next to another item of creator 100: no other creator's item is left for position 3"
    )


def test_forced_placement_is_logged_even_without_a_move() -> None:
    _, out = run([A, A], k=2, cap=2)
    assert out.items.tolist() == [0, 1]
    assert acts(out) == [("creator_dedup", 1, "moved", 1, 1)]


def test_the_cap_is_hard_items_that_cannot_fit_are_dropped() -> None:
    _, out = run([A, A, B], k=3, cap=1)
    assert out.items.tolist() == [0, 2]
    assert acts(out) == [("creator_dedup", 1, "dropped", 1, None)]
    assert out.actions[0].reason == (
        "creator 100 is at its cap of 1 in the top 3 and no other creator's item is left to "
        "fill position 2"
    )


def test_top_k_narrower_than_the_request() -> None:
    _, out = run([A, A, B, C], k=10, cap=1, top_k=2)
    assert out.items.tolist() == [0, 2, 1, 3]
    assert acts(out) == [("creator_dedup", 1, "moved", 1, 2)]
    assert out.actions[0].reason == "creator 100 is at its cap of 1 in the top 2"


def test_compliant_slates_and_unknown_creators_pass_through() -> None:
    s, out = run([A, B, A, C, A], k=5, cap=3)
    assert out is s
    s, out = run([-1, -1, -1, A], k=4, cap=1)
    assert out is s
    s, out = run([A, A, A], k=1, cap=1)  # only the top 1 is constrained
    assert out is s


def test_longer_slate_keeps_the_tail_in_order() -> None:
    _, out = run([A, A, A, B, B, C, C, A], k=4, cap=2)
    # top 4: A B A B (the second A at position 2, B's pulled up); the rest in original order
    assert out.items.tolist() == [0, 3, 1, 4, 2, 5, 6, 7]
    assert acts(out) == [("creator_dedup", 1, "moved", 1, 2), ("creator_dedup", 2, "moved", 2, 4)]


def test_many_capped_items_keep_their_order_below_the_top_k() -> None:
    creators = [A] * 12 + [B, C, A, 3]
    _, out = run(creators, k=4, cap=1)
    assert out.items.tolist() == [0, 12, 13, 15, *range(1, 12), 14]
    assert acts(out) == [("creator_dedup", q, "moved", q, q + 3) for q in range(1, 12)] + [
        ("creator_dedup", 14, "moved", 14, 15)
    ]


def test_parked_items_are_dropped_when_nothing_else_is_left() -> None:
    _, out = run([A] * 12 + [-1] + [A] * 3, k=4, cap=1)
    assert out.items.tolist() == [0, 12]
    assert [a.item for a in out.actions if a.action == "dropped"] == [*range(1, 12), 13, 14, 15]


@pytest.mark.parametrize("kw", [{"max_per_creator": 0}, {"top_k": 0}, {"max_per_creator": 1.5}])
def test_bad_hyperparameters(kw: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="CreatorDedup"):
        CreatorDedup(**kw)  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None)
@given(
    creators=st.lists(st.integers(-1, 3), min_size=0, max_size=9),
    first=st.integers(-1, 3),
    slots=st.integers(0, 9),
    cap=st.integers(1, 4),
)
def test_feasibility_count_matches_brute_force(
    creators: list[int], first: int, slots: int, cap: int
) -> None:
    pool = [first, *creators]
    state = _Availability(np.array(pool), cap)
    rest = creators.copy()
    # after placing ``first``: can the rest fill min(slots, T) positions, first != ``first``?
    expected = _brute_after(rest, first, slots, cap)
    assert state.feasible_after(first, slots) == expected


def _brute_after(rest: list[int], first: int, slots: int, cap: int) -> bool:
    known: dict[int, int] = {}
    unknown = 0
    for c in rest:
        if c < 0:
            unknown += 1
        else:
            known[c] = known.get(c, 0) + 1
    left = {c: min(v, cap - (1 if c == first else 0)) for c, v in known.items()}
    if first >= 0 and first not in left:
        left[first] = 0
    colors = sorted(left)
    avail = tuple(left[c] for c in colors) + (1,) * unknown
    prev = colors.index(first) if first >= 0 else -1
    return _search(avail, prev, min(slots, sum(avail)))


@settings(max_examples=300, deadline=None)
@given(
    creators=st.lists(st.integers(-1, 4), min_size=1, max_size=30),
    k=st.integers(1, 14),
    cap=st.integers(1, 3),
)
def test_arrange_is_optimal_whenever_a_valid_top_k_exists(
    creators: list[int], k: int, cap: int
) -> None:
    top, rest, _, dropped = arrange(np.array(creators), min(k, len(creators)), cap)
    placed = [creators[q] for q in top]
    known = [c for c in placed if c >= 0]
    assert all(known.count(c) <= cap for c in known)
    assert sorted(top + rest + dropped) == list(range(len(creators)))
    assert rest == sorted(rest)  # the tail keeps its order
    if can_fill(creators, k, cap):
        assert no_adjacent(np.array(placed))


@settings(max_examples=300, deadline=None)
@given(
    creators=st.lists(st.integers(-1, 5), min_size=1, max_size=40),
    k=st.integers(1, 16),
    cap=st.integers(1, 3),
    window=st.integers(1, 7),
)
def test_scanning_window_does_not_change_the_slate_or_the_log(
    creators: list[int], k: int, cap: int, window: int
) -> None:
    # arrange scans the head of the slate a window at a time (64 in production); a window
    # smaller than the slate must give the very order, drops and logged actions of one scan
    import mlsd.reranking.dedup as dedup

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dedup, "_WINDOW", len(creators) + 1)
        _, whole = run(creators, k=k, cap=cap)
        mp.setattr(dedup, "_WINDOW", window)
        _, windowed = run(creators, k=k, cap=cap)
    assert windowed.items.tolist() == whole.items.tolist()
    assert windowed.actions == whole.actions
