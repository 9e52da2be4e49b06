"""Label leakage: an event planted at time t must be invisible to every training row at or
before t, and visible after it. If the as-of condition ``ts < t`` became ``ts <= t``, rows at
exactly t would see it: the second test proves this check would catch that."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import mlsd.features._asof as asof
from mlsd.data.dataset import Dataset
from mlsd.features.definitions import VIDEO_REC
from mlsd.features.offline import build_training_set, feature_matrix

NAMES = [f.name for f in VIDEO_REC.matrix_features()]


def _plant(ds: Dataset) -> tuple[Dataset, pa.Table, int]:
    """``ds`` plus an impression, a valid play, a like and a share of user u on video v, all at
    the very millisecond t of one of u's impressions; and training rows around t."""
    ev = ds.events
    imp = ev.filter(pc.equal(ev.column("event_type"), "impression"))
    mid = imp.num_rows // 2
    u = imp["user_id"][mid].as_py()
    t = imp["timestamp"][mid]
    v = imp["video_id"][mid + 5].as_py()  # another video, possibly another creator
    planted = pa.table(
        {
            "user_id": pa.array([u] * 4, pa.int64()),
            "video_id": pa.array([v] * 4, pa.int64()),
            "timestamp": pa.array([t.as_py()] * 4, ev.schema.field("timestamp").type),
            "event_type": ["impression", "play", "like", "share"],
            "watch_seconds": pa.array([None, 1e4, None, None], pa.float32()),
        }
    )
    planted = planted.cast(pa.schema([ev.schema.field(c) for c in planted.column_names]))
    full = pa.concat_tables([ev, planted], promote_options="default").select(ev.column_names)
    leaked = Dataset(events=full, videos=ds.videos, users=ds.users, creators=ds.creators)
    # rows: every impression of u, of v, plus (u, v) exactly at t
    mine = pc.or_(pc.equal(imp.column("user_id"), u), pc.equal(imp.column("video_id"), v))
    rows = imp.filter(mine).select(["user_id", "video_id", "timestamp"])
    at_t = pa.table(
        {
            "user_id": pa.array([u], pa.int64()),
            "video_id": pa.array([v], pa.int64()),
            "timestamp": pa.array([t.as_py()], rows.schema.field("timestamp").type),
        }
    )
    rows = pa.concat_tables([rows, at_t.cast(rows.schema)])
    t_ms = int(
        pc.cast(pa.array([t.as_py()], ev.schema.field("timestamp").type), pa.int64())[0].as_py()
    )
    return leaked, rows, t_ms


def _leaks(clean: Dataset) -> tuple[int, int]:
    """(rows at or before t whose features changed, rows after t whose features changed)."""
    leaked, rows, t = _plant(clean)
    a = feature_matrix(build_training_set(clean, rows), NAMES)
    b = feature_matrix(build_training_set(leaked, rows), NAMES)
    changed = ~np.all((a == b) | (np.isnan(a) & np.isnan(b)), axis=1)
    ts = pc.cast(rows.column("timestamp"), pa.int64()).to_numpy()
    assert (ts == t).sum() >= 2  # the planted row and u's own impression at t
    return int((changed & (ts <= t)).sum()), int((changed & (ts > t)).sum())


def test_planted_event_is_invisible_at_and_before_its_time(tiny: Dataset) -> None:
    before, after = _leaks(tiny)
    assert before == 0, f"{before} training rows at or before t see an event at t"
    assert after > 0  # sanity: the planted event does reach later rows


def test_inclusive_asof_condition_would_be_caught(
    tiny: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(asof, "ASOF_SIDE", "right")  # ts <= t: the classic leak
    before, _ = _leaks(tiny)
    assert before > 0
