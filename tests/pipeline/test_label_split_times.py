"""The ranker's label cut on logs whose times order nothing, and on logs with time outliers."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from mlsd.pipeline.config import StagesConfig
from mlsd.pipeline.labels import label_split

DAY_MS = 86_400_000
T2024 = 1_704_067_200_000  # 2024-01-01T00:00:00Z, ms


def _pos(u: np.ndarray, v: np.ndarray, t: np.ndarray) -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array(u, pa.int64()),
            "video_id": pa.array(v, pa.int64()),
            "timestamp": pa.array(t, pa.int64()).cast(pa.timestamp("ms", "UTC")),
        }
    )


def _pairs(t: pa.Table) -> set[tuple[int, int]]:
    return set(zip(t.column("user_id").to_pylist(), t.column("video_id").to_pylist(), strict=True))


def test_one_time_for_every_event_gives_a_seeded_per_user_random_cut() -> None:
    u = np.repeat(np.arange(1, 31), 10)
    v = np.tile(np.arange(1, 11), 30)
    t = np.full(len(u), T2024)
    pos = _pos(u, v, t)
    for mode in ("auto", "global", "per-user"):
        s = label_split(pos, t, StagesConfig(label_split=mode))  # type: ignore[arg-type]
        assert s.mode == "per-user-random"
        assert s.after_pairs is not None
        assert not _pairs(s.before) & _pairs(s.after)
        assert len(s.label_users) == 30 and s.after.num_rows == 30 * 2  # 20% of 10 items
        assert s.now_ms == T2024 + 1 and (s.cuts(s.label_users) == T2024).all()
    a = label_split(pos, t, StagesConfig())
    b = label_split(pos, t, StagesConfig())
    c = label_split(pos, t, StagesConfig(seed=1))
    assert _pairs(a.after) == _pairs(b.after) != _pairs(c.after)
    # not each user's last rows in file order (what a time sort with ties would take)
    last = {(int(x), int(y)) for x, y in zip(u, v, strict=True) if y > 8}
    assert _pairs(a.after) != last


def test_a_clock_skewed_row_does_not_move_the_global_cut() -> None:
    rng = np.random.default_rng(0)
    n = 3_000
    u = rng.integers(1, 60, n)
    v = rng.integers(1, 200, n)
    t = np.sort(T2024 + rng.integers(0, 60 * DAY_MS, n))
    cfg = StagesConfig(label_split="global", label_days=7)
    sane = label_split(_pos(u, v, t), t, cfg)
    t2 = np.r_[t, 1_800_000_000_000]  # one row in 2027
    u2, v2 = np.r_[u, 5], np.r_[v, 7]
    skewed = label_split(_pos(u2, v2, t2), t2, cfg)
    assert skewed.mode == sane.mode == "global"
    assert skewed.cut == sane.cut and len(skewed.label_users) == len(sane.label_users)
    from mlsd.pipeline.labels import log_end

    said: list[str] = []
    assert log_end(t2, said.append) == int(t.max())
    assert len(said) == 1 and "1 time outlier(s)" in said[0]
    assert log_end(t, said.append) == int(t.max()) and len(said) == 1
