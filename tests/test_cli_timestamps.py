"""`mlsd train / recommend / evaluate` on logs as they come: without timestamps, with one time
for every event, with a clock-skewed row, and with too few test users to score."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from typer.testing import CliRunner

from mlsd.cli import app

runner = CliRunner()
DAY, HOUR = 86_400, 3_600
T2024 = 1_704_067_200  # 2024-01-01T00:00:00Z
FAST = """\
candidates: 100
negatives_per_user: 30
two_tower: {epochs: 1}
ranker: {n_estimators: 30}
"""


def _log(path: Path, times: str, n_users: int = 40, n_items: int = 60) -> Path:
    """An interactions CSV with taste structure (users like items of their group), 15 items a
    user. ``times``: ``none`` (no column), ``constant`` (one time), ``spread`` (user u's j-th
    item on day 3j at hour u: 43 days) or ``skewed`` (spread, one row in 2027)."""
    rng = np.random.default_rng(0)
    u, v, t = [], [], []
    for user in range(1, n_users + 1):
        group = user % 4
        items = rng.choice(np.arange(group, n_items, 4) + 1, size=15, replace=False)
        for j, item in enumerate(items):
            u.append(user)
            v.append(int(item))
            t.append(T2024 + DAY * 3 * j + HOUR * user)
    cols: dict[str, list[int]] = {"user_id": u, "item_id": v}
    if times == "constant":
        cols["timestamp"] = [T2024] * len(u)
    elif times in ("spread", "skewed"):
        cols["timestamp"] = t
        if times == "skewed":
            cols["timestamp"][37] = 1_800_000_000  # 2027-01-15: a skewed clock
    pacsv.write_csv(pa.table(cols), path)
    return path


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("cfg") / "fast.yaml"
    p.write_text(FAST)
    return p


def _flat(output: str) -> str:
    """The output on one line, without the ``file.py:N`` column of logged lines, which the
    console's width wraps into the middle of messages."""
    return " ".join(w for w in output.split() if not re.fullmatch(r"\w+\.py:\d+", w))


def test_train_and_recommend_on_a_log_without_timestamps(tmp_path: Path, fast: Path) -> None:
    events = _log(tmp_path / "log.csv", "none")
    r = runner.invoke(
        app, ["train", "--events", str(events), "--out", str(tmp_path / "m"), "--config", str(fast)]
    )
    assert r.exit_code == 0, r.output
    out = _flat(r.output)
    assert "per-user-random" in out and "no timestamps" in out
    users = tmp_path / "users.csv"
    users.write_text("user_id\n1\n2\n")
    recs = tmp_path / "recs.csv"
    r = runner.invoke(
        app,
        ["recommend", "--model", str(tmp_path / "m"), "--users", str(users), "--k", "5",
         "--out", str(recs)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert pacsv.read_csv(recs).num_rows == 10


def _evaluate(events: Path, out: Path, fast: Path, *extra: str) -> tuple[int, str]:
    r = runner.invoke(
        app, ["evaluate", "--events", str(events), "--out", str(out), "--config", str(fast),
              *extra],
    )  # fmt: skip
    return r.exit_code, _flat(r.output)


def test_evaluate_a_log_without_timestamps_switches_to_a_random_split(
    tmp_path: Path, fast: Path
) -> None:
    code, out = _evaluate(_log(tmp_path / "log.csv", "none"), tmp_path / "ev", fast)
    assert code == 0, out
    assert "no timestamps (every event at one time): per-user random split" in out
    assert "per-user-random: 480 training positives, 40 test users" in out
    assert (tmp_path / "ev" / "report.md").exists()


def test_evaluate_per_user_on_one_constant_time_is_a_random_split_not_an_empty_log(
    tmp_path: Path, fast: Path
) -> None:
    events = _log(tmp_path / "log.csv", "constant")
    code, out = _evaluate(events, tmp_path / "ev", fast, "--protocol", "per-user-temporal")
    assert code == 0, out
    assert "log is empty" not in out
    assert "no timestamps" in out and "per-user-random" in out


def test_evaluate_ignores_a_clock_skewed_row_for_the_cut(tmp_path: Path, fast: Path) -> None:
    code, out = _evaluate(_log(tmp_path / "log.csv", "skewed"), tmp_path / "ev", fast)
    assert code == 0, out
    assert "1 time outlier(s)" in out and "the cut ignores them" in out
    # the last week of 2024, not the one 2027 row: every user has a test item
    assert "temporal: " in out and "40 test users" in out


def test_evaluate_refuses_a_handful_of_test_users_unless_told(tmp_path: Path, fast: Path) -> None:
    events = _log(tmp_path / "log.csv", "spread")
    # the last 0.05 days (72 minutes) hold the last items of users 39 and 40 only
    code, out = _evaluate(events, tmp_path / "ev", fast, "--test-days", "0.05")
    assert code == 2, out
    assert "2 test user(s) is too few" in out and "--min-test-users" in out
    assert "Traceback" not in out and not (tmp_path / "ev").exists()
    code, out = _evaluate(
        events, tmp_path / "ev", fast, "--test-days", "0.05", "--min-test-users", "2"
    )
    assert code == 0, out
    assert "2 test users" in out
