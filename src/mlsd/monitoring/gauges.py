"""The values of the monitor's Prometheus gauges for one run, as plain data (this block does
not import prometheus-client: the service owns its registry and sets these). The names and
labels are the ones ``deploy/prometheus/rules.yml`` alerts on:

- ``mlsd_drift_detected{feature}``: 1 when the feature drifted, else 0;
- ``mlsd_drift_score{feature,method}``: its drift statistic (a p-value or a distance: see
  :class:`~mlsd.monitoring.ColumnDrift`);
- ``mlsd_drift_share``: the share of drifted features, 0 to 1;
- ``mlsd_drift_psi{feature}``: the feature's PSI; ``mlsd_drift_share_psi``: the share of
  features with a major shift (PSI >= 0.25), what the drift alert reads;
- ``mlsd_prediction_psi``: the PSI of the model's scores (the alert reads >= 0.25);
- ``mlsd_prediction_drift_detected``: 1 when the model's output drifted, else 0;
- ``mlsd_data_quality_issues{feature,check}``: 1 per failed check, 0 for the checks that
  passed (every feature and check is present, so a cleared issue reads 0, not stale 1);
- ``mlsd_monitor_window_rows``: rows in the current window.

A feature's method can change between runs (the window crossing 1,000 rows): clear a
labelled gauge before setting a run's samples, or the other method's series stays behind.
"""

from __future__ import annotations

from collections.abc import Sequence

from .drift import ColumnDrift, DatasetDrift
from .quality import CHECKS, QualityIssue

__all__ = ["GAUGES", "Sample", "gauge_samples"]

Sample = tuple[dict[str, str], float]  # (labels, value)

GAUGES = (
    "mlsd_drift_detected",
    "mlsd_drift_score",
    "mlsd_drift_share",
    "mlsd_drift_psi",
    "mlsd_drift_share_psi",
    "mlsd_prediction_drift_detected",
    "mlsd_prediction_psi",
    "mlsd_data_quality_issues",
    "mlsd_monitor_window_rows",
)


def gauge_samples(
    drift: DatasetDrift,
    quality: Sequence[QualityIssue],
    prediction: ColumnDrift | None,
    window_rows: int,
) -> dict[str, list[Sample]]:
    """Every gauge of :data:`GAUGES` with its samples for this run (``prediction`` None: the
    prediction gauge reads 0)."""
    failed = {(q.column, q.check) for q in quality}
    features = list(dict.fromkeys([c.name for c in drift.columns] + [q.column for q in quality]))
    return {
        "mlsd_drift_detected": [({"feature": c.name}, float(c.drifted)) for c in drift.columns],
        "mlsd_drift_score": [
            ({"feature": c.name, "method": c.method}, c.statistic) for c in drift.columns
        ],
        "mlsd_drift_share": [({}, drift.drifted_share)],
        "mlsd_drift_psi": [({"feature": c.name}, c.psi) for c in drift.columns],
        "mlsd_drift_share_psi": [({}, drift.psi_share)],
        "mlsd_prediction_psi": [({}, prediction.psi if prediction is not None else 0.0)],
        "mlsd_prediction_drift_detected": [
            ({}, float(prediction is not None and prediction.drifted))
        ],
        "mlsd_data_quality_issues": [
            ({"feature": f, "check": check}, float((f, check) in failed))
            for f in features
            for check in CHECKS
        ],
        "mlsd_monitor_window_rows": [({}, float(window_rows))],
    }
