"""The offline builder: window boundaries, label rule, defaults, order, and a brute-force oracle."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mlsd.config import LabelConfig
from mlsd.data.dataset import Dataset
from mlsd.errors import DataError, FeatureStoreError, UnknownFeatureError
from mlsd.features.definitions import VIDEO_REC
from mlsd.features.offline import build_training_set, feature_matrix
from mlsd.features.signals import Catalog, decay_weight, event_signals

from .conftest import HOUR, T0_MS, make_dataset


def _rows(*points: tuple[int, int, int], **extra: list[object]) -> pa.Table:
    cols: dict[str, object] = {
        "user_id": [p[0] for p in points],
        "video_id": [p[1] for p in points],
        "timestamp": [datetime.fromtimestamp(p[2] / 1000, UTC) for p in points],
    }
    cols.update(extra)
    return pa.table(cols)


def _val(t: pa.Table, name: str, i: int = 0) -> float:
    return float(t.column(name)[i].as_py())


def test_window_boundaries_are_floor_hour_minus_w_to_t_exclusive() -> None:
    t = T0_MS + 10 * HOUR + 30 * 60_000
    imp = [t, t - 1, T0_MS + 9 * HOUR, T0_MS + 9 * HOUR - 1, T0_MS - 14 * HOUR,
           T0_MS - 14 * HOUR - 1]  # fmt: skip
    ds = make_dataset([{"user_id": 2 + i, "video_id": 1, "event_type": "impression", "ts": ts}
                       for i, ts in enumerate(imp)])  # fmt: skip
    out = build_training_set(ds, _rows((1, 1, t)))
    # [10:00 - 1 h, t): t-1 and 09:00 exactly; the event at t itself is not visible
    assert _val(out, "video_impressions_1h") == 2
    assert _val(out, "video_impressions_1d") == 4  # + 08:59:59.999 and 10:00 - 24 h exactly
    assert _val(out, "video_impressions_7d") == 5
    assert _val(out, "video_impressions_30d") == 5
    assert _val(out, "user_impressions_30d") == 0  # other users' impressions
    assert _val(out, "creator_impressions_1d") == 4


def test_label_rule_and_smoothed_rates() -> None:
    videos = [
        {"video_id": 1, "creator_id": 7, "duration_s": 120.0, "topic": "a", "upload_time": None},
        {"video_id": 2, "creator_id": 7, "duration_s": 30.0, "topic": "b", "upload_time": None},
    ]
    ev = [
        {"user_id": 1, "video_id": 1, "event_type": "impression", "ts": T0_MS},
        {"user_id": 1, "video_id": 1, "event_type": "play", "watch_seconds": 40.0, "ts": T0_MS + 1},
        {"user_id": 1, "video_id": 1, "event_type": "impression", "ts": T0_MS + 2},
        {"user_id": 1, "video_id": 1, "event_type": "play", "watch_seconds": 10.0, "ts": T0_MS + 3},
        {"user_id": 1, "video_id": 2, "event_type": "impression", "ts": T0_MS + 4},
        {"user_id": 1, "video_id": 2, "event_type": "play", "watch_seconds": 20.0, "ts": T0_MS + 5},
        {"user_id": 1, "video_id": 1, "event_type": "like", "ts": T0_MS + 6},
    ]
    out = build_training_set(make_dataset(ev, videos), _rows((1, 1, T0_MS + HOUR)))
    assert _val(out, "user_valid_watches_1d") == 2  # 40 s, and 20 s of a 30 s video
    assert _val(out, "user_plays_1d") == 3
    assert _val(out, "video_valid_watch_rate_1d") == pytest.approx((1 + 2) / (2 + 20))
    assert _val(out, "video_like_rate_1d") == pytest.approx((1 + 1) / (2 + 100))
    assert _val(out, "video_mean_completion_1d") == pytest.approx(
        (40 / 120 + 10 / 120 + 1) / (2 + 2)
    )
    assert _val(out, "user_creator_valid_watches_30d") == 2
    assert np.isnan(_val(out, "video_age_h"))  # unknown upload time
    # topic affinity: two valid watches, topics a then b, 5 ms apart: shares ~1/2 each
    assert _val(out, "user_video_topic_affinity") == pytest.approx(0.5, abs=1e-6)


def test_unknown_ids_get_defaults() -> None:
    ds = make_dataset([{"user_id": 1, "video_id": 1, "event_type": "impression", "ts": T0_MS}])
    out = build_training_set(ds, _rows((999, 999, T0_MS + HOUR)))
    for f in VIDEO_REC.matrix_features():
        if f.source != "request":
            got = _val(out, f.name)
            assert got == pytest.approx(f.default, nan_ok=True), f.name


def test_rows_keep_their_order_and_extra_columns(tiny: Dataset) -> None:
    imp = tiny.events.filter(pc.equal(tiny.events.column("event_type"), "impression"))
    rows = imp.select(["user_id", "video_id", "timestamp", "surface"]).slice(0, 3000)
    rows = rows.append_column("label", pa.array(np.arange(rows.num_rows)))
    shuffled = rows.take(pa.array(np.random.default_rng(0).permutation(rows.num_rows)))
    a = build_training_set(tiny, rows)
    b = build_training_set(tiny, shuffled)
    assert b.column_names[:5] == ["user_id", "video_id", "timestamp", "surface", "label"]
    order = np.argsort(b.column("label").to_numpy())
    names = [f.name for f in VIDEO_REC.matrix_features()]
    np.testing.assert_array_equal(feature_matrix(a, names), feature_matrix(b, names)[order])


def test_result_does_not_depend_on_the_number_of_workers(tiny: Dataset) -> None:
    imp = tiny.events.filter(pc.equal(tiny.events.column("event_type"), "impression"))
    rows = imp.select(["user_id", "video_id", "timestamp", "device"]).slice(0, 5000)
    timings: dict[str, float] = {}
    one = build_training_set(tiny, rows, workers=1)
    two = build_training_set(tiny, rows, workers=4, timings=timings)
    assert one.equals(two)
    assert {"user", "video", "creator", "user_creator", "stored features"} <= set(timings)


def test_bad_rows_and_feature_names_raise() -> None:
    ds = make_dataset([{"user_id": 1, "video_id": 1, "event_type": "impression", "ts": T0_MS}])
    with pytest.raises(DataError, match="missing column 'timestamp'"):
        build_training_set(ds, pa.table({"user_id": [1], "video_id": [1]}))
    with pytest.raises(DataError, match="null"):
        build_training_set(
            ds, _rows((1, 1, T0_MS)).set_column(0, "user_id", pa.array([None], pa.int64()))
        )
    with pytest.raises(UnknownFeatureError, match="video_plays_1d"):
        build_training_set(ds, _rows((1, 1, T0_MS)), features=["video_plays_1day"])
    with pytest.raises(FeatureStoreError, match="vector"):
        build_training_set(ds, _rows((1, 1, T0_MS)), features=["user_topic_affinity"])


def test_matches_a_brute_force_oracle(tiny: Dataset) -> None:
    """Every windowed count and the topic affinity, recomputed row by row with masks."""
    imp = tiny.events.filter(pc.equal(tiny.events.column("event_type"), "impression"))
    pick = np.sort(np.random.default_rng(3).choice(imp.num_rows, 60, replace=False))
    rows = imp.select(["user_id", "video_id", "timestamp"]).take(pa.array(pick))
    out = build_training_set(tiny, rows)
    cat = Catalog.from_dataset(tiny)
    sig = event_signals(tiny.events, cat, tiny.videos, LabelConfig())
    ts_rows = pc.cast(rows.column("timestamp"), pa.int64()).to_numpy()
    for i in range(rows.num_rows):
        u, v, t = rows["user_id"][i].as_py(), rows["video_id"][i].as_py(), int(ts_rows[i])
        c = cat.creator[cat.rows(np.array([v]))[0]]
        keys = {"user": sig.user == u, "video": sig.video == v, "creator": sig.creator == c}
        keys["user_creator"] = keys["user"] & keys["creator"]
        for f in VIDEO_REC.matrix_features():
            if f.source != "events":
                continue
            x = {}
            for name in f.inputs:
                s, w = name.rsplit("_", 1)
                hours = {"1h": 1, "1d": 24, "7d": 168, "30d": 720}[w]
                m = keys[f.entity] & (sig.ts < t) & (sig.ts >= (t // HOUR - hours) * HOUR)
                x[name] = np.array([sig.values[s][m].sum()])
            assert _val(out, f.name, i) == pytest.approx(float(f(x)[0]), rel=1e-6), (f.name, i)
        sel = keys["user"] & (sig.values["valid"] > 0) & (sig.topic >= 0)
        s = np.zeros(len(cat.vocab.topics))
        if sel.any():
            m = sel & (sig.ts < t)
            np.add.at(s, sig.topic[m], decay_weight(sig.ts[m], sig.ts[sel].min()))
        share = s[cat.topic[cat.rows(np.array([v]))[0]]] / s.sum() if s.sum() else 0.0
        assert _val(out, "user_video_topic_affinity", i) == pytest.approx(share, abs=1e-6)


def test_catalog_attributes_of_a_video_without_events() -> None:
    videos = [
        {"video_id": 1, "creator_id": 7, "duration_s": 60.0, "topic": "a", "upload_time": None},
        {"video_id": 2, "creator_id": 8, "duration_s": 90.0, "topic": "b", "upload_time": None},
    ]
    ds = make_dataset([{"user_id": 1, "video_id": 1, "event_type": "impression", "ts": T0_MS}],
                      videos)  # fmt: skip
    out = build_training_set(ds, _rows((1, 2, T0_MS + HOUR)))
    assert _val(out, "video_duration_s") == 90.0
    assert _val(out, "video_topic") == 1.0
    assert _val(out, "video_impressions_30d") == 0.0
