"""Column mapping (``--user-col``, ``--item-col``, ``--time-col``, ``--weight-col``,
``--rating-col``) on ``mlsd data validate / train / evaluate / recommend``, and ``mlsd
recommend`` with a user listed twice."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mlsd.cli import app

runner = CliRunner()
MAP = ["--user-col", "customer", "--item-col", "product", "--time-col", "ts",
       "--weight-col", "count"]  # fmt: skip


def _log(path: Path, n_users: int = 60, n_items: int = 80) -> Path:
    """A ``customer,product,ts,count`` log with taste structure (as tests/test_cli_models)."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(1, n_users + 1):
        items = rng.choice(np.arange(u % 4, n_items, 4) + 1, size=20, replace=False)
        for j, i in enumerate(items):
            rows.append(
                (u, int(i), 1_700_000_000 + 3600 * (j * 7 + u % 5), int(rng.integers(1, 9)))
            )
    names = ("customer", "product", "ts", "count")
    pacsv.write_csv(pa.table({n: [r[c] for r in rows] for c, n in enumerate(names)}), path)
    return path


def _run(*args: str | Path) -> tuple[int, str]:
    r = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in r.output
    return r.exit_code, " ".join(re.sub("[│╭╮╰╯─]", " ", r.output).split())  # help's box


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("cols")
    log = _log(d / "log.csv")
    code, out = _run("train", "--events", log, "--out", d / "model", *MAP)
    assert code == 0, out
    return log, d / "model"


@pytest.mark.parametrize("command", [["data", "validate"], ["train"], ["evaluate"]])
def test_help_explains_the_column_options(command: list[str]) -> None:
    code, out = _run(*command, "--help")
    assert code == 0
    for opt in ("--user-col", "--item-col", "--time-col", "--weight-col", "--rating-col"):
        assert opt in out
    assert "customer,product,ts,count" in out and "default: user_id" in out


def test_recommend_help_explains_user_col() -> None:
    code, out = _run("recommend", "--help")
    assert code == 0 and "--user-col" in out and "--users file" in out


def test_validate_reads_a_log_under_its_own_column_names(tmp_path: Path) -> None:
    log = _log(tmp_path / "log.csv")
    code, out = _run("data", "validate", log)
    assert code == 2 and "user_id" in out and "customer" in out  # today's behaviour
    code, out = _run("data", "validate", log, *MAP)
    assert code == 0 and "valid" in out, out


def test_errors_name_the_users_columns(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("customer,product,ts,count\n1,10,1700000000,2\n1,11,1700000001,-3\n")
    code, out = _run("data", "validate", log, *MAP)
    assert code == 2
    assert "column 'count', row 1 (line 3): value -3" in out and "weight >= 0" in out
    log.write_text("customer,product,ts,count\n1,10,noon,2\n")
    code, out = _run("data", "validate", log, *MAP)
    assert code == 2 and "column 'ts', row 0 (line 2)" in out
    code, out = _run("data", "validate", log, "--user-col", "client", "--item-col", "product")
    assert code == 2 and "'client'" in out and "given for user_id" in out


def test_column_options_are_refused_for_fixed_formats() -> None:
    code, out = _run("data", "validate", "/work/shared/data/ml-100k", "--user-col", "u")
    assert code == 2 and "fixed" in out


def test_train_and_recommend_with_column_names_and_duplicate_users(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    _, model = trained
    users = tmp_path / "who.csv"
    users.write_text("customer\n2\n1\n2\n424242\n1\n")
    out = tmp_path / "recs.csv"
    code, said = _run("recommend", "--model", model, "--users", users, "--user-col", "customer",
                      "--k", "5", "--out", out)  # fmt: skip
    assert code == 0, said
    t = pacsv.read_csv(out)
    assert t.column_names == ["user_id", "rank", "item_id", "score"]
    users_out = t.column("user_id").to_pylist()
    assert list(dict.fromkeys(users_out)) == [2, 1, 424242]  # one list each, file order
    assert users_out.count(1) == 5 and t.num_rows == 15
    assert "for 3 users" in said and "2 duplicate user ids dropped" in said


def test_recommend_lists_a_user_listed_twice_once(tmp_path: Path) -> None:
    """Without any column option: today's names, one list per distinct user."""
    log = tmp_path / "log.csv"
    t = pacsv.read_csv(_log(tmp_path / "mine.csv"))
    pacsv.write_csv(t.rename_columns(["user_id", "item_id", "timestamp", "weight"]), log)
    code, said = _run("train", "--events", log, "--out", tmp_path / "m")
    assert code == 0, said
    users = tmp_path / "users.csv"
    users.write_text("user_id\n7\n3\n7\n7\n")
    out = tmp_path / "recs.parquet"
    code, said = _run("recommend", "--model", tmp_path / "m", "--users", users, "--k", "4",
                      "--out", out)  # fmt: skip
    assert code == 0, said
    got = pq.read_table(out).column("user_id").to_pylist()
    assert got == [7] * 4 + [3] * 4
    assert "for 2 users" in said and "2 duplicate user ids dropped, first kept" in said


def test_recommend_without_duplicates_says_nothing_of_them(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    _, model = trained
    users = tmp_path / "users.csv"
    users.write_text("user_id\n1\n2\n")
    code, said = _run("recommend", "--model", model, "--users", users, "--k", "3",
                      "--out", tmp_path / "r.csv")  # fmt: skip
    assert code == 0 and "duplicate" not in said


def test_evaluate_with_column_names(tmp_path: Path) -> None:
    log = _log(tmp_path / "log.csv")
    code, out = _run("evaluate", "--events", log, *MAP, "--protocol", "per-user-temporal",
                     "--k", "5", "--out", tmp_path / "rep")  # fmt: skip
    assert code == 0, out
    assert (tmp_path / "rep" / "report.md").exists()
