"""``mlsd monitor`` on a real monitor's check (the HTTP read is the end-to-end alerting test's
subject): the report is written, alerts fire with exit 1, a drift alert starts the retraining
run named in --retrain-config (the run itself is the orchestration tests' subject and stands
in here), and the errors a user meets are one clear line."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

import mlsd.orchestration as orchestration
from mlsd.cli import app
from mlsd.monitoring.online import DAY_MS
from mlsd.orchestration import RetrainResult
from mlsd.serving.monitor import ServiceMonitor
from mlsd.serving.service import ModelHolder
from tests.serving.stub_model import StubModel

# the package's ``monitor`` attribute is the command; the module is in sys.modules
cli_monitor = importlib.import_module("mlsd.cli.monitor")


def _day(day: int, impressions: int, plays: int) -> pa.Table:
    t = np.full(impressions + plays, day * DAY_MS + 1000, np.int64)
    return pa.table({"timestamp": t, "event_type": ["impression"] * impressions + ["play"] * plays})


def _details(ctr_drop: bool) -> dict[str, Any]:
    mon = ServiceMonitor(ModelHolder(StubModel()), CollectorRegistry())  # not feature-monitored
    mon.online.observe(_day(100, 5000, 1000))
    mon.online.observe(_day(101, 5000, 500 if ctr_drop else 1000))
    mon.check()
    d = mon.details()
    # no feature rows from a stub: the drift parts of a quiet check
    return {**d, "enabled": True, "checked_at": 1.0, "model_version": "v", "rows": 0,
            "reference_rows": 0, "quality": [], "prediction": None,
            "drift": {"columns": [], "drifted_share": 0.0, "share_threshold": 0.5,
                      "drifted": False}}  # fmt: skip


@pytest.mark.parametrize("drop", [False, True])
def test_monitor_reports_fires_and_starts_the_retraining(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, drop: bool
) -> None:
    monkeypatch.setattr(cli_monitor, "_fetch", lambda url, key: _details(drop))
    runs: list[str] = []

    def fake_retrain(cfg: Any, say: Any = None, **kw: Any) -> RetrainResult:
        runs.append(cfg.name)
        return RetrainResult(
            gates={"passed": True, "failed": []},
            promote={"promoted": False, "champion": 1},
            register={"version": 2},
        )

    monkeypatch.setattr(orchestration, "retrain", fake_retrain)
    cfg = tmp_path / "retrain.yaml"
    cfg.write_text("name: videorec\n")
    r = CliRunner().invoke(app, ["monitor", "--url", "http://x", "--out", str(tmp_path / "r"),
                                 "--retrain-config", str(cfg)])  # fmt: skip
    assert (tmp_path / "r" / "report.md").exists()
    if drop:
        assert r.exit_code == 1, r.output
        assert "FIRING MlsdOnlineMetricDrift" in r.output
        assert runs == ["videorec"]
        assert "videorec v2: gates passed; champion stays v1" in r.output
        assert "Online metric" in (tmp_path / "r" / "report.md").read_text()
    else:
        assert r.exit_code == 0, r.output
        assert runs == [] and "FIRING" not in r.output


def test_monitor_without_a_service_is_one_line(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["monitor", "--url", "http://127.0.0.1:9", "--out",
                                 str(tmp_path)])  # fmt: skip
    assert r.exit_code == 2
    assert "is the service running?" in r.output and "Traceback" not in r.output
