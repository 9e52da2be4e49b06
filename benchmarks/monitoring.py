"""Monitoring drills on the closed loop (issue 19), in process:

    python benchmarks/monitoring.py --model BUNDLE --data DATA [--stable-days 14]

Three runs of the simulated platform after DATA, each served by the bundle (prepared as
``mlsd serve`` prepares it) with the service's drift monitor (:mod:`mlsd.serving.monitor`,
its defaults: every 5th request sampled, drift against the deployment baseline, data quality
against the training reference) checked once a simulated day over that day's sampled rows,
and the online metric over the day's events:

- ``stable``: ``--stable-days`` days as the world goes on (tastes drifting slowly, no shift);
- ``shift``: a taste shift (every user's topic preferences reshuffled) at the start of day 3;
- ``fault``: from day 2 on, ``--fault-feature`` is served as 0 (a feature pipeline sending
  zeros).

Each day the alerts of ``deploy/prometheus/rules.yml`` are evaluated on the monitor's gauges
(the rules' expressions, in Python): MlsdFeatureDrift, MlsdOnlineMetricDrift and
MlsdDataQuality. Writes ``benchmarks/results/monitoring_drift.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_result
from prometheus_client import CollectorRegistry

from mlsd.config import TasteShift
from mlsd.experiments.loop import closed_loop
from mlsd.serving.bundle import load_bundle
from mlsd.serving.monitor import ServiceMonitor
from mlsd.serving.server import prepare
from mlsd.serving.service import ModelHolder

SHIFT_DAY = 2  # 0-based: the start of the third day
FAULT_DAY = 1


def _firing(reg: CollectorRegistry) -> dict[str, bool]:
    """The rules of deploy/prometheus/rules.yml that read the monitor's gauges."""

    def v(name: str) -> float:
        return reg.get_sample_value(name) or 0.0

    quality = sum(
        s.value for m in reg.collect() if m.name == "mlsd_data_quality_issues" for s in m.samples
    )
    return {
        "MlsdFeatureDrift": v("mlsd_drift_share_psi") >= 0.5 or v("mlsd_prediction_psi") >= 0.25,
        "MlsdOnlineMetricDrift": v("mlsd_online_metric_drift_detected") == 1,
        "MlsdDataQuality": quality > 0,
    }


def drill(model_dir: Path, data: Path, days: int, *, shift: bool, fault: str | None,
          seed: int) -> dict[str, Any]:  # fmt: skip
    meta = json.loads((data / "manifest.json").read_text())
    m = prepare(load_bundle(model_dir))
    reg = CollectorRegistry()
    mon = ServiceMonitor(ModelHolder(m), reg, window=10**6)  # one window a simulated day
    mon.check()  # attach: the training reference, the tap
    out: list[dict[str, Any]] = []

    def on_day(day: int, events: Any) -> None:
        mon.online.observe(events)  # in process, events reach the model without the applier
        mon.check()
        d = mon.details()
        firing = _firing(reg)
        o = d.get("online") or {}
        out.append({
            "day": day + 1, "firing": [k for k, f in firing.items() if f],
            "rows": d.get("rows"), "psi_share": mon.last.get("psi_share"),
            "prediction_psi": mon.last.get("prediction_psi"),
            "tests_drift_share": mon.last.get("drift_share"),
            "ctr": o.get("ctr"), "ctr_change": o.get("relative_change"),
            "quality": mon.last.get("quality"),
        })  # fmt: skip
        print(f"day {day + 1}: firing {out[-1]['firing']} psi share {out[-1]['psi_share']} "
              f"pred psi {out[-1]['prediction_psi']} ctr {o.get('ctr')} "
              f"({o.get('relative_change')})", flush=True)  # fmt: skip
        mon.roll()
        if fault is not None and day + 1 == FAULT_DAY:
            m.feature_faults = {fault: 0.0}

    t0 = time.perf_counter()
    closed_loop(meta, m, days=days, seed=seed, on_day=on_day,
                shift=TasteShift(start_day=SHIFT_DAY) if shift else None)  # fmt: skip
    return {"days": out, "seconds": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--stable-days", type=int, default=14)
    ap.add_argument("--fault-feature", default="video_age_h")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    runs = {
        "stable": drill(args.model, args.data, args.stable_days, shift=False, fault=None,
                        seed=args.seed),
        "shift": drill(args.model, args.data, SHIFT_DAY + 3, shift=True, fault=None,
                       seed=args.seed),
        "fault": drill(args.model, args.data, FAULT_DAY + 2, shift=False,
                       fault=args.fault_feature, seed=args.seed),
    }  # fmt: skip
    stable_alerts = [(d["day"], d["firing"]) for d in runs["stable"]["days"] if d["firing"]]
    shift_days = runs["shift"]["days"]
    first_drift = next((d["day"] for d in shift_days if d["day"] > SHIFT_DAY and {
        "MlsdFeatureDrift", "MlsdOnlineMetricDrift"} & set(d["firing"])), None)  # fmt: skip
    before = [d["firing"] for d in shift_days if d["day"] <= SHIFT_DAY]
    fault_days = runs["fault"]["days"]
    fault_first = next((d["day"] for d in fault_days if "MlsdDataQuality" in d["firing"]), None)
    checks = {
        f"{args.stable_days} stable days raise no alert": {
            "value": stable_alerts, "limit": "[]", "pass": not stable_alerts},
        "the taste shift raises a drift alert within one simulated day": {
            "value": first_drift, "limit": f"day {SHIFT_DAY + 1}",
            "pass": first_drift == SHIFT_DAY + 1 and not any(before)},
        "the zeroed feature raises the data-quality alert": {
            "value": fault_first, "limit": f"day {FAULT_DAY + 1}",
            "pass": fault_first == FAULT_DAY + 1
            and not fault_days[FAULT_DAY - 1]["firing"]},
    }  # fmt: skip
    res = {"settings": {"model": str(args.model), "data": str(args.data),
                        "stable_days": args.stable_days, "shift_day": SHIFT_DAY + 1,
                        "fault_day": FAULT_DAY + 1, "fault_feature": args.fault_feature,
                        "seed": args.seed},
           "runs": runs, "checks": checks}  # fmt: skip
    for name, c in checks.items():
        print(f"{'PASS' if c['pass'] else 'FAIL'}  {name}: {c['value']} (limit {c['limit']})")
    print(f"wrote {write_result('monitoring_drift', res)}")
    return 0 if all(c["pass"] for c in checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
