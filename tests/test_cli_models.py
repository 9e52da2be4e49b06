"""`mlsd train / recommend / evaluate`: the bring-your-own-data contract, bad input included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mlsd.cli import app

runner = CliRunner()


def _interactions(path: Path, n_users: int = 60, n_items: int = 80, seed: int = 0) -> Path:
    """An interactions-only CSV (user_id,item_id,timestamp,rating) with taste structure:
    users like items of their own group, so there is something to learn."""
    rng = np.random.default_rng(seed)
    rows = []
    t0 = 1_700_000_000
    for u in range(1, n_users + 1):
        group = u % 4
        items = rng.choice(np.arange(group, n_items, 4) + 1, size=20, replace=False)
        for j, i in enumerate(items):
            rows.append((u, int(i), t0 + 3600 * (j * 7 + u % 5), int(rng.choice([3, 4, 5]))))
    table = pa.table(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "timestamp": [r[2] for r in rows],
            "rating": [r[3] for r in rows],
        }
    )
    pacsv.write_csv(table, path)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("byod")
    events = _interactions(d / "ratings.csv")
    r = runner.invoke(app, ["train", "--events", str(events), "--out", str(d / "model")])
    assert r.exit_code == 0, r.output
    return events, d / "model"


def test_train_on_interactions_only_csv_writes_a_bundle(trained: tuple[Path, Path]) -> None:
    _, model = trained
    assert (model / "manifest.json").exists()


def test_recommend_writes_ranked_rows_and_counts_cold_start(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    _, model = trained
    users = tmp_path / "users.csv"
    users.write_text("user_id\n1\n2\n424242\n")
    for out in (tmp_path / "recs.parquet", tmp_path / "recs.csv"):
        r = runner.invoke(
            app, ["recommend", "--model", str(model), "--users", str(users), "--k", "5",
                  "--out", str(out)],
        )  # fmt: skip
        assert r.exit_code == 0, r.output
        assert "1 unknown users got cold-start" in " ".join(r.output.split())
        t = pq.read_table(out) if out.suffix == ".parquet" else pacsv.read_csv(out)
        assert t.column_names == ["user_id", "rank", "item_id", "score"]
        assert t.num_rows == 15
        assert t.filter(pa.compute.equal(t.column("user_id"), 1)).column("rank").to_pylist() == [
            1, 2, 3, 4, 5,
        ]  # fmt: skip


@pytest.mark.parametrize("k", ["0", "-3", "100000"])
def test_recommend_k_out_of_range_exits_2(
    trained: tuple[Path, Path], tmp_path: Path, k: str
) -> None:
    _, model = trained
    users = tmp_path / "users.csv"
    users.write_text("user_id\n1\n")
    out = tmp_path / "recs.csv"
    r = runner.invoke(
        app,
        ["recommend", "--model", str(model), "--users", str(users), "--k", k, "--out", str(out)],
    )
    assert r.exit_code == 2, r.output
    assert "k" in r.output and "Traceback" not in r.output
    assert not out.exists()


def _train(tmp_path: Path, table: pa.Table) -> tuple[int, str]:
    p = tmp_path / "events.csv"
    pacsv.write_csv(table, p)
    r = runner.invoke(app, ["train", "--events", str(p), "--out", str(tmp_path / "m")])
    return r.exit_code, r.output


def test_train_missing_column_exits_2(tmp_path: Path) -> None:
    code, out = _train(
        tmp_path, pa.table({"user_id": [1, 2], "timestamp": [1_700_000_001, 1_700_000_002]})
    )
    assert code == 2 and "Traceback" not in out
    assert "item_id" in out or "video_id" in out
    assert not (tmp_path / "m").exists()


def test_train_without_positives_exits_2(tmp_path: Path) -> None:
    t = pa.table(
        {
            "user_id": [1, 2, 3],
            "item_id": [1, 2, 3],
            "timestamp": [1_700_000_001, 1_700_000_002, 1_700_000_003],
            "rating": [1, 2, 1],
        }
    )
    code, out = _train(tmp_path, t)
    assert code == 2 and "no positives" in out, out


def test_train_with_a_single_user_exits_2(tmp_path: Path) -> None:
    t = pa.table(
        {
            "user_id": [1, 1, 1],
            "item_id": [1, 2, 3],
            "timestamp": [1_700_000_001, 1_700_000_002, 1_700_000_003],
        }
    )
    code, out = _train(tmp_path, t)
    assert code == 2 and "at least 2 users" in out, out
