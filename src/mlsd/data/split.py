"""Temporal train/test splits, and a guard that no training row comes from the test period.

Two protocols (``SplitConfig.protocol``):

- ``global-temporal``: one split time for everybody; train is every row before it, test every
  row at or after it. This is how a model is deployed (trained on the past, serving the future)
  and the protocol offline evaluation should default to.
- ``per-user-temporal``: for each user, the last ``test_share`` of their rows go to test
  ("leave last out"). Every user with two or more rows has test rows, but a user's training rows
  may be later than another user's test rows, so global trends leak; use it to compare with
  papers that report it.

Every split ends with :func:`check_no_leak`. Row order inside each side is the input order.
Works on any table with ``user_id`` and ``timestamp`` columns (events, labelled events,
positives); everything is vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlsd.config import SplitConfig
from mlsd.errors import ConfigError, DataError

__all__ = [
    "Split",
    "check_no_leak",
    "global_temporal_split",
    "per_user_temporal_split",
    "split",
]

Protocol = Literal["global-temporal", "per-user-temporal"]
_TS = pa.timestamp("ms", tz="UTC")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Split:
    """A train/test split of one table.

    ``split_time`` (global protocol) is the first instant of the test period: train rows are
    strictly before it, test rows at or after it. ``user_cut`` (per-user protocol) has one row
    per user with test rows: ``user_id`` and ``cut_time``, the timestamp of that user's first
    test row; the user's training rows are at or before it (equal timestamps are split by row
    order).
    """

    train: pa.Table
    test: pa.Table
    protocol: Protocol
    split_time: datetime | None = None
    user_cut: pa.Table | None = None

    def summary(self) -> str:
        cut = (
            f"split at {self.split_time.isoformat()}"
            if self.split_time is not None
            else f"{self.user_cut.num_rows if self.user_cut is not None else 0:,} users cut"
        )
        return (
            f"{self.protocol}: {self.train.num_rows:,} train rows, "
            f"{self.test.num_rows:,} test rows, {cut}"
        )


def _column(table: pa.Table, name: str, what: str) -> pa.ChunkedArray:
    """Column ``name`` of ``table`` (``what`` names it in messages); DataError when absent."""
    if name not in table.column_names:
        present = ", ".join(table.column_names) or "none"
        raise DataError(f"{what}: no '{name}' column (columns present: {present})")
    return table.column(name)


def _ms(table: pa.Table, what: str = "table") -> np.ndarray:
    """The ``timestamp`` column as int64 epoch milliseconds; DataError when absent or null."""
    col = _column(table, "timestamp", what)
    if col.null_count:
        first = int(np.flatnonzero(np.asarray(pc.is_null(col).to_numpy(zero_copy_only=False)))[0])
        raise DataError(
            f"{what}: column 'timestamp' row {first}: missing value; expected a timestamp in "
            "every row"
        )
    if not pa.types.is_timestamp(col.type):
        raise DataError(
            f"{what}: column 'timestamp' has type {col.type}; expected a timestamp "
            "(validate the table first)"
        )
    col = pc.cast(col, _TS, safe=False)
    return np.asarray(pc.cast(col, pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def _users(table: pa.Table, what: str = "table") -> np.ndarray:
    """The ``user_id`` column as numpy; DataError when absent or null."""
    col = _column(table, "user_id", what)
    if col.null_count:
        raise DataError(f"{what}: column 'user_id' has {col.null_count:,} missing values")
    return np.asarray(col.to_numpy(zero_copy_only=False))


def _ceil_ms(t: datetime) -> int:
    """Epoch ms of ``t`` rounded up, so ``ms < _ceil_ms(t)`` iff ``ms`` is before ``t``."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return -((_EPOCH - t) // timedelta(milliseconds=1))


def _from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _as_datetime(t: datetime | str) -> datetime:
    if isinstance(t, str):
        try:
            t = datetime.fromisoformat(t)
        except ValueError as e:
            raise ConfigError(
                f"split_time {t!r}: not an ISO-8601 time; expected e.g. 2026-01-15T00:00:00Z"
            ) from e
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def global_temporal_split(
    events: pa.Table,
    test_share: float | None = None,
    split_time: datetime | str | None = None,
) -> Split:
    """Split at one time: train = ``timestamp < split_time``, test = ``timestamp >= split_time``.

    Give exactly one of ``split_time`` (a datetime or ISO-8601 text; naive means UTC) or
    ``test_share`` in (0, 1); with ``test_share`` the split time is the ``1 - test_share``
    quantile of the timestamps, taken as an actual timestamp in the data (numpy's ``higher``
    method), so the test side holds about ``test_share`` of the rows (more when many rows share
    the split timestamp, since they all go to test). Either side may be empty (e.g. when every
    row has the same timestamp). Raises :class:`ConfigError` on bad arguments and
    :class:`DataError` on an empty table or a missing/null ``timestamp``.
    """
    if (test_share is None) == (split_time is None):
        raise ConfigError(
            "global_temporal_split: give exactly one of test_share or split_time "
            f"(got test_share={test_share!r}, split_time={split_time!r})"
        )
    ms = _ms(events, "events")
    if split_time is not None:
        t = _as_datetime(split_time)
        cut = _ceil_ms(t)
    else:
        assert test_share is not None
        if not 0 < test_share < 1:
            raise ConfigError(f"test_share {test_share!r}: expected a number in (0, 1)")
        if len(ms) == 0:
            raise DataError("events: no rows; expected at least one row to split")
        cut = int(np.quantile(ms, 1.0 - test_share, method="higher"))
        t = _from_ms(cut)
    return _checked_split(events, ms >= cut, "global-temporal", split_time=t)


def _n_test(counts: np.ndarray, test_share: float) -> np.ndarray:
    """Test rows per user: ``test_share`` of their rows rounded half up, at least 1 and at most
    ``n - 1`` for users with ``n >= 2`` rows, 0 for users with one row."""
    n = np.floor(counts * test_share + 0.5).astype(np.int64)
    return np.where(counts >= 2, np.clip(n, 1, counts - 1), 0)


def per_user_temporal_split(events: pa.Table, test_share: float) -> Split:
    """For each user, their last ``test_share`` of rows (see :func:`_n_test` for rounding) go to
    test, ordered by timestamp with ties broken by row order; users with one row stay in train.

    Raises :class:`ConfigError` when ``test_share`` is not in (0, 1) and :class:`DataError` on
    missing/null ``user_id`` or ``timestamp``.
    """
    if not 0 < test_share < 1:
        raise ConfigError(f"test_share {test_share!r}: expected a number in (0, 1)")
    ms = _ms(events, "events")
    users = _users(events, "events")
    n = len(ms)
    # Sort by user, then time, then row (lexsort is stable, the last key is the primary one).
    order = np.lexsort((np.arange(n), ms, users))
    su = users[order]
    start = np.flatnonzero(np.r_[True, su[1:] != su[:-1]]) if n else np.zeros(0, np.int64)
    counts = np.diff(np.r_[start, n])
    rank = np.arange(n) - np.repeat(start, counts)
    first_test = counts - _n_test(counts, test_share)
    sorted_test = rank >= np.repeat(first_test, counts)
    is_test = np.zeros(n, dtype=bool)
    is_test[order] = sorted_test
    has_test = first_test < counts
    cut_rows = order[start[has_test] + first_test[has_test]]
    user_cut = pa.table(
        {
            "user_id": events.column("user_id").take(pa.array(cut_rows)),
            "cut_time": pa.array(ms[cut_rows], type=pa.int64()).cast(_TS),
        }
    )
    return _checked_split(events, is_test, "per-user-temporal", user_cut=user_cut)


def _checked_split(
    events: pa.Table,
    is_test: np.ndarray,
    protocol: Protocol,
    *,
    split_time: datetime | None = None,
    user_cut: pa.Table | None = None,
) -> Split:
    """The split of ``events`` with the rows where ``is_test`` (bool, one per row) in test, the
    others in train, each in input order; raises :class:`DataError` if :func:`check_no_leak`
    finds a leak."""
    out = Split(
        train=events.filter(pa.array(~is_test)),
        test=events.filter(pa.array(is_test)),
        protocol=protocol,
        split_time=split_time,
        user_cut=user_cut,
    )
    check_no_leak(out)
    return out


def split(events: pa.Table, cfg: SplitConfig) -> Split:
    """Split by ``cfg.protocol`` with ``cfg.test_share``."""
    if cfg.protocol == "global-temporal":
        return global_temporal_split(events, test_share=cfg.test_share)
    return per_user_temporal_split(events, cfg.test_share)


def check_no_leak(split: Split) -> None:
    """Raise :class:`DataError` when a training row is later than the split point.

    Global protocol: every train row must be strictly before ``split_time`` and every test row
    at or after it. Per-user protocol: for every user with test rows, no training row of that
    user may be later than the user's first test row (equal timestamps are allowed: ties are
    split by row order). The message names the first offending user and both times.
    """
    if split.protocol == "global-temporal":
        if split.split_time is None:
            raise DataError("global-temporal split without a split_time; cannot check for leaks")
        cut = _ceil_ms(split.split_time)
        train, test = _ms(split.train, "train"), _ms(split.test, "test")
        late = np.flatnonzero(train >= cut)
        if late.size:
            row = int(late[0])
            raise DataError(
                f"leak: train row {row} (user {split.train.column('user_id')[row].as_py()}) "
                f"at {_from_ms(int(train[row])).isoformat()} is not before the split time "
                f"{split.split_time.isoformat()} ({late.size:,} such rows); expected every "
                "training row before the split time"
            )
        early = np.flatnonzero(test < cut)
        if early.size:
            row = int(early[0])
            raise DataError(
                f"test row {row} at {_from_ms(int(test[row])).isoformat()} is before the split "
                f"time {split.split_time.isoformat()} ({early.size:,} such rows); expected "
                "every test row at or after it"
            )
        return
    if split.protocol != "per-user-temporal":
        raise DataError(
            f"unknown split protocol {split.protocol!r}; "
            "expected global-temporal or per-user-temporal"
        )
    last_train = (
        pd.DataFrame({"u": _users(split.train, "train"), "t": _ms(split.train, "train")})
        .groupby("u", sort=False)["t"]
        .max()
    )
    first_test = (
        pd.DataFrame({"u": _users(split.test, "test"), "t": _ms(split.test, "test")})
        .groupby("u", sort=False)["t"]
        .min()
    )
    both = pd.concat([last_train.rename("train"), first_test.rename("test")], axis=1, join="inner")
    bad = both[both["train"] > both["test"]]
    if len(bad):
        user = bad.index[0]
        raise DataError(
            f"leak: user {user} has a training row at "
            f"{_from_ms(int(bad['train'].iloc[0])).isoformat()}, later than their first test row "
            f"at {_from_ms(int(bad['test'].iloc[0])).isoformat()} ({len(bad):,} such users); "
            "expected each user's training rows at or before their first test row"
        )
