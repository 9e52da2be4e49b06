"""Timestamps as they come: logs without them, constant ones, epoch units mixed within a
column, and time outliers (``mlsd.data.timing``, the interactions loader, validation)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from typer.testing import CliRunner

from mlsd.cli import app
from mlsd.data.loaders import detect_format, load
from mlsd.data.timing import (
    NO_ORDER_NOTE,
    has_time_order,
    late_outliers,
    random_holdout,
    table_ms,
    time_notes,
)
from mlsd.errors import DataValidationError

runner = CliRunner()
DAY_S = 86_400
T2024 = 1_704_067_200  # 2024-01-01T00:00:00Z
NO_TIMESTAMP = datetime(1990, 1, 1, tzinfo=UTC)  # the loader's placeholder: one for all rows


def write_csv(path: Path, columns: dict[str, list[object]]) -> Path:
    pacsv.write_csv(pa.table(columns), path)
    return path


# --- (a) a log without a timestamp column ----------------------------------------------------


def test_interactions_without_timestamps_load_with_one_placeholder_time(tmp_path: Path) -> None:
    f = write_csv(tmp_path / "log.csv", {"user_id": [1, 1, 2], "item_id": [10, 11, 10]})
    assert detect_format(f) == ("interactions", f)
    ds = load(f)
    assert ds.meta == {"source": "interactions", "path": str(f), "timestamps": "none"}
    # one time for every row, not a row-order sequence that would pass for a real order
    assert ds.events.column("timestamp").to_pylist() == [NO_TIMESTAMP] * 3
    assert not has_time_order(table_ms(ds.events))
    assert time_notes(ds) == [NO_ORDER_NOTE]
    w = write_csv(tmp_path / "w.csv", {"user_id": [1, 2], "video_id": [10, 10], "weight": [2, 1]})
    assert load(w).events.column("weight").to_pylist() == [2.0, 1.0]


def test_a_log_with_timestamps_keeps_its_meta_and_order(tmp_path: Path) -> None:
    f = write_csv(
        tmp_path / "log.csv",
        {"user_id": [1, 2], "item_id": [10, 11], "timestamp": [T2024, T2024 + 60]},
    )
    ds = load(f)
    assert ds.meta == {"source": "interactions", "path": str(f)}
    assert has_time_order(table_ms(ds.events)) and time_notes(ds) == []


# --- (c) epoch units decided per value ------------------------------------------------------


def _seconds_log(tmp_path: Path, n: int = 6_000, odd_row: int = 4_321) -> tuple[Path, int]:
    ts = [T2024 + 60 * i for i in range(n)]
    odd = ts[odd_row] * 1000  # one value in milliseconds among seconds
    ts[odd_row] = odd
    users = [i % 50 + 1 for i in range(n)]
    items = [i % 70 + 1 for i in range(n)]
    return write_csv(
        tmp_path / "log.csv", {"user_id": users, "item_id": items, "timestamp": ts}
    ), odd


def test_a_millisecond_value_in_a_seconds_column_is_located_not_a_1970_date(
    tmp_path: Path,
) -> None:
    f, odd = _seconds_log(tmp_path)
    with pytest.raises(DataValidationError) as e:
        load(f)
    (p,) = e.value.problems  # one problem, on one row: not 5,999 rows of 1970 dates
    assert (p.file, p.column, p.row, p.line, p.count) == (str(f), "timestamp", 4_321, 4_323, 1)
    assert p.check == "mixed time units"
    assert str(odd) in p.found and "epoch milliseconds" in p.found
    assert p.expected.startswith("epoch seconds like the rest of the column (5,999 values)")
    msg = str(e.value)
    assert "log.csv" in msg and "column 'timestamp'" in msg and "line 4323" in msg
    assert "1970" not in msg


def test_repair_of_mixed_units_drops_the_odd_row_only(tmp_path: Path) -> None:
    f, _ = _seconds_log(tmp_path)
    ds = load(f, repair=True)
    assert ds.events.num_rows == 5_999
    assert ds.report is not None and ds.report.dropped == {"events: mixed time units": 1}
    assert min(ds.events.column("timestamp").to_pylist()).year == 2024


@pytest.mark.parametrize("as_text", [False, True])
def test_each_unit_alone_and_float_columns_still_convert(tmp_path: Path, as_text: bool) -> None:
    noon = datetime(2024, 3, 1, 12, tzinfo=UTC)
    for scale in (1, 1_000, 1_000_000, 1_000_000_000):
        v = [1_709_294_400 * scale, 1_709_294_400 * scale]
        col: list[object] = [str(x) for x in v] if as_text else v
        f = write_csv(
            tmp_path / f"u{scale}.csv", {"user_id": [1, 2], "item_id": [3, 4], "timestamp": col}
        )
        assert load(f).events.column("timestamp").to_pylist() == [noon, noon]
    f = write_csv(
        tmp_path / "f.csv",
        {"user_id": [1, 2], "item_id": [3, 4], "timestamp": [1_709_294_400.5, 1_709_294_400_500.0]},
    )
    with pytest.raises(DataValidationError, match="epoch seconds like the rest of the column"):
        load(f)


def test_a_zero_default_is_out_of_range_not_a_unit_mixup(tmp_path: Path) -> None:
    f = write_csv(
        tmp_path / "z.csv",
        {"user_id": [1, 2, 3], "item_id": [3, 4, 5], "timestamp": [1_709_294_400_000] * 2 + [0]},
    )
    with pytest.raises(DataValidationError) as e:
        load(f)
    (p,) = e.value.problems
    assert (p.row, p.check) == (2, "timestamp out of range")


# --- (d) time outliers ---------------------------------------------------------------------


def test_late_outliers_on_logs_that_grow_tail_off_or_are_tiny() -> None:
    rng = np.random.default_rng(0)
    steady = np.sort(rng.integers(0, 365 * DAY_S * 1000, 10_000))
    assert late_outliers(steady).count == 0
    growing = (365 * DAY_S * 1000 * np.sqrt(rng.random(10_000))).astype(np.int64)
    assert late_outliers(growing).count == 0
    # a sparse tail: the last 2% of rows over two more years, a few days apart
    tail = np.r_[steady, steady.max() + np.cumsum(rng.integers(1, 5 * DAY_S * 1000, 200))]
    assert late_outliers(tail).count == 0
    few = np.array([0, 10 * 365 * DAY_S * 1000])
    assert late_outliers(few).count == 0  # no bulk to stand out from
    assert late_outliers(np.zeros(0, np.int64)).bulk_end_ms == 0


def test_one_clock_skewed_row_is_an_outlier_and_does_not_set_the_end() -> None:
    ms = np.arange(T2024, T2024 + 300 * DAY_S, DAY_S, dtype=np.int64)[:300] * 1000
    skewed = np.r_[ms[:100], 1_800_000_000_000, ms[100:]]  # 2027 at row 100
    late = late_outliers(skewed)
    assert late.count == 1 and late.first_row == 100
    assert late.bulk_end_ms == int(ms.max())
    text = late.describe(skewed)
    assert "1 time outlier(s)" in text and "row 100" in text and "2027" in text
    # up to 1% of the rows, several skewed rows are all found
    many = np.r_[ms, np.full(3, 1_800_000_000_000)]
    assert late_outliers(many).count == 3
    assert late_outliers(ms).count == 0 and late_outliers(ms).bulk_end_ms == int(ms.max())


def test_cli_validate_warns_about_a_time_outlier(tmp_path: Path) -> None:
    n = 400
    ts = [T2024 + 600 * i for i in range(n)]
    ts[123] = 1_800_000_000  # 2027-01-15, a skewed clock
    f = write_csv(
        tmp_path / "log.csv",
        {"user_id": [i % 30 + 1 for i in range(n)], "item_id": [i % 40 + 1 for i in range(n)],
         "timestamp": ts},
    )  # fmt: skip
    res = runner.invoke(app, ["data", "validate", str(f)])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "warning" in out and "1 time outlier(s)" in out
    assert "row 123 of" in out and "(line 125)" in out and "2027-01-15" in out


def test_cli_validate_notes_a_log_without_timestamps(tmp_path: Path) -> None:
    f = write_csv(tmp_path / "log.csv", {"user_id": [1, 2], "item_id": [10, 11]})
    res = runner.invoke(app, ["data", "validate", str(f)])
    assert res.exit_code == 0, res.output
    assert "no timestamps" in " ".join(res.output.split())


# --- the per-user random split -------------------------------------------------------------


def test_random_holdout_holds_out_whole_pairs_per_user_seeded() -> None:
    rng = np.random.default_rng(1)
    u = np.repeat(np.arange(1, 41), 10)
    v = rng.integers(1, 30, len(u))
    held = random_holdout(u, v, 0.2, seed=3)
    assert np.array_equal(held, random_holdout(u, v, 0.2, seed=3))
    assert not np.array_equal(held, random_holdout(u, v, 0.2, seed=4))
    kept = set(zip(u[~held].tolist(), v[~held].tolist(), strict=True))
    out = set(zip(u[held].tolist(), v[held].tolist(), strict=True))
    assert not kept & out  # a pair is on one side only
    for user in np.unique(u):
        items = np.unique(v[u == user])
        n_out = len({i for (x, i) in out if x == user})
        assert n_out == max(1, min(len(items) - 1, int(np.floor(len(items) * 0.2 + 0.5))))
    # the draw does not depend on the order of the rows
    perm = rng.permutation(len(u))
    assert np.array_equal(random_holdout(u[perm], v[perm], 0.2, seed=3), held[perm])
    assert not random_holdout(np.array([7]), np.array([1]), 0.5, 0).any()  # one item: kept
