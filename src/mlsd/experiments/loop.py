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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from mlsd.config import LabelConfig, TasteShift
from mlsd.data.labels import watched_enough
from mlsd.data.simulate import ResponseModel, requests, slate_events
from mlsd.data.simulate.continuation import _config_of, _extend, world_of
from mlsd.data.simulate.policy import LoggingPolicy
from mlsd.data.simulate.world import DEVICES, SURFACES
from mlsd.evaluation.beyond import gini
from mlsd.experiments.assignment import assign
from mlsd.pipeline import RequestCtx, Servable

__all__ = ["InProcess", "LoopClient", "LoopResult", "aa_experiments", "closed_loop"]

DAY_MS = 86_400_000

METRICS = (
    "requests",
    "impressions",
    "plays",
    "valid_watches",
    "watch_seconds",
    "likes",
    "dislikes",
)


@dataclass
class LoopResult:
    """Per (user, day) metrics: ``user_ids`` (int64[n]) of users who visited at least once,
    their ``arm`` (int8[n], an index into ``arms``), and ``metrics[name]`` (float64[n, days]);
    ``seconds`` per day; ``filled``: slate slots the served model left empty (filled by the
    platform's own policy); ``unsent``: events of videos uploaded after training, which a
    service trained before them cannot take (not sent; counted here)."""

    arms: tuple[str, ...]
    user_ids: np.ndarray
    arm: np.ndarray
    metrics: dict[str, np.ndarray]
    seconds: list[float] = field(default_factory=list)
    filled: int = 0
    unsent: int = 0
    days: list[dict[str, Any]] = field(default_factory=list)


class LoopClient(Protocol):
    """How the loop reaches the recommender: in process or over HTTP."""

    arms: tuple[str, ...]

    def slates(
        self, users: np.ndarray, t: np.ndarray, surface: np.ndarray, device: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(videos int64[n, k] as 1-based ids, -1 where empty; arm int8[n]; exploration
        bool[n, k]: the slots the re-ranking's exploration filled)`` for requests of users
        (1-based ids) at times ``t`` (ms) from ``surface``/``device`` (names)."""
        ...

    def send(self, events: pa.Table) -> None:
        """Deliver one day's events (mlsd schema, 1-based ids) to the recommender."""
        ...


class InProcess:
    """The loop's client for a servable in this process: ``serve`` per request (the service's
    code path) and ``apply_events`` per day. An :class:`~mlsd.serving.experiment.
    ExperimentServable` routes users to its arms; any other model is one arm, ``all``."""

    def __init__(self, model: Servable) -> None:
        self.model = model
        self.arms = tuple(getattr(model, "arm_names", None) or ["all"])
        self._index = {a: i for i, a in enumerate(self.arms)}

    def slates(
        self, users: np.ndarray, t: np.ndarray, surface: np.ndarray, device: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = np.full((len(users), k), -1, dtype=np.int64)
        arm = np.zeros(len(users), dtype=np.int8)
        explore = np.zeros((len(users), k), dtype=bool)
        for i, (u, ts) in enumerate(zip(users.tolist(), t.tolist(), strict=True)):
            ctx = RequestCtx(time_ms=ts, device=str(device[i]), surface=str(surface[i]))
            served = self.model.serve(u, k, ctx)
            items = served.items[:k]
            out[i, : len(items)] = [it.video_id for it in items]
            explore[i, : len(items)] = [it.exploration for it in items]
            arm[i] = self._index.get(served.arm or "all", 0)
        return out, arm, explore

    def send(self, events: pa.Table) -> None:
        self.model.apply_events(events)


@dataclass
class _Resp:
    play: np.ndarray
    watch_seconds: np.ndarray
    like: np.ndarray
    dislike: np.ndarray


def closed_loop(
    meta: Mapping[str, Any],
    client: LoopClient | Servable,
    *,
    days: int = 7,
    seed: int = 0,
    say: Callable[[str], None] | None = None,
    shift: TasteShift | None = None,
    on_day: Callable[[int, pa.Table], None] | None = None,
    apply_every_ms: int = 3_600_000,
) -> LoopResult:
    """Run ``days`` simulated days after the dataset whose manifest is ``meta``: each day the
    world's users visit (the simulator's request process), ``client`` chooses their slates,
    they respond as the response model says, and the day's events go back through
    ``client.send``. A servable is wrapped in :class:`InProcess`. Deterministic for ``seed``
    and a deterministic recommender. ``shift``: a scheduled taste shift, its ``start_day``
    counted from the loop's first day (:class:`~mlsd.config.TasteShift`). ``on_day(day,
    events)``: called after each day's events were sent (e.g. a monitor's daily check).
    ``apply_every_ms``: the requests of each such span of simulated time are served, then
    their events sent, before the next span's (default: an hour).
    """
    if not hasattr(client, "slates"):
        client = InProcess(client)
    assert hasattr(client, "arms") and hasattr(client, "send")
    world = world_of(dict(meta))
    base = _config_of(dict(meta))
    if shift is not None:  # after world_of: the shift counts from the loop's first day
        base = base.model_copy(update={"taste_shift": shift})
    known_videos = world.n_videos  # the catalog the recommender was trained on
    start_index = len(meta.get("continuations", [])) + 1
    label = LabelConfig()
    n_users = world.n_users
    per_day = {m: np.zeros((n_users, days)) for m in METRICS}
    user_arm = np.full(n_users, -1, dtype=np.int8)
    request_id = int(meta.get("last_request_id", meta.get("rows", {}).get("requests", 0))) + 1
    out = LoopResult(
        tuple(client.arms), np.arange(1, n_users + 1, dtype=np.int64), user_arm, per_day
    )
    for day in range(days):
        t0 = time.perf_counter()
        world = _extend(world, base, 1, start_index + 1000 + day)
        response = ResponseModel(world)
        policy = LoggingPolicy(world, response)
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x100B, day]))
        users, t, surface, device = requests(world, rng)
        s = base.slate_size
        # the day in chunks of ``apply_every_ms`` of simulated time: each chunk's events reach
        # the recommender before the next chunk's requests, as a live service's would (its
        # time-window features would be stale with one batch a day)
        bounds = np.flatnonzero(np.diff(t // apply_every_ms)) + 1
        parts: list[tuple[np.ndarray, ...]] = []
        day_events: list[pa.Table] = []
        for sl in np.split(np.arange(len(users)), bounds):
            u, tt, sf, dv = users[sl], t[sl], surface[sl], device[sl]
            got, arm_c, explore_c = client.slates(
                u + 1, tt, np.asarray(SURFACES)[sf], np.asarray(DEVICES)[dv], s
            )
            user_arm[u] = arm_c
            slates_c = np.where(got > 0, got - 1, -1)
            empty = slates_c < 0
            if empty.any():  # the platform's own slate fills what a model left empty
                fill, _ = policy.slates(u, tt, s, rng)
                slates_c[empty] = fill[empty]
                out.filled += int(empty.sum())
            resp_c = response.respond(u, tt, slates_c, rng)
            ids = np.arange(request_id, request_id + len(u), dtype=np.int64)
            request_id += len(u)
            events = slate_events(u, tt, ids, sf, dv, slates_c, resp_c)
            keep = events.column("video_id").to_numpy() <= known_videos
            out.unsent += int((~keep).sum())
            sent = events.filter(pa.array(keep)) if not keep.all() else events
            client.send(sent)
            day_events.append(sent)
            parts.append((slates_c, arm_c, resp_c.play, resp_c.watch_seconds, resp_c.like,
                          resp_c.dislike, explore_c))  # fmt: skip
        if on_day is not None:
            on_day(day, pa.concat_tables(day_events))
        slates, arm, play, watch, like, dislike, explore = (
            np.concatenate(x) for x in zip(*parts, strict=True)
        )
        resp = _Resp(play, watch, like, dislike)
        valid = resp.play & watched_enough(resp.watch_seconds, world.duration_s[slates], label)
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
        out.days.append(_day_stats(world, slates, valid, arm, explore, len(out.arms)))
        out.seconds.append(time.perf_counter() - t0)
        if say is not None:
            say(
                f"day {day + 1}/{days}: {len(users):,} requests, "
                f"{int(valid.sum()):,} valid watches ({out.seconds[-1]:.1f} s)"
            )
    visited = per_day["requests"].sum(axis=1) > 0
    out.user_ids = out.user_ids[visited]
    out.arm = user_arm[visited]
    out.metrics = {k: v[visited] for k, v in per_day.items()}
    return out


def _day_stats(
    world: Any, slates: np.ndarray, valid: np.ndarray, arm: np.ndarray, explore: np.ndarray,
    n_arms: int,
) -> dict[str, Any]:  # fmt: skip
    """One day's slate-level metrics per arm: catalog coverage (distinct videos shown /
    catalog), creator concentration (Gini of impressions over creators, 0: even), the share
    of slots exploration filled and the share of those that led to a valid watch."""
    per_arm = []
    for a in range(n_arms):
        m = arm == a
        shown = slates[m]
        creators = np.bincount(world.video_creator[shown].ravel(), minlength=world.n_creators)
        slots = explore[m]
        per_arm.append({
            "coverage": float(len(np.unique(shown)) / world.n_videos) if shown.size else 0.0,
            "creator_gini": gini(creators),
            "exploration_share": float(slots.mean()) if slots.size else 0.0,
            "exploration_watch_rate": float(valid[m][slots].mean()) if slots.any() else 0.0,
        })  # fmt: skip
    return {"arms": per_arm}


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
    return {
        "experiments": n,
        "metric": metric,
        "alpha": alpha,
        "days": days,
        "users": len(result.user_ids),
        "fixed_horizon_fpr": fixed / n,
        "sequential_fpr": seq / n,
        "srm_alarms": srm_alarms,
    }
