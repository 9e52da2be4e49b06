"""Contract tests of every OnlineStore (MemoryStore, RedisStore), and Redis failure modes."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mlsd.errors import FeatureStoreError, MlsdError, OnlineStoreUnavailable, UnknownFeatureError
from mlsd.features.definitions import VIDEO_REC
from mlsd.features.memory_store import MemoryStore
from mlsd.features.store import EntityLayout, OnlineStore, StoreStats

from .conftest import RedisServer, free_port, start_redis

N_TOPICS = 3


def _define(store: OnlineStore) -> dict[str, EntityLayout]:
    lays = {e: EntityLayout.from_registry(VIDEO_REC, e, N_TOPICS)
            for e in ("user", "video", "creator", "user_creator")}  # fmt: skip
    for lay in lays.values():
        store.define(lay)
    return lays


def _records(lay: EntityLayout, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, lay.width)).astype(np.float32)


def test_store_implements_protocol(store: OnlineStore) -> None:
    assert isinstance(store, OnlineStore)
    assert isinstance(store.stats, StoreStats)


def test_put_then_get_round_trips_selected_columns_in_order(store: OnlineStore) -> None:
    lay = _define(store)["video"]
    keys = np.array([7, 3, 11], dtype=np.int64)
    vals = _records(lay, 3)
    store.put("video", keys, vals)
    feats = ["video_plays_7d", "video_duration_s", "video_impressions_1h"]
    got = store.get("video", np.array([11, 7]), feats)
    cols = [lay.features.index(f) for f in feats]  # all width 1
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, vals[[2, 0]][:, cols])


def test_vector_feature_expands_to_its_width(store: OnlineStore) -> None:
    lay = _define(store)["user"]
    vals = _records(lay, 2)
    store.put("user", np.array([1, 2]), vals)
    got = store.get("user", np.array([2]), ["user_topic_affinity", "user_plays_1d"])
    assert got.shape == (1, N_TOPICS + 1)
    np.testing.assert_array_equal(
        got[0], vals[1, lay.columns(["user_topic_affinity", "user_plays_1d"])]
    )


def test_unknown_keys_get_defaults_and_are_counted(store: OnlineStore) -> None:
    lay = _define(store)["video"]
    store.put("video", np.array([1]), _records(lay, 1))
    before = store.stats.unknown_keys
    feats = ["video_valid_watch_rate_1d", "video_impressions_30d", "video_duration_s"]
    got = store.get("video", np.array([1, 999, 1000]), feats)
    assert store.stats.unknown_keys == before + 2
    defaults = [VIDEO_REC[f].default for f in feats]
    np.testing.assert_array_equal(got[1:], np.array([defaults, defaults], dtype=np.float32))
    assert got[1, 0] == pytest.approx(0.1)  # the smoothed rate's prior mean, not 0


def test_large_negative_and_small_ids_mix(store: OnlineStore) -> None:
    # MemoryStore keeps a dense row table for small ids; ids past it (or negative) must
    # still round-trip, before and after the switch, and unknown ids still get defaults.
    lay = _define(store)["video"]
    a, b, c = _records(lay, 1, 1), _records(lay, 1, 2), _records(lay, 1, 3)
    store.put("video", np.array([5]), a)
    store.put("video", np.array([2**40]), b)
    store.put("video", np.array([-3]), c)
    got = store.get("video", np.array([-3, 5, 2**40, 6, 2**41]), list(lay.features))
    np.testing.assert_array_equal(got[:3], np.concatenate([c, a, b]))
    np.testing.assert_array_equal(got[3], got[4])
    np.testing.assert_array_equal(got[3], lay.defaults)


def test_overwrite_replaces_the_record(store: OnlineStore) -> None:
    lay = _define(store)["creator"]
    store.put("creator", np.array([5]), _records(lay, 1, seed=1))
    new = _records(lay, 1, seed=2)
    store.put("creator", np.array([5]), new)
    np.testing.assert_array_equal(store.get("creator", np.array([5]), list(lay.features)), new)


def test_pair_keys_for_user_creator(store: OnlineStore) -> None:
    lay = _define(store)["user_creator"]
    vals = _records(lay, 2)
    store.put("user_creator", np.array([[1, 10], [1, 11]]), vals)
    got = store.get("user_creator", np.array([[1, 11], [2, 10]]), list(lay.features))
    np.testing.assert_array_equal(got[0], vals[1])
    np.testing.assert_array_equal(got[1], lay.defaults)
    with pytest.raises(FeatureStoreError, match=r"expected \[n, 2\]"):
        store.get("user_creator", np.array([1, 2]), list(lay.features))


def test_pair_keys_of_any_range_and_repeats_in_one_put(store: OnlineStore) -> None:
    # MemoryStore packs pairs of small ids into one int and keeps others as tuples: a pair
    # must round-trip whichever way, mixed in one put, and a key repeated in one put keeps
    # its last record
    lay = _define(store)["user_creator"]
    keys = np.array([[1, 10], [2**40, 3], [-5, 7], [1, 2**33], [1, 10]])
    vals = _records(lay, 5)
    store.put("user_creator", keys, vals)
    asked = np.array([[1, 2**33], [-5, 7], [2**40, 3], [1, 10], [2**40, 4]])
    got = store.get("user_creator", asked, list(lay.features))
    np.testing.assert_array_equal(got[:4], vals[[3, 2, 1, 4]])
    np.testing.assert_array_equal(got[4], lay.defaults)
    # (1 << 32 | 10) as a pair is not the pair (0, 1 << 32 | 10) nor any other
    assert (
        store.get("user_creator", np.array([[0, (1 << 32) | 10]]), list(lay.features))[0].tolist()
        == lay.defaults.tolist()
    )


def test_pair_reads_agree_with_a_reference_through_interleaved_writes() -> None:
    # MemoryStore answers pair reads from a sorted index built at the first read plus an
    # overlay of the pairs written since (merged into it once it grows): whatever the
    # interleaving of writes and reads, a read must see exactly the last record written
    store = MemoryStore()
    lay = _define(store)["user_creator"]
    rng = np.random.default_rng(3)
    ref: dict[tuple[int, int], np.ndarray] = {}
    feats = list(lay.features)
    for step in range(60):
        n = int(rng.integers(1, 6000 if step % 10 == 0 else 40))
        keys = np.stack([rng.integers(0, 50, n), rng.integers(0, 400, n)], 1)
        if step % 7 == 3:  # a few pairs outside the packed range, which only the dict holds
            keys[0] = (2**40 + step, 3)
        vals = _records(lay, n, seed=step)
        store.put("user_creator", keys, vals)
        for (u, c), v in zip(keys.tolist(), vals, strict=True):
            ref[(u, c)] = v
        user = int(rng.integers(0, 50))  # one user's pairs (the request path)...
        one = np.stack([np.full(300, user), rng.integers(0, 420, 300)], 1)
        mixed = np.stack([rng.integers(0, 52, 300), rng.integers(0, 420, 300)], 1)
        for asked in (one, mixed, keys[:5]):  # ...many users', and the pairs just written
            got = store.get("user_creator", asked, feats)
            want = np.stack([ref.get((u, c), lay.defaults) for u, c in asked.tolist()])
            np.testing.assert_array_equal(got, want)


def test_a_full_pair_overlay_is_merged_by_the_write_not_rebuilt_by_a_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The request path must not pay for the writes: once the overlay of new pairs fills, the
    # write merges it into the sorted index (before, the index was dropped and the next read
    # rebuilt it from the whole dict, a 100+ ms stall on small). A read that would rebuild
    # (np.fromiter over the dict) fails here.
    from mlsd.features import memory_store

    monkeypatch.setattr(memory_store, "_PAIR_OVERLAY_MAX", 50)
    store = MemoryStore()
    lay = _define(store)["user_creator"]
    feats = list(lay.features)
    rng = np.random.default_rng(0)
    bulk = np.stack([np.repeat(np.arange(100), 20), np.tile(np.arange(20), 100)], 1)
    store.put("user_creator", bulk, _records(lay, len(bulk)))
    ref = {tuple(k): v for k, v in zip(bulk.tolist(), _records(lay, len(bulk)), strict=True)}
    for step in range(10):  # 30 new pairs a write: the overlay overflows every other write
        keys = np.stack([rng.integers(0, 120, 30), 1000 + step * 30 + np.arange(30)], 1)
        vals = _records(lay, 30, seed=step + 1)
        store.put("user_creator", keys, vals)
        ref.update({tuple(k): v for k, v in zip(keys.tolist(), vals, strict=True)})
    assert store._pair_index is not None
    assert len(store._pair_new) <= 50
    real_fromiter = np.fromiter

    def no_dict_walk(it: object, *a: object, **kw: object) -> np.ndarray:
        raise AssertionError("a read rebuilt the pair index")

    monkeypatch.setattr(memory_store.np, "fromiter", no_dict_walk)
    try:
        for u in range(120):
            asked = np.array([k for k in ref if k[0] == u] + [[u, 5000]])
            got = store.get("user_creator", asked, feats)
            want = np.stack([ref.get(tuple(k), lay.defaults) for k in asked.tolist()])
            np.testing.assert_array_equal(got, want)
    finally:
        monkeypatch.setattr(memory_store.np, "fromiter", real_fromiter)


def test_get_many_reads_several_entities_at_once(store: OnlineStore) -> None:
    lays = _define(store)
    store.put("user", np.array([1]), _records(lays["user"], 1))
    store.put("video", np.arange(500), _records(lays["video"], 500))
    user, videos = store.get_many(
        [("user", np.array([1]), ["user_plays_1d"]),
         ("video", np.arange(500), ["video_plays_1d", "video_topic"])]
    )  # fmt: skip
    assert user.shape == (1, 1) and videos.shape == (500, 2)


def test_empty_reads(store: OnlineStore) -> None:
    _define(store)
    assert store.get("video", np.zeros(0, np.int64), ["video_plays_1d"]).shape == (0, 1)
    assert store.get(
        "user_creator", np.zeros((0, 2), np.int64), ["user_creator_impressions_30d"]
    ).shape == (0, 1)


def test_unregistered_feature_is_named_with_closest_names(store: OnlineStore) -> None:
    _define(store)
    with pytest.raises(UnknownFeatureError) as err:
        store.get("video", np.array([1]), ["video_imprssions_1d"])
    msg = str(err.value)
    assert "'video_imprssions_1d'" in msg and "video_impressions_1d" in msg
    assert isinstance(err.value, MlsdError)


def test_feature_of_another_entity_is_an_error(store: OnlineStore) -> None:
    _define(store)
    with pytest.raises(FeatureStoreError, match="belongs to entity 'user'"):
        store.get("video", np.array([1]), ["user_plays_1d"])


def test_bad_put_shape_is_an_error(store: OnlineStore) -> None:
    lay = _define(store)["video"]
    with pytest.raises(FeatureStoreError, match=rf"expected \(2, {lay.width}\)"):
        store.put("video", np.array([1, 2]), np.zeros((2, 3)))


def test_undefined_entity_is_an_error(store: OnlineStore) -> None:
    with pytest.raises(FeatureStoreError, match="no layout defined"):
        store.get("video", np.array([1]), ["video_plays_1d"])
    with pytest.raises(FeatureStoreError, match="unknown entity"):
        store.layout("movie")


# --- Redis specifics ---------------------------------------------------------------------------


@pytest.mark.redis
def test_redis_layouts_are_found_by_another_process(redis_server: RedisServer) -> None:
    from mlsd.features.redis_store import RedisStore

    writer = RedisStore(redis_server.url, namespace="layouts-test")
    try:
        lay = _define(writer)["video"]
        writer.put("video", np.array([4]), _records(lay, 1))
        reader = RedisStore(redis_server.url, namespace="layouts-test")
        assert reader.layout("video") == lay
        assert reader.get("video", np.array([4]), ["video_plays_1d"]).shape == (1, 1)
        assert reader.stats.unknown_keys == 0
    finally:
        writer.clear()


@pytest.mark.redis
def test_redis_closed_port_raises_typed_error_fast() -> None:
    from mlsd.features.redis_store import RedisStore

    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.1)
    store.define  # noqa: B018 - constructing does not connect
    t = time.perf_counter()
    with pytest.raises(OnlineStoreUnavailable, match="unavailable"):
        store.ping()
    with pytest.raises(OnlineStoreUnavailable):
        store.define(EntityLayout.from_registry(VIDEO_REC, "video", N_TOPICS))
    assert time.perf_counter() - t < 1.0


@pytest.mark.redis
def test_redis_killed_server_raises_typed_error_fast() -> None:
    from mlsd.features.redis_store import RedisStore

    server = start_redis()
    try:
        store = RedisStore(server.url, timeout_s=0.1)
        lay = _define(store)["video"]
        store.put("video", np.array([1]), _records(lay, 1))
        assert store.get("video", np.array([1]), ["video_plays_1d"]).shape == (1, 1)
        server.stop()
        for op in (lambda: store.get("video", np.array([1]), ["video_plays_1d"]),
                   lambda: store.put("video", np.array([1]), _records(lay, 1))):  # fmt: skip
            t = time.perf_counter()
            with pytest.raises(OnlineStoreUnavailable) as err:
                op()
            assert time.perf_counter() - t < 1.0
            assert str(server.port) in str(err.value)
    finally:
        server.stop()


@pytest.mark.redis
def test_redis_stalled_server_times_out_instead_of_hanging() -> None:
    """A server that accepts connections but never answers (SIGSTOP): timeout, not a hang."""
    import signal

    from mlsd.features.redis_store import RedisStore

    server = start_redis()
    try:
        store = RedisStore(server.url, timeout_s=0.1)
        lay = _define(store)["video"]
        server.proc.send_signal(signal.SIGSTOP)
        t = time.perf_counter()
        with pytest.raises(OnlineStoreUnavailable, match="Timeout"):
            store.get("video", np.array([1]), list(lay.features))
        assert time.perf_counter() - t < 1.0
    finally:
        server.proc.send_signal(signal.SIGCONT)
        server.stop()


def test_memory_store_counts_reads() -> None:
    store = MemoryStore()
    _define(store)
    store.get("video", np.array([1, 2, 3]), ["video_plays_1d"])
    assert (store.stats.reads, store.stats.keys_read, store.stats.unknown_keys) == (1, 3, 3)


@pytest.mark.redis
@pytest.mark.parametrize("hiredis", [True, False])
def test_redis_reads_agree_with_and_without_hiredis(
    redis_store: OnlineStore, hiredis: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # with hiredis a plain MGET; without, the packing Lua script: same records, same defaults
    import mlsd.features.redis_store as rs

    monkeypatch.setattr(rs, "HIREDIS_AVAILABLE", hiredis)
    lays = _define(redis_store)
    vals = _records(lays["video"], 3)
    redis_store.put("video", np.array([4, 8, 15]), vals)
    redis_store.put("user", np.array([1]), _records(lays["user"], 1))
    feats = list(lays["video"].features)
    user, video = redis_store.get_many(
        [("user", np.array([1]), ["user_plays_1d"]), ("video", np.array([15, 99, 4]), feats)]
    )
    assert user.shape == (1, 1)
    np.testing.assert_array_equal(video[[0, 2]], vals[[2, 0]])
    np.testing.assert_array_equal(video[1], lays["video"].defaults)


# --- picking a store ---------------------------------------------------------------------------


@pytest.mark.parametrize("url", [None, "", "memory"])
def test_open_store_gives_the_memory_store_by_default(url: str | None) -> None:
    from mlsd.features import open_store

    assert isinstance(open_store(url), MemoryStore)


def test_open_store_gives_redis_for_a_redis_url_without_connecting() -> None:
    from mlsd.features import RedisStore, open_store

    store = open_store(f"redis://127.0.0.1:{free_port()}/2", namespace="ns", timeout_s=0.05)
    assert isinstance(store, RedisStore) and isinstance(store, OnlineStore)
    assert (store.namespace, store.timeout_s) == ("ns", 0.05)


def test_open_store_rejects_another_scheme() -> None:
    from mlsd.features import open_store

    with pytest.raises(FeatureStoreError, match=r"'http://x'.*expected 'memory' or a Redis URL"):
        open_store("http://x")


def test_public_names_are_importable_from_the_package() -> None:
    import mlsd.features as features

    for name in features.__all__:
        assert getattr(features, name) is not None, name
