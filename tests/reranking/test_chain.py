"""RuleChain, RerankConfig and default_chain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from mlsd.config import load_yaml
from mlsd.errors import ConfigError, DataError
from mlsd.reranking import (
    CreatorDedup,
    DropWatched,
    RerankConfig,
    Rule,
    RuleChain,
    Slate,
    TopicDiversity,
    default_chain,
)
from tests.reranking.helpers import acts, catalog, ctx, slate


def test_default_chain_order_and_types() -> None:
    chain = default_chain()
    assert [r.name for r in chain.rules] == [
        "drop_watched",
        "explicit_filter",
        "blocked_creators",
        "topic_diversity",
        "exploration",
        "creator_dedup",
    ]
    assert all(isinstance(r, Rule) for r in chain.rules)
    assert isinstance(chain, Rule)


def test_config_knobs_reach_the_rules() -> None:
    cfg = RerankConfig.model_validate(
        {
            "filters": {"explicit": False},
            "diversity": {"lambda_": 0.5, "top_k": 20},
            "exploration": {"enabled": False},
            "dedup": {"max_per_creator": 1},
        }
    )
    chain = default_chain(cfg)
    assert [r.name for r in chain.rules] == [
        "drop_watched",
        "blocked_creators",
        "topic_diversity",
        "creator_dedup",
    ]
    div, dedup = chain.rules[2], chain.rules[3]
    assert isinstance(div, TopicDiversity) and (div.lambda_, div.top_k) == (0.5, 20)
    assert isinstance(dedup, CreatorDedup) and dedup.max_per_creator == 1


def test_config_is_strict(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="extra"):
        RerankConfig.model_validate({"dedup": {"max_per_creater": 1}})
    with pytest.raises(ValidationError):
        RerankConfig.model_validate({"diversity": {"lambda_": 2}})
    with pytest.raises(ValidationError, match="both be null"):
        RerankConfig.model_validate({"exploration": {"fresh_days": None}})
    with pytest.raises(ValidationError, match="min_position"):
        RerankConfig.model_validate({"exploration": {"top_k": 1}})
    p = tmp_path / "rerank.yaml"
    p.write_text("dedup:\n  max_per_creator: 3\nexploration:\n  share: 0.2\n")
    cfg = load_yaml(p, RerankConfig)
    assert cfg.dedup.max_per_creator == 3 and cfg.exploration.share == 0.2
    p.write_text("dedup:\n  cap: 3\n")
    with pytest.raises(ConfigError, match=r"dedup\.cap"):
        load_yaml(p, RerankConfig)


def test_chain_applies_in_order_then_truncates() -> None:
    cat = catalog([0, 0, 1, 1, 2, 2])
    chain = RuleChain([DropWatched(), CreatorDedup(max_per_creator=1)])
    out = chain.apply(slate(6), ctx(cat, k=3, watched=[2]))
    assert out.items.tolist() == [0, 3, 4]
    assert acts(out) == [
        ("drop_watched", 2, "dropped", 2, None),
        ("creator_dedup", 1, "moved", 1, 3),
    ]
    full = RuleChain(chain.rules, truncate=False).apply(slate(6), ctx(cat, k=3, watched=[2]))
    assert full.items.tolist() == [0, 3, 4, 1, 5]


def test_chain_checks_items_and_rules() -> None:
    with pytest.raises(DataError, match="outside the catalog"):
        RuleChain([]).apply(Slate.from_arrays([0, 7]), ctx(catalog([0, 1])))
    with pytest.raises(ConfigError, match="is not a Rule"):
        RuleChain([object()])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="used twice"):
        RuleChain([DropWatched(), DropWatched()])
    RuleChain([DropWatched(), DropWatched(name="drop_watched_again")])


def test_default_chain_end_to_end() -> None:
    # 12 items: creator 0 dominates the top, item 2 explicit, 9 fresh, 11 in the pool
    creators = [0, 0, 0, 1, 0, 2, 3, 4, 5, 6, 7, 8]
    cat = catalog(
        creators,
        topics=[0, 0, 0, 1, 0, 2, 3, 0, 1, 2, 3, 0],
        explicit=[i == 2 for i in range(12)],
        age_days=[100] * 9 + [2, 100, 1],
    )
    s = Slate.from_arrays(np.arange(11), np.linspace(1, 0, 11))
    chain = default_chain(exploration_pool=np.array([11]))
    c = ctx(cat, k=5, watched=[1], rng=np.random.default_rng(0))
    out = chain.apply(s, c)
    assert len(out) == 5
    assert 2 not in out.items and 1 not in out.items
    cre = np.array(creators)[out.items]
    assert not np.any(cre[1:] == cre[:-1]) and np.bincount(cre).max() <= 2
    assert int(out.exploration.sum()) == 1  # round(0.1 * 5) = 1 slot, halves up
    kinds = {(a.rule, a.action) for a in out.actions}
    assert ("drop_watched", "dropped") in kinds and ("explicit_filter", "dropped") in kinds
    assert ("exploration", "inserted") in kinds
    # replaying the request gives the same slate
    again = chain.apply(s, ctx(cat, k=5, watched=[1], rng=np.random.default_rng(0)))
    assert again.items.tolist() == out.items.tolist() and again.actions == out.actions
