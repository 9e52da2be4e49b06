"""``mlsd.data.dataset``: reading files, finding a dataset's files, loading and validating it,
and writing it back atomically and deterministically."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlsd.data.dataset import (
    Dataset,
    derive_entities,
    find_files,
    from_tables,
    is_csv,
    load_dataset,
    read_table,
)
from mlsd.data.schema import CREATORS, EVENTS, SCHEMAS, USERS, VIDEOS
from mlsd.errors import DataError, DataValidationError

ISO = "2024-03-01T12:00:00Z"
EVENTS_CSV = (
    "user_id,video_id,timestamp,event_type,watch_seconds\n"
    f"1,10,{ISO},play,30\n"
    f"2,11,{ISO},like,\n"
    f"2,10,{ISO},play,12.5\n"
)
VIDEOS_CSV = "video_id,duration_s,topics\n10,60,comedy|music\n11,120,news\n"
USERS_CSV = "user_id,country\n1,US\n2,FR\n"


def make_dir(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def csv_dir(path: Path, **overrides: str) -> Path:
    files = {"events.csv": EVENTS_CSV, "videos.csv": VIDEOS_CSV, "users.csv": USERS_CSV}
    files.update({k.replace("_", "."): v for k, v in overrides.items()})
    return make_dir(path, files)


def tables_of(ds: Dataset) -> dict[str, Any]:
    return {k: t.to_pydict() for k, t in ds.tables().items()}


# --- read_table -------------------------------------------------------------------------------


def test_read_table_csv_parquet_tsv_and_gzip(tmp_path: Path) -> None:
    csv = make_dir(tmp_path, {"e.csv": "a,b\n1,x\n"}) / "e.csv"
    assert read_table(csv).to_pydict() == {"a": [1], "b": ["x"]}
    tsv = make_dir(tmp_path, {"e.tsv": "a\tb\n1\tx\n"}) / "e.tsv"
    assert read_table(tsv).to_pydict() == {"a": [1], "b": ["x"]}
    gz = tmp_path / "e.csv.gz"
    gz.write_bytes(gzip.compress(b"a,b\n1,x\n"))
    assert read_table(gz).to_pydict() == {"a": [1], "b": ["x"]}
    pq.write_table(pa.table({"a": [1]}), tmp_path / "e.parquet")
    assert read_table(tmp_path / "e.parquet").to_pydict() == {"a": [1]}


def test_read_table_keeps_empty_fields_null_but_quoted_empty_strings(tmp_path: Path) -> None:
    f = make_dir(tmp_path, {"e.csv": 'a,b\n1,""\n,x\n'}) / "e.csv"
    assert read_table(f).to_pydict() == {"a": [1, None], "b": ["", "x"]}


@pytest.mark.parametrize("name", ["events.csv", "events.parquet", "events.csv.gz"])
def test_zero_byte_file_is_a_clear_empty_error(tmp_path: Path, name: str) -> None:
    f = tmp_path / name
    f.write_bytes(b"")
    with pytest.raises(DataError, match=r"events\.\S+: empty file \(0 bytes\)") as ei:
        read_table(f)
    assert str(f) in str(ei.value)


def test_blank_csv_is_a_clear_empty_error(tmp_path: Path) -> None:
    f = make_dir(tmp_path, {"events.csv": "\n\n"}) / "events.csv"
    with pytest.raises(DataError, match=r"events\.csv: empty file \(no header line\)"):
        read_table(f)


def test_header_only_csv_reads_as_zero_rows_and_fails_validation(tmp_path: Path) -> None:
    d = csv_dir(tmp_path, events_csv="user_id,video_id,timestamp,event_type\n")
    assert read_table(d / "events.csv").num_rows == 0
    with pytest.raises(DataValidationError) as ei:
        load_dataset(d)
    (p,) = ei.value.problems
    assert p.file == str(d / "events.csv") and p.check == "empty"
    assert str(ei.value) == f"{d / 'events.csv'}: empty file (header only, no rows); " + (
        "expected at least one events row"
    )


def test_read_table_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_table(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="is a directory"):
        read_table(tmp_path)
    bad = make_dir(tmp_path, {"x.json": "{}", "y.parquet": "not parquet"})
    with pytest.raises(DataError, match=r"x\.json: unsupported file type"):
        read_table(bad / "x.json")
    with pytest.raises(DataError, match=r"y\.parquet: cannot be read as Parquet"):
        read_table(bad / "y.parquet")
    ragged = make_dir(tmp_path, {"r.csv": "a,b\n1,2\n1,2,3\n"}) / "r.csv"
    with pytest.raises(DataError, match=r"r\.csv: cannot be read as CSV.*Expected 2 columns"):
        read_table(ragged)


def test_is_csv() -> None:
    assert is_csv("a/events.csv") and is_csv("e.CSV.gz") and is_csv("e.tsv")
    assert not is_csv("e.parquet") and not is_csv("E.PQ")


# --- find_files -------------------------------------------------------------------------------


def test_find_files_in_a_directory(tmp_path: Path) -> None:
    d = csv_dir(tmp_path / "d")
    pq.write_table(pa.table({"creator_id": [1]}), d / "creators.parquet")
    (d / "notes.txt").write_text("ignored")
    assert find_files(d) == {
        "events": d / "events.csv",
        "videos": d / "videos.csv",
        "users": d / "users.csv",
        "creators": d / "creators.parquet",
    }
    # Parquet wins over CSV when both are there
    pq.write_table(pa.table({"video_id": [1]}), d / "videos.parquet")
    assert find_files(d)["videos"] == d / "videos.parquet"


def test_find_files_for_a_file_and_errors(tmp_path: Path) -> None:
    f = make_dir(tmp_path, {"log.csv": EVENTS_CSV}) / "log.csv"
    assert find_files(f) == {"events": f}
    with pytest.raises(DataError, match="no such file or directory"):
        find_files(tmp_path / "missing")
    with pytest.raises(DataError, match=r"no events file; expected events\.parquet.*log\.csv"):
        find_files(tmp_path)


# --- load_dataset / from_tables ---------------------------------------------------------------


def test_load_csv_directory(tmp_path: Path) -> None:
    ds = load_dataset(csv_dir(tmp_path))
    assert ds.events.schema == EVENTS and ds.videos.schema == VIDEOS and ds.users.schema == USERS
    assert ds.creators is None
    assert ds.events.column("watch_seconds").to_pylist() == [30.0, None, 12.5]
    assert ds.videos.column("topics").to_pylist() == [["comedy", "music"], ["news"]]
    assert ds.report is not None and ds.report.ok
    assert ds.files == {k: str(tmp_path / f"{k}.csv") for k in ("events", "videos", "users")}


def test_load_events_only_derives_videos_and_users(tmp_path: Path) -> None:
    f = make_dir(tmp_path, {"log.csv": EVENTS_CSV}) / "log.csv"
    ds = load_dataset(f)
    assert ds.videos.schema == VIDEOS and ds.users.schema == USERS
    assert ds.videos.column("video_id").to_pylist() == [10, 11]
    assert ds.users.column("user_id").to_pylist() == [1, 2]
    assert ds.videos.column("duration_s").null_count == 2


def test_derive_entities_from_chunked_events() -> None:
    ev = pa.table({"user_id": [3, 1, 3], "video_id": [5, 5, 4]}).cast(
        pa.schema([("user_id", pa.int64()), ("video_id", pa.int64())])
    )
    ev = pa.concat_tables([ev, ev])
    assert derive_entities(ev, "users").column("user_id").to_pylist() == [1, 3]
    assert derive_entities(ev, "videos").schema == VIDEOS


def test_explicit_paths_override_the_directory(tmp_path: Path) -> None:
    d = csv_dir(tmp_path / "d")
    other = make_dir(tmp_path / "o", {"v.csv": "video_id\n10\n11\n12\n"}) / "v.csv"
    ds = load_dataset(d, videos=other)
    assert ds.videos.num_rows == 3 and ds.files["videos"] == str(other)


def test_load_reports_problems_of_every_file(tmp_path: Path) -> None:
    d = csv_dir(tmp_path, videos_csv="video_id,duration_s\n10,60\n10,120\n")
    with pytest.raises(DataValidationError) as ei:
        load_dataset(d)
    got = [(Path(p.file).name, p.column, p.row, p.line, p.check) for p in ei.value.problems]
    assert got == [
        ("videos.csv", "video_id", 1, 3, "duplicate id"),
        ("events.csv", "video_id", 1, 3, "unknown video"),
    ]


def test_load_with_repair(tmp_path: Path) -> None:
    d = csv_dir(tmp_path, users_csv="user_id\n1\n")
    ds = load_dataset(d, repair=True)
    assert ds.events.column("user_id").to_pylist() == [1]
    assert ds.report is not None and ds.report.dropped == {"events: unknown user": 2}


def test_load_parquet_directory_round_trips(tmp_path: Path) -> None:
    ds = load_dataset(csv_dir(tmp_path / "in"))
    out = ds.write(tmp_path / "out", manifest={"seed": 1})
    back = load_dataset(out)
    assert tables_of(back) == tables_of(ds)
    assert back.meta == {"seed": 1}
    assert sorted(p.name for p in out.iterdir()) == [
        "events.parquet",
        "manifest.json",
        "users.parquet",
        "videos.parquet",
    ]


def test_broken_manifest_is_a_data_error(tmp_path: Path) -> None:
    d = csv_dir(tmp_path, manifest_json="{not json")
    with pytest.raises(DataError, match=r"manifest\.json: not valid JSON"):
        load_dataset(d)


def test_from_tables_needs_events() -> None:
    with pytest.raises(DataError, match=r"no events table.*videos"):
        from_tables({"videos": pa.table({"video_id": [1]}), "events": None})


def test_from_tables_empty_events_table() -> None:
    with pytest.raises(DataValidationError, match="empty"):
        from_tables({"events": EVENTS.empty_table()})


# --- Dataset.write ----------------------------------------------------------------------------


def sample() -> Dataset:
    ds = from_tables(
        {
            "events": pa.table(
                {
                    "user_id": [1, 2, 2],
                    "video_id": [10, 11, 10],
                    "timestamp": [ISO] * 3,
                    "event_type": ["play", "like", "play"],
                }
            ),
            "videos": pa.table({"video_id": [10, 11], "creator_id": [5, 5]}),
            "creators": pa.table({"creator_id": [5]}),
        }
    )
    assert ds.creators is not None and ds.creators.schema == CREATORS
    return ds


def test_write_is_deterministic(tmp_path: Path) -> None:
    a = sample().write(tmp_path / "a", manifest={"b": 2, "a": 1})
    b = sample().write(tmp_path / "b", manifest={"a": 1, "b": 2})
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert names == sorted([f"{k}.parquet" for k in SCHEMAS] + ["manifest.json"])
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n
    sample().write(a, manifest={"a": 1, "b": 2})  # rewriting in place: same bytes again
    assert all((a / n).read_bytes() == (b / n).read_bytes() for n in names)


def test_write_leaves_no_temporary_directory(tmp_path: Path) -> None:
    sample().write(tmp_path / "out")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_write_failure_leaves_the_previous_files_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = sample().write(tmp_path / "out", manifest={"version": 1})
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = pq.write_table
    calls = []

    def flaky(table: pa.Table, where: Any, **kw: Any) -> None:
        calls.append(where)
        if len(calls) == 2:
            raise OSError("disk full")
        real(table, where, **kw)

    monkeypatch.setattr(pq, "write_table", flaky)
    ds = sample()
    ds.events = ds.events.slice(0, 1)  # different content, so a partial write would show
    with pytest.raises(OSError, match="disk full"):
        ds.write(out, manifest={"version": 2})
    assert len(calls) == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_write_replaces_its_own_files_and_keeps_others(tmp_path: Path) -> None:
    out = sample().write(tmp_path / "out", manifest={"v": 1})
    (out / "README.txt").write_text("mine")
    (out / "events.csv").write_text("raw input")
    ds = sample()
    ds.creators = None
    ds.write(out)
    names = sorted(p.name for p in out.iterdir())
    # a stale creators.parquet or manifest.json would be read back as part of this dataset
    assert names == [
        "README.txt",
        "events.csv",
        "events.parquet",
        "users.parquet",
        "videos.parquet",
    ]
    assert (out / "README.txt").read_text() == "mine"
    back = load_dataset(out)
    assert back.creators is None and back.meta == {}
    assert tables_of(back) == tables_of(ds)


def test_write_into_a_file_path_is_a_data_error(tmp_path: Path) -> None:
    f = make_dir(tmp_path, {"taken": "x"}) / "taken"
    with pytest.raises(DataError, match="not a directory"):
        sample().write(f)
    assert f.read_text() == "x"


def test_write_relative_path_returns_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert sample().write("rel") == Path("rel")
    assert (tmp_path / "rel" / "events.parquet").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rel"]


def test_manifest_is_sorted_json(tmp_path: Path) -> None:
    out = sample().write(tmp_path / "o", manifest={"z": 1, "a": Path("p")})
    text = (out / "manifest.json").read_text()
    assert json.loads(text) == {"a": "p", "z": 1}
    assert text.index('"a"') < text.index('"z"') and text.endswith("\n")


def test_bad_value_deep_in_a_large_csv_is_located(tmp_path: Path) -> None:
    """pyarrow infers types from the first block; a bad value far below must still be located."""
    n = 300_000
    lines = ["user_id,item_id,timestamp,weight"]
    lines += [f"{i % 97 + 1},{i % 89 + 1},{1_600_000_000 + i},1.0" for i in range(n)]
    bad_row = 250_000
    lines[bad_row + 1] = f"1,1,{1_600_000_000 + bad_row},heavy"
    p = tmp_path / "big.csv"
    p.write_text("\n".join(lines) + "\n")
    from mlsd.data.loaders import load

    with pytest.raises(DataValidationError) as ei:
        load(p)
    msg = str(ei.value)
    assert "weight" in msg and f"row {bad_row}" in msg and "'heavy'" in msg
