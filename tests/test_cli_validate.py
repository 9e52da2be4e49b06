"""``mlsd data validate``: exit 2 with a message naming the column and row (or the file) for each
kind of bad input; exit 0 on a valid dataset; ``--repair --out`` writes a repaired one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlsd.cli import app
from mlsd.data.dataset import load_dataset

ISO = "2024-03-01T12:00:00Z"
EVENTS = [
    "user_id,video_id,timestamp,event_type,watch_seconds",
    f"1,10,{ISO},impression,",
    f"1,10,{ISO},play,45",
    f"2,11,{ISO},play,100",
    f"2,12,{ISO},like,",
    f"3,12,{ISO},play,5",
]
VIDEOS = ["video_id,duration_s,topics", "10,60,comedy|music", "11,120,news", "12,30,"]
USERS = ["user_id,country", "1,US", "2,FR", "3,DE"]


def dataset(root: Path, events: list[str] = EVENTS, videos: list[str] = VIDEOS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, lines in (("events", events), ("videos", videos), ("users", USERS)):
        (root / f"{name}.csv").write_text("\n".join(lines) + "\n")
    return root


def replace(lines: list[str], row: int, column: str, value: str) -> list[str]:
    """``lines`` with the field ``column`` of data row ``row`` (0-based) set to ``value``."""
    header = lines[0].split(",")
    out = list(lines)
    fields = out[row + 1].split(",")
    fields[header.index(column)] = value
    out[row + 1] = ",".join(fields)
    return out


def drop_column(lines: list[str], column: str) -> list[str]:
    i = lines[0].split(",").index(column)
    return [",".join(f for j, f in enumerate(line.split(",")) if j != i) for line in lines]


def invoke(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    output = result.output  # stdout and stderr together
    assert "Traceback" not in output
    assert result.exception is None or isinstance(result.exception, SystemExit), output
    return result.exit_code, " ".join(output.split())  # rich may wrap long lines


def test_valid_dataset_exits_0(tmp_path: Path) -> None:
    code, out = invoke("data", "validate", dataset(tmp_path / "d"))
    assert code == 0, out
    assert "valid" in out and "error" not in out


CASES: dict[str, tuple[list[str], list[str], str, str, int | str]] = {
    "missing column": (
        drop_column(EVENTS, "event_type"),
        VIDEOS,
        "events.csv",
        "event_type",
        "header (line 1)",
    ),
    "wrong dtype": (replace(EVENTS, 2, "video_id", "eleven"), VIDEOS, "events.csv", "video_id", 2),
    "negative watch seconds": (
        replace(EVENTS, 3, "watch_seconds", "-4"),
        VIDEOS,
        "events.csv",
        "watch_seconds",
        3,
    ),
    "event for an unknown video": (
        replace(EVENTS, 4, "video_id", "99"),
        VIDEOS,
        "events.csv",
        "video_id",
        4,
    ),
    "duplicate video id": (EVENTS, [*VIDEOS, "10,90,"], "videos.csv", "video_id", 3),
    "unparseable timestamp": (
        replace(EVENTS, 1, "timestamp", "last tuesday"),
        VIDEOS,
        "events.csv",
        "timestamp",
        1,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_problem_exits_2_naming_column_and_row(tmp_path: Path, case: str) -> None:
    events, videos, file, column, where = CASES[case]
    d = dataset(tmp_path / "d", events, videos)
    code, out = invoke("data", "validate", d)
    assert code == 2, out
    assert str(d / file) in out
    assert f"column '{column}'" in out
    if isinstance(where, int):
        assert f"row {where} (line {where + 2})" in out
    else:
        assert where in out
    assert "expected" in out
    # only the one thing that is wrong is reported
    assert "problems" not in out, out


def test_missing_column_message_says_what_is_missing(tmp_path: Path) -> None:
    d = dataset(tmp_path / "d", CASES["missing column"][0])
    code, out = invoke("data", "validate", d)
    assert code == 2
    assert "required column missing" in out and "expected a column named 'event_type'" in out


@pytest.mark.parametrize(
    ("content", "what"),
    [("", "empty file (0 bytes)"), (EVENTS[0] + "\n", "empty file (header only, no rows)")],
)
def test_empty_events_file_exits_2_naming_the_file(tmp_path: Path, content: str, what: str) -> None:
    d = dataset(tmp_path / "d")
    (d / "events.csv").write_text(content)
    code, out = invoke("data", "validate", d)
    assert code == 2, out
    assert f"{d / 'events.csv'}: {what}" in out


def test_several_problems_are_all_listed(tmp_path: Path) -> None:
    events = replace(replace(EVENTS, 1, "timestamp", "soon"), 3, "watch_seconds", "-1")
    code, out = invoke("data", "validate", dataset(tmp_path / "d", events))
    assert code == 2
    assert "2 problems" in out
    assert "column 'timestamp', row 1 (line 3)" in out
    assert "column 'watch_seconds', row 3 (line 5)" in out


def test_repair_writes_a_repaired_dataset_and_reports_what_it_dropped(tmp_path: Path) -> None:
    events = replace(replace(EVENTS, 3, "watch_seconds", "-4"), 4, "video_id", "99")
    d = dataset(tmp_path / "d", events)
    code, out = invoke("data", "validate", d, "--repair", "--out", tmp_path / "fixed")
    assert code == 0, out
    assert "dropped 2 rows" in out
    assert "events: negative watch seconds" in out and "events: unknown video" in out
    fixed = load_dataset(tmp_path / "fixed")
    assert fixed.events.num_rows == len(EVENTS) - 1 - 2
    assert fixed.events.column("watch_seconds").to_pylist() == [None, 45.0, 100.0]
    # the input is untouched
    assert (d / "events.csv").read_text() == "\n".join(events) + "\n"


def test_repair_cannot_fix_a_missing_column(tmp_path: Path) -> None:
    d = dataset(tmp_path / "d", CASES["missing column"][0])
    code, out = invoke("data", "validate", d, "--repair", "--out", tmp_path / "fixed")
    assert code == 2
    assert "cannot be repaired" in out
    assert not (tmp_path / "fixed").exists()


def test_missing_path_exits_2(tmp_path: Path) -> None:
    code, out = invoke("data", "validate", tmp_path / "nowhere")
    assert code == 2
    assert re.search(r"nowhere\S*: no such file", out)
