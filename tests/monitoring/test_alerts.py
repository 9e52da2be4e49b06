"""Alerts reach a real webhook on loopback in Alertmanager's format; a 5xx or a refused
connection is tried again, a webhook that keeps failing raises naming the URL and status."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from mlsd.errors import AlertDeliveryError, ConfigError, MlsdError
from mlsd.monitoring import (
    Alert,
    column_drift,
    data_quality,
    dataset_drift,
    drift_alerts,
    gauge_samples,
    post_alerts,
)


class Webhook:
    """A loopback HTTP server answering POSTs with ``statuses`` in turn (the last one
    repeated), keeping every body it received."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses, self.bodies = list(statuses), []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.bodies.append(json.loads(body))
                status = hook.statuses.pop(0) if len(hook.statuses) > 1 else hook.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:  # keep the test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook(request: pytest.FixtureRequest) -> Iterator[Webhook]:
    hook = Webhook(getattr(request, "param", [200]))
    yield hook
    hook.close()


ALERT = Alert(
    {"alertname": "MlsdFeatureDrift", "severity": "warning"},
    {"summary": "drift", "description": "watch_s drifted"},
)


def test_the_webhook_receives_alertmanagers_payload(webhook: Webhook) -> None:
    other = Alert({"alertname": "MlsdDataQuality", "severity": "warning"}, {"summary": "q"})
    assert post_alerts(webhook.url, [ALERT, other]) == 200
    (body,) = webhook.bodies
    assert body["version"] == "4" and body["status"] == "firing"
    assert body["commonLabels"] == {"severity": "warning"}
    first = body["alerts"][0]
    assert first["labels"] == {"alertname": "MlsdFeatureDrift", "severity": "warning"}
    assert first["annotations"]["description"] == "watch_s drifted"
    assert first["status"] == "firing" and first["startsAt"].endswith("Z")
    assert first["endsAt"] == "0001-01-01T00:00:00Z"
    assert first["fingerprint"] != body["alerts"][1]["fingerprint"]
    assert post_alerts(webhook.url, []) is None and len(webhook.bodies) == 1


@pytest.mark.parametrize("webhook", [[500, 200]], indirect=True)
def test_a_5xx_is_tried_again(webhook: Webhook) -> None:
    assert post_alerts(webhook.url, [ALERT], backoff_s=0.01) == 200
    assert len(webhook.bodies) == 2 and webhook.bodies[0] == webhook.bodies[1]


@pytest.mark.parametrize("webhook", [[500]], indirect=True)
def test_a_webhook_that_keeps_failing_raises(webhook: Webhook) -> None:
    with pytest.raises(
        AlertDeliveryError, match=re.escape(f"{webhook.url}: HTTP 500 (after 4 tries)")
    ):
        post_alerts(webhook.url, [ALERT], retries=3, backoff_s=0.001)
    assert len(webhook.bodies) == 4


@pytest.mark.parametrize("webhook", [[400]], indirect=True)
def test_a_4xx_is_not_tried_again(webhook: Webhook) -> None:
    with pytest.raises(MlsdError, match=re.escape("HTTP 400 (after 1 try)")):
        post_alerts(webhook.url, [ALERT], backoff_s=0.001)
    assert len(webhook.bodies) == 1


def test_a_refused_connection_raises_after_the_retries() -> None:
    with socket.socket() as s:  # a port nobody listens on (bound, never listening)
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/alerts"
        with pytest.raises(AlertDeliveryError, match=re.escape(url) + r": .*\(after 3 tries\)"):
            post_alerts(url, [ALERT], timeout_s=1, retries=2, backoff_s=0.001)
    with pytest.raises(ConfigError):
        post_alerts("file:///etc/passwd", [ALERT])


def test_a_monitor_run_becomes_alerts_and_gauges() -> None:
    rng = np.random.default_rng(0)
    ref = {"a": rng.normal(size=500), "b": rng.normal(size=500)}
    cur = {"a": rng.normal(1, 1, 500), "b": np.r_[rng.normal(size=400), [np.nan] * 100]}
    kinds = {"a": "num", "b": "num"}
    drift, quality = dataset_drift(ref, cur, kinds), data_quality(ref, cur, kinds)
    pred = column_drift("prediction", ref["a"], ref["a"][::-1], "num")
    alerts = drift_alerts(drift, quality, pred, labels={"service": "mlsd"})
    assert [a.labels["alertname"] for a in alerts] == ["MlsdFeatureDrift", "MlsdDataQuality"]
    assert all(a.labels["service"] == "mlsd" for a in alerts)
    assert "shifted: a" in alerts[0].annotations["description"]
    assert "b nulls" in alerts[1].annotations["description"]
    g = gauge_samples(drift, quality, pred, window_rows=500)
    assert g["mlsd_drift_share"] == [({}, 0.5)]
    assert g["mlsd_drift_share_psi"] == [({}, 0.5)]  # a shifted by 1 sd: PSI far above 0.25
    psi = dict((s[0]["feature"], s[1]) for s in g["mlsd_drift_psi"])
    assert psi["a"] >= 0.25 > psi["b"]
    assert ({"feature": "a"}, 1.0) in g["mlsd_drift_detected"]
    assert g["mlsd_drift_score"][0][0] == {"feature": "a", "method": "ks"}
    issues = {(s[0]["feature"], s[0]["check"]): s[1] for s in g["mlsd_data_quality_issues"]}
    assert issues["b", "nulls"] == 1.0 and sum(issues.values()) == 1.0 and len(issues) == 8
    assert g["mlsd_prediction_drift_detected"] == [({}, 0.0)]
    assert g["mlsd_monitor_window_rows"] == [({}, 500.0)]
    clean = dataset_drift(ref, ref, kinds)
    assert drift_alerts(clean, [], None) == []
