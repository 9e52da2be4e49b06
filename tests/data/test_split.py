"""Tests of the temporal splits and the leak guard in ``mlsd.data.split``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsd.config import SplitConfig
from mlsd.data.split import (
    Split,
    check_no_leak,
    global_temporal_split,
    per_user_temporal_split,
    split,
)
from mlsd.errors import ConfigError, DataError

T0 = datetime(2026, 1, 5, tzinfo=UTC)
TS = pa.timestamp("ms", tz="UTC")


def table(users: list[int], minutes: list[float]) -> pa.Table:
    """A minimal events-like table; ``row`` records the input position for assertions."""
    return pa.table(
        {
            "user_id": pa.array(users, pa.int64()),
            "timestamp": pa.array([T0 + timedelta(minutes=m) for m in minutes], TS),
            "row": pa.array(range(len(users)), pa.int64()),
        }
    )


def rows(t: pa.Table) -> list[int]:
    return t.column("row").to_pylist()


def test_global_split_at_a_given_time() -> None:
    t = table([1, 2, 1, 3, 2], [0, 10, 20, 30, 20])
    s = global_temporal_split(t, split_time=T0 + timedelta(minutes=20))
    assert s.protocol == "global-temporal" and s.split_time == T0 + timedelta(minutes=20)
    assert rows(s.train) == [0, 1] and rows(s.test) == [2, 3, 4]  # the split instant is test
    assert s.user_cut is None


def test_global_split_time_as_text_or_naive_is_utc() -> None:
    t = table([1, 1], [0, 60])
    for when in ("2026-01-05T00:30:00Z", "2026-01-05T00:30:00", datetime(2026, 1, 5, 0, 30)):
        s = global_temporal_split(t, split_time=when)
        assert rows(s.train) == [0] and s.split_time == T0 + timedelta(minutes=30)
    with pytest.raises(ConfigError, match="ISO-8601"):
        global_temporal_split(t, split_time="yesterday")


def test_global_split_sub_millisecond_split_time() -> None:
    t = table([1, 1], [0, 1])
    s = global_temporal_split(t, split_time=T0 + timedelta(microseconds=500))
    assert rows(s.train) == [0] and rows(s.test) == [1]


def test_global_split_by_share_uses_the_quantile() -> None:
    t = table([1] * 10, [9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    s = global_temporal_split(t, test_share=0.2)
    expected = int(np.quantile(np.arange(10), 0.8, method="higher"))
    assert s.split_time == T0 + timedelta(minutes=expected)
    assert rows(s.test) == [0, 1] and rows(s.train) == list(range(2, 10))


def test_global_split_argument_errors() -> None:
    t = table([1], [0])
    with pytest.raises(ConfigError, match="exactly one"):
        global_temporal_split(t)
    with pytest.raises(ConfigError, match="exactly one"):
        global_temporal_split(t, test_share=0.2, split_time=T0)
    with pytest.raises(ConfigError, match=r"\(0, 1\)"):
        global_temporal_split(t, test_share=1.0)
    with pytest.raises(DataError, match="no rows"):
        global_temporal_split(table([], []), test_share=0.2)
    with pytest.raises(DataError, match="timestamp"):
        global_temporal_split(t.drop_columns(["timestamp"]), test_share=0.2)
    nulls = t.set_column(1, "timestamp", pa.nulls(1, TS))
    with pytest.raises(DataError, match="row 0: missing value"):
        global_temporal_split(nulls, test_share=0.2)


def test_per_user_split_last_share_per_user_ties_by_row_order() -> None:
    # user 1: 5 rows (two tied at minute 4); user 2: one row; user 3: two rows, out of order.
    t = table([1, 1, 2, 1, 1, 3, 1, 3], [0, 4, 100, 4, 1, 9, 2, 5])
    s = per_user_temporal_split(t, test_share=0.4)
    assert s.protocol == "per-user-temporal" and s.split_time is None
    # user 1 sorted: rows 0 (0), 4 (1), 6 (2), 1 (4), 3 (4) -> last 2 = rows 1, 3
    # user 3 sorted: rows 7 (5), 5 (9) -> last 1 = row 5; user 2 stays in train
    assert rows(s.test) == [1, 3, 5]
    assert rows(s.train) == [0, 2, 4, 6, 7]
    assert s.user_cut is not None
    cuts = dict(
        zip(s.user_cut["user_id"].to_pylist(), s.user_cut["cut_time"].to_pylist(), strict=True)
    )
    assert cuts == {1: T0 + timedelta(minutes=4), 3: T0 + timedelta(minutes=9)}


@pytest.mark.parametrize(
    ("n", "share", "n_test"),
    [(1, 0.5, 0), (2, 0.1, 1), (2, 0.9, 1), (3, 0.5, 2), (10, 0.2, 2), (10, 0.25, 3), (5, 0.1, 1)],
)
def test_per_user_split_rounding(n: int, share: float, n_test: int) -> None:
    s = per_user_temporal_split(table([7] * n, list(range(n))), share)
    assert s.test.num_rows == n_test
    assert rows(s.test) == list(range(n - n_test, n))


def test_split_dispatches_on_config() -> None:
    t = table([1, 1, 2, 2, 2], [0, 1, 2, 3, 4])
    assert split(t, SplitConfig()).protocol == "global-temporal"
    s = split(t, SplitConfig(protocol="per-user-temporal", test_share=0.5))
    assert s.protocol == "per-user-temporal" and rows(s.test) == [1, 3, 4]


def test_guard_raises_on_a_hand_made_leaky_global_split() -> None:
    t = table([1, 2, 3], [0, 10, 20])
    leaky = Split(
        train=t.take([0, 2]),  # the row at minute 20 is after the split time
        test=t.take([1]),
        protocol="global-temporal",
        split_time=T0 + timedelta(minutes=10),
    )
    with pytest.raises(DataError, match=r"leak: train row 1 \(user 3\)"):
        check_no_leak(leaky)
    early_test = Split(
        train=t.take([0]),
        test=t.take([1, 2]),
        protocol="global-temporal",
        split_time=T0 + timedelta(minutes=15),
    )
    with pytest.raises(DataError, match="before the split time"):
        check_no_leak(early_test)
    with pytest.raises(DataError, match="without a split_time"):
        check_no_leak(Split(train=t, test=t.slice(0, 0), protocol="global-temporal"))


def test_guard_raises_on_a_hand_made_leaky_per_user_split() -> None:
    t = table([1, 1, 2, 2], [0, 10, 0, 10])
    leaky = Split(train=t.take([1, 2]), test=t.take([0, 3]), protocol="per-user-temporal")
    with pytest.raises(DataError, match="leak: user 1"):
        check_no_leak(leaky)
    # user 1's train rows are later than user 2's first test row: allowed by this protocol
    ok = Split(train=t.take([0, 2]), test=t.take([1, 3]), protocol="per-user-temporal")
    check_no_leak(ok)
    tie = table([1, 1], [5, 5])
    check_no_leak(Split(train=tie.take([1]), test=tie.take([0]), protocol="per-user-temporal"))


def test_guard_rejects_an_unknown_protocol() -> None:
    t = table([1], [0])
    bad = Split(train=t, test=t, protocol="random")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="unknown split protocol"):
        check_no_leak(bad)


def test_splits_keep_every_column_and_chunked_input() -> None:
    t = table([1, 2, 1, 2], [0, 1, 2, 3])
    chunked = pa.concat_tables([t.slice(0, 2), t.slice(2)])
    for s in (
        global_temporal_split(chunked, test_share=0.5),
        per_user_temporal_split(chunked, 0.5),
    ):
        assert s.train.schema == t.schema and s.test.schema == t.schema
        assert sorted(rows(s.train) + rows(s.test)) == [0, 1, 2, 3]


# Property tests: random users and timestamps (many ties: minutes drawn from a small range).
pairs_st = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 50)), min_size=1, max_size=80)
events_st = pairs_st.map(lambda r: table([u for u, _ in r], [float(m) for _, m in r]))
shares = st.floats(0.05, 0.95)


def _ms(t: pa.Table) -> np.ndarray:
    return np.asarray(t.column("timestamp").cast(pa.int64()).to_numpy())


@settings(max_examples=150, deadline=None)
@given(t=events_st, share=shares)
def test_property_global_split_no_train_row_after_the_cut(t: pa.Table, share: float) -> None:
    s = global_temporal_split(t, test_share=share)
    assert s.train.num_rows + s.test.num_rows == t.num_rows
    assert sorted(rows(s.train) + rows(s.test)) == list(range(t.num_rows))
    assert s.split_time is not None
    cut = int(s.split_time.timestamp() * 1000)
    assert (_ms(s.train) < cut).all() and (_ms(s.test) >= cut).all()
    assert s.test.num_rows >= 1  # the cut is a timestamp in the data
    assert s.test.num_rows >= round(share * t.num_rows) - 1


@settings(max_examples=150, deadline=None)
@given(t=events_st, share=shares)
def test_property_per_user_split_no_train_row_after_the_users_cut(
    t: pa.Table, share: float
) -> None:
    s = per_user_temporal_split(t, share)
    assert s.train.num_rows + s.test.num_rows == t.num_rows
    assert sorted(rows(s.train) + rows(s.test)) == list(range(t.num_rows))
    users, ms = t.column("user_id").to_pylist(), _ms(t).tolist()
    test_rows = set(rows(s.test))
    for u in set(users):
        mine = [i for i, x in enumerate(users) if x == u]
        tr = [ms[i] for i in mine if i not in test_rows]
        te = [ms[i] for i in mine if i in test_rows]
        assert (len(te) >= 1) == (len(mine) >= 2)  # every user with 2+ rows is tested
        assert len(tr) >= 1  # and keeps some training rows
        if te:
            assert max(tr) <= min(te)
    assert s.user_cut is not None
    assert s.user_cut.num_rows == len({u for u in users if users.count(u) >= 2})
