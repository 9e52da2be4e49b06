"""A scheduled taste shift in the simulator (``SimulationConfig.taste_shift``): off by default,
abrupt and once when on, deterministic, usable day by day as the closed loop drives the world."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from mlsd.config import SimulationConfig, TasteShift
from mlsd.data.simulate import (
    LoggingPolicy,
    ResponseModel,
    World,
    build_world,
    requests,
    simulate,
    simulate_window,
)
from mlsd.data.simulate.continuation import _config_of, _extend, continue_world, world_of

DAY = 86_400_000
K = 24  # tiny's topics


@pytest.fixture(scope="module")
def base() -> SimulationConfig:
    return SimulationConfig.for_scale("tiny", seed=0)


@pytest.fixture(scope="module")
def first(base: SimulationConfig) -> World:
    return build_world(base)


def _shifted(base: SimulationConfig, **kw: float) -> SimulationConfig:
    shift = TasteShift.model_validate({"start_day": 1, **kw})
    return base.model_copy(update={"taste_shift": shift})


def _logits_at(w: World, day: float) -> np.ndarray:
    users = np.arange(w.n_users)
    return ResponseModel(w).taste_logits(users, np.full(w.n_users, w.start_ms + int(day * DAY)))


def _row_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def _plays(w: World, reps: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(topic, time, user) of every play when the world's users visit as the closed loop has
    them do (requests, the logging policy's slates, the response model), ``reps`` times."""
    response = ResponseModel(w)
    policy = LoggingPolicy(w, response)
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for r in range(reps):
        rng = np.random.default_rng([0x7E57, r])
        users, t, _, _ = requests(w, rng)
        slates, _ = policy.slates(users, t, w.cfg.slate_size, rng)
        rows, cols = np.nonzero(response.respond(users, t, slates, rng).play)
        out.append((w.video_topic[slates[rows, cols]], t[rows], users[rows]))
    return tuple(np.concatenate(x) for x in zip(*out, strict=True))  # type: ignore[return-value]


def _tvd(a: np.ndarray, b: np.ndarray) -> float:
    p, q = np.bincount(a, minlength=K) / len(a), np.bincount(b, minlength=K) / len(b)
    return float(0.5 * np.abs(p - q).sum())


def test_no_shift_by_default_and_manifests_keep_their_keys(base: SimulationConfig) -> None:
    assert base.taste_shift is None
    assert "taste_shift" not in base.model_dump()
    assert "taste_shift" not in json.loads(base.model_dump_json())
    on = _shifted(base, start_day=2.5, share_of_users=0.3, strength=0.8, seed=4)
    dumped = on.model_dump()
    assert dumped["taste_shift"] == {
        "start_day": 2.5,
        "share_of_users": 0.3,
        "strength": 0.8,
        "seed": 4,
    }
    assert SimulationConfig(**dumped) == on and SimulationConfig(**base.model_dump()) == base
    for bad in ({"start_day": -1}, {"start_day": 1, "share_of_users": 0}, {"start_day": 1, "x": 1}):
        with pytest.raises(ValidationError):
            TasteShift.model_validate(bad)


def test_a_shift_not_yet_due_changes_nothing(base: SimulationConfig, first: World) -> None:
    plain = _extend(first, base, 3, 1)
    assert plain.taste_shift_ms is None and not plain.taste_shifted
    np.testing.assert_array_equal(plain.taste_start, first.taste_end)
    later = _extend(first, _shifted(base, start_day=5), 3, 1)
    assert later.taste_shift_origin_ms == first.end_ms and not later.taste_shifted
    np.testing.assert_array_equal(later.taste_end, plain.taste_end)
    ev_plain, _ = simulate_window(plain, seed_key=(0, 0xC0, 1))
    ev_later, _ = simulate_window(later, seed_key=(0, 0xC0, 1))
    assert ev_plain.equals(ev_later)


def test_the_shift_moves_the_affected_users_tastes_at_its_day(
    base: SimulationConfig, first: World
) -> None:
    plain = _extend(first, base, 3, 1)
    w = _extend(first, _shifted(base, share_of_users=0.5), 3, 1)
    assert w.taste_shifted and w.taste_shift_ms == w.start_ms + DAY
    assert w.taste_shift_map is not None
    hit = (w.taste_shift_map != np.arange(K)).any(axis=1)
    assert hit.sum() == 150
    # every affected user's topics all move (a cycle through the topics: no fixed point)
    assert (w.taste_shift_map[hit] != np.arange(K)).all()
    # before the shift the world is the unshifted one
    np.testing.assert_array_equal(_logits_at(w, 0.99), _logits_at(plain, 0.99))
    corr = _row_corr(_logits_at(w, 0.5), _logits_at(w, 2.5))
    corr_plain = _row_corr(_logits_at(plain, 0.5), _logits_at(plain, 2.5))
    assert corr[hit].mean() < 0.2 and corr[hit].max() < 0.7, corr[hit].mean()
    assert corr[~hit].min() > 0.9 and corr_plain.min() > 0.9
    # the next window starts from the shifted tastes and shifts no more
    nxt = _extend(w, base, 2, 2)
    np.testing.assert_array_equal(nxt.taste_start, w.final_tastes())
    assert nxt.taste_shifted and nxt.taste_shift_ms is None and nxt.taste_shift_map is None
    assert (_row_corr(nxt.taste_start, _logits_at(w, 2.99)) > 0.99).all()


def test_what_users_play_shifts_after_the_shift_day(base: SimulationConfig, first: World) -> None:
    plain = _extend(first, base, 3, 1)
    w = _extend(first, _shifted(base), 3, 1)
    before = _logits_at(plain, 0.5)
    top3 = np.argsort(-before, axis=1)[:, :3]
    tvd, in_top3 = {}, {}
    for name, world in (("plain", plain), ("shift", w)):
        topic, t, user = _plays(world)
        post = t >= world.start_ms + DAY
        assert (~post).sum() > 500 and post.sum() > 1000
        tvd[name] = _tvd(topic[~post], topic[post])
        in_top3[name] = float((top3[user[post]] == topic[post][:, None]).any(axis=1).mean())
    # seed 0: TVD 0.09 without the shift, 0.25 with it; plays in the users' former top-3
    # topics 78% without, 12% with
    assert tvd["plain"] < 0.15 and tvd["shift"] > 0.18 and tvd["shift"] > 2 * tvd["plain"], tvd
    assert in_top3["plain"] > 0.6 and in_top3["shift"] < 0.35, in_top3


def test_day_by_day_as_the_closed_loop_the_shift_happens_once(base: SimulationConfig) -> None:
    meta = simulate(base).meta  # the loop: world_of(meta), then _extend(world, base, 1, i)
    world = world_of(meta)
    loop_base = _config_of(meta).model_copy(update={"taste_shift": TasteShift(start_day=2)})
    at, shifted, starts = [], [], []
    for day in range(5):
        prev = world
        world = _extend(world, loop_base, 1, 1 + 1000 + day)
        np.testing.assert_array_equal(world.taste_start, prev.final_tastes())
        at.append(world.taste_shift_ms)
        shifted.append(world.taste_shifted)
        starts.append(world.start_ms)
        assert world.taste_shift_origin_ms == meta["window"]["end_ms"]
    assert at == [None, None, starts[2], None, None]
    assert shifted == [False, False, True, True, True]


def test_the_shift_is_deterministic_for_the_seeds(base: SimulationConfig, first: World) -> None:
    cfg = _shifted(base, share_of_users=0.3)
    a, b = _extend(first, cfg, 3, 1), _extend(first, cfg, 3, 1)
    assert a.taste_shift_map is not None and b.taste_shift_map is not None
    np.testing.assert_array_equal(a.taste_shift_map, b.taste_shift_map)
    ev_a, _ = simulate_window(a, seed_key=(0, 0xC0, 1))
    ev_b, _ = simulate_window(b, seed_key=(0, 0xC0, 1))
    assert ev_a.equals(ev_b)
    other = _extend(first, _shifted(base, share_of_users=0.3, seed=1), 3, 1)
    assert other.taste_shift_map is not None
    assert not np.array_equal(other.taste_shift_map, a.taste_shift_map)


def test_a_simulation_configured_with_a_shift_continues_with_it(base: SimulationConfig) -> None:
    # tiny's window is 14 days: a shift on day 15 happens on the first continued day
    cfg = _shifted(base, start_day=15)
    ds = simulate(cfg)
    assert ds.events.equals(simulate(base).events)  # nothing in the first window
    assert ds.meta["config"]["taste_shift"]["start_day"] == 15
    more = continue_world(ds.meta, 3)
    assert more.meta["base_config"]["taste_shift"]["start_day"] == 15
    w = world_of(more.meta)
    assert w.taste_shift_ms == w.start_ms + DAY
    again = continue_world(ds.meta, 3)
    assert again.events.equals(more.events)
    assert json.dumps(again.meta) == json.dumps(more.meta)
