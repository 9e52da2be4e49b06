"""Popular, trending, fresh, topic- and creator-popular on hand-made data."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from mlsd.retrieval import (
    PAD,
    CreatorPopularSource,
    FreshSource,
    History,
    PopularSource,
    TopicPopularSource,
)
from mlsd.retrieval.popular import decayed_counts

DAY = 86_400_000
NOW = 100 * DAY


def _ts(ms: list[int]) -> pa.Array:
    return pa.array(ms, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))


def _videos() -> pa.Table:
    # videos 1-4 topic "a" (creator 10), 5-8 topic "b" (creator 20); 9 uploaded after NOW.
    return pa.table(
        {
            "video_id": pa.array(range(1, 10), pa.int64()),
            "creator_id": pa.array([10] * 4 + [20] * 4 + [20], pa.int64()),
            "topic": ["a"] * 4 + ["b"] * 4 + ["b"],
            "upload_time": _ts([0] * 6 + [NOW - 2 * DAY, NOW - DAY, NOW + DAY]),
        }
    )


def _positives(rows: list[tuple[int, int, int]]) -> pa.Table:
    u, v, t = zip(*rows, strict=True)
    return pa.table({"user_id": list(u), "video_id": list(v), "timestamp": _ts(list(t))})


POS = _positives(
    [
        *[(1, 1, NOW - 50 * DAY), (2, 1, NOW - 50 * DAY), (3, 1, NOW - 40 * DAY)],  # old hit
        *[(1, 2, NOW - DAY // 2), (2, 2, NOW - DAY // 3)],  # recent
        *[(4, 5, NOW - 3 * DAY), (5, 6, NOW - 3 * DAY), (6, 6, NOW - 2 * DAY)],
        (7, 9, NOW + DAY // 2),  # after NOW: must be ignored
    ]
)


def test_decayed_counts_window_and_half_life() -> None:
    idx = np.array([0, 0, 1, -1])
    t = np.array([NOW - 2 * DAY, NOW, NOW - DAY, NOW])
    assert decayed_counts(idx, t, 2, NOW).tolist() == [2.0, 1.0]
    assert decayed_counts(idx, t, 2, NOW, window_days=1.5).tolist() == [1.0, 1.0]
    got = decayed_counts(idx, t, 2, NOW, half_life_days=1.0)
    assert got == pytest.approx([1.25, 0.5])


def test_popular_counts_and_trending_decays() -> None:
    pop = PopularSource().fit(POS, videos=_videos(), now_ms=NOW)
    ids, _ = pop.candidates(np.array([99]), 4)
    assert ids[0].tolist()[:3] == [1, 2, 6]  # 3 plays, then 2 and 2 (ties by id)
    trend = PopularSource(half_life_days=1.0, window_days=7.0, name="trending")
    trend.fit(POS, videos=_videos(), now_ms=NOW)
    ids, _ = trend.candidates(np.array([99]), 4)
    assert ids[0, 0] == 2 and 1 not in ids[0]  # old hit is out of the window
    assert 9 not in ids[0]  # not uploaded yet; its play is in the future anyway


def test_popular_excludes_what_the_user_watched() -> None:
    pop = PopularSource().fit(POS, videos=_videos(), now_ms=NOW)
    ids, _ = pop.candidates(np.array([1]), 3)  # user 1 watched 1 and 2
    assert ids[0].tolist() == [6, 5, PAD]


def test_fresh_is_newest_first_and_bounded() -> None:
    fresh = FreshSource(max_age_days=3.0).fit(POS, videos=_videos(), now_ms=NOW)
    ids, scores = fresh.candidates(np.array([99]), 5)
    assert ids[0].tolist() == [8, 7, PAD, PAD, PAD]
    assert scores[0, :2].tolist() == pytest.approx([-1.0, -2.0])


def test_topic_popular_follows_the_history_and_falls_back_to_popular() -> None:
    hist = History()
    hist.append(50, [5], [NOW - DAY])  # a topic-b user
    src = TopicPopularSource(prior_strength=0.1, half_life_days=None)
    src.fit(POS, videos=_videos(), now_ms=NOW, history=hist)
    ids, _ = src.candidates(np.array([50, 51]), 3)
    assert ids[0, 0] == 6  # the most popular topic-b video the user has not seen
    cold = PopularSource().fit(POS, videos=_videos(), now_ms=NOW, history=hist)
    # Cold start is global popularity (as a set: 2 and 6 tie, up to float rounding).
    assert set(ids[1].tolist()) == set(cold.candidates(np.array([51]), 3)[0][0].tolist())
    w = src.group_weights(np.array([50]))
    assert w.sum() == pytest.approx(1.0)


def test_creator_popular_reaches_unwatched_videos_of_watched_creators() -> None:
    hist = History()
    hist.append(50, [1], [NOW - DAY])
    src = CreatorPopularSource(smoothing=1.0, max_groups=1).fit(
        POS, videos=_videos(), now_ms=NOW, history=hist
    )
    ids, _ = src.candidates(np.array([50]), 4)
    assert sorted(ids[0].tolist()) == [PAD, 2, 3, 4]  # creator 10's other videos, not 5-8
    assert ids[0, 0] == 2  # the watched one first (smoothed popularity)


@pytest.mark.parametrize(
    "shape,m", [((1, 20_000), 30), ((7, 50), 50), ((40, 300), 9), ((3, 40), 1)]
)
@pytest.mark.parametrize("ties", [False, True])
def test_top_m_stable_is_the_head_of_a_stable_argsort(
    shape: tuple[int, int], m: int, ties: bool
) -> None:
    from mlsd.retrieval.popular import top_m_stable

    rng = np.random.default_rng(shape[1] + m)
    # many equal values: the picks at the boundary must be the lowest columns, as a stable
    # sort orders them
    w = rng.integers(0, 4, shape).astype(float) if ties else rng.random(shape)
    np.testing.assert_array_equal(top_m_stable(w, m), np.argsort(-w, axis=1, kind="stable")[:, :m])
