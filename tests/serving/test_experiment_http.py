"""An A/B experiment through a real ``mlsd serve --experiment`` (tiny model): the arms split
users by the service's hash, responses and stored events name the arm, exposures are logged,
and ``mlsd experiment run --url`` drives the closed loop over HTTP and writes the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlsd.serving.assignment import assign
from mlsd.serving.process import ServerProcess

pytestmark = [pytest.mark.server, pytest.mark.slow]

CONFIG = """name: tiny-ab
salt: s1
arms:
  - name: most-popular
    policy: most-popular
  - name: pipeline
metrics: [valid_watches, plays, ctr]
"""


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as r:
        return dict(json.loads(r.read()))


def test_an_ab_test_through_the_service(
    tmp_path: Path, real_bundle: Path, tiny_dataset: Path
) -> None:
    cfg = tmp_path / "ab.yaml"
    cfg.write_text(CONFIG)
    log = tmp_path / "events.jsonl"
    mlsd = str(Path(sys.executable).with_name("mlsd"))
    env = {**os.environ, "MLSD_API_KEY": "k"}
    server = ServerProcess(
        real_bundle, api_key="k", event_log=log, ready_timeout_s=120,
        log_path=tmp_path / "serve.log",
        extra_args=["--experiment", str(cfg), "--max-event-rate", "0", "--monitor-interval", "0"],
    )  # fmt: skip
    with server:
        users = np.arange(1, 41)
        expect = assign(users, "s1", [1, 1])
        for u, a in zip(users.tolist(), expect.tolist(), strict=True):
            body = _post(f"{server.url}/v1/recommendations", {"user_id": u, "k": 5})
            assert body["experiment"] == {"name": "tiny-ab", "arm": ["most-popular", "pipeline"][a]}
        run = subprocess.run(
            [mlsd, "experiment", "run", "--config", str(cfg), "--data", str(tiny_dataset),
             "--url", server.url, "--days", "2", "--exposures", f"{log}.exposures.jsonl",
             "--out", str(tmp_path / "run")],
            env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
    a = json.loads((tmp_path / "run" / "analysis.json").read_text())
    assert a["arms"] == ["most-popular", "pipeline"] and a["days"] == 2
    assert a["srm"]["source"] == "users in the exposure log" and not a["srm"]["alarm"]
    assert a["http"]["events_sent"] > 0 and a["http"]["requests"] > 0
    # every stored event names the experiment and the arm the service's hash gives its user
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == a["http"]["events_sent"]
    arms = assign(np.array([r["user_id"] for r in records]), "s1", [1, 1])
    assert [r["arm"] for r in records] == [["most-popular", "pipeline"][i] for i in arms]
    assert {r["experiment"] for r in records} == {"tiny-ab"}
    exposures = (tmp_path / "events.jsonl.exposures.jsonl").read_text().splitlines()
    assert len(exposures) == a["http"]["requests"] + 40
    html = (tmp_path / "run" / "report.html").read_text()
    assert "most-popular" in html and "data:image/png;base64" in html
