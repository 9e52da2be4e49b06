"""Tests of the simulated platform: determinism, contracts, and realism on ``small``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from mlsd.cli import app
from mlsd.config import SimulationConfig
from mlsd.data.schema import EVENTS, VIDEOS, validate
from mlsd.data.simulate import ResponseModel, build_world, simulate
from mlsd.errors import ConfigError, DataError

runner = CliRunner()


def _sim_cli(out: Path, seed: int) -> None:
    res = runner.invoke(
        app, ["simulate", "--scale", "tiny", "--seed", str(seed), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output


def test_cli_simulate_is_byte_identical_for_a_seed(tmp_path: Path) -> None:
    _sim_cli(tmp_path / "a", 0)
    _sim_cli(tmp_path / "b", 0)
    _sim_cli(tmp_path / "c", 1)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == [
        "creators.parquet",
        "events.parquet",
        "manifest.json",
        "users.parquet",
        "videos.parquet",
    ]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    for name in ("events.parquet", "videos.parquet", "users.parquet"):
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes(), name
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["config"]["seed"] == 0 and manifest["config"]["scale"] == "tiny"


def test_tiny_output_passes_validation_and_matches_schema() -> None:
    ds = simulate(SimulationConfig.for_scale("tiny", seed=3))
    assert ds.events.schema.equals(EVENTS)
    assert ds.videos.schema.equals(VIDEOS)
    tables, report = validate(ds.tables())
    assert report.ok
    assert tables["events"].num_rows == ds.events.num_rows
    ts = ds.events.column("timestamp").cast(pa.int64()).to_numpy()
    assert np.all(np.diff(ts) >= 0), "events are sorted by time"
    types = set(ds.events.column("event_type").to_pylist())
    assert types == {"impression", "play", "like", "share", "dislike"}


def test_unknown_scale_and_misspelled_key_are_errors() -> None:
    with pytest.raises(ConfigError, match="huge"):
        SimulationConfig.for_scale("huge")
    with pytest.raises(ValidationError):
        SimulationConfig.for_scale("tiny", n_userz=3)


def test_cli_unknown_scale_exits_2(tmp_path: Path) -> None:
    res = runner.invoke(app, ["simulate", "--scale", "huge", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2
    assert "huge" in res.output and "Traceback" not in res.output


def test_response_model_answers_a_slate_by_ids() -> None:
    cfg = SimulationConfig.for_scale("tiny")
    model = ResponseModel(build_world(cfg))
    r = model.respond_ids(
        1, [1, 2, 3, 4, 5], model.world.start_ms + 3_600_000, np.random.default_rng(0)
    )
    assert r.play.shape == (1, 5)
    assert np.all(r.watch_seconds[~r.play] == 0)
    # probabilities decrease with position for the same video (position bias)
    same = model.respond_ids(1, [7] * 10, model.world.start_ms, np.random.default_rng(0))
    assert np.all(np.diff(same.p_play[0]) < 0)
    with pytest.raises(DataError, match="video_id 99999"):
        model.respond_ids(1, [99999], model.world.start_ms)
    with pytest.raises(DataError, match="user_id 0"):
        model.respond_ids(0, [1], model.world.start_ms)


# ----------------------------------------------------------------------------- realism (small)


class Small:
    def __init__(self) -> None:
        self.cfg = SimulationConfig.for_scale("small", seed=0)
        self.ds = simulate(self.cfg)
        self.world = build_world(self.cfg)
        self.model = ResponseModel(self.world)
        ev = self.ds.events
        self.et = np.asarray(ev.column("event_type").to_numpy(zero_copy_only=False))
        self.u = ev.column("user_id").to_numpy() - 1
        self.v = ev.column("video_id").to_numpy() - 1
        self.t = ev.column("timestamp").cast(pa.int64()).to_numpy()
        self.pos = ev.column("position").to_numpy()
        self.w = ev.column("watch_seconds").to_numpy(zero_copy_only=False)
        self.play = self.et == "play"
        self.imp = self.et == "impression"


@pytest.fixture(scope="module")
def small() -> Small:
    return Small()


def test_popularity_is_long_tailed(small: Small) -> None:
    plays = np.bincount(small.v[small.play], minlength=small.cfg.n_videos)
    top = np.sort(plays)[::-1][: small.cfg.n_videos // 100]
    assert top.sum() / plays.sum() >= 0.20


def test_completion_is_higher_when_topic_matches_taste(small: Small) -> None:
    p = small.play
    completion = small.w[p] / small.world.duration_s[small.v[p]]
    taste = small.model.taste(small.u[p], small.t[p])
    top3 = np.argsort(-taste, axis=1)[:, :3]
    match = (top3 == small.world.video_topic[small.v[p]][:, None]).any(axis=1)
    assert match.sum() > 1000 and (~match).sum() > 1000
    assert completion[match].mean() > completion[~match].mean() + 0.05


def test_ctr_decreases_with_position(small: Small) -> None:
    def ctr(p: int) -> float:
        return float((small.play & (small.pos == p)).sum() / (small.imp & (small.pos == p)).sum())

    assert ctr(1) > ctr(10) * 1.5


def test_explicit_share_is_between_1_and_5_percent(small: Small) -> None:
    share = np.asarray(small.ds.videos.column("is_explicit").to_numpy(zero_copy_only=False)).mean()
    assert 0.01 <= share <= 0.05


def test_tastes_drift_between_first_and_last_week(small: Small) -> None:
    k = small.cfg.n_topics
    day = (small.t - small.world.start_ms) // 86_400_000
    topic = small.world.video_topic[small.v]

    def hist(mask: np.ndarray) -> np.ndarray:
        m = np.zeros((small.cfg.n_users, k))
        np.add.at(m, (small.u[mask], topic[mask]), 1)
        return m

    w1 = hist(small.play & (day < 7))
    w2 = hist(small.play & (day >= 7) & (day < 14))
    last = hist(small.play & (day >= small.cfg.days - 7))
    ok = (w1.sum(1) >= 10) & (w2.sum(1) >= 10) & (last.sum(1) >= 10)
    assert ok.sum() >= 100

    def tv(a: np.ndarray, b: np.ndarray) -> float:
        a = a / a.sum(1, keepdims=True)
        b = b / b.sum(1, keepdims=True)
        return float(0.5 * np.abs(a - b).sum(1).mean())

    # Adjacent weeks differ by sampling noise plus one week of drift; first vs last by more.
    assert tv(w1[ok], last[ok]) > tv(w1[ok], w2[ok]) + 0.03
