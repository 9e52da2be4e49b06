"""Alerts sent straight to a webhook, in the JSON that Alertmanager posts to its webhook
receivers: for a monitor run outside Prometheus (a batch drift check, the demo) whose
receiver is the same endpoint Alertmanager would call.

The body is Alertmanager's webhook payload, version "4" (Prometheus docs, "Alertmanager
configuration: <webhook_config>"): ``status`` "firing", the ``alerts`` each with ``labels``,
``annotations``, ``startsAt`` (RFC 3339), ``endsAt`` Go's zero time (still firing) and a
``fingerprint`` of its labels, with the group's common labels and annotations. Alert names and
labels match the rules of ``deploy/prometheus/rules.yml`` (``MlsdFeatureDrift``,
``MlsdDataQuality``), so that one receiver handles both paths.

Delivery uses urllib (the standard library, and its proxy settings): a connection error, a
timeout or a 5xx answer is tried again after ``backoff_s * 2**i`` seconds; a 4xx is not (the
same body would be refused again).
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from mlsd.errors import AlertDeliveryError, ConfigError

from .drift import ColumnDrift, DatasetDrift
from .online import OnlineMetricDrift
from .quality import QualityIssue

__all__ = ["Alert", "drift_alerts", "post_alerts", "webhook_payload"]

GO_ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of an alert still firing


@dataclass(frozen=True)
class Alert:
    """One firing alert: ``labels`` identify it (``alertname`` among them, by convention),
    ``annotations`` describe it; ``starts_at`` None reads as now."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    starts_at: datetime | None = None


def _rfc3339(t: datetime) -> str:
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    first = dict(maps[0]) if maps else {}
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in maps[1:])}


def webhook_payload(alerts: Sequence[Alert], receiver: str = "mlsd") -> dict[str, Any]:
    """The body Alertmanager would post to ``receiver`` for these firing ``alerts``."""
    now = datetime.now(UTC)
    items: list[dict[str, Any]] = []
    labels: list[dict[str, str]] = []
    notes: list[dict[str, str]] = []
    for a in alerts:
        labels.append({str(k): str(v) for k, v in a.labels.items()})
        notes.append({str(k): str(v) for k, v in a.annotations.items()})
        digest = hashlib.sha256(json.dumps(sorted(labels[-1].items())).encode()).hexdigest()
        items.append(
            {
                "status": "firing",
                "labels": labels[-1],
                "annotations": notes[-1],
                "startsAt": _rfc3339(a.starts_at or now),
                "endsAt": GO_ZERO_TIME,
                "generatorURL": "",
                "fingerprint": digest[:16],
            }
        )
    common = _common(labels)
    return {
        "version": "4",
        "groupKey": "{}:" + json.dumps(common, sort_keys=True),
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": receiver,
        "groupLabels": {},
        "commonLabels": common,
        "commonAnnotations": _common(notes),
        "externalURL": "",
        "alerts": items,
    }


def post_alerts(
    url: str,
    alerts: Sequence[Alert],
    timeout_s: float = 5.0,
    retries: int = 3,
    backoff_s: float = 0.5,
) -> int | None:
    """POST ``alerts`` to the webhook ``url`` (http or https) as Alertmanager's payload; the
    HTTP status that accepted them (2xx), or None when there were none to send.

    A connection error, timeout (``timeout_s`` each try) or 5xx is tried again up to
    ``retries`` more times, waiting ``backoff_s``, then twice that, and so on. Raises
    :class:`~mlsd.errors.AlertDeliveryError` naming the URL and the last status or error
    after the last try, or at once on another status; :class:`~mlsd.errors.ConfigError` for a
    URL that is not http(s) or negative ``retries``.
    """
    if urlsplit(url).scheme not in ("http", "https"):
        raise ConfigError(f"alert webhook {url!r}: expected an http:// or https:// URL")
    if retries < 0:
        raise ConfigError(f"alert retries {retries}: expected >= 0")
    if not alerts:
        return None
    body = json.dumps(webhook_payload(alerts)).encode()
    last = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1))
        req = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as reply:
                return int(reply.status)
        except urllib.error.HTTPError as e:  # an answer, not 2xx
            last = f"HTTP {e.code}"
            if e.code < 500:
                break
        except (OSError, TimeoutError) as e:  # URLError, refused, reset, timed out
            last = str(getattr(e, "reason", e)) or type(e).__name__
    tries = attempt + 1
    raise AlertDeliveryError(
        f"alerts not delivered to {url}: {last} (after {tries} tr{'y' if tries == 1 else 'ies'})"
    )


def drift_alerts(
    drift: DatasetDrift,
    quality: Sequence[QualityIssue] = (),
    prediction: ColumnDrift | None = None,
    labels: Mapping[str, str] | None = None,
    online: OnlineMetricDrift | None = None,
) -> list[Alert]:
    """The alerts a monitor run raises, named as the Prometheus rules name them:
    ``MlsdFeatureDrift`` when at least ``share_threshold`` of the features or the prediction
    shifted majorly (PSI >= :data:`~.drift.PSI_ALERT`), ``MlsdDataQuality`` when a check
    failed, ``MlsdOnlineMetricDrift`` when ``online`` (the CTR check) drifted; ``[]`` when
    none. ``labels`` are added to each (e.g. the service)."""
    extra = dict(labels or {})
    out = []
    pred = prediction is not None and prediction.psi_major
    if drift.psi_alert or pred:
        major = [c.name for c in drift.columns if c.psi_major]
        what = [
            f"{len(major)} of {len(drift.columns)} features shifted (PSI >= 0.25: "
            f"{drift.psi_share:.0%}; alert at {drift.share_threshold:.0%})"
        ]
        if major:
            what.append("shifted: " + ", ".join(major))
        if prediction is not None:
            what.append(f"prediction PSI {prediction.psi:.3g}")
        out.append(
            Alert(
                {**extra, "alertname": "MlsdFeatureDrift", "severity": "warning"},
                {
                    "summary": "Data or prediction drift in the monitored window",
                    "description": "; ".join(what),
                },
            )
        )
    if quality:
        out.append(
            Alert(
                {**extra, "alertname": "MlsdDataQuality", "severity": "warning"},
                {
                    "summary": f"{len(quality)} data-quality issue(s) in the monitored window",
                    "description": "; ".join(f"{q.column} {q.check}: {q.detail}" for q in quality),
                },
            )
        )
    if online is not None and online.drifted:
        change = online.relative_change or 0.0
        out.append(
            Alert(
                {**extra, "alertname": "MlsdOnlineMetricDrift", "severity": "warning"},
                {
                    "summary": "Online CTR fell in the latest period",
                    "description": f"CTR {online.ctr:.4f} vs {online.baseline_ctr or 0.0:.4f} "
                    f"over the {online.baseline_periods} periods before ({100 * change:+.1f}%)",
                },
            )
        )
    return out
