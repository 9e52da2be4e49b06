"""Property tests: the Rule contract for every rule, and the business invariants, on
generated catalogs, slates and requests (including after the full default chain)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings

from mlsd.reranking import (
    BlockedCreators,
    CreatorDedup,
    DropWatched,
    ExplicitFilter,
    Exploration,
    RerankConfig,
    Rule,
    RuleChain,
    Slate,
    TopicDiversity,
    default_chain,
)
from tests.reranking.helpers import Case, can_fill, cases, creator_counts_ok, no_adjacent

RuleFactory = Callable[[Case], Rule]


def _emb(case: Case) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(case.catalog.n, 3))


RULES: dict[str, RuleFactory] = {
    "drop_watched": lambda c: DropWatched(),
    "explicit": lambda c: ExplicitFilter(),
    "blocked": lambda c: BlockedCreators(),
    "dedup_1": lambda c: CreatorDedup(max_per_creator=1),
    "dedup_2_top3": lambda c: CreatorDedup(max_per_creator=2, top_k=3),
    "mmr_0": lambda c: TopicDiversity(lambda_=0.0),
    "mmr_05": lambda c: TopicDiversity(lambda_=0.5, top_k=5),
    "mmr_emb": lambda c: TopicDiversity(lambda_=0.5, embeddings=_emb(c)),
    "explore_random": lambda c: Exploration(share=0.3),
    "explore_best_exposure": lambda c: Exploration(
        share=0.5, pick="best", fresh_days=None, max_exposure=50, min_position=0
    ),
    "explore_pool": lambda c: Exploration(share=0.5, pool=c.pool),
    "default_chain_untruncated": lambda c: default_chain(
        RerankConfig(truncate=False), exploration_pool=c.pool
    ),
}
POOL_RULES = {"explore_pool", "default_chain_untruncated"}


def _copy(s: Slate) -> tuple[np.ndarray, ...]:
    return s.items.copy(), s.scores.copy(), s.source.copy(), s.exploration.copy()


@pytest.mark.parametrize("name", sorted(RULES))
@settings(max_examples=40, deadline=None)
@given(case=cases())
def test_rule_contract(name: str, case: Case) -> None:
    rule = RULES[name](case)
    before = _copy(case.slate)
    inp = case.slate
    out = rule.apply(inp, case.ctx())
    # the input is untouched
    for a, b in zip(before, _copy(inp), strict=True):
        np.testing.assert_array_equal(a, b)
    # arrays stay parallel and typed
    n = len(out)
    assert out.scores.shape == out.source.shape == out.exploration.shape == (n,)
    assert out.items.dtype == np.int64 and out.source.dtype == np.int8
    # no duplicates, no invented items
    assert len(set(out.items.tolist())) == n
    allowed = set(inp.items.tolist())
    if name in POOL_RULES:
        allowed |= set(case.pool.tolist())
    assert set(out.items.tolist()) <= allowed
    # the log only grows, and accounts for every item that left
    assert out.actions[: len(inp.actions)] == inp.actions
    new = out.actions[len(inp.actions) :]
    dropped = [a.item for a in new if a.action == "dropped"]
    inserted = {a.item for a in new if a.action == "inserted"}
    assert len(dropped) == len(set(dropped))
    # (a chain may insert a pool item and drop it again later)
    assert set(dropped) == (set(inp.items.tolist()) | inserted) - set(out.items.tolist())
    assert set(out.items.tolist()) - set(inp.items.tolist()) <= inserted
    # scores and sources travel with their items; exploration flags only grow
    pos_in = {int(i): p for p, i in enumerate(inp.items)}
    for p, item in enumerate(out.items.tolist()):
        if item in pos_in:
            q = pos_in[item]
            assert out.scores[p] == inp.scores[q] or (
                np.isnan(out.scores[p]) and np.isnan(inp.scores[q])
            )
            assert out.source[p] == inp.source[q]
            assert out.exploration[p] >= inp.exploration[q]
            if out.exploration[p] and not inp.exploration[q]:
                assert item in inserted
        else:
            assert out.exploration[p] and np.isnan(out.scores[p])
    # single-rule logs point at the right positions
    if not isinstance(rule, RuleChain):
        for act in new:
            if act.from_pos is not None:
                assert inp.items[act.from_pos] == act.item
            if act.to_pos is not None:
                assert out.items[act.to_pos] == act.item


@pytest.mark.parametrize("name", sorted(RULES))
@settings(max_examples=40, deadline=None)
@given(case=cases())
def test_without_explain_the_slate_is_the_same_and_drops_are_still_logged(
    name: str, case: Case
) -> None:
    """``RuleContext.explain=False`` (serving without explanations) leaves out only the
    ``moved`` and ``inserted`` actions."""
    full = RULES[name](case).apply(case.slate, case.ctx())
    lean = RULES[name](case).apply(case.slate, dataclasses.replace(case.ctx(), explain=False))
    for a, b in zip(_copy(full), _copy(lean), strict=True):
        np.testing.assert_array_equal(a, b)
    assert lean.actions == tuple(a for a in full.actions if a.action == "dropped")


@settings(max_examples=150, deadline=None)
@given(case=cases(max_items=30, max_creators=5))
def test_creator_dedup_invariants(case: Case) -> None:
    cat = case.catalog
    for cap in (1, 2):
        out = CreatorDedup(max_per_creator=cap).apply(case.slate, case.ctx())
        k = case.k
        cre_in = cat.creator[case.slate.items]
        top = cat.creator[out.items[:k]]
        assert creator_counts_ok(top, cap)  # always: the cap is hard
        if can_fill(cre_in.tolist(), k, cap):
            assert no_adjacent(top)
        # nothing is dropped while the cap allows a full top k
        _, counts = np.unique(cre_in[cre_in >= 0], return_counts=True)
        most = int(np.minimum(counts, cap).sum()) + int((cre_in < 0).sum())
        assert len(top) == min(k, most)
        if most >= min(k, len(cre_in)):
            assert len(out) == len(case.slate)


@settings(max_examples=100, deadline=None)
@given(case=cases())
def test_explicit_filter_invariant(case: Case) -> None:
    out = ExplicitFilter().apply(case.slate, case.ctx())
    if not case.allows_explicit:
        assert not case.catalog.is_explicit[out.items].any()
    else:
        assert out is case.slate


@settings(max_examples=150, deadline=None)
@given(case=cases())
def test_default_chain_invariants(case: Case) -> None:
    cfg = RerankConfig.model_validate({"dedup": {"max_per_creator": 2}})
    chain = default_chain(cfg, exploration_pool=case.pool)
    out = chain.apply(case.slate, case.ctx())
    cat = case.catalog
    assert len(out) <= case.k
    # hard filters hold, also for items inserted from the pool
    if not case.allows_explicit:
        assert not cat.is_explicit[out.items].any()
    assert not np.isin(out.items, case.watched).any()
    cre = cat.creator[out.items]
    assert not np.isin(cre[cre >= 0], case.blocked).any()
    # creator invariants on the served slate
    assert creator_counts_ok(cre, 2)
    before_dedup = RuleChain(chain.rules[:-1], truncate=False).apply(case.slate, case.ctx())
    if can_fill(cat.creator[before_dedup.items].tolist(), case.k, 2):
        assert no_adjacent(cre)
    # at most round(share * k) exploration items, all eligible
    assert int(out.exploration.sum()) <= int(0.1 * case.k + 0.5 + 1e-9)
    # truncation is a prefix of the untruncated chain (same randomness)
    full = RuleChain(chain.rules, truncate=False).apply(case.slate, case.ctx())
    assert out.items.tolist() == full.items[: case.k].tolist()
    # every candidate is served, logged as dropped, or below the cut
    served = set(out.items.tolist())
    gone = set(full.dropped().tolist())
    cut = set(full.items[case.k :].tolist())
    assert set(case.slate.items.tolist()) <= served | gone | cut
    assert not (served & gone)
