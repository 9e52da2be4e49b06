"""What a log's timestamps can be trusted for.

- :func:`has_time_order`: whether the times order anything. A log loaded without a timestamp
  column has every event at one placeholder time
  (:data:`mlsd.data.loaders.interactions.NO_TIMESTAMP`), and a log whose time column is
  constant is no better: both order nothing. Their splits are per-user random (seeded) instead
  of temporal (:func:`random_holdout`), and time features (recency, windows, sequences) are
  constant, because every event is at the same instant; :data:`NO_ORDER_NOTE` says so.
- :func:`late_outliers`: rows far beyond the bulk of the log (a clock-skewed row in 2027 among
  2024 data). A cut taken from the log's last time would follow such a row and leave the bulk
  with an empty test period; cuts are taken from :attr:`TimeOutliers.bulk_end_ms` instead,
  which is the last time when there are no outliers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlsd.data.dataset import Dataset, is_csv

__all__ = [
    "NO_ORDER_NOTE",
    "OUTLIER_MAX_SHARE",
    "OUTLIER_MIN_GAP",
    "OUTLIER_MIN_ROWS",
    "TimeOutliers",
    "has_time_order",
    "in_pairs",
    "late_outliers",
    "random_holdout",
    "table_ms",
    "time_notes",
]

NO_ORDER_NOTE = (
    "no timestamps (every event at one time): per-user random split (seeded), "
    "time-based features (recency, windows, sequences) constant"
)

#: A time outlier is separated from the rows before it by a gap longer than both this and
#: a quarter of the bulk's own span ...
OUTLIER_MIN_GAP = timedelta(days=30)
OUTLIER_GAP_SHARE = 0.25
#: ... and there are few of them: at most this share of the rows (at least one row) ...
OUTLIER_MAX_SHARE = 0.01
#: ... in a log of at least this many rows (a handful of rows has no bulk to stand out from).
OUTLIER_MIN_ROWS = 20
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def table_ms(table: pa.Table, column: str = "timestamp") -> np.ndarray:
    """``int64[n]``: a timestamp column as epoch milliseconds (UTC)."""
    col = pc.cast(table.column(column), pa.timestamp("ms", tz="UTC"), safe=False)
    return np.asarray(pc.cast(col, pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def has_time_order(ms: np.ndarray) -> bool:
    """Whether event times ``ms`` order anything: False when there are fewer than two events
    or all are at one time (no timestamps, or a constant time column)."""
    ms = np.asarray(ms)
    return len(ms) > 1 and int(ms.min()) != int(ms.max())


@dataclass(frozen=True)
class TimeOutliers:
    """The rows of a log far beyond its bulk (see :func:`late_outliers`): ``mask`` (one entry
    per row), ``bulk_end_ms`` (the last time of the other rows; the last time of all when
    there are no outliers) and ``gap_ms`` (the empty stretch that sets them apart; 0 if none)."""

    mask: np.ndarray
    bulk_end_ms: int
    gap_ms: int

    @property
    def count(self) -> int:
        return int(self.mask.sum())

    @property
    def first_row(self) -> int | None:
        """The first outlying row, in table order (None when there is none)."""
        rows = np.flatnonzero(self.mask)
        return int(rows[0]) if rows.size else None

    @property
    def bulk_end(self) -> datetime:
        return _EPOCH + timedelta(milliseconds=self.bulk_end_ms)

    def describe(self, ms: np.ndarray, where: str = "") -> str:
        """One line for the user: how many, the first one (``where`` locates it, e.g. a file
        and line) and its time, and where the bulk ends."""
        row = self.first_row
        if row is None:
            return "no time outliers"
        at = _EPOCH + timedelta(milliseconds=int(ms[row]))
        days = self.gap_ms / 86_400_000
        return (
            f"{self.count:,} time outlier(s): rows at least {days:,.0f} days after the rest of "
            f"the log, which ends {self.bulk_end.isoformat()}; the first is row {row}"
            f"{where} at {at.isoformat()} (a skewed clock or a unit mix-up?)"
        )


def late_outliers(ms: np.ndarray) -> TimeOutliers:
    """The rows far beyond the bulk of a log whose event times are ``ms``.

    Sorted, the last ``OUTLIER_MAX_SHARE`` of the times (at least one) are candidates; the first
    gap among them longer than ``OUTLIER_MIN_GAP`` and than ``OUTLIER_GAP_SHARE`` of the span
    before it sets every later row apart. A log that just grows or tails off has no such gap;
    one clock-skewed row years ahead does. Logs under ``OUTLIER_MIN_ROWS`` rows have none.
    """
    ms = np.asarray(ms, dtype=np.int64)
    n = len(ms)
    none = TimeOutliers(np.zeros(n, bool), int(ms.max()) if n else 0, 0)
    if n < OUTLIER_MIN_ROWS:
        return none
    s = np.sort(ms)
    k = max(1, int(n * OUTLIER_MAX_SHARE))
    idx = np.arange(n - 1 - k, n - 1)
    gaps = s[idx + 1] - s[idx]
    min_gap = OUTLIER_MIN_GAP // timedelta(milliseconds=1)
    need = np.maximum(min_gap, OUTLIER_GAP_SHARE * (s[idx] - s[0]))
    big = np.flatnonzero(gaps > need)
    if big.size == 0:
        return none
    i = int(idx[big[0]])
    return TimeOutliers(ms > s[i], int(s[i]), int(gaps[big[0]]))


def in_pairs(u: np.ndarray, v: np.ndarray, set_u: np.ndarray, set_v: np.ndarray) -> np.ndarray:
    """``bool[n]``: which pairs ``(u[i], v[i])`` are among the pairs ``(set_u, set_v)``."""
    if len(u) == 0 or len(set_u) == 0:
        return np.zeros(len(u), bool)
    wanted = pd.MultiIndex.from_arrays([np.asarray(set_u), np.asarray(set_v)])
    return np.asarray(pd.MultiIndex.from_arrays([np.asarray(u), np.asarray(v)]).isin(wanted))


def random_holdout(u: np.ndarray, v: np.ndarray, share: float, seed: int) -> np.ndarray:
    """``bool[n]``: a per-user random split of the rows ``(u[i], v[i])``, True for held out.

    Whole (user, item) pairs are held out, so a held-out item is never on the kept side: per
    user, ``share`` of their distinct items rounded half up, at least 1 and at most all but one
    (users with one item keep it). Which items is drawn with ``seed`` and does not depend on
    the order of the rows."""
    u = np.asarray(u, dtype=np.int64)
    v = np.asarray(v, dtype=np.int64)
    n = len(u)
    if n == 0:
        return np.zeros(0, bool)
    order = np.lexsort((v, u))
    su, sv = u[order], v[order]
    new = np.r_[True, (su[1:] != su[:-1]) | (sv[1:] != sv[:-1])]
    pair_of_row = np.empty(n, np.int64)
    pair_of_row[order] = np.cumsum(new) - 1
    pair_user = su[new]
    n_pairs = len(pair_user)
    pri = np.random.default_rng(seed).random(n_pairs)
    o = np.lexsort((pri, pair_user))  # pairs by user (already sorted), then at random
    starts = np.flatnonzero(np.r_[True, pair_user[1:] != pair_user[:-1]])
    counts = np.diff(np.r_[starts, n_pairs])
    rank = np.arange(n_pairs) - np.repeat(starts, counts)
    n_out = np.floor(counts * share + 0.5).astype(np.int64)
    n_out = np.where(counts >= 2, np.clip(n_out, 1, counts - 1), 0)
    held = np.zeros(n_pairs, bool)
    held[o] = rank < np.repeat(n_out, counts)
    return held[pair_of_row]


def time_notes(ds: Dataset) -> list[str]:
    """What to tell a user about a dataset's times (``mlsd data validate``): that they order
    nothing (:data:`NO_ORDER_NOTE`), or its time outliers, the first located in its file."""
    ms = table_ms(ds.events)
    if not has_time_order(ms):
        return [NO_ORDER_NOTE]
    late = late_outliers(ms)
    row = late.first_row
    if row is None:
        return []
    file = ds.files.get("events", "the events")
    where = f" of {file}"
    dropped = ds.report is not None and ds.report.n_dropped > 0
    if is_csv(file) and ds.meta.get("source") in ("interactions", "mlsd") and not dropped:
        where += f" (line {row + 2})"  # a header line, then one row per line
    return [late.describe(ms, where) + "; the label and test cuts ignore them"]
