"""The online path: materialize, incremental updates, hour rolls, the request vector."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from mlsd.data.dataset import Dataset
from mlsd.errors import FeatureStoreError
from mlsd.features.definitions import VIDEO_REC
from mlsd.features.memory_store import MemoryStore
from mlsd.features.store import OnlineStore
from mlsd.features.stream import materialize

from .conftest import HOUR, T0_MS, make_dataset


def _events(*evs: dict[str, object]) -> pa.Table:
    return make_dataset(list(evs)).events


def _base() -> Dataset:
    return make_dataset(
        [
            {"user_id": 1, "video_id": v, "event_type": "impression", "ts": T0_MS + v}
            for v in (1, 2, 3)
        ]
    )


def _get(store: OnlineStore, entity: str, key: object, name: str) -> float:
    keys = np.array([key], dtype=np.int64)
    return float(store.get(entity, keys, [name])[0, 0])


def test_materialize_writes_every_entity(store: OnlineStore) -> None:
    online = materialize(_base(), store)
    assert _get(store, "user", 1, "user_impressions_1d") == 3
    assert _get(store, "video", 2, "video_impressions_1h") == 1
    assert _get(store, "video", 3, "video_duration_s") == 120.0
    assert _get(store, "creator", 101, "creator_impressions_1d") == 1
    assert (
        float(
            store.get("user_creator", np.array([[1, 102]]), ["user_creator_impressions_30d"])[0, 0]
        )
        == 1
    )
    assert store.stats.unknown_keys == 0
    assert online.hour == T0_MS // HOUR


def test_new_watch_is_served_by_the_next_read(store: OnlineStore) -> None:
    online = materialize(_base(), store)
    before = _get(store, "user", 1, "user_valid_watches_1h")
    stats = online.update_from_events(
        _events(
            {
                "user_id": 1,
                "video_id": 2,
                "event_type": "play",
                "watch_seconds": 45.0,
                "ts": T0_MS + 60_000,
            }
        )
    )
    assert _get(store, "user", 1, "user_valid_watches_1h") == before + 1
    assert _get(store, "video", 2, "video_plays_1h") == 1
    assert stats.written["user"] == 1 and stats.written["video"] == 1
    assert stats.seconds < 2.0  # seconds, not a batch job (typically milliseconds)


def test_hours_leave_windows_when_the_clock_advances(store: OnlineStore) -> None:
    online = materialize(_base(), store)
    online.advance_to(T0_MS + HOUR + 5)  # 01:00: the 00:xx events are in [00:00, t)
    assert _get(store, "video", 1, "video_impressions_1h") == 1
    online.advance_to(T0_MS + 2 * HOUR)  # 02:00: window [01:00, t) no longer holds them
    assert _get(store, "video", 1, "video_impressions_1h") == 0
    assert _get(store, "video", 1, "video_impressions_1d") == 1
    online.advance_to(T0_MS + 25 * HOUR)
    assert _get(store, "video", 1, "video_impressions_1d") == 0
    assert _get(store, "video", 1, "video_impressions_7d") == 1


def test_late_events_count_in_windows_still_covering_them() -> None:
    store = MemoryStore()
    online = materialize(_base(), store)
    online.advance_to(T0_MS + 3 * HOUR)
    online.update_from_events(_events(
        {"user_id": 1, "video_id": 1, "event_type": "impression", "ts": T0_MS + 2 * HOUR + 5},
        {"user_id": 1, "video_id": 1, "event_type": "impression", "ts": T0_MS + 10},
    ))  # fmt: skip
    assert _get(store, "video", 1, "video_impressions_1h") == 1  # only the 02:00 one
    assert _get(store, "video", 1, "video_impressions_1d") == 3
    online.advance_to(T0_MS + 4 * HOUR)
    assert _get(store, "video", 1, "video_impressions_1h") == 0


def test_request_features_match_training_columns(tiny: Dataset) -> None:
    store = MemoryStore()
    online = materialize(tiny, store)
    vids = tiny.videos.column("video_id").to_numpy()[:500]
    t = online.hour * HOUR + 1  # type: ignore[operator]
    x = online.request_features(5, vids, t, device="ios", surface="home")
    names = [f.name for f in VIDEO_REC.matrix_features()]
    assert x.shape == (500, len(names)) and x.dtype == np.float32
    assert (x[:, names.index("context_device")] >= 0).all()
    assert (x[:, names.index("video_duration_s")] > 0).all()
    # unknown video and user: defaults, counted, no exception
    before = store.stats.unknown_keys
    y = online.request_features(
        10**9, np.array([10**9]), t, features=["video_plays_7d", "user_plays_7d", "video_topic"]
    )
    np.testing.assert_array_equal(y, [[0.0, 0.0, -1.0]])
    assert store.stats.unknown_keys == before + 2


def test_a_vector_feature_is_not_a_matrix_column() -> None:
    online = materialize(_base(), MemoryStore())
    with pytest.raises(FeatureStoreError, match="'user_topic_affinity' is a vector"):
        online.request_features(1, [1], 0, features=["video_plays_7d", "user_topic_affinity"])


def test_request_time_features_use_the_request_time() -> None:
    online = materialize(_base(), MemoryStore())
    t = int(datetime(2026, 1, 7, 15, 30, tzinfo=UTC).timestamp() * 1000)  # a Wednesday
    x = online.request_features(
        1, [1], t, features=["video_age_h", "context_hour_of_day", "context_day_of_week"]
    )
    assert x[0].tolist() == pytest.approx([2 * 24 + 15.5, 15, 2])


def test_bulk_key_index_matches_numpy_unique() -> None:
    from mlsd.features._window_state import unique_first_inverse

    rng = np.random.default_rng(0)
    cases = [
        rng.integers(-50, 50, 1000),
        rng.integers(0, 2**40, 5000),
        rng.integers(-(2**62), 2**62, 3000),  # too wide to shift: numpy's path
        np.array([7]),
    ]
    for keys in cases:
        want = np.unique(keys, return_index=True, return_inverse=True)
        got = unique_first_inverse(keys.astype(np.int64))
        for w, g in zip(want, got, strict=True):
            np.testing.assert_array_equal(g, np.asarray(w).reshape(-1))


def test_materialize_in_slices_equals_one_batch(
    tiny: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """materialize feeds a large log in time-ordered slices and computes the records in slices
    (memory); every online value is the same as from one batch."""
    from mlsd.features import stream

    whole = materialize(tiny, MemoryStore())
    monkeypatch.setattr(stream, "MATERIALIZE_CHUNK", 997)
    monkeypatch.setattr(stream, "FLUSH_CHUNK", 101)  # the records computed in slices too
    sliced = materialize(tiny, MemoryStore())
    assert sliced.hour == whole.hour
    users = tiny.users.column("user_id").to_numpy()[:40]
    vids = tiny.videos.column("video_id").to_numpy()[:300]
    t = whole.hour * HOUR + 1  # type: ignore[operator]
    for u in users:
        a = whole.request_features(int(u), vids, t, device="ios", surface="home")
        b = sliced.request_features(int(u), vids, t, device="ios", surface="home")
        np.testing.assert_array_equal(a, b)
    sa, sb = whole.state(), sliced.state()
    assert sa.keys() == sb.keys()
