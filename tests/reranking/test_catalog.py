"""Catalog and Slate/RuleContext: construction, validation, id lookups, explain."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsd.data.schema import VIDEOS
from mlsd.errors import ConfigError, DataError
from mlsd.reranking import UNKNOWN_TIME, Catalog, DropWatched, RuleContext, Slate
from tests.reranking.helpers import catalog, ctx


def _videos() -> pa.Table:
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    return pa.table(
        {
            "video_id": [50, 10, 30, 20],
            "creator_id": [7, None, 3, 7],
            "topic": ["music", "gaming", None, "cooking"],
            "is_explicit": [False, True, None, False],
            "upload_time": [t0, None, t0, t0],
        },
        schema=pa.schema(
            [
                VIDEOS.field(c)
                for c in VIDEOS.names
                if c in {"video_id", "creator_id", "topic", "is_explicit", "upload_time"}
            ]
        ),
    )


def test_from_videos_maps_columns_to_dense_arrays() -> None:
    cat = Catalog.from_videos(_videos(), exposure=np.array([1.0, 2, 3, 4]))
    assert cat.n == 4
    assert cat.item_ids.tolist() == [50, 10, 30, 20]
    assert cat.creator_ids.tolist() == [3, 7]
    assert cat.creator.tolist() == [1, -1, 0, 1]
    assert cat.topic_names == ("cooking", "gaming", "music")
    assert cat.topic.tolist() == [2, 1, -1, 0]
    assert cat.is_explicit.tolist() == [False, True, False, False]
    ms = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp() * 1000)
    assert cat.upload_ms.tolist() == [ms, UNKNOWN_TIME, ms, ms]
    assert cat.exposure.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert cat.creator.dtype == np.int32 and cat.topic.dtype == np.int16


def test_from_videos_unknown_explicit_policy_and_minimal_table() -> None:
    cat = Catalog.from_videos(_videos(), explicit_if_unknown=True)
    assert cat.is_explicit.tolist() == [False, True, True, False]
    bare = Catalog.from_videos(pa.table({"video_id": [1, 2]}))
    assert bare.creator.tolist() == [-1, -1] and bare.topic.tolist() == [-1, -1]
    assert bare.exposure.tolist() == [0.0, 0.0]


def test_from_videos_errors() -> None:
    with pytest.raises(DataError, match="no 'video_id' column"):
        Catalog.from_videos(pa.table({"id": [1]}))
    with pytest.raises(DataError, match="appears more than once"):
        Catalog.from_videos(pa.table({"video_id": [1, 1]}))
    with pytest.raises(DataError, match="exposure"):
        Catalog.from_videos(pa.table({"video_id": [1, 2]}), exposure=np.array([1.0, -1.0]))
    with pytest.raises(DataError, match=r"exposure: expected shape \(2,\)"):
        Catalog.from_videos(pa.table({"video_id": [1, 2]}), exposure=np.array([1.0]))


def test_build_validates_lengths_and_ranges() -> None:
    with pytest.raises(DataError, match=r"Catalog\.creator: expected 2 values"):
        Catalog.build([1, 2], creator=[0])
    with pytest.raises(DataError, match=r"Catalog\.topic: item 1 has index 5"):
        Catalog.build([1, 2], topic=[0, 5], topic_names=["a"])
    with pytest.raises(DataError, match=r"Catalog\.is_explicit: expected booleans"):
        Catalog.build([1, 2], is_explicit=np.array([0, 1]))


def test_id_lookups() -> None:
    cat = Catalog.from_videos(_videos())
    assert cat.index_of([20, 50, 99, 10]).tolist() == [3, 0, -1, 1]
    assert cat.creator_index([7, 3, 5]).tolist() == [1, 0, -1]
    empty = Catalog.build(np.zeros(0, np.int64))
    assert empty.index_of([1]).tolist() == [-1]


def test_slate_from_arrays_validates() -> None:
    s = Slate.from_arrays([3, 1, 2])
    assert s.scores.tolist() == [0.0, -1.0, -2.0]
    assert s.source.dtype == np.int8 and not s.exploration.any()
    with pytest.raises(DataError, match="item 1 appears more than once"):
        Slate.from_arrays([1, 2, 1])
    with pytest.raises(DataError, match="negative item index"):
        Slate.from_arrays([1, -2])
    with pytest.raises(DataError, match="integer item indices"):
        Slate.from_arrays(np.array([1.0, 2.0]))
    with pytest.raises(DataError, match=r"slate scores: expected shape \(2,\)"):
        Slate.from_arrays([1, 2], [1.0])
    assert len(Slate.from_arrays(np.zeros(0, np.int64))) == 0


def test_slate_copies_its_input_and_truncates() -> None:
    items = np.array([4, 3, 2])
    s = Slate.from_arrays(items)
    items[0] = 0
    assert s.items.tolist() == [4, 3, 2]
    assert s.truncate(2).items.tolist() == [4, 3] and s.truncate(5) is s


def test_explain_uses_external_ids() -> None:
    cat = catalog([0, 1, 2])
    out = DropWatched().apply(Slate.from_arrays([2, 1, 0]), ctx(cat, watched=[1]))
    assert out.explain(cat) == [
        {
            "rule": "drop_watched",
            "video_id": 1001,
            "action": "dropped",
            "reason": "already watched",
            "from_pos": 1,
            "to_pos": None,
        }
    ]


def test_rule_context_validates_and_sorts() -> None:
    cat = catalog([0, 1])
    c = ctx(cat, watched=[5, 1, 3], blocked_creators=np.array([2, 0], np.int32))
    assert c.watched.tolist() == [1, 3, 5] and c.watched.dtype == np.int64
    assert c.blocked_creators.tolist() == [0, 2]
    for k in (0, 1.5, True):
        with pytest.raises(ConfigError, match=r"RuleContext\.k"):
            RuleContext(cat, k=k, time_ms=0)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"RuleContext\.watched"):
        RuleContext(cat, k=1, time_ms=0, watched=np.array([1.5]))
    with pytest.raises(ConfigError, match=r"RuleContext\.rng"):
        RuleContext(cat, k=1, time_ms=0, rng=np.random.RandomState(0))  # type: ignore[arg-type]
    g = np.random.default_rng(0)
    assert RuleContext(cat, k=1, time_ms=0, rng=g).generator() is g
    a = RuleContext(cat, k=1, time_ms=5, user_id=-3).generator().random()
    b = RuleContext(cat, k=1, time_ms=5, user_id=-3).generator().random()
    assert a == b
    # draws(): Python's generator for a rule's few draws, just as reproducible
    d = [RuleContext(cat, k=1, time_ms=5, user_id=u).draws().random() for u in (-3, -3, 4)]
    assert d[0] == d[1] != d[2]
    assert RuleContext(cat, k=1, time_ms=6, user_id=-3).draws().random() != d[0]
    seeded = [
        RuleContext(cat, k=1, time_ms=0, rng=np.random.default_rng(s)).draws().random()
        for s in (7, 7, 8)
    ]
    assert seeded[0] == seeded[1] != seeded[2]


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(0, 40),
    lo=st.integers(-5, 5),
    layout=st.sampled_from(["in order", "shuffled", "sparse"]),
    seed=st.integers(0, 1000),
)
def test_index_of_and_ids_at_agree_with_a_dict(n: int, lo: int, layout: str, seed: int) -> None:
    # three lookup paths: ids lo..lo+n-1 by row (an offset), the same ids shuffled (offset,
    # then the row order), other ids (binary search); all must answer what a dict does
    rng = np.random.default_rng(seed)
    ids = np.arange(lo, lo + n, dtype=np.int64)
    if layout == "shuffled":
        ids = rng.permutation(ids)
    elif layout == "sparse":
        ids = rng.choice(np.arange(-50, 200), size=n, replace=False)
    cat = Catalog.build(ids)
    row = {int(v): i for i, v in enumerate(ids.tolist())}
    query = rng.integers(-60, 210, size=30)
    assert cat.index_of(query).tolist() == [row.get(int(v), -1) for v in query.tolist()]
    dense = np.arange(n)
    assert cat.ids_at(dense).tolist() == ids.tolist()
    assert cat.index_of(cat.ids_at(dense)).tolist() == dense.tolist()
