"""The alerting rules of deploy/prometheus/ pass promtool's checks and unit tests (when
Debian's prometheus package is installed; `make lint` requires it), and alert only on metrics
the service exposes: the serving metrics and the monitor's gauges, under their exact names."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mlsd.monitoring import GAUGES
from mlsd.serving.metrics import ServingMetrics
from mlsd.serving.monitor import MONITOR_GAUGES

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")
SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}


def _rules() -> list[dict]:
    (group,) = yaml.safe_load((DEPLOY / "rules.yml").read_text())["groups"]
    assert group["name"] == "mlsd"
    return group["rules"]


def test_every_alert_has_severity_summary_and_description() -> None:
    names = [r["alert"] for r in _rules()]
    assert names == [
        "MlsdFeatureDrift",
        "MlsdOnlineMetricDrift",
        "MlsdDataQuality",
        "MlsdHighErrorRate",
        "MlsdHighLatencyP99",
        "MlsdDegradedShare",
        "MlsdEventLogLag",
    ]
    for r in _rules():
        assert r["labels"]["severity"] in ("warning", "critical"), r["alert"]
        assert {"summary", "description"} <= set(r["annotations"]), r["alert"]


def test_rules_read_only_metrics_the_service_exposes() -> None:
    exposed = set(GAUGES) | set(MONITOR_GAUGES)
    for m in ServingMetrics().registry.collect():
        exposed.update(m.name + s for s in SUFFIXES.get(m.type, [""]))
    used = {n for r in _rules() for n in re.findall(r"\bmlsd_[a-z0-9_]+", r["expr"])}
    assert used and used <= exposed, used - exposed


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian's prometheus)")
@pytest.mark.parametrize(
    "args",
    [
        ["check", "rules", "rules.yml"],
        ["test", "rules", "rules_test.yml"],
        ["check", "config", "prometheus.yml"],
    ],
)
def test_promtool_accepts_the_rules(args: list[str]) -> None:
    assert PROMTOOL is not None
    got = subprocess.run(
        [PROMTOOL, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=60, check=False
    )
    assert got.returncode == 0, got.stdout + got.stderr


@pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool not installed")
def test_amtool_accepts_the_alertmanager_config() -> None:
    amtool = shutil.which("amtool")
    assert amtool is not None
    got = subprocess.run(
        [amtool, "check-config", "alertmanager.yml"],
        cwd=DEPLOY,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert got.returncode == 0, got.stdout + got.stderr
