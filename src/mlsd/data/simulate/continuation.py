"""Simulated time: a world continued for more days from where its log ends.

``continue_world(meta, days)`` rebuilds the world a simulation's manifest describes (the same
users, creators and videos, drawn again from its config and seed), applies the continuations
that manifest records, then moves it ``days`` further:

- tastes keep drifting: the new window starts from the tastes at the old window's end and
  drifts by ``taste_drift * sqrt(days / cfg.days)`` (a random walk's scale, so a week's drift
  is that of a week of the first window);
- creators keep uploading: ``fresh_upload_share * n_videos * days / cfg.days`` new videos,
  spread over the new days, from creators weighted by their upload rate, ids after the last;
- users keep coming back at the same mean rate per day; no user signs up;
- a taste shift the config schedules (``taste_shift``) happens in the window that reaches it
  (:func:`~mlsd.data.simulate.world.schedule_taste_shift`); without one nothing changes.

The new window's events are returned alone (the new data a retraining run collects); the
entity tables are the whole world, new uploads included. Deterministic: the same manifest and
``days`` give byte-identical files.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from mlsd._version import __version__
from mlsd.config import SimulationConfig
from mlsd.data.dataset import Dataset
from mlsd.data.simulate import entity_tables, events_by_type, simulate_window
from mlsd.data.simulate.world import DAY_MS, World, _titles, build_world, schedule_taste_shift
from mlsd.errors import DataError

__all__ = ["continue_world", "world_of"]


def _config_of(meta: dict[str, Any]) -> SimulationConfig:
    base = meta.get("base_config", meta.get("config"))
    if meta.get("source") != "simulated" or not isinstance(base, dict):
        raise DataError(
            "manifest.json: not a simulated dataset (no 'source': 'simulated' with its "
            "'config'); only a world mlsd simulated can be continued"
        )
    try:
        return SimulationConfig(**base)
    except Exception as e:
        raise DataError(f"manifest.json: the simulation config does not load: {e}") from e


def world_of(meta: dict[str, Any]) -> World:
    """The world at the end of the window a simulation's manifest describes (its first
    window plus every continuation it records)."""
    base = _config_of(meta)
    world = build_world(base)
    for i, days in enumerate(meta.get("continuations", []), start=1):
        world = _extend(world, base, int(days), i)
    return world


def _extend(w: World, base: SimulationConfig, days: int, index: int) -> World:
    """``w`` moved ``days`` past its end: new window, drifted tastes, new uploads. Rates
    (uploads, requests per user, drift) are those of ``base``, the first window's config; a
    ``base.taste_shift`` is scheduled from the first window that has it (its ``start_day``
    counts from that window's start) and happens once, in the window that reaches it."""
    cfg = base
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0xC0, index]))
    start, end = w.end_ms, w.end_ms + days * DAY_MS
    scale = days / cfg.days
    drift = cfg.taste_drift * math.sqrt(scale)
    taste_start = w.final_tastes()
    taste_end = (taste_start + rng.normal(0.0, drift, taste_start.shape)).astype(np.float32)

    n_new = round(cfg.fresh_upload_share * cfg.n_videos * scale)
    k = len(w.topics)
    rate = np.exp(0.5 * w.creator_pop + rng.normal(0.0, 0.8, w.n_creators))
    creator = rng.choice(w.n_creators, n_new, p=rate / rate.sum()).astype(np.int32)
    # a creator's own topic mostly, else one drawn by the topics' share of creators
    share = np.bincount(w.creator_topic, minlength=k) / w.n_creators
    topic = np.where(
        rng.random(n_new) < 0.85, w.creator_topic[creator], rng.choice(k, n_new, p=share)
    ).astype(np.int16)
    t2 = rng.integers(0, k, n_new)
    topic2 = np.where((rng.random(n_new) < 0.3) & (t2 != topic), t2, -1).astype(np.int16)
    quality = (0.3 * w.creator_pop[creator] + rng.normal(0.0, 0.8, n_new)).astype(np.float32)
    short = rng.random(n_new) < 0.35
    duration = np.where(
        short, rng.lognormal(np.log(25), 0.5, n_new), rng.lognormal(np.log(480), 0.8, n_new)
    )
    duration = np.clip(np.round(duration), 5, 7200).astype(np.float32)
    upload = start + (rng.random(n_new) * (end - start)).astype(np.int64)
    explicit = rng.random(n_new) < cfg.explicit_share
    vocab, words = _titles(rng, w.topics, topic, topic2)
    if vocab != w.vocab:  # the vocabulary depends on the topics only
        raise AssertionError("title vocabulary changed between windows")

    new_cfg = cfg.model_copy(
        update={
            "days": days,
            "start": datetime.fromtimestamp(start / 1000, UTC).isoformat().replace("+00:00", "Z"),
            "requests_per_user": cfg.requests_per_user * scale,
            "n_videos": w.n_videos + n_new,
        }
    )
    moved = replace(
        w,
        cfg=new_cfg,
        start_ms=start,
        end_ms=end,
        taste_start=taste_start,
        taste_end=taste_end,
        video_creator=np.concatenate([w.video_creator, creator]),
        video_topic=np.concatenate([w.video_topic, topic]),
        video_topic2=np.concatenate([w.video_topic2, topic2]),
        video_quality=np.concatenate([w.video_quality, quality]),
        duration_s=np.concatenate([w.duration_s, duration]),
        upload_ms=np.concatenate([w.upload_ms, upload]),
        is_explicit=np.concatenate([w.is_explicit, explicit]),
        title_words=np.concatenate([w.title_words, words]),
        taste_shift_ms=None,
        taste_shift_map=None,
    )
    return schedule_taste_shift(moved, base)


def continue_world(meta: dict[str, Any], days: int, progress: Any | None = None) -> Dataset:
    """``days`` more days of the simulated world whose manifest is ``meta``.

    Returns the new window's events with the whole world's users, creators and videos; its
    ``meta`` is a manifest that can itself be continued. Raises :class:`DataError` when
    ``meta`` is not a simulation's manifest or ``days`` < 1.
    """
    if days < 1:
        raise DataError(f"--days: {days}; expected at least 1 day to continue for")
    cfg = _config_of(meta)
    previous = [int(d) for d in meta.get("continuations", [])]
    world = _extend(world_of(meta), cfg, days, len(previous) + 1)
    first_request = int(meta.get("last_request_id", meta.get("rows", {}).get("requests", 0))) + 1
    events, n_requests = simulate_window(
        world,
        seed_key=(cfg.seed, 0xC0, len(previous) + 1),
        first_request_id=first_request,
        progress=progress,
    )
    users, creators, videos = entity_tables(world)
    out = {
        "source": "simulated",
        "mlsd_version": __version__,
        "base_config": cfg.model_dump(),
        "config": world.cfg.model_dump(),
        "continuations": [*previous, days],
        "window": {"start_ms": world.start_ms, "end_ms": world.end_ms},
        "last_request_id": first_request + n_requests - 1,
        "rows": {"users": users.num_rows, "creators": creators.num_rows,
                 "videos": videos.num_rows, "events": events.num_rows,
                 "requests": n_requests},
        "events_by_type": events_by_type(events),
    }  # fmt: skip
    return Dataset(events=events, videos=videos, users=users, creators=creators, meta=out)
