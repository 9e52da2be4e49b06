"""The gates between a challenger and the champion's place, and the registry steps after them.

Each gate gives ``{"passed", "value", "limit", "detail"}``; the challenger may be promoted only
when every gate passed. Gates (``GateConfig``): NDCG@20 non-inferiority on the latest holdout
and on the backtest windows' mean (relative margin); the skew check (offline vs online
feature values at sampled impressions of the run's data); the in-process latency of one
request through every stage (p99), the model prepared as ``mlsd serve`` prepares it;
the bundle's size, absolute and relative to the champion's.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mlsd.data.dataset import load_dataset
from mlsd.features.skew import skew_check
from mlsd.orchestration.data_steps import dataset_path
from mlsd.orchestration.model_steps import K, bundle_mb
from mlsd.orchestration.run import Run
from mlsd.pipeline import RequestCtx
from mlsd.serving.bundle import load_bundle
from mlsd.serving.server import prepare

__all__ = ["gates", "promote", "register"]


def _gate(passed: bool, value: float, limit: float, detail: str) -> dict[str, Any]:
    return {
        "passed": bool(passed),
        "value": round(float(value), 6),
        "limit": round(float(limit), 6),
        "detail": detail,
    }


def _ndcg_gates(run: Run) -> dict[str, dict[str, Any]]:
    m, key = run.cfg.gates.ndcg_margin, f"ndcg@{K}"
    rows = [w for w in run.results["evaluate"]["windows"] if "champion" in w]
    out: dict[str, dict[str, Any]] = {}
    groups = {"ndcg_latest": rows[:1], "ndcg_backtest": rows[1:]}
    for name, ws in groups.items():
        if not ws or (name == "ndcg_latest" and ws[0]["window"] != "latest"):
            continue
        champ = float(np.mean([w["champion"][key] for w in ws]))
        chall = float(np.mean([w["challenger"][key] for w in ws]))
        limit = champ * (1 - m)
        out[name] = _gate(
            chall >= limit,
            chall,
            limit,
            f"challenger {key} {chall:.4f} vs champion {champ:.4f} "
            f"({(chall / champ - 1) * 100 if champ else 0:+.1f}%); non-inferiority margin "
            f"{m:.0%} (over {len(ws)} window{'s' if len(ws) > 1 else ''})",
        )
    return out


def _latency(run: Run) -> dict[str, Any]:
    g = run.cfg.gates
    # as the service would run it: compiled ranker, candidates retrieved ahead for known users
    model = prepare(load_bundle(run.results["train"]["bundle"]))
    ds = load_dataset(dataset_path(run))
    users = np.unique(ds.events.column("user_id").to_numpy())
    rng = np.random.default_rng(run.cfg.seed)
    pick = rng.choice(users, size=min(g.latency_requests, len(users)), replace=False)
    now = int(run.results["train"]["cut_ms"])
    model.serve(int(pick[0]), K, RequestCtx(time_ms=now))  # first call: lazy set-up
    times = []
    for u in pick:
        t0 = time.perf_counter()
        model.serve(int(u), K, RequestCtx(time_ms=now))
        times.append((time.perf_counter() - t0) * 1000)
    p99 = float(np.percentile(times, 99))
    return _gate(
        p99 <= g.latency_p99_ms,
        p99,
        g.latency_p99_ms,
        f"p99 of {len(times)} in-process requests (p50 {np.median(times):.2f} ms)",
    )


def gates(run: Run) -> dict[str, Any]:
    """Every gate's result and the verdict (``passed``: all of them)."""
    g = run.cfg.gates
    out = _ndcg_gates(run)
    skew = skew_check(load_dataset(dataset_path(run)), n_points=g.skew_points, seed=run.cfg.seed)
    out["skew"] = _gate(
        skew.mismatches <= g.max_skew_mismatches,
        skew.mismatches,
        g.max_skew_mismatches,
        f"{skew.n_points} sampled impressions; mismatched features: "
        f"{', '.join(skew.mismatched) or 'none'}",
    )
    out["latency_p99_ms"] = _latency(run)
    size, champ = bundle_mb(run.results["train"]["bundle"]), bundle_mb(run.champion_bundle())
    limit = min(g.max_bundle_mb, g.max_size_ratio * champ)
    out["bundle_mb"] = _gate(
        size <= limit,
        size,
        limit,
        f"{size:.1f} MB vs champion {champ:.1f} MB "
        f"(limit {g.max_size_ratio:g}x, at most {g.max_bundle_mb:g} MB)",
    )
    passed = all(v["passed"] for v in out.values())
    failed = [k for k, v in out.items() if not v["passed"]]
    run.say("gates: " + ("every gate passed" if passed else "failed: " + ", ".join(failed)))
    return {"gates": out, "passed": passed, "failed": failed}


def register(run: Run) -> dict[str, Any]:
    """The challenger as a new version with its evaluation metrics and gate report, under
    the ``challenger`` alias (idempotent: the same bundle is registered once)."""
    latest = next(w for w in run.results["evaluate"]["windows"] if "champion" in w)
    metrics = {f"{k}": v for k, v in latest["challenger"].items() if k != "users"}
    metrics.update({f"champion_{k}": v for k, v in latest["champion"].items() if k != "users"})
    v = run.registry.register(
        run.results["train"]["bundle"],
        run.cfg.name,
        metrics=metrics,
        dataset=run.results["validate"]["dataset"],
        tags={
            "mlsd.retrain_run": run.run_id,
            "mlsd.champion_at_retrain": str(run.champion.version),
        },
    )
    verdict = run.results["gates"]
    run.registry.set_gates(run.cfg.name, v.version, verdict["gates"], verdict["passed"])
    if "champion" not in v.aliases:
        run.registry.set_challenger(run.cfg.name, v.version)
    run.say(f"register: {run.cfg.name} v{v.version} ({v.model_version}) as challenger")
    return {"version": v.version, "model_version": v.model_version}


def promote(run: Run) -> dict[str, Any]:
    """``champion`` moves to the challenger only when every gate passed and the run was told
    to (``auto_promote``); else the challenger stays with its gate report."""
    version = int(run.results["register"]["version"])
    passed = bool(run.results["gates"]["passed"])
    if passed and run.cfg.auto_promote:
        run.registry.promote(run.cfg.name, version, reason=f"retrain {run.run_id}: gates passed")
        run.say(f"promote: {run.cfg.name} v{version} is the champion")
        return {"promoted": True, "champion": version}
    why = "gates failed" if not passed else "--auto-promote not given"
    run.say(f"promote: not promoted ({why}); champion stays v{run.champion.version}")
    return {"promoted": False, "champion": run.champion.version, "why": why}
