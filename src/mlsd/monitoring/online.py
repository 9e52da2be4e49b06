"""Online-metric drift: the click-through rate of what the service served (plays per
impression, from the events it ingests) per period of event time, the latest period against
the mean of the periods before it.

Why a trailing baseline and not the training log: the log was collected under another policy
(the platform's), so the served model's CTR differs from it by design; what signals a broken
world (tastes that moved, a bad model) is a sudden fall against the recent past. Periods are
cut by the events' own timestamps (a simulated day is a day), so the check is the same in a
simulation and in production.

The drift rule: the latest period has at least ``min_impressions`` and its CTR is at least
``max_drop`` (relative) below the mean CTR of up to ``baseline_periods`` earlier periods that
had as many. A two-proportion z-test would call tiny daily wobbles significant at these
volumes (impressions of one user are not independent), so the rule is a relative drop, as
business metrics are alerted on (e.g. Google SRE's "alert on symptoms": a large change of a
user-facing rate).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["OnlineMetricDrift", "OnlineMetrics"]

DAY_MS = 86_400_000


@dataclass(frozen=True)
class OnlineMetricDrift:
    """The latest period's CTR, the baseline's, the relative change and the verdict."""

    period_start_ms: int
    impressions: int
    ctr: float
    baseline_ctr: float | None
    baseline_periods: int
    relative_change: float | None
    drifted: bool


class OnlineMetrics:
    """Impressions and plays per period of ``period_ms`` of event time (thread-safe)."""

    def __init__(
        self,
        period_ms: int = DAY_MS,
        *,
        min_impressions: int = 2000,
        baseline_periods: int = 7,
        max_drop: float = 0.25,
    ) -> None:
        self.period_ms = period_ms
        self.min_impressions = min_impressions
        self.baseline_periods = baseline_periods
        self.max_drop = max_drop
        self._counts: dict[int, list[int]] = {}  # period -> [impressions, plays]
        self._lock = threading.Lock()

    def observe(self, events: pa.Table) -> None:
        """Count an events table's impressions and plays (mlsd events schema)."""
        if events.num_rows == 0:
            return
        t = pc.cast(events.column("timestamp"), pa.int64()).to_numpy()
        kind = events.column("event_type").to_numpy(zero_copy_only=False)
        period = t // self.period_ms
        with self._lock:
            for name, j in (("impression", 0), ("play", 1)):
                m = kind == name
                if not m.any():
                    continue
                p, n = np.unique(period[m], return_counts=True)
                for pi, ni in zip(p.tolist(), n.tolist(), strict=True):
                    self._counts.setdefault(int(pi), [0, 0])[j] += int(ni)

    def check(self) -> OnlineMetricDrift | None:
        """The latest period with at least ``min_impressions`` against the earlier ones;
        None when no period has that many yet."""
        with self._lock:
            full = sorted(p for p, c in self._counts.items() if c[0] >= self.min_impressions)
            if not full:
                return None
            latest = full[-1]
            imp, plays = self._counts[latest]
            base = [self._counts[p] for p in full[:-1][-self.baseline_periods :]]
        ctr = plays / imp
        if not base:
            return OnlineMetricDrift(latest * self.period_ms, imp, ctr, None, 0, None, False)
        baseline = float(np.mean([b[1] / b[0] for b in base]))
        change = ctr / baseline - 1 if baseline > 0 else 0.0
        return OnlineMetricDrift(
            latest * self.period_ms, imp, ctr, baseline, len(base), change, change <= -self.max_drop
        )
