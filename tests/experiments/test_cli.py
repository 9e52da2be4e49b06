"""``mlsd experiment run`` in process (three arms, offline NDCG beside the online lift) and
``mlsd experiment analyze`` (CUPED with the pre-period) on the tiny world."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlsd.cli import app

pytestmark = pytest.mark.slow

CONFIG = """name: tiny-three
arms:
  - name: most-popular
    policy: most-popular
  - name: pipeline
  - name: no-exploration
    rerank: {exploration: {enabled: false}}
mde: 0.05
"""


def test_run_then_analyze(tmp_path: Path, real_bundle: Path, tiny_dataset: Path) -> None:
    runner = CliRunner()
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(CONFIG)
    nxt = tmp_path / "next"
    r = runner.invoke(app, ["simulate", "--continue", str(tiny_dataset), "--days", "3",
                            "--out", str(nxt)])  # fmt: skip
    assert r.exit_code == 0, r.output
    out = tmp_path / "run"
    r = runner.invoke(app, ["experiment", "run", "--config", str(cfg), "--data",
                            str(tiny_dataset), "--model", str(real_bundle), "--days", "2",
                            "--offline-data", str(nxt), "--out", str(out)])  # fmt: skip
    assert r.exit_code == 0, r.output
    offline = json.loads((out / "offline.json").read_text())
    assert set(offline) == {"most-popular", "pipeline", "no-exploration"}
    assert all(0 <= v <= 1 for v in offline.values())
    a = json.loads((out / "analysis.json").read_text())
    assert len(a["pairs"]) == 3 and a["days"] == 2
    # the re-ranking override took: that arm explores no slot, the pipeline does
    assert a["slates"]["no-exploration"]["exploration_share"] == 0
    assert a["slates"]["pipeline"]["exploration_share"] > 0
    md = (out / "report.md").read_text()
    assert "Offline vs online" in md and "no-exploration vs pipeline" in md
    # analysed again with the pre-period: CUPED's table appears
    r = runner.invoke(app, ["experiment", "analyze", "--config", str(cfg), "--run", str(out),
                            "--data", str(tiny_dataset)])  # fmt: skip
    assert r.exit_code == 0, r.output
    again = json.loads((out / "analysis.json").read_text())
    assert 0 <= again["cuped"]["variance_reduction"] < 1
    assert "CUPED" in (out / "report.md").read_text()


def test_a_bad_config_names_the_field(tmp_path: Path, tiny_dataset: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("name: x\narms:\n  - name: a\n  - name: a\n")
    r = CliRunner().invoke(app, ["experiment", "run", "--config", str(cfg), "--data",
                                 str(tiny_dataset), "--model", str(tmp_path)])  # fmt: skip
    assert r.exit_code == 2
    assert "bad.yaml" in r.output and "arm names must differ" in r.output


def test_a_bad_data_directory_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("name: x\narms: [{name: a}, {name: b}]\n")
    data = tmp_path / "data"
    data.mkdir()
    args = ["experiment", "run", "--config", str(cfg), "--data", str(data), "--url", "http://x"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2 and "manifest.json: not found" in r.output
    (data / "manifest.json").write_text("{not json")
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2 and "manifest.json: not valid JSON" in r.output
    (data / "manifest.json").write_text("[1, 2]")
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2 and "expected a dataset manifest object" in r.output
