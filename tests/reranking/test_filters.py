"""Hard filters: exact output order and one logged ``dropped`` action per removed item."""

from __future__ import annotations

import numpy as np

from mlsd.reranking import BlockedCreators, DropWatched, ExplicitFilter, hard_filter_mask
from mlsd.reranking.filters import in_sorted
from tests.reranking.helpers import acts, catalog, ctx, slate

CAT = catalog(
    [0, 0, 1, 2, 1, -1],
    explicit=[False, True, False, False, True, False],
)


def test_drop_watched_keeps_order_and_logs_each_drop() -> None:
    out = DropWatched().apply(slate(6), ctx(CAT, watched=[4, 1, 99]))
    assert out.items.tolist() == [0, 2, 3, 5]
    assert out.scores.tolist() == [0.0, -2.0, -3.0, -5.0]
    assert acts(out) == [
        ("drop_watched", 1, "dropped", 1, None),
        ("drop_watched", 4, "dropped", 4, None),
    ]
    assert {a.reason for a in out.actions} == {"already watched"}


def test_explicit_filter_depends_on_the_user() -> None:
    s = slate([5, 4, 3, 2, 1, 0])
    out = ExplicitFilter().apply(s, ctx(CAT, allows_explicit=False))
    assert out.items.tolist() == [5, 3, 2, 0]
    assert acts(out) == [
        ("explicit_filter", 4, "dropped", 1, None),
        ("explicit_filter", 1, "dropped", 4, None),
    ]
    assert out.actions[0].reason == "explicit content; the user does not allow it"
    assert ExplicitFilter().apply(s, ctx(CAT, allows_explicit=True)) is s
    # unknown preference is the safe default: not allowed
    assert len(ExplicitFilter().apply(s, ctx(CAT))) == 4


def test_blocked_creators_names_the_creator_and_ignores_unknown() -> None:
    out = BlockedCreators().apply(slate(6), ctx(CAT, blocked_creators=[1]))
    assert out.items.tolist() == [0, 1, 3, 5]
    assert acts(out) == [
        ("blocked_creators", 2, "dropped", 2, None),
        ("blocked_creators", 4, "dropped", 4, None),
    ]
    assert out.actions[0].reason == "creator 101 is blocked by the user (not interested)"
    assert BlockedCreators().apply(slate(6), ctx(CAT)).items.tolist() == list(range(6))


def test_filters_do_not_modify_their_input_and_return_it_when_nothing_drops() -> None:
    s = slate(6)
    before = s.items.copy()
    DropWatched().apply(s, ctx(CAT, watched=[0, 1]))
    assert s.items.tolist() == before.tolist() and s.actions == ()
    assert DropWatched().apply(s, ctx(CAT, watched=[42])) is s


def test_actions_accumulate_across_filters() -> None:
    c = ctx(CAT, watched=[0], blocked_creators=[2])
    out = BlockedCreators().apply(ExplicitFilter().apply(DropWatched().apply(slate(6), c), c), c)
    assert out.items.tolist() == [2, 5]
    assert [(a.rule, a.item) for a in out.actions] == [
        ("drop_watched", 0),
        ("explicit_filter", 1),
        ("explicit_filter", 4),
        ("blocked_creators", 3),
    ]
    # positions are relative to the slate each rule received
    assert [a.from_pos for a in out.actions] == [0, 0, 3, 1]
    assert out.dropped().tolist() == [0, 1, 4, 3]


def test_hard_filter_mask_matches_the_three_rules() -> None:
    items = np.arange(6)
    c = ctx(CAT, watched=[5], blocked_creators=[0])
    assert hard_filter_mask(items, c).tolist() == [True, True, False, False, True, True]


def test_in_sorted() -> None:
    s = np.array([2, 5, 9])
    assert in_sorted(np.array([0, 2, 3, 9, 10, 5]), s).tolist() == [
        False,
        True,
        False,
        True,
        False,
        True,
    ]
    assert in_sorted(np.array([1, 2]), np.zeros(0, np.int64)).tolist() == [False, False]
