"""Topic diversity (MMR): exact orders, the lambda knob, embeddings, and the fast topic path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsd.errors import ConfigError, DataError
from mlsd.reranking import Slate, TopicDiversity
from mlsd.reranking.diversity import mmr_dense, mmr_topics, relevance
from tests.reranking.helpers import acts, catalog, ctx

CAT = catalog([0, 1, 2, 3], topics=[0, 0, 1, 2])
SCORES = [4.0, 3.0, 2.0, 1.0]  # relevance 1, 2/3, 1/3, 0


def run(lam: float, k: int = 4, scores: list[float] = SCORES) -> tuple[Slate, Slate]:
    s = Slate.from_arrays(np.arange(len(scores)), scores)
    return s, TopicDiversity(lambda_=lam).apply(s, ctx(CAT, k=k))


def test_mmr_promotes_new_topics() -> None:
    _, out = run(0.5)
    assert out.items.tolist() == [0, 2, 3, 1]
    assert out.scores.tolist() == [4.0, 2.0, 1.0, 3.0]  # scores travel with their items
    assert acts(out) == [
        ("topic_diversity", 2, "moved", 2, 1),
        ("topic_diversity", 3, "moved", 3, 2),
        ("topic_diversity", 1, "moved", 1, 3),
    ]
    assert out.actions[0].reason == (
        "promoted by topic diversity (MMR, lambda=0.5): topic 't1' new in the top 4"
    )
    assert out.actions[2].reason == (
        "demoted by topic diversity (MMR, lambda=0.5): topic 't0' already above"
    )


def test_high_lambda_keeps_relevance_order() -> None:
    s, out = run(0.9)  # 2/3 - 0.1/0.9 still beats 1/3
    assert out is s
    s, out = run(1.0)
    assert out is s


def test_only_the_top_k_is_diversified() -> None:
    _, out = run(0.5, k=2)
    assert out.items.tolist() == [0, 2, 1, 3]
    assert acts(out) == [
        ("topic_diversity", 2, "moved", 2, 1),
        ("topic_diversity", 1, "moved", 1, 2),
    ]
    assert out.actions[1].reason.startswith("demoted out of the top 2")


def test_lambda_zero_is_pure_novelty_ties_broken_by_position() -> None:
    cat = catalog([0] * 6, topics=[0, 0, 1, 1, 2, 2])
    s = Slate.from_arrays(np.arange(6), [6, 5, 4, 3, 2, 1])
    out = TopicDiversity(lambda_=0.0).apply(s, ctx(cat, k=6))
    assert out.items.tolist() == [0, 2, 4, 1, 3, 5]


def test_relevance_comes_from_scores_not_positions() -> None:
    s = Slate.from_arrays(np.arange(3), [1.0, 3.0, 2.0])
    out = TopicDiversity(lambda_=1.0).apply(s, ctx(catalog([0, 1, 2]), k=3))
    assert out.items.tolist() == [1, 2, 0]


def test_unknown_topics_are_similar_to_nothing() -> None:
    s = Slate.from_arrays(np.arange(3), [3.0, 2.0, 1.0])
    cat = catalog([0, 1, 2], topics=[-1, -1, 0])
    assert TopicDiversity(lambda_=0.0).apply(s, ctx(cat, k=3)) is s


def test_embeddings_replace_topics() -> None:
    emb = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 2.0]])
    s = Slate.from_arrays(np.arange(3), [3.0, 2.0, 1.0])
    cat = catalog([0, 1, 2], topics=[0, 1, 2])  # distinct topics: topic MMR would not move
    assert TopicDiversity(lambda_=0.5).apply(s, ctx(cat, k=3)) is s
    out = TopicDiversity(lambda_=0.5, embeddings=emb).apply(s, ctx(cat, k=3))
    assert out.items.tolist() == [0, 2, 1]
    assert "max similarity 0.00 to the items above" in out.actions[0].reason
    with pytest.raises(DataError, match="one row per item"):
        TopicDiversity(embeddings=emb[:2]).apply(s, ctx(cat, k=3))


def test_relevance_scaling() -> None:
    r = relevance(np.array([2.0, np.nan, 4.0, -np.inf, np.inf, 3.0]))
    assert r.tolist() == [0.0, 0.0, 1.0, 0.0, 1.0, 0.5]
    assert relevance(np.array([5.0, 5.0])).tolist() == [1.0, 1.0]
    assert relevance(np.array([np.nan])).tolist() == [0.0]


@pytest.mark.parametrize(
    "kw", [{"lambda_": 1.5}, {"lambda_": -0.1}, {"top_k": 0}, {"embeddings": np.zeros(3)}]
)
def test_bad_hyperparameters(kw: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="TopicDiversity"):
        TopicDiversity(**kw)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    topics=st.lists(st.integers(-1, 4), min_size=1, max_size=30),
    data=st.data(),
    lam=st.sampled_from([0.0, 0.3, 0.5, 0.8, 1.0]),
)
def test_topic_fast_path_equals_dense_mmr(
    topics: list[int], data: st.DataObject, lam: float
) -> None:
    n = len(topics)
    # few distinct score values, so that ties (and their tie-breaking) happen often
    gain = lam * relevance(
        np.array(data.draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)), float)
    )
    k = data.draw(st.integers(1, n))
    t = np.array(topics)
    onehot = np.zeros((n, 5))
    onehot[t >= 0, t[t >= 0]] = 1.0  # unknown topic: a zero row, similar to nothing
    assert mmr_topics(gain, t, 1.0 - lam, k) == mmr_dense(gain, onehot, 1.0 - lam, k)
