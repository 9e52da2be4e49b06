"""Tests of the label rules in ``mlsd.data.labels`` (book step 2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from mlsd.config import LabelConfig, SimulationConfig
from mlsd.data.dataset import from_tables
from mlsd.data.labels import durations, label_events, positives, valid_watch
from mlsd.data.schema import EVENTS, VIDEOS
from mlsd.data.simulate import simulate
from mlsd.errors import DataError

T0 = datetime(2026, 1, 5, tzinfo=UTC)
CFG = LabelConfig()


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def events(rows: list[dict[str, Any]]) -> pa.Table:
    """An events table in the mlsd schema from a few dict rows (missing columns are null)."""
    cols = {f.name: [r.get(f.name) for r in rows] for f in EVENTS}
    return pa.Table.from_pydict(cols, schema=EVENTS)


def videos(durs: dict[int, float | None]) -> pa.Table:
    cols: dict[str, list[Any]] = {f.name: [None] * len(durs) for f in VIDEOS}
    cols["video_id"] = list(durs)
    cols["duration_s"] = list(durs.values())
    return pa.Table.from_pydict(cols, schema=VIDEOS)


def play(user: int, video: int, watch: float | None, minute: float = 0.0) -> dict[str, Any]:
    return dict(
        user_id=user, video_id=video, timestamp=at(minute), event_type="play", watch_seconds=watch
    )


def ev(user: int, video: int, kind: str, minute: float = 0.0, **kw: Any) -> dict[str, Any]:
    return dict(user_id=user, video_id=video, timestamp=at(minute), event_type=kind, **kw)


# video 1: long (600 s); 2: short (40 s); 3: unknown duration; 4: zero duration; 5: 60 s exactly
VIDEOS_T = videos({1: 600.0, 2: 40.0, 3: None, 4: 0.0, 5: 60.0})


@pytest.mark.parametrize(
    ("video", "watch", "expected"),
    [
        (1, 30.0, True),  # the 30 s rule, at the boundary
        (1, 29.9, False),
        (1, 0.0, False),
        (2, 20.0, True),  # short video: 50% completion, at the boundary
        (2, 19.0, False),  # 47.5%, under 30 s
        (2, 35.0, True),
        (3, 25.0, False),  # unknown duration: the 30 s rule only
        (3, 30.0, True),
        (4, 5.0, False),  # zero duration: completion undefined, the 30 s rule only
        (5, 29.0, False),  # 60 s is not shorter than short_video_seconds: no completion rule
        (5, 30.0, True),
        (99, 20.0, False),  # video absent from the catalog: the 30 s rule only
        (1, None, True),  # unknown watch time: interactions-only data, the play counts
        (3, None, True),
    ],
)
def test_valid_watch_rules_for_plays(video: int, watch: float | None, expected: bool) -> None:
    got = valid_watch(events([play(1, video, watch)]), VIDEOS_T, CFG)
    assert got.dtype == bool and got.shape == (1,)
    assert bool(got[0]) is expected


def test_valid_watch_ratings_and_other_event_types() -> None:
    t = events(
        [
            ev(1, 1, "rating", rating=4.0),
            ev(1, 1, "rating", rating=3.5),
            ev(1, 1, "rating", rating=None),
            ev(1, 1, "impression", position=1),
            ev(1, 1, "like"),
            ev(1, 1, "share"),
            ev(1, 1, "dislike"),
            ev(1, 1, "impression", watch_seconds=100.0),  # watch time on a non-play is ignored
        ]
    )
    assert valid_watch(t, VIDEOS_T, CFG).tolist() == [True, False, False] + [False] * 5


def test_valid_watch_follows_config() -> None:
    t = events([play(1, 1, 10.0), play(1, 2, 10.0), ev(1, 1, "rating", rating=3.0)])
    cfg = LabelConfig(min_watch_seconds=10, min_completion=0.9, min_rating=3)
    assert valid_watch(t, VIDEOS_T, cfg).tolist() == [True, True, True]
    cfg = LabelConfig(min_watch_seconds=60, short_video_seconds=0)
    assert valid_watch(t, VIDEOS_T, cfg).tolist() == [False, False, False]


def test_valid_watch_without_videos_or_optional_columns() -> None:
    t = events([play(1, 2, 20.0), play(1, 1, 31.0)])
    assert valid_watch(t, None, CFG).tolist() == [False, True]
    bare = t.select(["user_id", "video_id", "timestamp", "event_type"])
    assert valid_watch(bare, VIDEOS_T, CFG).tolist() == [True, True]  # no watch time: positive


def test_missing_required_column_is_a_data_error() -> None:
    t = events([play(1, 1, 40.0)]).drop_columns(["event_type"])
    with pytest.raises(DataError, match="event_type"):
        valid_watch(t, VIDEOS_T, CFG)


def test_durations_looks_up_the_catalog() -> None:
    t = events([play(1, 5, 1.0), play(1, 3, 1.0), play(1, 99, 1.0), play(1, 1, 1.0)])
    d = durations(t, VIDEOS_T)
    assert d[0] == 60.0 and np.isnan(d[1]) and np.isnan(d[2]) and d[3] == 600.0


def test_label_events_one_row_per_play_or_rating_with_likes_joined() -> None:
    t = events(
        [
            ev(1, 1, "impression", 0, position=1),
            play(1, 1, 10.0, 1),  # short watch, but liked later
            ev(1, 1, "like", 2),
            play(1, 2, 30.0, 3),  # valid, not liked
            play(2, 1, 100.0, 4),  # user 2 did not like video 1 (user 1 did)
            ev(2, 2, "rating", 5, rating=5.0),
            ev(2, 2, "like", 6),
            ev(3, 1, "like", 7),  # a like without a play makes no row here
        ]
    )
    out = label_events(t, VIDEOS_T, CFG)
    assert out.column_names == ["user_id", "video_id", "timestamp", "label_watch", "label_like"]
    assert out.schema.field("timestamp").type == pa.timestamp("ms", tz="UTC")
    assert out.column("user_id").to_pylist() == [1, 1, 2, 2]
    assert out.column("video_id").to_pylist() == [1, 2, 1, 2]
    assert out.column("timestamp").to_pylist() == [at(1), at(3), at(4), at(5)]
    assert out.column("label_watch").to_pylist() == [False, True, True, True]
    assert out.column("label_like").to_pylist() == [True, False, False, True]


def test_label_events_like_cutoff_keeps_future_likes_out() -> None:
    t = events(
        [play(1, 1, 10.0, 0), ev(1, 1, "like", 10), play(1, 2, 40.0, 0), ev(1, 2, "like", 5)]
    )
    assert label_events(t, VIDEOS_T, CFG).column("label_like").to_pylist() == [True, True]
    cut = label_events(t, VIDEOS_T, CFG, like_cutoff=at(10))  # the like at minute 10 is not before
    assert cut.column("label_like").to_pylist() == [False, True]
    naive = label_events(t, VIDEOS_T, CFG, like_cutoff=at(10.5).replace(tzinfo=None))
    assert naive.column("label_like").to_pylist() == [True, True]


def test_label_events_handles_large_ids_and_no_rows() -> None:
    big = 2**62
    t = events([play(big, big - 1, 40.0), ev(big, big - 1, "like"), ev(big - 1, big, "like")])
    out = label_events(t, None, CFG)
    assert out.column("label_like").to_pylist() == [True]
    empty = label_events(events([ev(1, 1, "impression")]), VIDEOS_T, CFG)
    assert empty.num_rows == 0 and empty.num_columns == 5


def test_positives_first_positive_per_pair_in_time_order() -> None:
    t = events(
        [
            play(1, 1, 5.0, 0),  # not positive
            play(1, 1, 50.0, 10),  # first positive of (1, 1)
            ev(1, 1, "like", 11),
            play(1, 1, 80.0, 20),  # re-watch
            ev(2, 2, "like", 3),  # a like alone is positive
            ev(2, 3, "rating", 1, rating=4.5),
            ev(2, 4, "rating", 2, rating=2.0),
            ev(3, 1, "impression", 0),
        ]
    )
    out = positives(t, VIDEOS_T, CFG)
    assert out.column_names == ["user_id", "video_id", "timestamp"]
    assert list(zip(*(out.column(c).to_pylist() for c in out.column_names), strict=True)) == [
        (2, 3, at(1)),
        (2, 2, at(3)),
        (1, 1, at(10)),
    ]
    every = positives(t, VIDEOS_T, CFG, first_only=False)
    assert every.column("timestamp").to_pylist() == [at(1), at(3), at(10), at(11), at(20)]
    no_likes = positives(t, VIDEOS_T, CFG, include_likes=False, first_only=False)
    assert no_likes.column("timestamp").to_pylist() == [at(1), at(10), at(20)]


def test_positives_ties_keep_the_earlier_row() -> None:
    t = events([play(1, 1, 50.0, 5), ev(1, 1, "like", 5), play(1, 2, 50.0, 5)])
    out = positives(t, VIDEOS_T, CFG)
    assert out.column("video_id").to_pylist() == [1, 2]


def test_labels_on_simulated_data_agree_with_a_row_by_row_reference() -> None:
    ds = simulate(SimulationConfig.for_scale("tiny", seed=0))
    ds = from_tables(ds.tables())  # round trip through validation
    got = valid_watch(ds.events, ds.videos, CFG)
    dur = dict(
        zip(ds.videos["video_id"].to_pylist(), ds.videos["duration_s"].to_pylist(), strict=True)
    )
    rows = ds.events.select(["video_id", "event_type", "watch_seconds", "rating"]).to_pylist()

    def reference(r: dict[str, Any]) -> bool:
        if r["event_type"] == "rating":
            return r["rating"] is not None and r["rating"] >= CFG.min_rating
        if r["event_type"] != "play":
            return False
        w, d = r["watch_seconds"], dur.get(r["video_id"])
        if w is None or w >= CFG.min_watch_seconds:
            return True
        return d is not None and 0 < d < CFG.short_video_seconds and w / d >= CFG.min_completion

    expected = np.array([reference(r) for r in rows])
    np.testing.assert_array_equal(got, expected)
    n_plays = sum(r["event_type"] == "play" for r in rows)
    assert 0 < got.sum() < n_plays  # the rule separates plays
    labelled = label_events(ds.events, ds.videos, CFG)
    assert labelled.num_rows == n_plays
    pos = positives(ds.events, ds.videos, CFG)
    pairs = set(zip(pos["user_id"].to_pylist(), pos["video_id"].to_pylist(), strict=True))
    assert len(pairs) == pos.num_rows
