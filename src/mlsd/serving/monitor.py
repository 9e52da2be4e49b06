"""The service's drift monitor: a sample of served requests' feature rows and scores against
the model's training reference, as Prometheus gauges (the names ``deploy/prometheus/rules.yml``
alerts on; see :mod:`mlsd.monitoring.gauges`).

Every ``sample_every``-th ranked request hands its top rows to the monitor through the model's
tap (:data:`mlsd.pipeline.online.Tap`); the last ``window`` rows are kept. Every
``interval_s`` a daemon thread checks them:

- data quality (:func:`mlsd.monitoring.data_quality`) against the training reference
  (``monitor_reference()``: the rows ``serve`` gives a sample of training users over the
  training data's last day), with declared bounds per feature (:func:`feature_bounds`): a
  broken feature pipeline is visible from the first window, the faulty one included;
- drift of the features and of the scores (:func:`mlsd.monitoring.dataset_drift`, Evidently's
  tests and PSI) against the drift reference: ``deployment`` (default), the first full window
  after the model went live, or ``training``, the training reference. Why the default: the
  served rows differ from the training log's by construction (the model concentrates
  impressions on its own picks, which moves every counter of the items it serves), so
  against the training reference a stable platform reads as drifted; measured in
  docs/monitoring.md;
- the online metric (:mod:`mlsd.monitoring.online`): the CTR of the latest day of event time,
  from the events the service applies, against the days before it.

A reload swaps the model: the monitor follows it, takes the new reference and waits for a new
deployment baseline. A model without ``monitor_reference`` (a stub, a baseline) is not
feature-monitored.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Gauge

from mlsd.errors import ConfigError
from mlsd.monitoring import (
    ColumnDrift,
    DatasetDrift,
    data_quality,
    dataset_drift,
    gauge_samples,
    prediction_drift,
)
from mlsd.monitoring.online import OnlineMetrics
from mlsd.serving.bundle import json_safe
from mlsd.serving.service import ModelHolder

__all__ = ["MONITOR_GAUGES", "ServiceMonitor"]

_HELP = {
    "mlsd_drift_detected": "1 when the feature drifted from the training reference.",
    "mlsd_drift_score": "The feature's drift statistic (a p-value or a distance, per method).",
    "mlsd_drift_share": "Share of monitored features that drifted (0 to 1).",
    "mlsd_drift_psi": "The feature's population stability index against the reference.",
    "mlsd_drift_share_psi": "Share of features with a major shift (PSI >= 0.25).",
    "mlsd_prediction_psi": "Population stability index of the model's scores.",
    "mlsd_prediction_drift_detected": "1 when the model's scores drifted from the reference.",
    "mlsd_data_quality_issues": "1 per failed data-quality check of a feature, else 0.",
    "mlsd_monitor_window_rows": "Feature rows in the monitor's current window.",
    "mlsd_online_ctr": "Plays per impression served in the latest period of event time.",
    "mlsd_online_ctr_baseline": "Mean plays per impression of the periods before the latest.",
    "mlsd_online_metric_drift_detected": "1 when the latest period's CTR fell far below "
    "the baseline's (mlsd.monitoring.online).",
}
#: Every gauge the monitor sets (what deploy/prometheus/rules.yml may alert on).
MONITOR_GAUGES = tuple(_HELP)
_LABELS = {"mlsd_drift_detected": ["feature"], "mlsd_drift_score": ["feature", "method"],
           "mlsd_drift_psi": ["feature"],
           "mlsd_data_quality_issues": ["feature", "check"]}  # fmt: skip


_INF = float("inf")


def feature_bounds(name: str) -> tuple[float, float]:
    """The valid range of a ranking feature, by its name's convention (the registry's names:
    ``*_rate_*`` and ``*completion*`` are shares, counters and ages are non-negative, a
    source's rank is a position); other features (scores, affinities) any number."""
    if "_rate_" in name or "completion" in name or name.endswith("_is_top"):
        return (0.0, 1.0)
    counters = ("_impressions_", "_plays_", "_valid_watches_", "_age_", "_duration_")
    if name.startswith("rank_") or name == "n_sources" or any(c in name for c in counters):
        return (0.0, _INF)
    return (-_INF, _INF)


def _drift(
    names: list[str],
    keep: list[int],
    baseline: tuple[np.ndarray, np.ndarray] | None,
    cur: np.ndarray,
    cur_scores: np.ndarray,
) -> tuple[DatasetDrift, ColumnDrift | None]:
    """Feature and score drift of the window against ``baseline`` (rows, scores), over the
    kept features with values on both sides; none (empty, None) without a baseline yet."""
    if baseline is None:
        return DatasetDrift((), 0.0, 0.5, False), None
    rows, scores = baseline
    both = [j for j in keep if np.isfinite(rows[:, j]).any() and np.isfinite(cur[:, j]).any()]
    drift = dataset_drift(
        {names[j]: rows[:, j] for j in both},
        {names[j]: cur[:, j] for j in both},
        {names[j]: "num" for j in both},
    )
    return drift, prediction_drift(scores, cur_scores)


def _target(model: Any) -> Any:
    """The model whose features are monitored: the model, or an experiment's first arm that
    can be."""
    if hasattr(model, "monitor_reference"):
        return model
    return next((m for m in getattr(model, "models", []) if hasattr(m, "monitor_reference")),
                None)  # fmt: skip


class ServiceMonitor:
    """Samples the live model of ``holder`` and sets the drift gauges in ``registry`` (None:
    prometheus-client's multiprocess directory, the worst worker's value shown)."""

    def __init__(
        self,
        holder: ModelHolder,
        registry: CollectorRegistry | None,
        *,
        sample_every: int = 5,
        window: int = 5000,
        interval_s: float = 15.0,
        min_rows: int = 200,
        drift_reference: str = "deployment",
    ) -> None:
        if drift_reference not in ("deployment", "training"):
            raise ConfigError(
                f"drift reference {drift_reference!r}: expected 'deployment' or 'training'"
            )
        self.drift_reference = drift_reference
        self._baseline: tuple[np.ndarray, np.ndarray] | None = None
        self.holder = holder
        self.online = OnlineMetrics()
        self.sample_every = max(1, sample_every)
        self.interval_s = interval_s
        self.min_rows = min_rows
        self._rows: collections.deque[np.ndarray] = collections.deque(maxlen=window)
        self._scores: collections.deque[float] = collections.deque(maxlen=window)
        self._seen = 0
        self._lock = threading.Lock()
        self._model: Any = None
        self._reference: tuple[list[str], np.ndarray, np.ndarray] | None = None
        self.gauges = {
            name: Gauge(name, _HELP[name], _LABELS.get(name, []), registry=registry,
                        multiprocess_mode="livemax")
            for name in _HELP
        }  # fmt: skip
        self.last: dict[str, Any] = {}
        self._details: dict[str, Any] = {"checked_at": None}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mlsd-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _tap(self, cols: list[str], x: np.ndarray, score: np.ndarray) -> None:
        self._seen += 1  # a race between threads only shifts which request is sampled
        if self._seen % self.sample_every:
            return
        with self._lock:
            self._rows.extend(np.asarray(x, np.float64))
            self._scores.extend(np.asarray(score, np.float64).tolist())

    def _follow(self) -> None:
        """Attach to the live model (after a start or a reload) and take its reference."""
        live = self.holder.get()
        if getattr(live, "events_tap", None) is None:
            live.events_tap = self.online.observe  # type: ignore[attr-defined]
        model = _target(live)
        if model is None or model is self._model:
            return
        reference = model.monitor_reference()
        with self._lock:
            self._rows.clear()
            self._scores.clear()
            self._reference = reference
            self._baseline = None  # a new model: a new deployment baseline
            self._model = model
        model.monitor_tap = self._tap

    def roll(self) -> None:
        """End the current window (e.g. at the end of a day): the first window of at least
        ``min_rows`` becomes the deployment baseline; the rows are cleared."""
        with self._lock:
            if self._baseline is None and len(self._rows) >= self.min_rows:
                self._baseline = (np.vstack(list(self._rows)), np.asarray(self._scores))
            self._rows.clear()
            self._scores.clear()

    def check(self) -> dict[str, Any] | None:
        """Compare the window with the reference now and set the gauges; returns what was
        set (None: too few rows yet)."""
        self._follow()
        self._check_online()
        with self._lock:
            if self._reference is None or len(self._rows) < self.min_rows:
                self.gauges["mlsd_monitor_window_rows"].set(len(self._rows))
                return None
            cur = np.vstack(list(self._rows))
            cur_scores = np.asarray(self._scores)
            full = len(self._rows) == self._rows.maxlen
            if self.drift_reference == "deployment" and self._baseline is None and full:
                self._baseline = (cur, cur_scores)  # the first full window after going live
            baseline = self._baseline
        names, ref, ref_scores = self._reference
        # the request's own time and device describe the traffic, not the data pipelines
        # and a feature the reference never has (a source left out of this model) says nothing
        keep = [
            j
            for j, n in enumerate(names)
            if not n.startswith("context_") and np.isfinite(ref[:, j]).any()
        ]
        quality = data_quality(
            {names[j]: ref[:, j] for j in keep},
            {names[j]: cur[:, j] for j in keep},
            {names[j]: "num" for j in keep},
            {names[j]: feature_bounds(names[j]) for j in keep},
            nullable={n for n in names if n.startswith("rank_") or n.endswith("_score")},
        )
        if self.drift_reference == "training":
            baseline = (ref, ref_scores)
        drift, pred = _drift(names, keep, baseline, cur, cur_scores)
        samples = gauge_samples(drift, quality, pred, len(cur))
        for name, values in samples.items():
            g = self.gauges[name]
            if name in _LABELS:
                g.clear()  # a feature's method can change with the window's size
                for labels, v in values:
                    g.labels(**labels).set(v)
            else:
                g.set(values[0][1])
        online = self._details.get("online")
        self._details = json_safe(
            {
                "online": online,
                "drift_reference": self.drift_reference,
                "baseline_rows": 0 if baseline is None else len(baseline[0]),
                "checked_at": time.time(),
                "model_version": getattr(self._model, "version", None),
                "reference_rows": len(ref),
                "rows": len(cur),
                "drift": dataclasses.asdict(drift),
                "prediction": dataclasses.asdict(pred) if pred is not None else None,
                "quality": [dataclasses.asdict(q) for q in quality],
            }
        )
        self.last = {
            "drift_share": drift.drifted_share,
            "psi_share": drift.psi_share,
            "prediction_psi": pred.psi if pred is not None else None,
            "prediction_drifted": pred is not None and pred.drifted,
            "quality": [(q.column, q.check) for q in quality],
            "rows": len(cur),
        }
        return self.last

    def _check_online(self) -> None:
        o = self.online.check()
        if o is None:
            return
        self.gauges["mlsd_online_ctr"].set(o.ctr)
        self.gauges["mlsd_online_ctr_baseline"].set(o.baseline_ctr or 0.0)
        self.gauges["mlsd_online_metric_drift_detected"].set(float(o.drifted))
        with self._lock:
            self._details["online"] = json_safe(dataclasses.asdict(o))

    def details(self) -> dict[str, Any]:
        """The last check, JSON-ready (``checked_at`` None before the first; ``attached``:
        whether the monitor samples the live model yet, which it does from its first pass)."""
        with self._lock:
            return {**self._details, "attached": self._model is not None}

    def _run(self) -> None:
        first = True
        while first or not self._stop.wait(self.interval_s):
            first = False
            try:
                self.check()
            except Exception as e:  # the monitor must never take the service down
                self.last = {"error": f"{type(e).__name__}: {e}"[:300]}
                time.sleep(self.interval_s)
