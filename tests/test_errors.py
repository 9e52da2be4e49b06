"""``mlsd.errors``: one hierarchy, and problems that say where, what and what was expected."""

from __future__ import annotations

import pytest

from mlsd.errors import ConfigError, DataError, DataValidationError, MlsdError, Problem


def test_hierarchy_and_exit_code() -> None:
    for cls in (ConfigError, DataError, DataValidationError):
        assert issubclass(cls, MlsdError) and issubclass(cls, ValueError)
        assert cls.exit_code == 2
    assert issubclass(DataValidationError, DataError)


def test_row_problem_names_file_column_row_line_and_expectation() -> None:
    p = Problem("d/events.csv", "watch_seconds", 4, "value -3", "watch_seconds >= 0", 1, 6)
    assert str(p) == "d/events.csv, column 'watch_seconds', row 4 (line 6): value -3; " + (
        "expected watch_seconds >= 0"
    )


def test_row_problem_of_parquet_counts_rows() -> None:
    p = Problem("e.parquet", "video_id", 0, "value 'x'", "an integer (int64)", 1234)
    assert str(p) == (
        "e.parquet, column 'video_id', row 0: value 'x'; expected an integer (int64) "
        "(1,234 rows in all)"
    )


def test_column_and_file_problems() -> None:
    missing = Problem("e.csv", "timestamp", None, "required column missing", "it", line=1)
    assert str(missing) == (
        "e.csv, column 'timestamp', header (line 1): required column missing; expected it"
    )
    empty = Problem("e.parquet", None, None, "empty file", "at least one row", check="empty")
    assert str(empty) == "e.parquet: empty file; expected at least one row"


def test_validation_error_lists_every_problem() -> None:
    a = Problem("e.csv", "x", 1, "value 1", "2", line=3)
    b = Problem("v.csv", None, None, "empty file", "rows")
    one = DataValidationError([a])
    assert str(one) == str(a) and one.problems == [a]
    two = DataValidationError([a, b], note="cannot repair")
    assert str(two) == f"2 problems:\n  - {a}\n  - {b}\n(cannot repair)"
    assert two.note == "cannot repair"
    with pytest.raises(DataError):
        raise two
