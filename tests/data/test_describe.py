"""Tests of ``mlsd.data.describe`` and of ``mlsd data describe``."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from rich.console import Console
from typer.testing import CliRunner

from mlsd.cli import app
from mlsd.config import LabelConfig, SimulationConfig
from mlsd.data.dataset import Dataset, from_tables, load_dataset
from mlsd.data.describe import Description, describe_dataset, render_description
from mlsd.errors import ConfigError

T0 = datetime(2026, 1, 5, tzinfo=UTC)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
runner = CliRunner()


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


# (user, video, event_type, watch_seconds): one event a minute from T0.
EVENTS: list[tuple[int, int, str, float | None]] = [
    (1, 10, "impression", None),
    (1, 10, "play", 50.0),  # completion 0.5, valid (>= 30 s)
    (1, 10, "like", None),
    (1, 11, "impression", None),
    (1, 11, "play", 20.0),  # short video (50 s): 0.4 < 0.5, under 30 s: not valid
    (2, 12, "impression", None),
    (2, 12, "play", 205.0),  # 1.025, clipped to 1.0 (within the validation tolerance); valid
    (2, 13, "play", 10.0),  # unknown duration: no completion, not valid
    (3, 11, "play", 45.0),  # completion 0.9, valid
    (3, 11, "share", None),
    (3, 12, "dislike", None),
    (4, 12, "impression", None),
]
VIDEOS = {  # video_id: (creator_id, duration_s, topic)
    10: (7, 100.0, "comedy"),
    11: (7, 50.0, "news"),
    12: (8, 200.0, "music"),
    13: (8, None, "news"),
}


def hand_dataset() -> Dataset:
    ev = pa.table(
        {
            "user_id": [e[0] for e in EVENTS],
            "video_id": [e[1] for e in EVENTS],
            "timestamp": pa.array([at(i) for i in range(len(EVENTS))], pa.timestamp("ms", "UTC")),
            "event_type": [e[2] for e in EVENTS],
            "watch_seconds": pa.array([e[3] for e in EVENTS], pa.float64()),
        }
    )
    videos = pa.table(
        {
            "video_id": list(VIDEOS),
            "creator_id": [v[0] for v in VIDEOS.values()],
            "duration_s": [v[1] for v in VIDEOS.values()],
            "topic": [v[2] for v in VIDEOS.values()],
        }
    )
    users = pa.table({"user_id": [1, 2, 3, 4]})
    creators = pa.table({"creator_id": [7, 8, 9]})
    return from_tables({"events": ev, "videos": videos, "users": users, "creators": creators})


def ratings_dataset() -> Dataset:
    """Interactions-only rating data (MovieLens-like): no durations, watch times or creators."""
    rows = [(1, 1, 5.0), (1, 2, 3.0), (1, 3, 4.0), (2, 1, 4.0), (3, 3, 2.0), (3, 1, 3.5)]
    ev = pa.table(
        {
            "user_id": [r[0] for r in rows],
            "video_id": [r[1] for r in rows],
            "timestamp": pa.array([at(i) for i in range(len(rows))], pa.timestamp("ms", "UTC")),
            "event_type": ["rating"] * len(rows),
            "rating": [r[2] for r in rows],
        }
    )
    return from_tables({"events": ev})


def assert_png(path: Path) -> None:
    assert path.exists()
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 2_000


def test_counts_rates_and_tops_of_a_hand_built_dataset(tmp_path: Path) -> None:
    d = describe_dataset(hand_dataset(), plot_path=tmp_path / "plot.png", top=2)
    kinds = [e[2] for e in EVENTS]
    assert d.n_events == len(EVENTS)
    assert d.events_by_type == {
        k: kinds.count(k) for k in ("impression", "play", "like", "share", "dislike", "rating")
    }
    assert (d.n_users, d.n_videos, d.n_creators) == (4, 4, 3)
    assert (d.active_users, d.active_videos) == (4, 4)
    assert d.start == at(0) and d.end == at(len(EVENTS) - 1)
    assert d.days == pytest.approx((len(EVENTS) - 1) / (24 * 60))
    assert d.valid_watch_rate == pytest.approx(3 / 5)
    assert d.like_rate == pytest.approx(1 / 5)
    assert d.ctr == pytest.approx(5 / 4)
    assert d.rating_positive_share is None
    # creators by plays: 7 has videos 10, 11, 11 (3 plays); 8 has 12, 13 (2)
    assert d.top_creators == [(7, 3), (8, 2)]
    # topics by plays: news 3 (11, 13, 11); comedy 1 and music 1 tie, by name
    assert d.top_topics == [("news", 3), ("comedy", 1)]
    pairs = {(u, v) for u, v, k, _ in EVENTS if k != "impression"}
    assert d.interaction_pairs == len(pairs) == 6
    assert d.sparsity == pytest.approx(1 - 6 / (4 * 4))
    completion = np.array([0.5, 0.4, 1.0, 0.9])
    assert d.n_completion == 4
    assert d.completion_mean == pytest.approx(completion.mean())
    assert d.completion_median == pytest.approx(np.median(completion))
    assert d.plot_kind == "completion" and d.plot_path == str(tmp_path / "plot.png")
    assert_png(tmp_path / "plot.png")


def test_label_config_changes_the_rates() -> None:
    d = describe_dataset(hand_dataset(), labels=LabelConfig(min_watch_seconds=10))
    assert d.valid_watch_rate == 1.0
    assert d.plot_path is None and d.plot_kind is None


def test_rating_data_without_durations_plots_events_per_user(tmp_path: Path) -> None:
    plot = tmp_path / "deep" / "dir" / "p.png"
    d = describe_dataset(ratings_dataset(), plot_path=plot)
    assert d.events_by_type["rating"] == 6 and d.events_by_type["play"] == 0
    assert d.rating_positive_share == pytest.approx(3 / 6)
    assert d.valid_watch_rate is None and d.like_rate is None and d.ctr is None
    assert d.n_creators is None and d.top_creators == [] and d.top_topics == []
    assert d.completion_mean is None and d.completion_median is None and d.n_completion == 0
    assert d.sparsity == pytest.approx(1 - 6 / (3 * 3))
    assert d.plot_kind == "events_per_user"
    assert_png(plot)


def test_top_zero_and_negative() -> None:
    d = describe_dataset(hand_dataset(), top=0)
    assert d.top_creators == [] and d.top_topics == []
    with pytest.raises(ConfigError, match="top -1"):
        describe_dataset(hand_dataset(), top=-1)


def test_to_dict_is_json_serialisable() -> None:
    d = describe_dataset(hand_dataset(), top=1)
    out = json.loads(json.dumps(d.to_dict()))
    assert out["start"] == at(0).isoformat()
    assert out["top_creators"] == [{"creator_id": 7, "plays": 3}]
    assert out["top_topics"] == [{"topic": "news", "plays": 3}]
    assert out["events_by_type"]["play"] == 5 and out["ctr"] == pytest.approx(1.25)
    assert set(out) >= {f for f in Description.__dataclass_fields__}


def test_render_prints_tables() -> None:
    console = Console(record=True, width=120)
    render_description(describe_dataset(hand_dataset()), console)
    text = console.export_text()
    for expected in ("events by type", "60.0%", "125.0%", "top creators", "news", "62.5000%"):
        assert expected in text, expected
    console = Console(record=True, width=120)
    render_description(describe_dataset(ratings_dataset()), console)
    text = console.export_text()
    assert "ratings >= 4" in text and "50.0%" in text and "n/a" in text


@pytest.fixture
def loaders(monkeypatch: pytest.MonkeyPatch) -> None:
    """``mlsd data describe`` reads through ``mlsd.data.loaders.load``. Until that module lands,
    stand in with the mlsd-format loader so the command itself is tested."""
    if importlib.util.find_spec("mlsd.data.loaders") is not None:
        return

    def load(path: Path, fmt: str = "auto", **kw: Any) -> Dataset:
        return load_dataset(path, **{k: v for k, v in kw.items() if v is not None})

    module = types.ModuleType("mlsd.data.loaders")
    module.load = load  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mlsd.data.loaders", module)


@pytest.mark.usefixtures("loaders")
def test_cli_describe_on_a_written_dataset(tmp_path: Path) -> None:
    root = hand_dataset().write(tmp_path / "ds")
    res = runner.invoke(app, ["data", "describe", str(root), "--top", "2"])
    assert res.exit_code == 0, res.output
    assert "news" in res.output and "events by type" in res.output
    assert_png(root / "describe_completion.png")
    plot = tmp_path / "elsewhere.png"
    res = runner.invoke(app, ["data", "describe", str(root), "--plot", str(plot)])
    assert res.exit_code == 0, res.output
    assert_png(plot)


@pytest.mark.usefixtures("loaders")
def test_cli_describe_on_the_tiny_simulation(tmp_path: Path) -> None:
    from mlsd.data.simulate import simulate

    ds = simulate(SimulationConfig.for_scale("tiny", seed=0))
    root = ds.write(tmp_path / "sim", manifest=ds.meta)
    res = runner.invoke(app, ["data", "describe", str(root)])
    assert res.exit_code == 0, res.output
    assert "top creators by plays" in res.output
    assert_png(root / "describe_completion.png")
    d = describe_dataset(load_dataset(root))
    assert d.n_events == ds.events.num_rows and d.ctr is not None and 0 < d.ctr < 1
    assert d.valid_watch_rate is not None and 0 < d.valid_watch_rate < 1
    assert d.completion_mean is not None and 0 < d.completion_mean < 1
