"""The online state of a loaded model: applying a log is a function of its records (not of how
it was cut into batches), snapshots restore it into a fresh copy of the bundle, the online
store is rewritten from it (memory and a real Redis), and one user's state can be inspected."""

from __future__ import annotations

import json
import pickle
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from mlsd.config import SimulationConfig
from mlsd.data.schema import validate
from mlsd.data.simulate import simulate
from mlsd.errors import BundleError, OnlineStoreUnavailable
from mlsd.features import MemoryStore, OnlineStore
from mlsd.features.stream import materialize
from mlsd.pipeline import Recommender, RequestCtx
from tests.features.conftest import RedisServer, start_redis

HOUR = 3_600_000
CONFIG = {
    "two_tower": {"epochs": 1},
    "ranker": {"n_estimators": 20, "num_threads": 1},
    "candidates": 100,
    "negatives_per_user": 30,
    # slates are compared exactly: a slow request must not be served degraded
    "budget_ms": 60_000,
    "queue_budget_ms": 60_000,
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rec = Recommender(CONFIG).fit(simulate(SimulationConfig.for_scale("tiny", seed=0)))
    out = tmp_path_factory.mktemp("online-state") / "rec"
    rec.save(out)
    return out


def load(bundle: Path, store: OnlineStore | None = None) -> Recommender:
    return Recommender.load(bundle, online_store=store if store is not None else MemoryStore())


def event_log(rec: Recommender, n: int = 240, seed: int = 3) -> pa.Table:
    """Events as the service logs them (validated): known and new users, plays (long, short,
    without watch time), likes, dislikes, shares and impressions over five hours after the
    model's log, in time order with ties; a few users repeat positives on the same videos."""
    rng = np.random.default_rng(seed)
    known = rng.choice(rec.retrieval.history_.users(), 12, replace=False)
    new = int(rec.retrieval.history_.users().max()) + 1 + np.arange(6)
    users = rng.choice(np.r_[known, new], n)
    videos = rng.choice(rec.state.catalog.item_ids[:15], n)  # few videos: repeats per hour
    kinds = rng.choice(["play", "like", "dislike", "share", "impression"], n,
                       p=[0.45, 0.15, 0.05, 0.05, 0.3])  # fmt: skip
    t = rec.now_ms_ + np.sort(rng.integers(0, 5 * HOUR, n))
    t[20:25] = t[20]  # simultaneous events
    rows: list[dict[str, Any]] = []
    for i in range(n):
        watch = None
        if kinds[i] == "play" and rng.random() < 0.9:
            watch = float(rng.choice([2.5, 17.25, 45.0, 300.0 * rng.random()]))
        # every row names every column: from_pylist takes the columns of the first row only
        rows.append({"user_id": int(users[i]), "video_id": int(videos[i]),
                     "event_type": str(kinds[i]), "timestamp": int(t[i]),
                     "watch_seconds": watch})  # fmt: skip
    table, _ = validate({"events": pa.Table.from_pylist(rows)}, {"events": "test log"})
    return table["events"]


def apply_in_chunks(rec: Recommender, events: pa.Table, size: int | None) -> None:
    if size is None:
        rec.apply_events(events)
        return
    for lo in range(0, events.num_rows, size):
        rec.apply_events(events.slice(lo, size))


def store_records(rec: Recommender, keys: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    online = rec.ranking.online_
    return {e: online.store.get(e, k, online.layouts[e].features) for e, k in keys.items()}


def state_keys(rec: Recommender) -> dict[str, np.ndarray]:
    """Every key of the online state, per entity (single ids, or [n, 2] pairs)."""
    return {
        e: st.keys.ids.copy() if e == "user_creator" else st.keys.ids[:, 0].copy()
        for e, st in rec.ranking.online_.states.items()
    }


def raw_state(rec: Recommender) -> dict[str, np.ndarray]:
    """The float64 window and topic sums of every key, in key order (row numbers depend on
    the order keys arrived in; values must not depend on anything but the log)."""
    out = {}
    for e, st in rec.ranking.online_.states.items():
        ids = st.keys.ids
        order = np.lexsort(ids.T[::-1])
        out[e] = ids[order]
        out[f"{e}.sums"] = st.sums[:, order]
        if e == "user":
            out["user.topic"] = st.topic[order]
    return out


def outcome(rec: Recommender, users: np.ndarray, keys: dict[str, np.ndarray]) -> dict[str, Any]:
    """What must not depend on batch boundaries: every touched user's state and slates (at a
    fixed request time), the online store's records and the raw sums behind them."""
    ctx = RequestCtx(rec.now_ms_ + 6 * HOUR)
    served = {}
    for u in users.tolist():
        s = rec.serve(u, 10, ctx)
        assert s.degraded_kind is None, s.degraded_reason
        served[u] = [(i.video_id, i.score) for i in s.items]
    return {
        "user_state": {u: rec.user_state(u) for u in users.tolist()},
        "served": served,
        "recommend": rec.recommend(users, 10).tolist(),
        "records": store_records(rec, keys),
        "raw": raw_state(rec),
    }


def assert_same(got: dict[str, Any], want: dict[str, Any], what: str) -> None:
    for part in ("user_state", "served", "recommend"):
        assert got[part] == want[part], f"{what}: {part} differs"
    for e in want["records"]:
        np.testing.assert_array_equal(got["records"][e], want["records"][e], err_msg=f"{what}: {e}")
    for name in want["raw"]:  # exactly: float sums that depended on batching would show here
        np.testing.assert_array_equal(
            got["raw"][name], want["raw"][name], err_msg=f"{what}: {name}"
        )


def test_applying_a_log_does_not_depend_on_batches_or_on_a_snapshot(bundle: Path) -> None:
    whole = load(bundle)
    events = event_log(whole)
    users = np.unique(events.column("user_id").to_numpy())
    first_new = int(whole.retrieval.history_.users().max()) + 1
    before = {u: whole.user_state(u) for u in users.tolist()}
    apply_in_chunks(whole, events, None)
    keys = state_keys(whole)
    want = outcome(whole, users, keys)
    # the log did change what is compared: new users' histories, known users' blocks
    assert any(want["user_state"][u]["history"] for u in users.tolist() if u >= first_new)
    assert any(s["blocked_creators"] for s in want["user_state"].values())
    assert all(want["user_state"][u] != before[u] for u in users.tolist())

    for size in (1, 7, 50):
        rec = load(bundle)
        apply_in_chunks(rec, events, size)
        assert_same(outcome(rec, users, keys), want, f"chunks of {size}")

    first = load(bundle)
    half = events.num_rows // 2
    apply_in_chunks(first, events.slice(0, half), 13)
    blob = first.online_snapshot()
    fresh = load(bundle)
    fresh.restore_online(blob)
    apply_in_chunks(fresh, events.slice(half), 13)
    assert_same(outcome(fresh, users, keys), want, "half, snapshot, restore, half")


def test_restore_rewrites_the_store_and_forgets_cached_candidates(bundle: Path) -> None:
    src = load(bundle)
    events = event_log(src, n=80, seed=5)
    src.apply_events(events)
    keys = state_keys(src)
    blob = src.online_snapshot()

    dst = load(bundle)
    dst.precompute_candidates()
    cache = dst.candidate_cache_
    assert cache is not None
    touched = np.unique(events.column("user_id").to_numpy())
    cached = [u for u in touched.tolist() if cache.get(u) is not None]
    assert cached  # known users' rows were valid before the restore
    dst.restore_online(blob)
    assert all(cache.get(u) is None for u in cached)
    for e, got in store_records(dst, keys).items():
        np.testing.assert_array_equal(got, store_records(src, keys)[e], err_msg=e)
    assert dst.ranking.online_.store.populated() == dst.version
    # and the snapshot of the restored model is the same state again
    assert dst.user_state(int(touched[0])) == src.user_state(int(touched[0]))


def test_restore_into_a_model_ahead_leaves_no_records_of_its_extra_keys(bundle: Path) -> None:
    base = load(bundle)
    blob = base.online_snapshot()  # the bundle's own state
    ahead = load(bundle)
    events = event_log(ahead, n=40, seed=7)
    ahead.apply_events(events)
    users = events.column("user_id").to_numpy()
    new_user = int(users[users > base.retrieval.history_.users().max()][0])
    assert ahead.user_state(new_user) != base.user_state(new_user)
    ahead.restore_online(blob)
    assert ahead.user_state(new_user) == base.user_state(new_user)


def test_a_snapshot_of_another_version_or_no_snapshot_is_refused(bundle: Path) -> None:
    rec = load(bundle)
    blob = rec.online_snapshot()
    other = load(bundle)
    other.version = "rec-other"
    with pytest.raises(BundleError, match=f"{rec.version}.*rec-other"):
        other.restore_online(blob)
    with pytest.raises(BundleError, match="not an online-state snapshot"):
        rec.restore_online(b"garbage")
    with pytest.raises(BundleError, match="not an online-state snapshot"):
        rec.restore_online(blob[: len(blob) // 2])
    payload = pickle.loads(blob)
    payload["format"] = 99
    with pytest.raises(BundleError, match="format 99"):
        rec.restore_online(pickle.dumps(payload, protocol=5))


def test_a_snapshot_cannot_execute_code(bundle: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (Path.touch, (marker,))

    rec = load(bundle)
    payload = pickle.loads(rec.online_snapshot())
    payload["blocked"] = Evil()
    with pytest.raises(BundleError, match="not allowed"):
        rec.restore_online(pickle.dumps(payload, protocol=5))
    assert not marker.exists()


def test_user_state_is_json_ready_and_follows_events(bundle: Path) -> None:
    rec = load(bundle)
    user = int(rec.retrieval.history_.users()[0])
    video, other = (int(v) for v in rec.state.catalog.item_ids[[3, 4]])
    before = rec.user_state(user)
    rec.apply_events(
        validate({"events": pa.Table.from_pylist([
            {"user_id": user, "video_id": video, "event_type": "play", "watch_seconds": 60.0,
             "timestamp": rec.now_ms_},  # the model's hour: no window moves
            {"user_id": user, "video_id": other, "event_type": "dislike",
             "timestamp": rec.now_ms_},
        ])}, {"events": "test"})[0]["events"]
    )  # fmt: skip
    after = rec.user_state(user)
    json.dumps(after, allow_nan=False)  # NaN would not be JSON
    assert after["history"][0] == video and len(after["history"]) <= 50
    assert after["history"] == rec.history_of(user, 50).tolist()
    assert after["seen"] == len(set(rec.state.watched(user).tolist())) > 0
    creator = int(rec.state.catalog.creator[rec.state.catalog.index_of(np.array([other]))[0]])
    assert creator in after["blocked_creators"] and after["blocked_creators"] == sorted(
        after["blocked_creators"]
    )
    assert after["features"]["user_plays_1d"] == before["features"]["user_plays_1d"] + 1
    assert isinstance(after["features"]["user_topic_affinity"], list)
    nobody = rec.user_state(10**12)
    assert nobody["history"] == [] and nobody["seen"] == 0 and nobody["blocked_creators"] == []
    json.dumps(nobody, allow_nan=False)


def test_rewrite_fills_an_emptied_memory_store(bundle: Path) -> None:
    rec = load(bundle)
    rec.apply_events(event_log(rec, n=30, seed=9))
    keys = state_keys(rec)
    want = store_records(rec, keys)
    empty = MemoryStore()
    rec.ranking.online_.store = empty
    assert empty.populated() is None
    n = rec.rewrite_online_store()
    assert n == sum(len(k) for k in keys.values())
    assert empty.populated() == rec.version
    for e, got in store_records(rec, keys).items():
        np.testing.assert_array_equal(got, want[e], err_msg=e)


# --- Redis -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    yield server
    server.stop()


@pytest.mark.redis
def test_redis_marker_and_rewrite_after_the_data_is_lost(
    bundle: Path, redis_server: RedisServer
) -> None:
    from mlsd.features.redis_store import RedisStore

    ns = f"test-{uuid.uuid4().hex[:8]}"
    store = RedisStore(redis_server.url, namespace=ns, timeout_s=2.0)
    try:
        rec = load(bundle, store)
        rec.apply_events(event_log(rec, n=30, seed=11))
        keys = state_keys(rec)
        want = store_records(rec, keys)
        store.mark_populated("v-test")
        assert store.populated() == "v-test"
        assert store.clear() > 0  # Redis lost everything: records, layouts, the marker
        assert store.populated() is None
        n = rec.rewrite_online_store()
        assert n == sum(len(k) for k in keys.values())
        assert store.populated() == rec.version
        reader = RedisStore(redis_server.url, namespace=ns, timeout_s=2.0)  # another process
        try:
            for e, k in keys.items():
                got = reader.get(e, k, rec.ranking.online_.layouts[e].features)
                np.testing.assert_array_equal(got, want[e], err_msg=e)
        finally:
            reader.close()
        # materialize marks the store it filled
        store.clear()
        materialize(rec.dataset_, store, registry=rec.ranking.registry, token="v-materialized")
        assert store.populated() == "v-materialized"
    finally:
        store.clear()
        store.close()


@pytest.mark.redis
def test_redis_marker_read_raises_when_redis_is_down() -> None:
    from mlsd.features.redis_store import RedisStore

    server = start_redis()
    store = RedisStore(server.url, namespace="down", timeout_s=0.2)
    store.mark_populated("v1")
    assert store.populated() == "v1"
    server.stop()
    with pytest.raises(OnlineStoreUnavailable, match="populated"):
        store.populated()
    with pytest.raises(OnlineStoreUnavailable, match="mark_populated"):
        store.mark_populated("v2")
    store.close()


def test_histories_follow_the_log_order_even_when_times_go_back(bundle: Path) -> None:
    """Late arrivals (retries, skewed client clocks) carry earlier times than events already
    applied: histories and seen sets still depend on the log alone, not on its batches."""
    events = event_log(load(bundle), n=160, seed=7)
    rng = np.random.default_rng(1)
    events = events.take(pa.array(rng.permutation(events.num_rows)))  # times out of order
    users = np.unique(events.column("user_id").to_numpy()).tolist()
    runs = []
    for size in (None, 1, 9, 40):
        rec = load(bundle)
        apply_in_chunks(rec, events, size)
        runs.append(
            {u: (rec.user_state(u)["history"], rec.state.watched(u).tolist()) for u in users}
        )
    assert any(h for h, _ in runs[0].values())
    assert all(r == runs[0] for r in runs[1:])


def test_stale_while_revalidate_serves_once_then_refreshes_off_the_request_path(
    bundle: Path,
) -> None:
    from mlsd.pipeline.servable import ServingOptions

    rec = load(bundle)
    rec.prepare(ServingOptions(stale_while_revalidate=True, compile_ranker=False), lambda m: None)
    calls: list[int] = []
    retrieve = rec.retrieval.retrieve

    def counted(users: np.ndarray, n: int) -> Any:
        calls.append(len(users))
        return retrieve(users, n)

    rec.retrieval.retrieve = counted  # type: ignore[method-assign]
    n = rec.config.candidates
    known = int(rec.candidate_cache_.users[-1])  # type: ignore[union-attr]
    new = int(rec.retrieval.history_.users().max()) + 1
    videos = rec.state.catalog.item_ids[:3].tolist()

    def watch(user: int, video: int) -> None:
        rows = [{"user_id": user, "video_id": video, "event_type": "like",
                 "timestamp": rec.now_ms_ + 1000, "watch_seconds": None}]  # fmt: skip
        rec.apply_events(
            validate({"events": pa.Table.from_pylist(rows)}, {"events": "t"})[0]["events"]
        )

    for user in (known, new):
        before = rec.cache.candidates_of(user, n)[0].copy()
        watch(user, videos[0])
        calls.clear()
        stale = rec.cache.candidates_of(user, n)[0]  # served at once, from the row it had
        if user == known:
            np.testing.assert_array_equal(stale, before)
        assert calls == [] or user == new  # a new user's first history: retrieved once
        assert rec.refresh_candidates() == 1 and calls[-1] == 1
        fresh = retrieve(np.array([user], np.int64), n).items[0]
        calls.clear()
        np.testing.assert_array_equal(rec.cache.candidates_of(user, n)[0], fresh)
        assert calls == []  # and from then on, from the cache
        assert rec.refresh_candidates() == 0
