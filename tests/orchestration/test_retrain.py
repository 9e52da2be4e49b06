"""The retraining pipeline end to end on the tiny world: gates, refusal, validation stops,
resumption after kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mlsd.cli import app
from mlsd.orchestration import RetrainConfig, RunStopped, retrain
from mlsd.registry import Registry

runner = CliRunner()
pytestmark = pytest.mark.slow


def _cfg(tmp_path: Path, uri: str, new: list[Path], **kw: object) -> RetrainConfig:
    return RetrainConfig.model_validate(
        {"name": "videorec", "registry_uri": uri, "new": new, "work_dir": tmp_path / "runs",
         "backtest_windows": 0, "eval_users": 300, **kw}
    )  # fmt: skip


def test_a_retrain_registers_the_challenger_and_promotes_it_when_gates_pass(
    tmp_path: Path, registry_uri: str, world: tuple[Path, Path]
) -> None:
    out = retrain(_cfg(tmp_path, registry_uri, [world[1]], auto_promote=True,
                       backtest_windows=1), say=lambda m: None)  # fmt: skip
    assert out["gates"]["passed"], out["gates"]
    assert set(out["gates"]["gates"]) == {
        "ndcg_latest", "ndcg_backtest", "skew", "latency_p99_ms", "bundle_mb"
    }  # fmt: skip
    reg = Registry(registry_uri)
    v2 = reg.version("videorec", 2)
    assert v2.aliases == ("champion",) and v2.gates_passed is True
    assert v2.metrics["ndcg_at_20"] == pytest.approx(
        out["evaluate"]["windows"][0]["challenger"]["ndcg@20"]
    )
    # the config as given, not this fit's resolved choices: the next retrain tunes again
    v1 = reg.version("videorec", 1)
    assert {k: v for k, v in v2.params.items() if k.startswith("config.")} == {
        k: v for k, v in v1.params.items() if k.startswith("config.")
    }
    # the next retrain starts from everything this one saw, holdout included
    saw = pq.read_metadata(Path(out["validate"]["dataset"]) / "events.parquet").num_rows
    stored = reg.dataset_path(v2)
    assert stored is not None
    assert pq.read_metadata(stored / "events.parquet").num_rows == saw
    report = Path(out["report"])
    assert "data:image/png;base64" in report.read_text()
    md = report.with_suffix(".md").read_text()
    assert "## Gates: passed" in md and "Promoted: v2 is the champion." in md
    res = runner.invoke(
        app, ["models", "diff", "videorec", "1", "2", "--registry-uri", registry_uri]
    )
    assert res.exit_code == 0, res.output
    assert "v1" in res.output and "v2" in res.output and "ndcg_latest" in res.output


def test_a_challenger_on_shuffled_labels_is_refused_and_the_champion_stays(
    tmp_path: Path, registry_uri: str, world: tuple[Path, Path]
) -> None:
    res = runner.invoke(app, [
        "retrain", "videorec", "--new", str(world[1]), "--registry-uri", registry_uri,
        "--work-dir", str(tmp_path / "runs"), "--auto-promote", "--backtest-windows", "0",
        "--challenger-fault", "shuffle-labels",
    ])  # fmt: skip
    assert res.exit_code == 1, res.output
    assert "FAILED (ndcg_latest" in res.output
    reg = Registry(registry_uri)
    assert reg.alias("videorec", "champion").version == 1
    v2 = reg.version("videorec", 2)
    assert v2.aliases == ("challenger",) and v2.gates_passed is False
    gate = v2.gates["ndcg_latest"]
    assert not gate["passed"] and gate["value"] < gate["limit"]
    md = next((tmp_path / "runs" / "videorec").glob("*/report.md")).read_text()
    assert "| ndcg_latest | **FAIL** |" in md and "Not promoted (gates failed)" in md


def test_schema_violations_stop_the_run_at_validate(
    tmp_path: Path, registry_uri: str, world: tuple[Path, Path]
) -> None:
    ev = pq.read_table(world[1] / "events.parquet")
    n_bad = ev.num_rows // 20  # 5%: over the 1% limit
    ws = ev.column("watch_seconds").to_pylist()
    for i in range(n_bad):
        ws[i * 20] = -5.0
    i = ev.schema.get_field_index("watch_seconds")
    bad = tmp_path / "bad"
    bad.mkdir()
    pq.write_table(ev.set_column(i, "watch_seconds", pa.array(ws, pa.float32())),
                   bad / "events.parquet")  # fmt: skip
    with pytest.raises(RunStopped) as stop:
        retrain(_cfg(tmp_path, registry_uri, [bad], auto_promote=True), say=lambda m: None)
    msg = str(stop.value)
    assert str(bad / "events.parquet") in msg and "watch_seconds" in msg
    assert f"{n_bad:,} of {ev.num_rows:,} rows" in msg
    assert stop.value.report is not None and "Stopped:" in stop.value.report.read_text()
    reg = Registry(registry_uri)
    assert [v.version for v in reg.versions("videorec")] == [1]
    assert reg.alias("videorec", "champion").version == 1


def test_a_few_bad_rows_are_quarantined_and_counted(
    tmp_path: Path, registry_uri: str, world: tuple[Path, Path]
) -> None:
    ev = pq.read_table(world[1] / "events.parquet")
    types = ev.column("event_type").to_pylist()
    types[0], types[1] = "teleport", "teleport"
    i = ev.schema.get_field_index("event_type")
    few = tmp_path / "few"
    few.mkdir()
    pq.write_table(ev.set_column(i, "event_type", pa.array(types)), few / "events.parquet")
    cfg = _cfg(tmp_path, registry_uri, [few])
    from mlsd.orchestration import Run, run_step

    run = Run.open(cfg, say=lambda m: None)
    run_step(run, "collect")
    got = run_step(run, "validate")
    assert got["quarantined"] == 2
    merged = pq.read_table(Path(got["dataset"]) / "events.parquet")
    base = pq.read_metadata(Path(run.results["collect"]["base"]) / "events.parquet").num_rows
    assert merged.num_rows == base + ev.num_rows - 2
    assert pc.sum(pc.equal(merged["event_type"], "teleport")).as_py() in (None, 0)


def test_kill_9_during_training_then_a_rerun_completes_without_half_registrations(
    tmp_path: Path, registry_uri: str, world: tuple[Path, Path]
) -> None:
    cmd = [sys.executable, "-m", "mlsd.cli", "retrain", "videorec", "--new", str(world[1]),
           "--registry-uri", registry_uri, "--work-dir", str(tmp_path / "runs"),
           "--backtest-windows", "0"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    steps = None
    while time.monotonic() < deadline:
        found = list((tmp_path / "runs" / "videorec").glob("*/steps/validate.json"))
        if found:
            steps = found[0].parent
            break
        time.sleep(0.05)
    assert steps is not None, "validate never finished"
    time.sleep(0.5)  # inside the training step
    assert not (steps / "train.json").exists()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    reg = Registry(registry_uri)
    assert [v.version for v in reg.versions("videorec")] == [1]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "validate: done in an earlier attempt, skipped" in res.stdout
    assert [v.version for v in reg.versions("videorec")] == [1, 2]
    assert reg.alias("videorec", "challenger").version == 2
    assert reg.alias("videorec", "champion").version == 1  # no --auto-promote
