"""Monitoring (the book's step 7): whether what the service sees still looks like what the
model learned from. Data drift per feature and of the model's output (:mod:`.drift`, methods
as Evidently's defaults, PSI beside them), data quality (:mod:`.quality`), reports for people
(:mod:`.report`), the values of the service's monitor gauges (:mod:`.gauges`) and alerts
posted in Alertmanager's webhook format (:mod:`.alerts`). The Prometheus alerting rules over
those gauges and the serving metrics live in ``deploy/prometheus/``.

This block sits below serving (the service runs the monitor over its recent requests and
exposes the gauges) and imports only NumPy, SciPy, statsmodels, pyarrow and ``mlsd.errors``;
what a drift alert starts (a retraining run) is wired by the CLI.
"""

from __future__ import annotations

from .alerts import Alert, drift_alerts, post_alerts, webhook_payload
from .drift import (
    KINDS,
    ColumnDrift,
    DatasetDrift,
    column_drift,
    dataset_drift,
    prediction_drift,
    psi,
)
from .gauges import GAUGES, gauge_samples
from .quality import CHECKS, QualityIssue, data_quality
from .report import drift_html, drift_markdown

__all__ = [
    "CHECKS",
    "GAUGES",
    "KINDS",
    "Alert",
    "ColumnDrift",
    "DatasetDrift",
    "QualityIssue",
    "column_drift",
    "data_quality",
    "dataset_drift",
    "drift_alerts",
    "drift_html",
    "drift_markdown",
    "gauge_samples",
    "post_alerts",
    "prediction_drift",
    "psi",
    "webhook_payload",
]
