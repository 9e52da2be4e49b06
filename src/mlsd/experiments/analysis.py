"""The analysis of an A/B experiment: from a closed-loop run (or any per-user, per-day
metrics with arms) to estimates, checks and a report.

- per arm: each metric's mean per user with its CI; CTR (plays / impressions) as a ratio
  metric with the delta method;
- per treatment arm vs the control (the config's first arm): the difference and the relative
  lift with delta-method CIs (Welch p-value), and an always-valid p-value after daily looks
  (mSPRT, Johari et al. 2022) on the per-user metric accumulated so far;
- CUPED on the primary metric with a pre-period covariate (Deng et al. 2013): the variance
  reduction and the CI width before and after;
- sample-ratio mismatch on the units of assignment (users who were served, chi-square, alarm
  at p < 0.001; Fabijan et al., KDD 2019), from the loop or from the exposure log;
- the planner: users per arm needed for the config's minimum detectable effect, and the
  effect this run could detect.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mlsd.errors import DataError
from mlsd.experiments.loop import LoopResult
from mlsd.experiments.stats import (
    cuped,
    difference,
    mde,
    mean,
    msprt_pvalues,
    ratio,
    relative_lift,
    sample_size,
    srm,
)
from mlsd.serving.experiment import ExperimentConfig

__all__ = ["analyze", "exposure_counts", "load_result", "pre_period", "save_result", "write_report"]


def _metric(result: LoopResult, name: str, rows: np.ndarray, day: int | None = None) -> Any:
    """Per-user totals (through ``day``, inclusive; None: all days) of ``name`` for ``rows``;
    for ``ctr`` the (plays, impressions) pair."""
    sl = slice(None) if day is None else slice(0, day + 1)
    if name == "ctr":
        return (
            result.metrics["plays"][rows, sl].sum(axis=1),
            result.metrics["impressions"][rows, sl].sum(axis=1),
        )
    return result.metrics[name][rows, sl].sum(axis=1)


def _est(e: Any) -> dict[str, float]:
    out = {"value": e.value, "low": e.low, "high": e.high, "se": e.se, "n": e.n}
    if e.p_value is not None:
        out["p_value"] = e.p_value
    return out


def exposure_counts(path: str | Path, experiment: str) -> dict[str, dict[str, int]]:
    """Per arm, the users and the slates in an exposure log (JSON lines of
    :class:`~mlsd.serving.experiment.ExposureLog`) of ``experiment``. A line that is not JSON
    raises :class:`DataError` naming the file and line."""
    users: dict[str, set[int]] = {}
    slates: dict[str, int] = {}
    with Path(path).open() as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                if r["experiment"] != experiment:
                    continue
                arm, user = str(r["arm"]), int(r["user_id"])
            except (ValueError, KeyError, TypeError) as e:
                raise DataError(f"{path}: line {i}: not an exposure record ({e})") from None
            users.setdefault(arm, set()).add(user)
            slates[arm] = slates.get(arm, 0) + 1
    return {a: {"users": len(u), "slates": slates[a]} for a, u in users.items()}


def analyze(
    result: LoopResult,
    config: ExperimentConfig,
    *,
    pre_period: np.ndarray | None = None,
    exposures: Mapping[str, Mapping[str, int]] | None = None,
) -> dict[str, Any]:
    """Everything the report shows, JSON-ready (see the module docstring). ``pre_period``:
    ``float64[len(result.user_ids)]``, each user's primary metric before the experiment (the
    CUPED covariate; None: no CUPED). ``exposures``: :func:`exposure_counts` of the service's
    log (None: the SRM check counts the loop's served users). Raises :class:`DataError` when
    an arm has fewer than two users."""
    arms = list(result.arms)
    if arms != [a.name for a in config.arms]:
        raise DataError(
            f"the run's arms {arms} are not the config's {[a.name for a in config.arms]}"
        )
    idx = [np.flatnonzero(result.arm == i) for i in range(len(arms))]
    small = [a for a, r in zip(arms, idx, strict=True) if len(r) < 2]
    if small:
        raise DataError(f"arms {small} have fewer than two users; nothing to compare")
    alpha = config.alpha
    days = next(iter(result.metrics.values())).shape[1]
    out: dict[str, Any] = {
        "experiment": config.name,
        "salt": config.salt_,
        "arms": arms,
        "split": config.weights,
        "days": days,
        "alpha": alpha,
        "users": {a: len(r) for a, r in zip(arms, idx, strict=True)},
    }
    counts = [len(r) for r in idx]
    source = "users served (loop)"
    if exposures is not None:
        counts = [int(exposures.get(a, {}).get("users", 0)) for a in arms]
        source = "users in the exposure log"
    s = srm(counts, config.weights)
    out["srm"] = {"counts": counts, "source": source, "p_value": s.p_value, "alarm": s.alarm}
    metrics: dict[str, Any] = {}
    for name in config.metrics:
        per_arm = {}
        for a, rows in zip(arms, idx, strict=True):
            y = _metric(result, name, rows)
            per_arm[a] = _est(ratio(y[0], y[1], alpha) if name == "ctr" else mean(y, alpha))
        vs: dict[str, Any] = {}
        control = _metric(result, name, idx[0])
        for a, rows in zip(arms[1:], idx[1:], strict=True):
            treat = _metric(result, name, rows)
            if name == "ctr":
                d = (
                    ratio(treat[0], treat[1], alpha).value
                    - ratio(control[0], control[1], alpha).value
                )
                vs[a] = {"difference": d}
            else:
                vs[a] = {
                    "difference": _est(difference(control, treat, alpha)),
                    "lift": _est(relative_lift(control, treat, alpha)),
                    "always_valid_p": _sequential(result, name, idx[0], rows, config),
                }
        metrics[name] = {"per_arm": per_arm, "vs_control": vs}
    out["metrics"] = metrics
    primary = config.metrics[0] if config.metrics[0] != "ctr" else "valid_watches"
    out["primary"] = primary
    y = _metric(result, primary, np.arange(len(result.user_ids)))
    sd = float(np.std(_metric(result, primary, idx[0]), ddof=1))
    base = float(np.mean(_metric(result, primary, idx[0])))
    out["planner"] = {
        "metric": primary,
        "control_mean": base,
        "control_sd": sd,
        "mde_relative": config.mde,
        "users_per_arm_needed": sample_size(sd, config.mde * base, alpha, config.power)
        if sd > 0 and base > 0
        else None,
        "detectable_relative": mde(sd, counts[0], alpha, config.power) / base
        if sd > 0 and base > 0
        else None,
    }
    if pre_period is not None:
        adj, theta, reduction = cuped(y, np.asarray(pre_period, np.float64))
        cup: dict[str, Any] = {"theta": theta, "variance_reduction": reduction, "vs_control": {}}
        for a, rows in zip(arms[1:], idx[1:], strict=True):
            raw = difference(y[idx[0]], y[rows], alpha)
            adjd = difference(adj[idx[0]], adj[rows], alpha)
            cup["vs_control"][a] = {
                "raw": _est(raw),
                "cuped": _est(adjd),
                "ci_width_raw": raw.width,
                "ci_width_cuped": adjd.width,
            }
        out["cuped"] = cup
    out["pairs"] = [
        {
            "a": arms[i],
            "b": arms[j],
            "lift": _est(
                relative_lift(
                    _metric(result, primary, idx[i]), _metric(result, primary, idx[j]), alpha
                )
            ),
        }
        for i in range(len(arms))
        for j in range(i + 1, len(arms))
    ]
    out["daily"] = _daily(result, primary, idx, alpha)
    out["slates"] = (
        {
            a: {
                k: float(np.mean([d["arms"][i][k] for d in result.days]))
                for k in ("coverage", "creator_gini", "exploration_share", "exploration_watch_rate")
            }
            for i, a in enumerate(arms)
        }
        if result.days
        else {}
    )
    out["loop"] = {
        "filled_slots": result.filled,
        "unsent_events": result.unsent,
        "seconds": [round(s, 2) for s in result.seconds],
    }
    return out


def _sequential(
    result: LoopResult, name: str, a: np.ndarray, b: np.ndarray, config: ExperimentConfig
) -> float:
    """The always-valid p-value after the last daily look: mSPRT on the difference in the
    per-user metric accumulated so far among users seen so far, one normal mixture of s.d.
    ``mde`` x the control's mean at the first look x days (fixed for the whole test)."""
    seen = np.cumsum(result.metrics["requests"], axis=1) > 0
    days = seen.shape[1]
    diffs: list[float] = []
    variances: list[float] = []
    tau = 0.0
    for k in range(days):
        ya = _metric(result, name, a[seen[a, k]], k)
        yb = _metric(result, name, b[seen[b, k]], k)
        if len(ya) < 2 or len(yb) < 2:
            continue
        if not diffs:
            tau = config.mde * max(float(np.mean(ya)), 1e-9) * days
        v = ya.var(ddof=1) / len(ya) + yb.var(ddof=1) / len(yb)
        if v <= 0:
            continue
        diffs.append(float(yb.mean() - ya.mean()))
        variances.append(float(v))
    if not diffs:
        return 1.0
    return float(msprt_pvalues(diffs, variances, tau=tau)[-1])


def _daily(result: LoopResult, name: str, idx: list[np.ndarray], alpha: float) -> list[Any]:
    """Per day, per arm: the metric per visitor of that day (mean and CI)."""
    out = []
    days = result.metrics[name].shape[1]
    for k in range(days):
        row = []
        for rows in idx:
            visited = rows[result.metrics["requests"][rows, k] > 0]
            y = result.metrics[name][visited, k]
            row.append(_est(mean(y, alpha)) if len(y) >= 2 else None)
        out.append(row)
    return out


def write_report(
    analysis: Mapping[str, Any], out_dir: str | Path, offline: Mapping[str, float] | None = None
) -> dict[str, Path]:
    """``report.md`` and a self-contained ``report.html`` of :func:`analyze`'s result into
    ``out_dir`` (plus ``analysis.json``); ``offline``: NDCG@20 per arm offline, put beside the
    online lift. Returns the paths."""
    from mlsd.experiments.report import build

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "analysis.json").write_text(json.dumps(analysis, indent=2, default=float))
    paths = build(analysis, offline).write(out, "report")
    paths["json"] = out / "analysis.json"
    return paths


def pre_period(data: str | Path, user_ids: np.ndarray, days: int) -> np.ndarray:
    """Each user's valid watches in the last ``days`` of the logged dataset ``data`` (the CUPED
    covariate of ``valid_watches``: measured before the experiment, so the arms cannot have
    changed it)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from mlsd.config import LabelConfig
    from mlsd.data.dataset import load_dataset
    from mlsd.data.labels import positives

    ds = load_dataset(data)
    pos = positives(ds.events, ds.videos, LabelConfig(), include_likes=False)
    t = pc.cast(pos.column("timestamp"), pa.int64()).to_numpy()
    end = int(pc.cast(ds.events.column("timestamp"), pa.int64()).to_numpy().max())
    users = pos.column("user_id").to_numpy()[t > end - days * 86_400_000]
    counts = np.bincount(users, minlength=int(max(user_ids.max(), users.max(initial=0))) + 1)
    return counts[user_ids].astype(np.float64)


def save_result(result: LoopResult, path: str | Path) -> Path:
    """The loop's per-user, per-day metrics as ``.npz`` (what :func:`load_result` reads)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp.npz")
    arrays: dict[str, Any] = {f"m_{k}": v for k, v in result.metrics.items()}
    info = {"filled": result.filled, "unsent": result.unsent, "days": result.days}
    arrays.update(
        user_ids=result.user_ids,
        arm=result.arm,
        arms=np.array(result.arms),
        seconds=np.array(result.seconds),
        info=np.array(json.dumps(info)),
    )
    np.savez_compressed(tmp, **arrays)
    tmp.replace(p)
    return p


def load_result(path: str | Path) -> LoopResult:
    """A loop result saved by :func:`save_result`; :class:`DataError` naming the file when it
    is not one."""
    try:
        z = np.load(path, allow_pickle=False)
        info = json.loads(str(z["info"]))
        metrics = {k[2:]: z[k] for k in z.files if k.startswith("m_")}
        return LoopResult(
            tuple(str(a) for a in z["arms"]),
            z["user_ids"],
            z["arm"],
            metrics,
            list(z["seconds"]),
            info["filled"],
            info["unsent"],
            info["days"],
        )
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"{path}: not a saved experiment run ({e})") from None
