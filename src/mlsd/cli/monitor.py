"""``mlsd monitor``: the drift monitor's last check of a running service as a report, its
firing alerts posted to a webhook, and (optionally) a retraining run started by a drift
alert."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from mlsd.cli._common import console, err_console, user_errors


@user_errors
def monitor(
    url: Annotated[
        str, typer.Option(help="The running service (its GET /admin/monitor is read).")
    ] = "http://127.0.0.1:8000",
    api_key: Annotated[
        str | None, typer.Option(envvar="MLSD_API_KEY", help="The service's admin key.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Report directory (default: runs/monitor/ and the UTC time)."),
    ] = None,
    alert_webhook: Annotated[
        str | None,
        typer.Option(
            help="POST firing alerts here in Alertmanager's webhook format (retried on "
            "connection errors and 5xx)."
        ),
    ] = None,
    retrain_config: Annotated[
        Path | None,
        typer.Option(
            help="A `mlsd retrain` config (YAML): a drift alert (features, scores or the "
            "online CTR) starts that retraining run, gates and all."
        ),
    ] = None,
) -> None:
    """Read the service's drift monitor (features and scores against the training reference,
    data quality, the online CTR against the days before), write a Markdown + HTML report
    and act on what fires. Exit 0 when nothing fires, 1 when an alert fires."""
    from mlsd.monitoring import (
        ColumnDrift,
        DatasetDrift,
        QualityIssue,
        drift_alerts,
        drift_html,
        drift_markdown,
        post_alerts,
    )
    from mlsd.monitoring.online import OnlineMetricDrift

    d = _fetch(url.rstrip("/") + "/admin/monitor", api_key)
    if not d.get("enabled"):
        err_console.print("the service runs without its monitor (--monitor-interval 0)")
        raise typer.Exit(2)
    if d.get("checked_at") is None:
        err_console.print("the monitor has not checked yet (too few sampled requests)")
        raise typer.Exit(0)
    dd = d["drift"]
    columns = tuple(ColumnDrift(**_floats(c)) for c in dd["columns"])
    drift = DatasetDrift(columns, dd["drifted_share"], dd["share_threshold"], dd["drifted"])
    quality = [QualityIssue(**q) for q in d["quality"]]
    pred = ColumnDrift(**_floats(d["prediction"])) if d.get("prediction") else None
    labels = {"instance": url}
    online = d.get("online") or {}
    alerts = drift_alerts(drift, quality, pred, labels=labels,
                          online=OnlineMetricDrift(**online) if online else None)  # fmt: skip
    title = f"Drift report of {url} ({d.get('model_version')})"
    where = out or Path("runs/monitor") / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    where.mkdir(parents=True, exist_ok=True)
    md = drift_markdown(drift, quality, title, pred)
    if online:
        base = online["baseline_ctr"]
        md += (
            f"\n## Online metric\n\nCTR of the latest period {online['ctr']:.4f}, baseline "
            f"{'–' if base is None else f'{base:.4f}'} ({online['baseline_periods']} periods); "
            f"drift: {online['drifted']}.\n"
        )
    (where / "report.md").write_text(md)
    (where / "report.html").write_text(drift_html(drift, quality, title, pred))
    (where / "monitor.json").write_text(json.dumps(d, indent=2))
    console.print(
        f"{d['rows']:,} rows vs {d['reference_rows']:,} reference rows: "
        f"{drift.n_drifted}/{len(columns)} features drifted, scores "
        f"{'drifted' if pred and pred.drifted else 'stable'}, {len(quality)} quality issue(s), "
        f"online CTR {'fell' if online.get('drifted') else 'steady'}",
        markup=False,
    )
    console.print(f"report: {where / 'report.html'}", markup=False)
    for a in alerts:
        console.print(f"FIRING {a.labels['alertname']}: {a.annotations.get('summary')}",
                      markup=False)  # fmt: skip
    if alerts and alert_webhook:
        status = post_alerts(alert_webhook, alerts)
        console.print(f"posted {len(alerts)} alert(s) to {alert_webhook} ({status})")
    drifted = any(a.labels["alertname"] in ("MlsdFeatureDrift", "MlsdOnlineMetricDrift")
                  for a in alerts)  # fmt: skip
    if drifted and retrain_config is not None:
        _retrain(retrain_config)
    if alerts:
        raise typer.Exit(1)


def _floats(c: dict[str, Any]) -> dict[str, Any]:
    """A column's JSON with the NaNs the service wrote as null back as NaN."""
    return {k: float("nan") if v is None and k in ("statistic", "psi") else v for k, v in c.items()}


def _fetch(url: str, api_key: str | None) -> dict[str, Any]:
    from mlsd.errors import MlsdError

    req = urllib.request.Request(url, headers={"X-API-Key": api_key} if api_key else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return dict(json.loads(r.read()))
    except urllib.error.HTTPError as e:
        hint = " (give the service's key: --api-key or MLSD_API_KEY)" if e.code == 403 else ""
        raise MlsdError(f"GET {url}: {e.code} {e.reason}{hint}") from None
    except (urllib.error.URLError, OSError) as e:
        raise MlsdError(f"GET {url}: {e}; is the service running?") from None


def _retrain(config: Path) -> None:
    import yaml

    from mlsd.errors import ConfigError
    from mlsd.orchestration import RetrainConfig
    from mlsd.orchestration import retrain as run_retrain

    try:
        cfg = RetrainConfig.model_validate(yaml.safe_load(config.read_text()) or {})
    except (OSError, yaml.YAMLError, ValueError) as e:
        raise ConfigError(f"{config}: {e}") from e
    console.print(f"drift alert: starting the retraining run of {cfg.name} ({config})")
    result = run_retrain(cfg, say=lambda m: console.log(m))
    console.print(result.summary(cfg.name))
