"""Holdouts: the train/test cuts of the evaluation protocols (see :mod:`.protocol`).

- :func:`temporal_holdout`, protocol (a): one global cut; train on positives before it, test on
  the valid watches of the next period. Truth is the (user, item) pairs whose first positive
  falls in the test period, so re-watches of training positives (which ``exclude_seen`` could
  never recommend) are not targets. Users with no training positive are the ``new`` segment.
  Items first seen after the cut stay in the truth: a model that cannot recommend fresh
  uploads pays for it, as it would in production.
- :func:`per_user_holdout`, protocol (b): each user's positives (ratings >= 4 on rating data)
  split 80/20 by time, the protocol of MovieLens papers.
- :func:`random_holdout`, protocol (b) for a log whose times order nothing (no timestamps,
  or one time for every event, :func:`mlsd.data.timing.has_time_order`): each user's positive
  items split 80/20 at random (seeded) instead of by time.
- :func:`validation_holdout`, protocol (c): the same cut again inside the training side, for
  tuning that never reads the test slice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlsd.config import LabelConfig
from mlsd.data.dataset import Dataset
from mlsd.data.labels import positives
from mlsd.data.split import global_temporal_split, per_user_temporal_split
from mlsd.data.timing import in_pairs
from mlsd.data.timing import random_holdout as random_pairs
from mlsd.errors import ConfigError, DataError
from mlsd.evaluation.interactions import Interactions
from mlsd.evaluation.metrics import Truth

__all__ = [
    "EvalSet",
    "Holdout",
    "per_user_holdout",
    "random_holdout",
    "temporal_holdout",
    "validation_holdout",
]

_TS = pa.timestamp("ms", tz="UTC")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, eq=False)
class EvalSet:
    """The users a model is judged on: ``user_ids`` (``int64[n]``, unique), their relevant items
    (``truth``, row ``i`` for ``user_ids[i]``, every row non-empty) and ``train_counts``
    (``int64[n]``, training positives per user, which sets their segment)."""

    user_ids: np.ndarray
    truth: Truth
    train_counts: np.ndarray

    def __len__(self) -> int:
        return len(self.user_ids)

    def sample(self, n: int, seed: int = 0) -> EvalSet:
        """At most ``n`` users drawn uniformly without replacement (seeded; order kept), so
        that every model is judged on the same smaller set; ``self`` when it has <= ``n``."""
        if n < 1:
            raise ConfigError(f"sample of {n} users: expected at least 1")
        if len(self) <= n:
            return self
        rows = np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False))
        p = self.truth.indptr
        parts = [self.truth.indices[p[i] : p[i + 1]] for i in rows]
        sizes = np.array([len(x) for x in parts], np.int64)
        truth = Truth(np.concatenate([[0], np.cumsum(sizes)]), np.concatenate(parts))
        return EvalSet(self.user_ids[rows], truth, self.train_counts[rows])


@dataclass(frozen=True, eq=False)
class Holdout:
    """A train/test pair under one protocol (``"temporal"``, ``"per-user"`` or
    ``"per-user-random"``).

    ``info`` records how it was made: ``split_time`` and ``test_end`` (temporal; the end of the
    test period, or just after its last positive when open-ended), ``test_share``, row and user
    counts. ``train.events`` holds the raw events a model may use (before the cut;
    per user, strictly before the user's first test positive).
    """

    protocol: str
    train: Interactions
    test: EvalSet
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        seg = np.asarray(self.test.train_counts)
        return (
            f"{self.protocol}: {len(self.train):,} training positives, {len(self.test):,} test "
            f"users ({int((seg == 0).sum()):,} new) with {len(self.test.truth.indices):,} "
            "relevant items"
        )


def _ceil_ms(t: datetime) -> int:
    """Epoch ms of ``t`` rounded up: integer ``ms < _ceil_ms(t)`` iff ``ms`` is before ``t``."""
    t = t if t.tzinfo is not None else t.replace(tzinfo=UTC)
    return -((_EPOCH - t) // timedelta(milliseconds=1))


def _ms(table: pa.Table) -> np.ndarray:
    col = pc.cast(pc.cast(table.column("timestamp"), _TS, safe=False), pa.int64())
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.int64)


def _positives_table(train: Interactions) -> pa.Table:
    if train.timestamps is None:
        raise DataError(
            "interactions without timestamps cannot be split by time; expected timestamps"
        )
    return pa.table(
        {
            "user_id": pa.array(train.user_ids),
            "video_id": pa.array(train.item_ids),
            "timestamp": pa.array(train.timestamps, type=pa.int64()).cast(_TS),
            "weight": pa.array(train.weights),
        }
    )


def _eval_set(test: pa.Table, train: Interactions) -> EvalSet:
    t = Interactions.from_table(test)
    users = np.unique(t.user_ids)
    return EvalSet(users, Truth.from_pairs(t.user_ids, t.item_ids, users), train.per_user(users))


def _events_before(events: pa.Table | None, cut_ms: int) -> pa.Table | None:
    if events is None:
        return None
    return events.filter(pa.array(_ms(events) < cut_ms))


def _temporal(
    pos: pa.Table,
    events: pa.Table | None,
    *,
    split_time: datetime | str | None,
    test_share: float | None,
    horizon: timedelta | None,
) -> Holdout:
    if horizon is not None and horizon <= timedelta(0):
        raise ConfigError(f"horizon={horizon}: expected a positive duration")
    split = global_temporal_split(pos, test_share=test_share, split_time=split_time)
    assert split.split_time is not None
    cut_ms = _ceil_ms(split.split_time)
    test = split.test
    if horizon is not None:
        end = split.split_time + horizon
        test = test.filter(pa.array(_ms(test) < _ceil_ms(end)))
    else:  # open-ended: the test period ends just after its last positive
        last = int(_ms(test).max()) if test.num_rows else cut_ms
        end = _EPOCH + timedelta(milliseconds=last + 1)
    weight = "weight" if "weight" in pos.column_names else None
    train = Interactions.from_table(
        split.train, weight=weight, events=_events_before(events, cut_ms)
    )
    ev = _eval_set(test, train)
    info = {
        "split_time": split.split_time,
        "test_end": end,
        "test_share": test_share,
        "train_rows": len(train),
        "test_rows": test.num_rows,
        "test_users": len(ev),
        "new_users": int((ev.train_counts == 0).sum()),
    }
    return Holdout("temporal", train, ev, info)


def _ids(table: pa.Table, column: str) -> np.ndarray:
    return np.asarray(table.column(column).to_numpy(zero_copy_only=False), np.int64)


def _per_user(pos: pa.Table, events: pa.Table | None, test_share: float) -> Holdout:
    split = per_user_temporal_split(pos, test_share)
    train_events = None
    if events is not None and split.user_cut is not None:
        # A user's raw events strictly before their first test positive (users without test
        # rows keep all of theirs): what the model could have seen at that user's cut.
        cut = split.user_cut.rename_columns(["user_id", "timestamp"])
        cut_users = np.asarray(cut.column("user_id").to_numpy(), np.int64)
        order = np.argsort(cut_users)
        cut_users, cut_ms = cut_users[order], _ms(cut)[order]
        eu = np.asarray(events.column("user_id").to_numpy(zero_copy_only=False), np.int64)
        pos_idx = np.searchsorted(cut_users, eu).clip(max=max(len(cut_users) - 1, 0))
        has_cut = (cut_users[pos_idx] == eu) if len(cut_users) else np.zeros(len(eu), bool)
        limit = np.where(has_cut, cut_ms[pos_idx] if len(cut_ms) else 0, np.iinfo(np.int64).max)
        ems = _ms(events)
        keep = ems < limit
        # Ties at a user's cut (day-precision logs give many): the split orders them by
        # position, so some tied positives are training rows. Their raw events stay, or the
        # model would lack what the baselines are given (a user whose training positives all
        # share the cut's time would be unknown to it).
        tied = np.flatnonzero(ems == limit)
        if len(tied):
            tr, ev_t = split.train, events.take(pa.array(tied))
            train_rows = pd.MultiIndex.from_arrays(
                [_ids(tr, "user_id"), _ids(tr, "video_id"), _ms(tr)]
            )
            ev_rows = pd.MultiIndex.from_arrays(
                [_ids(ev_t, "user_id"), _ids(ev_t, "video_id"), _ms(ev_t)]
            )
            keep[tied[np.asarray(ev_rows.isin(train_rows))]] = True
        train_events = events.filter(pa.array(keep))
    weight = "weight" if "weight" in pos.column_names else None
    train = Interactions.from_table(split.train, weight=weight, events=train_events)
    ev = _eval_set(split.test, train)
    info = {
        "test_share": test_share,
        "train_rows": len(train),
        "test_rows": split.test.num_rows,
        "test_users": len(ev),
        "new_users": int((ev.train_counts == 0).sum()),
    }
    return Holdout("per-user", train, ev, info)


def _random(pos: pa.Table, events: pa.Table | None, test_share: float, seed: int) -> Holdout:
    u = np.asarray(pos.column("user_id").to_numpy(zero_copy_only=False), np.int64)
    v = np.asarray(pos.column("video_id").to_numpy(zero_copy_only=False), np.int64)
    if not 0 < test_share < 1:
        raise ConfigError(f"test_share {test_share!r}: expected a number in (0, 1)")
    held = random_pairs(u, v, test_share, seed)
    train_events = None
    if events is not None:  # every event of a held-out (user, item) pair is test-side
        eu, ev = (
            np.asarray(events.column(c).to_numpy(zero_copy_only=False), np.int64)
            for c in ("user_id", "video_id")
        )
        train_events = events.filter(pa.array(~in_pairs(eu, ev, u[held], v[held])))
    weight = "weight" if "weight" in pos.column_names else None
    train = Interactions.from_table(pos.filter(pa.array(~held)), weight=weight, events=train_events)
    test = pos.filter(pa.array(held))
    ev_set = _eval_set(test, train)
    info = {
        "test_share": test_share,
        "seed": seed,
        "train_rows": len(train),
        "test_rows": test.num_rows,
        "test_users": len(ev_set),
        "new_users": int((ev_set.train_counts == 0).sum()),
    }
    return Holdout("per-user-random", train, ev_set, info)


def random_holdout(
    data: Dataset,
    *,
    test_share: float = 0.2,
    seed: int = 0,
    labels: LabelConfig | None = None,
    include_likes: bool = True,
) -> Holdout:
    """Protocol (b) without time: each user's positive items (as for :func:`per_user_holdout`)
    split at random, ``test_share`` of them to test (whole items: an item a user watched twice
    is on one side; see :func:`mlsd.data.timing.random_holdout`), drawn with ``seed``. The
    protocol of a log whose times order nothing; ``train.events`` holds every event except
    those of the test (user, item) pairs."""
    cfg = labels or LabelConfig()
    pos = positives(data.events, data.videos, cfg, include_likes=include_likes)
    return _random(pos, data.events, test_share, seed)


def temporal_holdout(
    data: Dataset,
    *,
    split_time: datetime | str | None = None,
    test_share: float | None = None,
    horizon: timedelta | None = None,
    labels: LabelConfig | None = None,
    include_likes: bool = True,
) -> Holdout:
    """Protocol (a): train on positives before one cut, test on the next period's positives.

    Give exactly one of ``split_time`` and ``test_share`` (as in
    :func:`mlsd.data.split.global_temporal_split`); ``horizon`` limits the test period to
    ``[cut, cut + horizon)`` (default: to the end of the data). Positives follow ``labels``
    (valid watches, likes with ``include_likes``, ratings >= ``min_rating``). ``train.events``
    holds every raw event before the cut.
    """
    cfg = labels or LabelConfig()
    pos = positives(data.events, data.videos, cfg, include_likes=include_likes)
    return _temporal(
        pos, data.events, split_time=split_time, test_share=test_share, horizon=horizon
    )


def per_user_holdout(
    data: Dataset,
    *,
    test_share: float = 0.2,
    labels: LabelConfig | None = None,
    include_likes: bool = True,
) -> Holdout:
    """Protocol (b): each user's positives split by time, the last ``test_share`` to test.

    Positives are computed first (ratings >= ``labels.min_rating`` on rating data, valid
    watches and likes on event logs), then split per user by
    :func:`mlsd.data.split.per_user_temporal_split` (users with one positive stay in train), so
    every test user has training items and ``new`` users do not occur.
    """
    cfg = labels or LabelConfig()
    pos = positives(data.events, data.videos, cfg, include_likes=include_likes)
    return _per_user(pos, data.events, test_share)


def validation_holdout(
    holdout: Holdout,
    *,
    test_share: float | None = None,
    horizon: timedelta | None = None,
) -> Holdout:
    """Protocol (c): carve a validation slice out of ``holdout.train`` the same way.

    Per-user: each user's training positives split again with ``test_share`` (default: the
    outer one). Temporal: the validation period is the ``horizon`` before the outer cut
    (default: the outer test period's length) or, with ``test_share``, the last share of the
    training rows. The test slice is never read.
    """
    pos = _positives_table(holdout.train)
    events = holdout.train.events
    if holdout.protocol == "per-user-random":
        share = test_share if test_share is not None else holdout.info.get("test_share", 0.2)
        return _random(pos, events, float(share), int(holdout.info.get("seed", 0)) + 1)
    if holdout.protocol == "per-user":
        share = test_share if test_share is not None else holdout.info.get("test_share", 0.2)
        return _per_user(pos, events, float(share))
    if holdout.protocol != "temporal":
        raise ConfigError(f"unknown protocol {holdout.protocol!r}; expected temporal or per-user")
    cut: datetime = holdout.info["split_time"]
    if test_share is not None:
        return _temporal(pos, events, split_time=None, test_share=test_share, horizon=None)
    if horizon is None:
        horizon = holdout.info["test_end"] - cut
    return _temporal(pos, events, split_time=cut - horizon, test_share=None, horizon=horizon)
