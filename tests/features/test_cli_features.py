"""``mlsd features ...`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mlsd.cli import app
from mlsd.data.dataset import Dataset

from .conftest import RedisServer

runner = CliRunner()


def test_list() -> None:
    res = runner.invoke(app, ["features", "list", "--entity", "video"])
    assert res.exit_code == 0, res.output
    assert "video_age_h" in res.output and "user_plays_1d" not in res.output


def test_skew_check_on_a_dataset_directory(tiny: Dataset, tmp_path: Path) -> None:
    tiny.write(tmp_path / "tiny")
    res = runner.invoke(app, ["features", "skew-check", str(tmp_path / "tiny"), "--points", "60",
                              "--json", str(tmp_path / "skew.json")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "no skew" in res.output
    assert json.loads((tmp_path / "skew.json").read_text())["mismatches"] == 0


@pytest.mark.redis
def test_skew_check_and_materialize_through_redis(redis_server: RedisServer) -> None:
    res = runner.invoke(app, ["features", "skew-check", "--scale", "tiny", "--points", "40",
                              "--redis", redis_server.url, "--namespace", "cli-skew"])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["features", "materialize", "--scale", "tiny", "--redis",
                              redis_server.url, "--namespace", "cli-mat"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "materialized" in res.output


def test_build_writes_a_training_matrix(tmp_path: Path) -> None:
    out = tmp_path / "train.parquet"
    res = runner.invoke(app, ["features", "build", "--scale", "tiny", "--out", str(out)])
    assert res.exit_code == 0, res.output
    t = pq.read_table(out)
    assert t.num_rows > 10_000 and "video_valid_watch_rate_7d" in t.column_names


def test_user_errors_exit_2() -> None:
    res = runner.invoke(app, ["features", "skew-check"])
    assert res.exit_code == 2
    assert "either a dataset PATH or --scale" in res.output
    res = runner.invoke(app, ["features", "materialize", "--scale", "tiny", "--redis",
                              "redis://127.0.0.1:1/0"])  # fmt: skip
    assert res.exit_code == 2
    assert "unavailable" in res.output
