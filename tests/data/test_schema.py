"""Contract tests of ``mlsd.data.schema.validate``: every problem kind, in CSV and Parquet input,
located by file, column, row (and CSV line) and saying what was expected."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlsd.data.dataset import is_csv, read_table
from mlsd.data.schema import (
    EVENT_TYPES,
    EVENTS,
    SCHEMAS,
    USERS,
    VIDEOS,
    ValidationReport,
    conform,
    validate,
)
from mlsd.errors import DataError, DataValidationError, Problem

FORMATS = ["csv", "parquet"]
ISO = "2024-03-01T12:00:00Z"


def base() -> dict[str, dict[str, list[Any]]]:
    """A small valid dataset as columns of Python values (all strings, as a CSV holds them)."""
    return {
        "users": {
            "user_id": ["1", "2", "3"],
            "signup_time": ["2023-01-01T00:00:00Z", "2023-02-01", "1672531200"],
            "country": ["US", "FR", None],
            "allows_explicit": ["true", "0", "no"],
        },
        "videos": {
            "video_id": ["10", "11", "12"],
            "creator_id": ["7", "7", "8"],
            "duration_s": ["100", "50.5", "200"],
            "upload_time": ["2023-06-01T00:00:00+02:00", "1685577600000", "2023-06-03"],
            "topics": ["comedy|music", "news", None],
            "is_explicit": ["false", "1", "yes"],
            "title": ["a", "b", "c"],
        },
        "events": {
            "user_id": ["1", "1", "2", "2", "3", "3"],
            "video_id": ["10", "11", "10", "12", "11", "12"],
            "timestamp": [ISO, ISO, "2024-03-01T12:00:01Z", ISO, ISO, ISO],
            "event_type": ["impression", "play", "play", "like", "play", "share"],
            "watch_seconds": [None, "30", "100", None, "52", None],
            "position": ["1", None, None, None, None, None],
        },
    }


def write(path: Path, cols: dict[str, list[Any]]) -> Path:
    """Write columns as CSV text (None -> empty field) or as Parquet (strings stay strings).

    Parquet files get 2-row row groups, so the tables read back have chunked columns.
    """
    if path.suffix == ".csv":
        names = list(cols)
        n = len(next(iter(cols.values()))) if cols else 0
        lines = [",".join(names)]
        for i in range(n):
            lines.append(",".join("" if cols[c][i] is None else str(cols[c][i]) for c in names))
        path.write_text("\n".join(lines) + "\n")
    else:
        pq.write_table(pa.table(cols), path, row_group_size=2)
    return path


def run(
    tmp_path: Path,
    fmt: str,
    data: dict[str, dict[str, list[Any]]] | None = None,
    *,
    repair: bool = False,
) -> tuple[dict[str, pa.Table], ValidationReport]:
    """Write ``data`` as files of format ``fmt``, read them back and validate."""
    data = base() if data is None else data
    tables, files = {}, {}
    for kind, cols in data.items():
        f = write(tmp_path / f"{kind}.{fmt}", cols)
        tables[kind], files[kind] = read_table(f), str(f)
    return validate(tables, files, repair=repair, csv={k: is_csv(f) for k, f in files.items()})


def problems(tmp_path: Path, fmt: str, data: dict[str, dict[str, list[Any]]]) -> list[Problem]:
    with pytest.raises(DataValidationError) as ei:
        run(tmp_path, fmt, data)
    return ei.value.problems


def only(tmp_path: Path, fmt: str, data: dict[str, dict[str, list[Any]]]) -> Problem:
    ps = problems(tmp_path, fmt, data)
    assert len(ps) == 1, [str(p) for p in ps]
    return ps[0]


def assert_located(
    p: Problem, tmp_path: Path, fmt: str, kind: str, column: str | None, row: int | None
) -> None:
    msg = str(p)
    assert p.file == str(tmp_path / f"{kind}.{fmt}")
    assert msg.startswith(p.file)
    assert p.column == column
    if column is not None:
        assert f"column '{column}'" in msg
    assert p.row == row
    if row is not None:
        assert f"row {row}" in msg
        if fmt == "csv":
            assert p.line == row + 2
            assert f"(line {row + 2})" in msg
        else:
            assert p.line is None
            assert "line" not in msg
    assert "expected" in msg


# --- valid data -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_valid_dataset_passes_and_conforms_to_the_schemas(tmp_path: Path, fmt: str) -> None:
    out, report = run(tmp_path, fmt)
    assert report.ok and report.dropped == {} and report.problems == []
    assert report.rows == {"users": 3, "videos": 3, "events": 6}
    for kind, t in out.items():
        assert t.schema == SCHEMAS[kind], kind
        assert all(c.num_chunks == 1 for c in t.columns)
    u, v, e = out["users"], out["videos"], out["events"]
    assert u.column("user_id").to_pylist() == [1, 2, 3]
    assert u.column("signup_time").to_pylist() == [
        datetime(2023, 1, 1, tzinfo=UTC),
        datetime(2023, 2, 1, tzinfo=UTC),
        datetime(2023, 1, 1, tzinfo=UTC),  # epoch seconds
    ]
    assert u.column("allows_explicit").to_pylist() == [True, False, False]
    assert u.column("country").to_pylist() == ["US", "FR", None]
    assert v.column("upload_time").to_pylist() == [
        datetime(2023, 5, 31, 22, tzinfo=UTC),  # +02:00 converted to UTC
        datetime(2023, 6, 1, tzinfo=UTC),  # epoch milliseconds
        datetime(2023, 6, 3, tzinfo=UTC),
    ]
    assert v.column("topics").to_pylist() == [["comedy", "music"], ["news"], None]
    assert v.column("is_explicit").to_pylist() == [False, True, True]
    assert v.column("duration_s").to_pylist() == [100.0, 50.5, 200.0]
    assert v.column("creator_id").to_pylist() == [7, 7, 8]
    assert e.column("timestamp")[2].as_py() == datetime(2024, 3, 1, 12, 0, 1, tzinfo=UTC)
    assert e.column("watch_seconds").to_pylist() == [None, 30.0, 100.0, None, 52.0, None]
    assert e.column("position").to_pylist() == [1, None, None, None, None, None]
    # optional columns absent from the input are present, all null
    assert e.column("surface").null_count == 6
    assert v.column("language").null_count == 3


@pytest.mark.parametrize("fmt", FORMATS)
def test_ids_written_as_whole_floats_are_accepted(tmp_path: Path, fmt: str) -> None:
    data = base()
    data["events"]["video_id"] = ["10.0", "11.0", "10", "12.0", "11", "12"]
    out, _ = run(tmp_path, fmt, data)
    assert out["events"].column("video_id").to_pylist() == [10, 11, 10, 12, 11, 12]


def test_native_parquet_types_are_accepted(tmp_path: Path) -> None:
    ts = pa.array([datetime(2024, 3, 1, 12)] * 2, type=pa.timestamp("us"))  # naive -> UTC
    tables = {
        "videos": pa.table(
            {
                "video_id": pa.array([10.0, 11.0]),  # pandas writes int ids with NaN as floats
                "duration_s": pa.array([100, 50], type=pa.int32()),
                "topics": pa.array([["a", "b"], []], type=pa.large_list(pa.large_string())),
                "is_explicit": pa.array([0, 1], type=pa.int8()),
            }
        ),
        "events": pa.table(
            {
                "user_id": pa.array([1, 2], type=pa.uint32()),
                "video_id": pa.array([10, 11]),
                "timestamp": ts,
                "event_type": pa.array(["play", "play"]).dictionary_encode(),
                "watch_seconds": pa.array([1.5, float("nan")]),  # NaN means missing
            }
        ),
    }
    path = tmp_path / "x.parquet"
    for k, t in tables.items():
        pq.write_table(t, path)
        tables[k] = pq.read_table(path)
    out, report = validate(tables)
    assert report.ok
    assert out["events"].schema == EVENTS and out["videos"].schema == VIDEOS
    assert out["events"].column("timestamp")[0].as_py() == datetime(2024, 3, 1, 12, tzinfo=UTC)
    assert out["events"].column("watch_seconds").to_pylist() == [1.5, None]
    assert out["events"].column("event_type").to_pylist() == ["play", "play"]
    assert out["videos"].column("topics").to_pylist() == [["a", "b"], []]
    assert out["videos"].column("is_explicit").to_pylist() == [False, True]


def test_timestamps_stored_as_strings_in_parquet(tmp_path: Path) -> None:
    data = base()
    data["events"]["timestamp"] = [
        "2024-03-01T12:00:00Z",
        "2024-03-01 12:00:00",
        "1709294400",  # epoch seconds among ISO text
        "2024-03-01T12:00",
        " 2024-03-01T14:00:00+02:00 ",
        "2024-03-01T12:00:00.000Z",
    ]
    out, _ = run(tmp_path, "parquet", data)
    noon = datetime(2024, 3, 1, 12, tzinfo=UTC)
    assert out["events"].column("timestamp").to_pylist() == [noon] * 6


def test_epoch_unit_is_decided_per_value_so_a_unit_mixup_is_caught(tmp_path: Path) -> None:
    data = base()
    data["events"]["timestamp"] = ["1709294400000"] * 5 + ["1709294400"]  # ms, then seconds
    p = only(tmp_path, "parquet", data)
    assert (p.row, p.check) == (5, "mixed time units")  # not a 1970 date
    assert p.found == "value '1709294400', a time in epoch seconds (2024-03-01T12:00:00+00:00)"
    assert p.expected.startswith("epoch milliseconds like the rest of the column (5 values)")


def test_chunked_tables_and_extra_columns(tmp_path: Path) -> None:
    raw = {k: read_table(write(tmp_path / f"{k}.parquet", c)) for k, c in base().items()}
    raw["events"] = pa.concat_tables([raw["events"]] * 3).append_column(
        "extra", pa.array(["x"] * 18)
    )
    raw["events"] = raw["events"].set_column(
        raw["events"].schema.get_field_index("timestamp"),
        "timestamp",
        pa.chunked_array([["2024-03-01T12:00:00Z"] * 5, [], [ISO] * 13]),
    )
    out, report = validate(raw)
    assert report.ok and out["events"].num_rows == 18
    assert "extra" not in out["events"].column_names


def test_tables_not_given_are_not_checked_against() -> None:
    ev = pa.table({"user_id": [1], "video_id": [99], "timestamp": [ISO], "event_type": ["play"]})
    out, report = validate({"events": ev, "videos": None})
    assert report.ok and set(out) == {"events"}
    assert out["events"].schema == EVENTS


def test_unknown_table_kind_is_an_error() -> None:
    with pytest.raises(DataError, match=r"unknown table kind.*video.*expected"):
        validate({"video": pa.table({"video_id": [1]})})


def test_conform_keeps_row_count_and_schema_for_every_kind() -> None:
    for kind, schema in SCHEMAS.items():
        t, col = conform(pa.table({schema[0].name: ["1", "2"]}), kind)
        assert t.schema == schema and t.num_rows == 2
        assert not col.drop.any()


# --- each problem kind, located ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_column(tmp_path: Path, fmt: str) -> None:
    data = base()
    del data["events"]["timestamp"]
    p = only(tmp_path, fmt, data)
    assert_located(p, tmp_path, fmt, "events", "timestamp", None)
    assert p.check == "missing"
    assert "missing" in p.found and "video_id" in p.found  # lists the columns that are there
    assert p.expected == "a column named 'timestamp'"
    if fmt == "csv":
        assert p.line == 1 and "header (line 1)" in str(p)


@pytest.mark.parametrize("fmt", FORMATS)
def test_header_only_file_is_empty(tmp_path: Path, fmt: str) -> None:
    data = base()
    data["users"] = {c: [] for c in data["users"]}
    p = only(tmp_path, fmt, data)
    assert_located(p, tmp_path, fmt, "users", None, None)
    assert p.check == "empty" and "empty" in str(p) and "at least one" in p.expected
    assert ("header only" in p.found) == (fmt == "csv")


@pytest.mark.parametrize("fmt", FORMATS)
def test_wrong_dtype(tmp_path: Path, fmt: str) -> None:
    data = base()
    data["events"]["video_id"][3] = "abc"
    data["events"]["video_id"][5] = "12.5"  # a fractional id is no id
    p = only(tmp_path, fmt, data)
    assert_located(p, tmp_path, fmt, "events", "video_id", 3)
    assert p.check == "dtype" and p.count == 2
    assert "'abc'" in p.found and "integer" in p.expected
    assert "(2 rows in all)" in str(p)


@pytest.mark.parametrize("fmt", FORMATS)
def test_null_in_required_column(tmp_path: Path, fmt: str) -> None:
    data = base()
    data["events"]["user_id"][4] = None
    p = only(tmp_path, fmt, data)
    assert_located(p, tmp_path, fmt, "events", "user_id", 4)
    assert p.check == "null" and p.found == "missing value"


@pytest.mark.parametrize("fmt", FORMATS)
def test_negative_watch_seconds(tmp_path: Path, fmt: str) -> None:
    data = base()
    data["events"]["watch_seconds"][2] = "-5"
    p = only(tmp_path, fmt, data)
    assert_located(p, tmp_path, fmt, "events", "watch_seconds", 2)
    assert p.check == "negative watch seconds" and "-5" in p.found and ">= 0" in p.expected


@pytest.mark.parametrize("fmt", FORMATS)
def test_negative_duration(tmp_path: Path, fmt: str) -> None:
    data = base()
    data["videos"]["duration_s"][1] = "-1.3"
    p = only(tmp_path, fmt, data)
    assert_located(p, tmp_path, fmt, "videos", "duration_s", 1)
    assert p.found == "value -1.3"  # float32 printed without binary noise


@pytest.mark.parametrize("fmt", FORMATS)
def test_watch_beyond_duration_with_tolerance(tmp_path: Path, fmt: str) -> None:
    data = base()
    data["events"]["watch_seconds"][1] = "54.9"  # video 11: 50.5 s; limit 50.5 * 1.05 + 2
    run(tmp_path, fmt, data)
    data["events"]["watch_seconds"][1] = "56"
    p = only(tmp_path, fmt, data)
    assert_located(p, tmp_path, fmt, "events", "watch_seconds", 1)
    assert p.check == "watch beyond duration"
    assert "56" in p.found and "video 11" in p.found and "50.5" in p.found
    assert "duration_s" in p.expected and "tolerance" in p.expected


@pytest.mark.parametrize("fmt", FORMATS)
def test_event_for_unknown_video(tmp_path: Path, fmt: str) -> None:
    data = base()
    data["events"]["video_id"][4] = "99"
    p = only(tmp_path, fmt, data)
    assert_located(p, tmp_path, fmt, "events", "video_id", 4)
    assert p.check == "unknown video" and p.found == "value 99"
    assert "videos table" in p.expected and str(tmp_path / f"videos.{fmt}") in p.expected


@pytest.mark.parametrize("fmt", FORMATS)
def test_event_for_unknown_user(tmp_path: Path, fmt: str) -> None:
    data = base()
    data["events"]["user_id"][0] = "42"
    p = only(tmp_path, fmt, data)
    assert_located(p, tmp_path, fmt, "events", "user_id", 0)
    assert p.check == "unknown user" and "users table" in p.expected


@pytest.mark.parametrize("fmt", FORMATS)
def test_video_of_unknown_creator(tmp_path: Path, fmt: str) -> None:
    data = base()
    data["creators"] = {"creator_id": ["7"]}
    p = only(tmp_path, fmt, data)
    assert_located(p, tmp_path, fmt, "videos", "creator_id", 2)
    assert p.check == "unknown creator" and "creators table" in p.expected


@pytest.mark.parametrize("fmt", FORMATS)
def test_duplicate_video_id(tmp_path: Path, fmt: str) -> None:
    data = base()
    data["videos"]["video_id"][2] = "10"
    data["events"]["video_id"] = ["10"] * 6
    p = only(tmp_path, fmt, data)
    assert_located(p, tmp_path, fmt, "videos", "video_id", 2)
    assert p.check == "duplicate id" and "unique video_id" in p.expected
    earlier = "row 0 (line 2)" if fmt == "csv" else "row 0"
    assert p.found == f"value 10, already at {earlier}"


@pytest.mark.parametrize("fmt", FORMATS)
def test_duplicate_check_ignores_unconvertible_and_null_ids(tmp_path: Path, fmt: str) -> None:
    # a bad id becomes null (filled with 0 internally): it must not make a real id 0 a duplicate
    data = base()
    data["users"] = {"user_id": ["abc", "0", None, "1", "2", "3"], "country": ["US"] * 6}
    ps = problems(tmp_path, fmt, data)
    assert [(p.check, p.row) for p in ps] == [("dtype", 0), ("null", 2)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_unparseable_timestamp(tmp_path: Path, fmt: str) -> None:
    data = base()
    data["events"]["timestamp"][3] = "yesterday"
    p = only(tmp_path, fmt, data)
    assert_located(p, tmp_path, fmt, "events", "timestamp", 3)
    assert p.check == "dtype" and "'yesterday'" in p.found
    assert "ISO-8601" in p.expected and "epoch" in p.expected


@pytest.mark.parametrize("fmt", FORMATS)
def test_one_unparseable_timestamp_among_epochs_is_located(tmp_path: Path, fmt: str) -> None:
    data = base()
    data["events"]["timestamp"] = ["1709294400", "1709294401", "x", "1709294403", "", "1709294400"]
    ps = problems(tmp_path, fmt, data)
    assert [(p.column, p.row, p.count, p.check) for p in ps] == [
        ("timestamp", 2, 1, "dtype"),  # only "x": the epochs around it parse
        ("timestamp", 4, 1, "null"),  # the empty field is a missing value, not a bad one
    ]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("value", ["0", "1980-01-01T00:00:00Z", "2200-01-01", "99999999999"])
def test_timestamp_out_of_range(tmp_path: Path, fmt: str, value: str) -> None:
    data = base()
    data["events"]["timestamp"][5] = value
    p = only(tmp_path, fmt, data)
    assert_located(p, tmp_path, fmt, "events", "timestamp", 5)
    assert p.check == "timestamp out of range" and "1990-01-01" in p.expected


@pytest.mark.parametrize("fmt", FORMATS)
def test_unknown_event_type_and_bad_position(tmp_path: Path, fmt: str) -> None:
    data = base()
    data["events"]["event_type"][1] = "Play"
    data["events"]["position"][0] = "0"
    ps = problems(tmp_path, fmt, data)
    assert [(p.column, p.row, p.check) for p in ps] == [
        ("event_type", 1, "unknown event type"),
        ("position", 0, "bad position"),
    ]
    assert "one of impression, play" in ps[0].expected


@pytest.mark.parametrize("fmt", FORMATS)
def test_position_beyond_int16_is_a_dtype_problem_not_a_wrap(tmp_path: Path, fmt: str) -> None:
    data = base()
    data["events"]["position"][0] = "40000"
    p = only(tmp_path, fmt, data)
    assert (p.column, p.row, p.check) == ("position", 0, "dtype")
    assert p.found in ("value 40000", "value '40000'")  # as read: CSV infers ints


# --- several problems, reported together ------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_problem_is_reported_at_once(tmp_path: Path, fmt: str) -> None:
    data = base()
    data["users"]["user_id"][2] = "1"  # duplicate user
    data["videos"]["duration_s"][0] = "-3"  # negative duration
    data["events"]["watch_seconds"][1] = "-1"  # negative watch
    data["events"]["watch_seconds"][4] = "-2"
    data["events"]["video_id"][3] = "77"  # unknown video
    data["events"]["timestamp"][5] = "soon"  # unparseable
    with pytest.raises(DataValidationError) as ei:
        run(tmp_path, fmt, data)
    got = [(Path(p.file).stem, p.column, p.row, p.check, p.count) for p in ei.value.problems]
    assert got == [
        ("users", "user_id", 2, "duplicate id", 1),
        ("videos", "duration_s", 0, "negative duration", 1),
        ("events", "timestamp", 5, "dtype", 1),
        ("events", "watch_seconds", 1, "negative watch seconds", 2),
        ("events", "video_id", 3, "unknown video", 1),
        # user 3's only row was replaced by a duplicate of user 1: user 3 is unknown now
        ("events", "user_id", 4, "unknown user", 2),
    ]
    msg = str(ei.value)
    assert msg.startswith(f"{len(got)} problems:")
    assert all(str(p) in msg for p in ei.value.problems)


@pytest.mark.parametrize("fmt", FORMATS)
def test_bad_catalog_row_is_not_reported_again_for_each_event(tmp_path: Path, fmt: str) -> None:
    data = base()
    data["videos"]["duration_s"][0] = "-1"  # video 10 is bad, but it exists
    p = only(tmp_path, fmt, data)
    assert (p.column, p.check) == ("duration_s", "negative duration")


@pytest.mark.parametrize("fmt", FORMATS)
def test_column_problems_are_listed_first_with_row_problems(tmp_path: Path, fmt: str) -> None:
    data = base()
    data["videos"]["duration_s"][0] = "-1"
    del data["events"]["event_type"]
    ps = problems(tmp_path, fmt, data)
    assert [(p.column, p.check) for p in ps] == [
        ("event_type", "missing"),
        ("duration_s", "negative duration"),
    ]


# --- repair -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_repair_drops_exactly_the_offending_rows_and_counts_them(tmp_path: Path, fmt: str) -> None:
    data = base()
    data["events"]["watch_seconds"][1] = "-1"  # row 1: negative watch
    data["events"]["video_id"][2] = "99"  # row 2: unknown video
    data["events"]["timestamp"][3] = "x"  # row 3: unparseable ...
    data["events"]["event_type"][3] = "poke"  # ... and unknown type: counted once
    out, report = run(tmp_path, fmt, data, repair=True)
    ev = out["events"]
    assert ev.schema == EVENTS
    assert ev.num_rows == 3
    assert ev.column("user_id").to_pylist() == [1, 3, 3]
    assert ev.column("event_type").to_pylist() == ["impression", "play", "share"]
    # row 3 has two problems: both are reported, the row is counted once (first reason)
    assert report.dropped == {
        "events: dtype": 1,
        "events: negative watch seconds": 1,
        "events: unknown video": 1,
    }
    assert [p.check for p in report.problems] == [
        "dtype",
        "unknown event type",
        "negative watch seconds",
        "unknown video",
    ]
    assert report.n_dropped == 3
    assert report.rows == {"users": 3, "videos": 3, "events": 3}
    assert not report.ok
    assert "dropped 3 rows" in report.summary() and "1 (events: unknown video)" in report.summary()


@pytest.mark.parametrize("fmt", FORMATS)
def test_repair_cascades_to_rows_referencing_dropped_rows(tmp_path: Path, fmt: str) -> None:
    data = base()
    data["creators"] = {"creator_id": ["7"]}  # video 12 has creator 8: unknown
    data["videos"]["duration_s"][1] = "-1"  # video 11 is bad
    out, report = run(tmp_path, fmt, data, repair=True)
    assert out["videos"].column("video_id").to_pylist() == [10]
    assert out["events"].column("video_id").to_pylist() == [10, 10]
    assert report.dropped == {
        "videos: negative duration": 1,
        "videos: unknown creator": 1,
        "events: unknown video": 4,
    }
    unknown = [p for p in report.problems if p.check == "unknown video"]
    assert "among its valid rows" in unknown[0].expected


@pytest.mark.parametrize("fmt", FORMATS)
def test_repair_keeps_the_first_of_duplicate_ids(tmp_path: Path, fmt: str) -> None:
    data = base()
    data["videos"]["video_id"][2] = "10"
    data["videos"]["title"][2] = "dup"
    data["events"]["video_id"] = ["10", "11", "10", "11", "11", "10"]
    out, report = run(tmp_path, fmt, data, repair=True)
    assert out["videos"].column("title").to_pylist() == ["a", "b"]
    assert out["events"].num_rows == 6
    assert report.dropped == {"videos: duplicate id": 1}


@pytest.mark.parametrize("fmt", FORMATS)
def test_repair_cannot_fix_column_level_problems(tmp_path: Path, fmt: str) -> None:
    data = base()
    del data["events"]["video_id"]
    data["events"]["watch_seconds"][1] = "-1"
    with pytest.raises(DataValidationError) as ei:
        run(tmp_path, fmt, data, repair=True)
    assert [p.check for p in ei.value.problems] == ["missing"]
    assert "cannot be repaired" in str(ei.value)


@pytest.mark.parametrize("fmt", FORMATS)
def test_repair_of_empty_input_still_fails(tmp_path: Path, fmt: str) -> None:
    data = base()
    data["events"] = {c: [] for c in data["events"]}
    with pytest.raises(DataValidationError, match="empty"):
        run(tmp_path, fmt, data, repair=True)


@pytest.mark.parametrize("fmt", FORMATS)
def test_repair_that_leaves_no_events_fails(tmp_path: Path, fmt: str) -> None:
    data = base()
    data["events"]["video_id"] = ["99"] * 6
    with pytest.raises(DataValidationError) as ei:
        run(tmp_path, fmt, data, repair=True)
    first = ei.value.problems[0]
    assert first.check == "empty" and "no valid rows left after repair" in first.found
    assert "6 (events: unknown video)" in first.found
    assert ei.value.problems[1].check == "unknown video"


def test_repair_of_valid_data_changes_nothing(tmp_path: Path) -> None:
    plain, _ = run(tmp_path, "parquet")
    repaired, report = run(tmp_path, "parquet", repair=True)
    assert report.ok and report.dropped == {} and report.n_dropped == 0
    assert all(repaired[k].equals(plain[k]) for k in plain)


# --- scale ------------------------------------------------------------------------------------


def test_validation_is_vectorised() -> None:
    """A million events (ids as text, ISO timestamps as text) validate in seconds, not minutes.

    A per-row Python loop over the columns would take far longer than the bound.
    """
    n = 1_000_000
    rng = np.random.default_rng(0)
    vids = rng.integers(0, 10_000, n)
    ts = (1_709_294_400 + rng.integers(0, 86_400 * 30, n)).astype("datetime64[s]")
    ev = pa.table(
        {
            "user_id": pa.array(rng.integers(0, 50_000, n).astype(str)),
            "video_id": pa.array(np.where(np.arange(n) == n - 1, "oops", vids.astype(str))),
            "timestamp": pa.array(np.datetime_as_string(ts, unit="s")),
            "event_type": pa.array(np.array(EVENT_TYPES[:3])[rng.integers(0, 3, n)]),
            "watch_seconds": pa.array(rng.random(n) * 30),
        }
    )
    videos = pa.table({"video_id": np.arange(10_000), "duration_s": np.full(10_000, 60.0)})
    users = pa.table({"user_id": np.arange(50_000)})
    start = time.perf_counter()
    out, report = validate({"events": ev, "videos": videos, "users": users}, repair=True)
    elapsed = time.perf_counter() - start
    assert report.dropped == {"events: dtype": 1}
    assert out["events"].num_rows == n - 1
    assert elapsed < 30, f"validation of {n:,} events took {elapsed:.1f} s"


def test_users_schema_is_the_one_documented() -> None:
    assert USERS.field("user_id").nullable is False
    assert EVENTS.names[:4] == ["user_id", "video_id", "timestamp", "event_type"]


def test_report_summary() -> None:
    r = ValidationReport(rows={"events": 1, "videos": 2}, dropped={"events: null": 1})
    assert r.summary() == "events: 1 row; videos: 2 rows; dropped 1 row: 1 (events: null)"
    r = ValidationReport(rows={"events": 1_500}, dropped={"a": 2, "b": 1_000})
    assert r.summary() == "events: 1,500 rows; dropped 1,002 rows: 2 (a), 1,000 (b)"
    assert r.n_dropped == 1_002
