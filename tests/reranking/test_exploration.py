"""Exploration: slot count, eligibility, pools through the hard filters, determinism, flags."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlsd.errors import ConfigError, DataError
from mlsd.reranking import Exploration, Slate
from tests.reranking.helpers import acts, catalog, ctx, slate

# items 0-3 would be the top 4; item 1 is fresh but already there; 4 is fresh and below;
# 5 is old; 6 is fresh but uploaded after the request; 7 has few impressions.
AGES = [100, 1, 100, 100, 1, 30, -1, 100]
EXPOSURE = [500, 500, 500, 500, 500, 500, 500, 3]
CAT = catalog([0, 1, 2, 3, 4, 5, 6, 7], age_days=AGES, exposure=EXPOSURE)


def test_one_slot_goes_to_the_fresh_item_from_below_the_top_k() -> None:
    rule = Exploration(share=0.25, top_k=4, min_position=3, pick="best")
    out = rule.apply(slate(8), ctx(CAT, k=4))
    assert out.items.tolist() == [0, 1, 2, 4, 3, 5, 6, 7]
    assert out.exploration.tolist() == [False, False, False, True, False, False, False, False]
    assert acts(out) == [("exploration", 4, "inserted", 4, 3)]
    assert out.actions[0].reason == (
        "exploration slot: fresh (uploaded 1.0 days ago); best-scored 1 of 1 eligible"
    )
    assert out.scores[3] == -4.0  # the item keeps its score and source


def test_under_exposed_criterion() -> None:
    rule = Exploration(share=0.25, top_k=4, min_position=3, fresh_days=None, max_exposure=10)
    out = rule.apply(slate(8), ctx(CAT, k=4))
    assert out.items.tolist() == [0, 1, 2, 7, 3, 4, 5, 6]
    assert out.actions[0].reason == (
        "exploration slot: under-exposed (3 recent impressions); drawn at random, 1 of 1 "
        "eligible (p=1)"
    )


def test_random_pick_reports_its_propensity_and_is_reproducible() -> None:
    rule = Exploration(share=0.25, top_k=4, fresh_days=None, max_exposure=600)
    s = slate(8)
    outs = [rule.apply(s, ctx(CAT, k=4, rng=np.random.default_rng(seed))) for seed in range(40)]
    again = rule.apply(s, ctx(CAT, k=4, rng=np.random.default_rng(3)))
    assert again.items.tolist() == outs[3].items.tolist()
    assert all("1 of 4 eligible (p=0.25)" in o.actions[0].reason for o in outs)
    assert {o.actions[0].item for o in outs} == {4, 5, 6, 7}  # every candidate gets picked
    assert {o.actions[0].to_pos for o in outs} == {1, 2, 3}  # never position 0 by default


def test_default_generator_is_seeded_by_user_and_time() -> None:
    rule = Exploration(share=0.5, top_k=4, fresh_days=None, max_exposure=600)
    a = rule.apply(slate(8), ctx(CAT, k=4, user_id=1))
    b = rule.apply(slate(8), ctx(CAT, k=4, user_id=1))
    assert a.items.tolist() == b.items.tolist()
    outs = {tuple(rule.apply(slate(8), ctx(CAT, k=4, user_id=u)).items) for u in range(30)}
    assert len(outs) > 1


def test_pool_items_pass_the_hard_filters_first() -> None:
    cat = catalog(
        [0, 0, 0, 1, 2, 3, 4],
        explicit=[False, False, False, True, False, False, False],
        age_days=[100, 100, 100, 1, 1, 1, 1],
    )
    # pool: 3 explicit, 4 watched, 5 blocked creator (3), 6 fine; 0 already in the slate
    rule = Exploration(share=1.0, top_k=3, pool=np.array([3, 4, 5, 6, 0, 6]), min_position=2)
    out = rule.apply(slate(3), ctx(cat, k=3, watched=[4], blocked_creators=[3]))
    assert out.items.tolist() == [0, 1, 6, 2]
    assert acts(out) == [("exploration", 6, "inserted", None, 2)]
    assert np.isnan(out.scores[2]) and out.source[2] == -1 and out.exploration[2]
    assert "1 of 1 eligible" in out.actions[0].reason


def test_pool_into_a_short_slate_appends_at_the_end() -> None:
    cat = catalog([0, 1, 2], age_days=[100, 1, 1])
    rule = Exploration(share=0.5, top_k=10, pool=np.array([1, 2]), min_position=5, pick="best")
    out = rule.apply(slate([0]), ctx(cat, k=10))
    assert out.items.tolist() == [0, 1, 2]
    assert [a.to_pos for a in out.actions] == [1, 2]
    assert out.exploration.tolist() == [False, True, True]


def test_already_flagged_items_are_not_picked_again() -> None:
    s = Slate.from_arrays(np.arange(8), exploration=[False] * 4 + [True] + [False] * 3)
    out = Exploration(share=0.25, top_k=4, min_position=3).apply(s, ctx(CAT, k=4))
    assert out is s  # 4 is the only fresh candidate and it is flagged already


def test_slot_count_rounds_half_up() -> None:
    rule = Exploration(share=0.1)
    assert [rule.slots(k) for k in (4, 5, 10, 14, 15, 30)] == [0, 1, 1, 1, 2, 3]
    assert Exploration(share=0.0).apply(slate(8), ctx(CAT, k=4)).actions == ()
    s = slate(8)
    assert Exploration(share=0.1).apply(s, ctx(CAT, k=4)) is s


def test_more_slots_than_candidates_places_what_there_is() -> None:
    out = Exploration(share=1.0, top_k=4).apply(slate(8), ctx(CAT, k=4))
    assert sorted(a.item for a in out.actions) == [4]
    assert int(out.exploration.sum()) == 1


@pytest.mark.parametrize(
    "kw",
    [
        {"share": 1.5},
        {"fresh_days": None, "max_exposure": None},
        {"pick": "greedy"},
        {"top_k": 3, "min_position": 3},
        {"pool": np.array([[1]])},
        {"pool": np.array([-1])},
        {"pool_source": 300},
        {"min_position": -1},
    ],
)
def test_bad_hyperparameters(kw: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="Exploration"):
        Exploration(**kw)  # type: ignore[arg-type]


def test_pool_outside_the_catalog() -> None:
    with pytest.raises(DataError, match="outside the catalog"):
        Exploration(pool=np.array([99])).apply(slate(8), ctx(CAT, k=10))


def test_positions_are_uniform_over_the_allowed_slots() -> None:
    cat = catalog(list(range(40)), age_days=[1] * 40)
    rule = Exploration(share=0.2, top_k=10, min_position=0)
    counts = np.zeros(10)
    for seed in range(300):
        out = rule.apply(slate(40), ctx(cat, k=10, rng=np.random.default_rng(seed)))
        counts[[a.to_pos for a in out.actions if a.to_pos is not None]] += 1
    assert counts.sum() == 600
    # 60 expected per slot; a loose bound (about 5 standard deviations)
    assert np.all(np.abs(counts - 60) < 5 * math.sqrt(60))
