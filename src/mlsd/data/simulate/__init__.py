"""The embedded world: a simulated video platform, deterministic for a seed.

``simulate(cfg)`` draws users, creators and videos (:mod:`.world`), a stream of recommendation
requests, the slates a logging policy showed (:mod:`.policy`) and what users did
(:mod:`.response`), and returns a :class:`~mlsd.data.dataset.Dataset` in the mlsd schema.
See ``docs/simulator.md`` for the equations.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlsd._version import __version__
from mlsd.config import SimulationConfig
from mlsd.data.dataset import Dataset
from mlsd.data.schema import CREATORS, EVENT_TYPES, EVENTS, USERS, VIDEOS
from mlsd.data.simulate.policy import LoggingPolicy
from mlsd.data.simulate.response import ResponseModel, Responses
from mlsd.data.simulate.world import (
    AGE_BUCKETS,
    COUNTRIES,
    COUNTRY_LANG,
    DAY_MS,
    DEVICES,
    DIURNAL,
    HOUR_MS,
    SURFACE_P,
    SURFACES,
    World,
    build_world,
)

__all__ = [
    "LoggingPolicy",
    "ResponseModel",
    "Responses",
    "World",
    "build_world",
    "entity_tables",
    "events_by_type",
    "requests",
    "simulate",
    "simulate_window",
    "slate_events",
]

_CODE = {name: i for i, name in enumerate(EVENT_TYPES)}


def _requests(world: World, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """All requests of the window, sorted by time: (user idx, time ms, surface, device)."""
    w, cfg = world, world.cfg
    t0 = np.maximum(w.signup_ms, w.start_ms)
    active = (w.end_ms - t0) / (w.end_ms - w.start_ms)
    n_req = rng.poisson(cfg.requests_per_user * w.activity * active)
    users = np.repeat(np.arange(w.n_users, dtype=np.int64), n_req)
    lo = t0[users]
    raw = lo + (rng.random(len(users)) * (w.end_ms - lo)).astype(np.int64)
    # Re-draw the hour of day from the diurnal profile, keeping the day.
    day = (raw // DAY_MS) * DAY_MS
    hour = rng.choice(24, len(users), p=DIURNAL)
    t = day + hour * HOUR_MS + (rng.random(len(users)) * HOUR_MS).astype(np.int64)
    t = np.where((t < lo) | (t >= w.end_ms), raw, t)
    order = np.lexsort((users, t))
    users, t = users[order], t[order]
    surface = rng.choice(len(SURFACES), len(users), p=SURFACE_P).astype(np.int8)
    other = rng.integers(0, len(DEVICES), len(users)).astype(np.int8)
    device = np.where(rng.random(len(users)) < 0.85, w.device[users], other).astype(np.int8)
    return users, t, surface, device


def _chunk_events(
    users: np.ndarray,
    t: np.ndarray,
    req_id: np.ndarray,
    surface: np.ndarray,
    device: np.ndarray,
    videos: np.ndarray,
    r: Responses,
) -> dict[str, np.ndarray]:
    """Flatten one chunk of slates and responses into event columns (numpy)."""
    n, s = videos.shape
    pos = np.broadcast_to(np.arange(1, s + 1, dtype=np.int16), (n, s))
    # Plays happen one after another down the slate: each starts 3 s after the previous one
    # ended (2 s after the impression for the first).
    played_before = np.cumsum(r.play, axis=1) - r.play
    watched_before = np.cumsum(r.watch_seconds, axis=1) - r.watch_seconds
    play_t = t[:, None] + 2000 + 3000 * played_before + (watched_before * 1000).astype(np.int64)
    end_t = play_t + (r.watch_seconds * 1000).astype(np.int64)
    parts: list[tuple[np.ndarray, np.ndarray, int]] = [
        (np.ones((n, s), dtype=bool), np.broadcast_to(t[:, None], (n, s)), _CODE["impression"]),
        (r.play, play_t, _CODE["play"]),
        (r.like, end_t + 500, _CODE["like"]),
        (r.share, end_t + 1500, _CODE["share"]),
        (r.dislike, t[:, None] + 1500 + 200 * pos, _CODE["dislike"]),
    ]
    cols: dict[str, list[np.ndarray]] = {
        k: [] for k in ("u", "v", "t", "e", "w", "req", "pos", "surf", "dev")
    }
    for mask, times, code in parts:
        rows, c = np.nonzero(mask)
        cols["u"].append(users[rows])
        cols["v"].append(videos[rows, c])
        cols["t"].append(np.asarray(times)[rows, c])
        cols["e"].append(np.full(len(rows), code, dtype=np.int8))
        cols["w"].append(
            r.watch_seconds[rows, c]
            if code == _CODE["play"]
            else np.full(len(rows), np.nan, dtype=np.float32)
        )
        cols["req"].append(req_id[rows])
        cols["pos"].append(pos[rows, c])
        cols["surf"].append(surface[rows])
        cols["dev"].append(device[rows])
    return {k: np.concatenate(v) for k, v in cols.items()}


def _dict_strings(codes: np.ndarray, names: tuple[str, ...] | list[str]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(list(names))).cast(pa.string())


def _ts(ms: np.ndarray) -> pa.Array:
    return pa.array(ms.astype(np.int64), type=pa.int64()).cast(pa.timestamp("ms", tz="UTC"))


def _entity_tables(w: World) -> tuple[pa.Table, pa.Table, pa.Table]:
    nu, nc, nv = w.n_users, w.n_creators, w.n_videos
    langs = sorted(set(COUNTRY_LANG.values()))
    lang_of_country = np.array([langs.index(COUNTRY_LANG[c]) for c in COUNTRIES], dtype=np.int8)
    users = pa.Table.from_arrays(
        [pa.array(np.arange(1, nu + 1, dtype=np.int64)), _ts(w.signup_ms),
         _dict_strings(w.country, COUNTRIES), _dict_strings(lang_of_country[w.country], langs),
         _dict_strings(w.age, AGE_BUCKETS), _dict_strings(w.device, DEVICES),
         pa.array(w.allows_explicit)],
        schema=USERS,
    )  # fmt: skip
    creators = pa.Table.from_arrays(
        [pa.array(np.arange(1, nc + 1, dtype=np.int64)),
         _dict_strings(lang_of_country[w.creator_country], langs), _ts(w.creator_created_ms)],
        schema=CREATORS,
    )  # fmt: skip
    topic_names = list(w.topics)
    has2 = w.video_topic2 >= 0
    lengths = 1 + has2.astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    flat = np.empty(int(lengths.sum()), dtype=np.int16)
    flat[offsets[:-1]] = w.video_topic
    flat[offsets[:-1][has2] + 1] = w.video_topic2[has2]
    topics = pa.ListArray.from_arrays(pa.array(offsets), _dict_strings(flat, topic_names))
    vocab = pa.array(list(w.vocab))
    words = [
        pc.take(vocab, pa.array(w.title_words[:, j], mask=w.title_words[:, j] < 0))
        for j in range(w.title_words.shape[1])
    ]
    title = pc.binary_join_element_wise(*words, " ", null_handling="skip")
    videos = pa.Table.from_arrays(
        [pa.array(np.arange(1, nv + 1, dtype=np.int64)),
         pa.array(w.video_creator.astype(np.int64) + 1), pa.array(w.duration_s),
         _ts(w.upload_ms), _dict_strings(w.video_topic, topic_names), topics,
         _dict_strings(lang_of_country[w.creator_country[w.video_creator]], langs),
         pa.array(w.is_explicit), title],
        schema=VIDEOS,
    )  # fmt: skip
    return users, creators, videos


def simulate(cfg: SimulationConfig, progress: Any | None = None) -> Dataset:
    """Simulate the platform described by ``cfg``; deterministic for ``cfg.seed``.

    ``progress`` is an optional ``rich.progress.Progress`` to report chunks on. The returned
    dataset's ``meta`` holds the manifest (config, window, counts); ``meta`` carries no
    wall-clock time so that written files are byte-identical across runs.
    """
    world = build_world(cfg)
    events, n_requests = simulate_window(world, seed_key=(cfg.seed,), progress=progress)
    users_t, creators_t, videos_t = _entity_tables(world)
    meta = {
        "source": "simulated",
        "mlsd_version": __version__,
        "config": cfg.model_dump(),
        "window": {"start_ms": world.start_ms, "end_ms": world.end_ms},
        "rows": {"users": users_t.num_rows, "creators": creators_t.num_rows,
                 "videos": videos_t.num_rows, "events": events.num_rows,
                 "requests": n_requests},
        "events_by_type": events_by_type(events),
    }  # fmt: skip
    return Dataset(events=events, videos=videos_t, users=users_t, creators=creators_t, meta=meta)


def events_by_type(events: pa.Table) -> dict[str, int]:
    """Event counts per type (every type listed, zeros included)."""
    col = events.column("event_type").combine_chunks()
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    counts = pc.value_counts(col)
    found = {str(c["values"]): int(c["counts"]) for c in counts.to_pylist()}
    return {name: found.get(name, 0) for name in _CODE}


def simulate_window(
    world: World,
    *,
    seed_key: tuple[int, ...],
    first_request_id: int = 1,
    progress: Any | None = None,
) -> tuple[pa.Table, int]:
    """The events of ``world``'s window ``[start_ms, end_ms)``: requests, the logging policy's
    slates and the users' responses, sorted by time; returns (events, number of requests).

    ``seed_key`` seeds every draw (``(seed,)`` for a fresh world; a continuation adds its
    index, so that its days are not a replay of the first window's); request ids start at
    ``first_request_id``.
    """
    cfg = world.cfg
    response = ResponseModel(world)
    policy = LoggingPolicy(world, response)
    # the fresh world's keys are kept as they were: the same seed gives the same files
    ss = np.random.SeedSequence([*seed_key, 0xE7E])
    (req_rng,) = (np.random.default_rng(s) for s in ss.spawn(1))
    users, t, surface, device = _requests(world, req_rng)
    req_id = np.arange(first_request_id, first_request_id + len(users), dtype=np.int64)
    n_chunks = max(1, -(-len(users) // cfg.chunk_requests))
    task = progress.add_task("simulating requests", total=n_chunks) if progress else None
    parts: list[dict[str, np.ndarray]] = []
    ctx = progress if progress is not None else _Null()
    with ctx:
        for i in range(n_chunks):
            sl = slice(i * cfg.chunk_requests, (i + 1) * cfg.chunk_requests)
            rng = np.random.default_rng(np.random.SeedSequence([*seed_key, 0xC4, i]))
            vids, _src = policy.slates(users[sl], t[sl], cfg.slate_size, rng)
            resp = response.respond(users[sl], t[sl], vids, rng)
            parts.append(
                _chunk_events(users[sl], t[sl], req_id[sl], surface[sl], device[sl], vids, resp)
            )
            if progress is not None:
                progress.advance(task)
    events = _events_table(parts)
    del parts
    return events, len(users)


def _events_table(parts: list[dict[str, np.ndarray]]) -> pa.Table:
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(cols["t"], kind="stable")
    cols = {k: v[order] for k, v in cols.items()}
    w_sec = cols["w"]
    return pa.Table.from_arrays(
        [pa.array(cols["u"] + 1), pa.array(cols["v"] + 1), _ts(cols["t"]),
         _dict_strings(cols["e"], EVENT_TYPES),
         pa.array(w_sec, mask=np.isnan(w_sec), type=pa.float32()),
         pa.array(cols["req"]), pa.array(cols["pos"], type=pa.int16()),
         _dict_strings(cols["surf"], SURFACES), _dict_strings(cols["dev"], DEVICES),
         pa.nulls(len(order), pa.float32()), pa.nulls(len(order), pa.float32())],
        schema=EVENTS,
    )  # fmt: skip


def slate_events(
    users: np.ndarray,
    times_ms: np.ndarray,
    request_ids: np.ndarray,
    surface: np.ndarray,
    device: np.ndarray,
    videos: np.ndarray,
    responses: Responses,
) -> pa.Table:
    """The events (mlsd schema, time-ordered) of slates ``videos`` (indices, (n, S)) shown to
    ``users`` (indices) and the ``responses`` to them: what the simulator logs, for a closed
    loop that chooses the slates itself."""
    return _events_table(
        [_chunk_events(users, times_ms, request_ids, surface, device, videos, responses)]
    )


def requests(world: World, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """The requests of ``world``'s window, by time: (user idx, time ms, surface, device)."""
    return _requests(world, rng)


def entity_tables(world: World) -> tuple[pa.Table, pa.Table, pa.Table]:
    """The (users, creators, videos) tables of ``world``, in the mlsd schema."""
    return _entity_tables(world)


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None
