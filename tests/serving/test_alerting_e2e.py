"""End to end on loopback: Debian's ``prometheus`` scrapes a real ``mlsd serve`` (a real tiny
model) with the shipped rules of ``deploy/prometheus/rules.yml``, and ``prometheus-alertmanager``
delivers to a webhook receiver in this test. The service runs with an injected data fault (a
feature pipeline sending zeros): the data-quality alert must fire in Prometheus
(``/api/v1/alerts``) and reach the receiver."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mlsd.serving.process import ServerProcess, free_port

ROOT = Path(__file__).resolve().parents[2]  # the repository
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")

pytestmark = [
    pytest.mark.server,
    pytest.mark.slow,
    pytest.mark.skipif(
        PROMETHEUS is None or ALERTMANAGER is None,
        reason="needs Debian's prometheus and prometheus-alertmanager (.ci/run installs them)",
    ),
]


def _get(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def _wait(what: str, check: Any, timeout_s: float, procs: list[subprocess.Popen[bytes]]) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"{what}: {p.args[0]} exited with {p.returncode}")
        try:
            got = check()
            if got:
                return got
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout_s} s")


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []  # noqa: RUF012 - one receiver per test run

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    _Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alerts", _Receiver.received
    finally:
        server.shutdown()
        server.server_close()


def test_an_injected_data_fault_fires_the_alert_and_alertmanager_delivers_it(
    tmp_path: Path, real_bundle: Path, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    hook, received = receiver
    mlsd_port, prom_port, am_port = free_port(), free_port(), free_port()
    (tmp_path / "alertmanager.yml").write_text(
        "route:\n  receiver: test\n  group_by: [alertname]\n  group_wait: 1s\n"
        "  group_interval: 1s\n  repeat_interval: 1h\n"
        f"receivers:\n  - name: test\n    webhook_configs:\n      - url: {hook}\n"
    )
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {RULES}\n"
        "alerting:\n  alertmanagers:\n    - static_configs:\n"
        f"        - targets: ['127.0.0.1:{am_port}']\n"
        "scrape_configs:\n  - job_name: mlsd\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{mlsd_port}']\n"
    )
    mlsd = str(Path(sys.executable).with_name("mlsd"))
    log = (tmp_path / "logs").open("wb")
    server = ServerProcess(
        real_bundle, port=mlsd_port, api_key="k", ready_timeout_s=120,
        log_path=tmp_path / "serve.log",
        extra_args=["--monitor-interval", "1", "--feature-fault", "video_age_h=0"],
    ).start()  # fmt: skip
    assert server.proc is not None
    procs = [
        server.proc,
        subprocess.Popen(
            [str(ALERTMANAGER), f"--config.file={tmp_path / 'alertmanager.yml'}",
             f"--storage.path={tmp_path / 'am'}", f"--web.listen-address=127.0.0.1:{am_port}",
             "--cluster.listen-address="],
            stdout=log, stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [str(PROMETHEUS), f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=log, stderr=subprocess.STDOUT,
        ),
    ]  # fmt: skip
    try:
        base = server.url
        _wait("the monitor attached", lambda: _get_admin(base).get("attached"), 120, procs)
        for u in range(1, 301):  # traffic for the monitor's sample (every 5th request)
            req = urllib.request.Request(
                f"{base}/v1/recommendations", data=json.dumps({"user_id": u, "k": 10}).encode(),
                headers={"content-type": "application/json"},
            )  # fmt: skip
            with urllib.request.urlopen(req, timeout=10) as r:
                r.read()

        def issues() -> bool:
            with urllib.request.urlopen(f"{base}/metrics", timeout=5) as r:
                text = r.read().decode()
            return 'mlsd_data_quality_issues{check="zeros",feature="video_age_h"} 1.0' in text

        _wait("the service's data-quality gauge", issues, 60, procs)

        def firing() -> list[dict[str, Any]]:
            alerts = _get(f"http://127.0.0.1:{prom_port}/api/v1/alerts")["data"]["alerts"]
            return [
                a
                for a in alerts
                if a["labels"]["alertname"] == "MlsdDataQuality" and a["state"] == "firing"
            ]

        alert = _wait("MlsdDataQuality firing in Prometheus", firing, 90, procs)[0]
        assert alert["labels"]["job"] == "mlsd"

        def delivered() -> list[dict[str, Any]]:
            return [a for body in received for a in body.get("alerts", [])
                    if a["labels"].get("alertname") == "MlsdDataQuality"]  # fmt: skip

        got = _wait("Alertmanager's webhook delivery", delivered, 60, procs)[0]
        assert got["status"] == "firing"
        assert got["labels"]["instance"] == f"127.0.0.1:{mlsd_port}"
        # the service says which check failed where
        d = _get_admin(base)
        assert any(q["column"] == "video_age_h" and q["check"] == "zeros" for q in d["quality"])
        # and `mlsd monitor` reports it and posts the alert itself (exit 1: an alert fires)
        n = len(received)
        run = subprocess.run(
            [mlsd, "monitor", "--url", base, "--out", str(tmp_path / "report"),
             "--alert-webhook", hook],
            env={**os.environ, "MLSD_API_KEY": "k"}, capture_output=True, text=True,
        )  # fmt: skip
        assert run.returncode == 1, run.stdout + run.stderr
        assert "FIRING MlsdDataQuality" in run.stdout
        assert "video_age_h" in (tmp_path / "report" / "report.html").read_text()
        posted = [a for body in received[n:] for a in body.get("alerts", [])]
        assert any(a["labels"]["alertname"] == "MlsdDataQuality" for a in posted)
    finally:
        server.stop()
        for p in procs[1:]:
            p.terminate()
        for p in procs[1:]:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()


def _get_admin(base: str) -> Any:
    req = urllib.request.Request(f"{base}/admin/monitor", headers={"X-API-Key": "k"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())
