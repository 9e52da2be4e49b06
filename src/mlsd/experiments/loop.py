"""The closed loop, in process: the simulated world's users visit day after day, each arm's
model chooses their slates (through ``serve``, the service's own code path), users respond as
the simulator's response model says, and the day's events go back into every model's online
state (one shared log, as with the service's event log).

The world goes on from where a simulated dataset ends (:mod:`mlsd.data.simulate.continuation`:
same users and catalog, new uploads, tastes drifting on). Users are assigned to arms by
hashing ``(user, salt)``. What comes back is one row per (user, day) with the user's arm and
online metrics, which :func:`aa_experiments` and the analysis read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlsd.config import LabelConfig
from mlsd.data.simulate import ResponseModel, requests, slate_events
from mlsd.data.simulate.continuation import _config_of, _extend, world_of
from mlsd.data.simulate.policy import LoggingPolicy
from mlsd.data.simulate.world import DEVICES, SURFACES
from mlsd.experiments.assignment import assign
from mlsd.pipeline import RequestCtx

__all__ = ["LoopResult", "aa_experiments", "closed_loop"]

METRICS = ("requests", "impressions", "plays", "valid_watches", "watch_seconds", "likes",
           "dislikes")  # fmt: skip


@dataclass
class LoopResult:
    """Per (user, day) metrics: ``user_ids`` (int64[n]) of users who visited at least once,
    their ``arm`` (int8[n]), and ``metrics[name]`` (float64[n, days]); ``seconds`` per day."""

    arms: tuple[str, ...]
    user_ids: np.ndarray
    arm: np.ndarray
    metrics: dict[str, np.ndarray]
    seconds: list[float] = field(default_factory=list)
    filled: int = 0  # slate slots a model left empty, filled by the platform's policy


def _valid(watch: np.ndarray, duration: np.ndarray, cfg: LabelConfig) -> np.ndarray:
    short = duration < cfg.short_video_seconds
    return (watch >= cfg.min_watch_seconds) | (short & (watch >= cfg.min_completion * duration))


def closed_loop(
    meta: Mapping[str, Any],
    models: Sequence[Any],
    *,
    arms: Sequence[str] | None = None,
    split: Sequence[float] | None = None,
    salt: str = "loop",
    days: int = 7,
    seed: int = 0,
    say: Callable[[str], None] | None = None,
) -> LoopResult:
    """Run ``days`` simulated days after the dataset whose manifest is ``meta``.

    ``models``: one servable per arm (``serve(user_id, k, ctx)`` and ``apply_events``); the
    same object twice is an A/A test. Users go to arms by ``assign(user, salt, split)``
    (default: equal split). Deterministic for ``seed``.
    """
    names = tuple(arms or [f"arm{i}" for i in range(len(models))])
    if len(names) != len(models) or len(models) < 1:
        raise ValueError("closed loop: one arm name per model")
    weights = list(split or [1.0] * len(models))
    base = _config_of(dict(meta))
    world = world_of(dict(meta))
    start_index = len(meta.get("continuations", [])) + 1
    label = LabelConfig()
    n_users = world.n_users
    per_day = {m: np.zeros((n_users, days)) for m in METRICS}
    all_users = np.arange(1, n_users + 1, dtype=np.int64)
    user_arm = assign(all_users, salt, weights) if len(models) > 1 else np.zeros(n_users, np.int8)
    request_id = int(meta.get("last_request_id", meta.get("rows", {}).get("requests", 0))) + 1
    out = LoopResult(names, all_users, user_arm, per_day)
    for day in range(days):
        t0 = time.perf_counter()
        world = _extend(world, base, 1, start_index + 1000 + day)
        response = ResponseModel(world)
        policy = LoggingPolicy(world, response)
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x100B, day]))
        users, t, surface, device = requests(world, rng)
        s = base.slate_size
        slates = np.full((len(users), s), -1, dtype=np.int64)
        for i, (u, ts) in enumerate(zip(users.tolist(), t.tolist(), strict=True)):
            model = models[user_arm[u]]
            ctx = RequestCtx(time_ms=ts, device=DEVICES[device[i]], surface=SURFACES[surface[i]])
            got = [it.video_id for it in model.serve(u + 1, s, ctx).items][:s]
            slates[i, : len(got)] = np.asarray(got, dtype=np.int64) - 1
        empty = slates < 0
        if empty.any():  # the platform's own slate fills what a model left empty
            fill, _ = policy.slates(users, t, s, rng)
            slates[empty] = fill[empty]
            out.filled += int(empty.sum())
        resp = response.respond(users, t, slates, rng)
        ids = np.arange(request_id, request_id + len(users), dtype=np.int64)
        request_id += len(users)
        events = slate_events(users, t, ids, surface, device, slates, resp)
        for model in {id(m): m for m in models}.values():
            model.apply_events(events)
        valid = resp.play & _valid(resp.watch_seconds, world.duration_s[slates], label)
        for name, values in (
            ("requests", np.ones(len(users))),
            ("impressions", np.full(len(users), s, dtype=np.float64)),
            ("plays", resp.play.sum(axis=1)),
            ("valid_watches", valid.sum(axis=1)),
            ("watch_seconds", resp.watch_seconds.sum(axis=1)),
            ("likes", resp.like.sum(axis=1)),
            ("dislikes", resp.dislike.sum(axis=1)),
        ):
            np.add.at(per_day[name][:, day], users, values)
        out.seconds.append(time.perf_counter() - t0)
        if say is not None:
            say(f"day {day + 1}/{days}: {len(users):,} requests, "
                f"{int(valid.sum()):,} valid watches ({out.seconds[-1]:.1f} s)")  # fmt: skip
    visited = per_day["requests"].sum(axis=1) > 0
    out.user_ids = all_users[visited]
    out.arm = user_arm[visited]
    out.metrics = {k: v[visited] for k, v in per_day.items()}
    return out


def aa_experiments(
    result: LoopResult,
    n: int = 200,
    *,
    metric: str = "valid_watches",
    alpha: float = 0.05,
    tau_sd: float = 0.1,
) -> dict[str, Any]:
    """``n`` A/A experiments on one loop run served by one model: each splits the visitors
    50/50 by its own salt. Fixed horizon: Welch's test on the metric per user over all days.
    Sequential: after each day, the users seen so far and their metric so far, mSPRT
    (Johari et al. 2022) with one normal mixture of s.d. ``tau_sd`` x the metric's s.d. at
    the first look x ``days`` (the metric accumulates); rejected the first day its
    always-valid p <= alpha. Returns both false-positive rates and the SRM alarms."""
    from mlsd.experiments.stats import difference, msprt_pvalues, srm

    y_days = result.metrics[metric]
    cum = np.cumsum(y_days, axis=1)
    seen = np.cumsum(result.metrics["requests"], axis=1) > 0
    days = y_days.shape[1]
    fixed = seq = srm_alarms = 0
    tau = tau_sd * float(cum[seen[:, 0], 0].std(ddof=1)) * days
    for j in range(n):
        arm = assign(result.user_ids, f"aa-{j}", [0.5, 0.5])
        a, b = cum[arm == 0, -1], cum[arm == 1, -1]
        fixed += difference(a, b).p_value <= alpha  # type: ignore[operator]
        srm_alarms += srm(np.bincount(arm, minlength=2).tolist(), [0.5, 0.5]).alarm
        diffs, variances = [], []
        for k in range(days):
            m = seen[:, k]
            ya, yb = cum[m & (arm == 0), k], cum[m & (arm == 1), k]
            diffs.append(yb.mean() - ya.mean())
            variances.append(ya.var(ddof=1) / len(ya) + yb.var(ddof=1) / len(yb))
        # one mixture for the whole test (the mSPRT's validity needs it fixed): its scale is
        # set at the first look from the pooled s.d., which says nothing about the difference
        p = msprt_pvalues(diffs, variances, tau=tau)
        seq += p[-1] <= alpha
    return {"experiments": n, "metric": metric, "alpha": alpha, "days": days,
            "users": len(result.user_ids), "fixed_horizon_fpr": fixed / n,
            "sequential_fpr": seq / n, "srm_alarms": srm_alarms}  # fmt: skip
