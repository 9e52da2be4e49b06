"""Online-metric drift: CTR per period of event time against the periods before it."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from mlsd.monitoring.online import DAY_MS, OnlineMetrics


def _events(day: int, impressions: int, plays: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    t = day * DAY_MS + rng.integers(0, DAY_MS, impressions + plays)
    kinds = ["impression"] * impressions + ["play"] * plays
    return pa.table({"timestamp": pa.array(t, pa.int64()), "event_type": kinds})


def test_a_stable_ctr_is_no_drift_and_a_quarter_drop_is() -> None:
    m = OnlineMetrics(min_impressions=1000)
    assert m.check() is None
    m.observe(_events(10, 5000, 1000))
    first = m.check()
    assert first is not None and first.baseline_ctr is None and not first.drifted
    for day in (11, 12):
        m.observe(_events(day, 5000, 950, seed=day))
    stable = m.check()
    assert stable is not None and not stable.drifted
    assert stable.baseline_periods == 2 and abs(stable.ctr - 0.19) < 1e-9
    m.observe(_events(13, 5000, 700, seed=13))  # 0.14 vs ~0.195: -28%
    fell = m.check()
    assert fell is not None and fell.drifted
    assert fell.relative_change is not None and fell.relative_change < -0.25


def test_a_rise_and_a_period_below_the_minimum_raise_nothing() -> None:
    m = OnlineMetrics(min_impressions=1000)
    m.observe(_events(1, 5000, 500))
    m.observe(_events(2, 5000, 2000))  # CTR up 4x: good news is no alert
    got = m.check()
    assert got is not None and not got.drifted
    m.observe(_events(3, 100, 0))  # too few impressions to judge: day 2 stays the latest
    again = m.check()
    assert again is not None and again.period_start_ms == 2 * DAY_MS
