"""Protocol (d), backtesting: rolling-origin evaluation over several consecutive windows.

Window ``i`` trains on every positive before origin ``t_i`` (an expanding window) and tests on
the positives of ``[t_i, t_i + delta)``, exactly as :func:`~mlsd.evaluation.protocol.
temporal_holdout` with ``horizon=delta`` (Tashman, "Out-of-sample tests of forecasting
accuracy", IJF 2000, on rolling origins). Each metric is reported per window and as mean and
sample standard deviation (``ddof=1``) across windows, so a model's edge can be told from the
window-to-window noise.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from mlsd.config import LabelConfig
from mlsd.data.dataset import Dataset
from mlsd.data.timing import has_time_order, late_outliers, table_ms
from mlsd.errors import ConfigError, DataError
from mlsd.evaluation.beyond import ItemInfo
from mlsd.evaluation.interactions import Model
from mlsd.evaluation.protocol import Comparison, compare, temporal_holdout

__all__ = ["MIN_WINDOWS", "BacktestResult", "backtest", "backtest_window", "rolling_origins"]

MIN_WINDOWS = 2  # a standard deviation needs two windows; the default is three


@dataclass
class BacktestResult:
    """Per window ``(origin, end)`` one :class:`~mlsd.evaluation.protocol.Comparison`."""

    windows: list[tuple[datetime, datetime]]
    comparisons: list[Comparison]

    @property
    def models(self) -> list[str]:
        return list(self.comparisons[0].results) if self.comparisons else []

    def values(self, model: str, metric: str, segment: str | None = None) -> np.ndarray:
        """``float64[n_windows]``: ``metric`` of ``model`` per window (NaN where absent)."""
        return np.array(
            [c.table(segment).get(model, {}).get(metric, np.nan) for c in self.comparisons],
            dtype=np.float64,
        )

    def summary(self, segment: str | None = None) -> dict[str, dict[str, tuple[float, float]]]:
        """``model -> metric -> (mean, std)`` across windows (NaN windows left out)."""
        out: dict[str, dict[str, tuple[float, float]]] = {}
        for model in self.models:
            metrics = sorted({m for c in self.comparisons for m in c.table(segment).get(model, {})})
            out[model] = {}
            for metric in metrics:
                v = self.values(model, metric, segment)
                v = v[~np.isnan(v)]
                mean = float(v.mean()) if v.size else float("nan")
                std = float(v.std(ddof=1)) if v.size > 1 else float("nan")
                out[model][metric] = (mean, std)
        return out


def rolling_origins(
    events: pa.Table, n_windows: int = 3, delta: timedelta = timedelta(days=1)
) -> list[datetime]:
    """``n_windows`` origins ``delta`` apart whose last window ends just after the last event:
    ``t_i = end - (n_windows - i) * delta``, ``end`` = last timestamp + 1 ms (time outliers,
    :func:`mlsd.data.timing.late_outliers`, left out). A log whose times order nothing has no
    windows (:class:`DataError`)."""
    if events.num_rows == 0:
        raise DataError("events: no rows; cannot place backtest windows")
    ms = table_ms(events)
    if not has_time_order(ms):
        raise DataError(
            "events: no timestamps (every event at one time); a backtest needs times to place "
            "its windows: run without backtest windows"
        )
    last = late_outliers(ms).bulk_end_ms
    end = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=last + 1)
    return [end - (n_windows - i) * delta for i in range(n_windows)]


def backtest(
    factories: Mapping[str, Callable[[], Model]],
    data: Dataset,
    *,
    delta: timedelta,
    n_windows: int = 3,
    origins: Sequence[datetime] | None = None,
    k: int = 20,
    ks: Sequence[int] | None = None,
    labels: LabelConfig | None = None,
    include_likes: bool = True,
    items: ItemInfo | None = None,
    max_test_users: int | None = None,
) -> BacktestResult:
    """Fit and score every model on each window (see the module docstring).

    ``max_test_users``: score each window on at most that many of its test users (a seeded
    uniform sample, the same for every model) to bound the cost of a window.

    Origins default to :func:`rolling_origins` (the last ``n_windows`` windows of the data);
    explicit ``origins`` must be increasing. Raises :class:`ConfigError` with fewer than
    :data:`MIN_WINDOWS` windows or a non-positive ``delta``.
    """
    if delta <= timedelta(0):
        raise ConfigError(f"delta={delta}: expected a positive window length")
    if origins is None:
        origins = rolling_origins(data.events, n_windows, delta)
    starts = list(origins)
    if len(starts) < MIN_WINDOWS:
        raise ConfigError(
            f"backtest: {len(starts)} window(s); expected at least {MIN_WINDOWS} (3 by default)"
        )
    if any(b <= a for a, b in itertools.pairwise(starts)):
        raise ConfigError("backtest: origins must be strictly increasing")
    windows, comparisons = [], []
    for t in starts:
        windows.append((t, t + delta))
        comparisons.append(
            backtest_window(
                factories,
                data,
                t,
                delta=delta,
                k=k,
                ks=ks,
                labels=labels,
                include_likes=include_likes,
                items=items,
                max_test_users=max_test_users,
            )
        )
    return BacktestResult(windows, comparisons)


def backtest_window(
    factories: Mapping[str, Callable[[], Model]],
    data: Dataset,
    origin: datetime,
    *,
    delta: timedelta,
    k: int = 20,
    ks: Sequence[int] | None = None,
    labels: LabelConfig | None = None,
    include_likes: bool = True,
    items: ItemInfo | None = None,
    max_test_users: int | None = None,
) -> Comparison:
    """One window of :func:`backtest`: fit on events before ``origin``, score on the positives
    of ``[origin, origin + delta)``. Raises :class:`DataError` when the window has none."""
    holdout = temporal_holdout(
        data, split_time=origin, horizon=delta, labels=labels, include_likes=include_likes
    )
    if len(holdout.test) == 0:
        raise DataError(f"backtest window [{origin}, {origin + delta}): no test positives")
    if max_test_users is not None:
        holdout = replace(holdout, test=holdout.test.sample(max_test_users))
    return compare(factories, holdout, k=k, ks=ks, items=items)
