"""Simulated time: ``mlsd simulate --continue`` goes on with the same world for more days."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mlsd.cli import app
from mlsd.data.dataset import load_dataset
from mlsd.data.simulate.continuation import continue_world, world_of
from mlsd.errors import DataError

runner = CliRunner()
DAY = 86_400_000


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("continue")
    first, week, more = root / "sim", root / "week", root / "more"
    for args in (
        ["simulate", "--scale", "tiny", "--out", str(first)],
        ["simulate", "--continue", str(first), "--days", "7", "--out", str(week)],
        ["simulate", "--continue", str(week), "--days", "3", "--out", str(more)],
    ):
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
    return first, week, more


def _meta(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def test_the_same_people_and_catalog_go_on_with_new_uploads(chain: tuple[Path, ...]) -> None:
    first, week, _ = chain
    for kind in ("users", "creators"):
        assert pq.read_table(first / f"{kind}.parquet").equals(
            pq.read_table(week / f"{kind}.parquet")
        )
    old, new = pq.read_table(first / "videos.parquet"), pq.read_table(week / "videos.parquet")
    assert new.slice(0, old.num_rows).equals(old)  # every old video unchanged, in order
    added = new.slice(old.num_rows)
    # tiny: 1,000 videos, 15% uploaded over 14 days -> 75 in 7 more days
    assert added.num_rows == 75
    assert pc.min(added["video_id"]).as_py() == pc.max(old["video_id"]).as_py() + 1
    end = _meta(first)["window"]["end_ms"]
    up = added["upload_time"].cast("int64").to_numpy()
    assert (up >= end).all() and (up < end + 7 * DAY).all()


def test_events_are_the_new_days_only_and_request_ids_continue(chain: tuple[Path, ...]) -> None:
    first, week, more = chain
    prev_end = _meta(first)["window"]["end_ms"]
    for d, days in ((week, 7), (more, 3)):
        ev = pq.read_table(d / "events.parquet")
        t = ev["timestamp"].cast("int64").to_numpy()
        assert t.min() >= prev_end and t.max() < prev_end + days * DAY
        assert ev.num_rows > 0
        prev_end += days * DAY
    r0 = pq.read_table(first / "events.parquet")["request_id"].to_numpy()
    r1 = pq.read_table(week / "events.parquet")["request_id"].to_numpy()
    r2 = pq.read_table(more / "events.parquet")["request_id"].to_numpy()
    assert r1.min() == r0.max() + 1 and r2.min() == r1.max() + 1
    assert _meta(more)["continuations"] == [7, 3]
    # rates are the first window's: 15% of 1,000 videos per 14 days -> 32 in 3 days
    assert pq.read_table(more / "videos.parquet").num_rows == 1_075 + 32
    # users come back at the same rate per day: 7 days of tiny ~ half of its 14 days' events
    ratio = len(r1) / len(r0)
    assert 0.3 < ratio < 0.7, ratio


def test_new_uploads_are_watched(chain: tuple[Path, ...]) -> None:
    first, week, _ = chain
    n_old = pq.read_table(first / "videos.parquet").num_rows
    ev = pq.read_table(week / "events.parquet")
    plays = ev.filter(pc.equal(ev["event_type"].cast("string"), "play"))
    assert (plays["video_id"].to_numpy() > n_old).sum() > 0


def test_tastes_continue_from_where_the_window_ended(chain: tuple[Path, ...]) -> None:
    first, week, _ = chain
    w0, w1 = world_of(_meta(first)), world_of(_meta(week))
    np.testing.assert_array_equal(w1.taste_start, w0.taste_end)
    assert not np.array_equal(w1.taste_end, w1.taste_start)
    assert w1.start_ms == w0.end_ms


def test_continuing_is_deterministic_and_valid(chain: tuple[Path, ...], tmp_path: Path) -> None:
    first, week, _ = chain
    again = continue_world(_meta(first), 7)
    again.write(tmp_path / "again", manifest=again.meta)
    for f in ("events.parquet", "videos.parquet", "manifest.json"):
        assert (tmp_path / "again" / f).read_bytes() == (week / f).read_bytes(), f
    ds = load_dataset(week)  # passes the data contract
    assert ds.events.num_rows == again.events.num_rows


def test_bad_continuations_are_refused(chain: tuple[Path, ...], tmp_path: Path) -> None:
    first, _, _ = chain
    with pytest.raises(DataError, match="not a simulated dataset"):
        continue_world({"source": "user"}, 7)
    with pytest.raises(DataError, match="--days"):
        continue_world(_meta(first), 0)
    res = runner.invoke(app, ["simulate", "--continue", str(first), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "--days" in res.output
    res = runner.invoke(
        app, ["simulate", "--continue", str(tmp_path), "--days", "2", "--out", str(tmp_path / "y")]
    )
    assert res.exit_code == 2 and "manifest.json" in res.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
