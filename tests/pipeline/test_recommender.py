"""The Recommender end to end on the tiny simulation: training, batch and single requests,
degradation, feedback, persistence and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mlsd.config import SimulationConfig
from mlsd.data.dataset import Dataset
from mlsd.data.simulate import simulate
from mlsd.errors import ConfigError, DataError, NotFittedError, OnlineStoreUnavailable
from mlsd.pipeline import PipelineConfig, Recommender, RequestCtx
from mlsd.pipeline.retrieval import RetrievalStage
from mlsd.ranking.config import RankerConfig
from mlsd.retrieval import PAD, History

CFG = PipelineConfig(two_tower={"epochs": 2}, candidates=200)


@pytest.fixture(scope="module")
def data() -> Dataset:
    return simulate(SimulationConfig.for_scale("tiny", seed=0))


@pytest.fixture(scope="module")
def rec(data: Dataset) -> Recommender:
    return Recommender(CFG).fit(data)


def _catalog(data: Dataset) -> dict[str, np.ndarray]:
    v = data.videos
    order = np.argsort(v.column("video_id").to_numpy())
    return {
        "id": v.column("video_id").to_numpy()[order],
        "creator": v.column("creator_id").to_numpy()[order],
        "explicit": np.asarray(v.column("is_explicit").to_numpy(zero_copy_only=False))[order],
        "topic": np.asarray(v.column("topic").to_numpy(zero_copy_only=False), dtype=object)[order],
    }


def _seen(data: Dataset, user: int) -> set[int]:
    ev = data.events
    m = pc.and_(
        pc.equal(ev.column("user_id"), user),
        pc.is_in(ev.column("event_type"), pa.array(["play", "like", "share"])),
    )
    return set(ev.filter(m).column("video_id").to_pylist())


def test_batch_recommendations_exclude_seen_and_are_unique(rec: Recommender, data: Dataset) -> None:
    users = np.unique(data.events.column("user_id").to_numpy())[:40]
    out = rec.recommend(users, 10)
    assert out.shape == (40, 10)
    for u, row in zip(users.tolist(), out, strict=True):
        items = row[row != -1]
        assert len(items) == 10
        assert len(set(items.tolist())) == 10
        assert not (set(items.tolist()) & _seen(data, u))


def test_invariants_on_every_served_slate(rec: Recommender, data: Dataset) -> None:
    cat = _catalog(data)
    allows = dict(
        zip(
            data.users.column("user_id").to_pylist(),
            data.users.column("allows_explicit").to_pylist(),
            strict=True,
        )
    )
    users = np.unique(data.events.column("user_id").to_numpy())[:60]
    for u in users.tolist():
        s = rec.serve(u, 20, RequestCtx(rec.now_ms_))
        ids = np.array([it.video_id for it in s.items])
        pos = np.searchsorted(cat["id"], ids)
        creators = cat["creator"][pos]
        if not allows[u]:
            assert not cat["explicit"][pos].any(), f"user {u} got an explicit video"
        _, counts = np.unique(creators, return_counts=True)
        assert counts.max() <= 2, f"user {u}: a creator appears {counts.max()} times"
        assert not (creators[1:] == creators[:-1]).any(), f"user {u}: same creator adjacent"


def test_serve_explains_and_cold_start(rec: Recommender) -> None:
    u = int(rec.history_.users()[0])
    s = rec.serve(u, 10, RequestCtx(rec.now_ms_, device="mobile", surface="home"), explain=True)
    assert not s.degraded and len(s.items) == 10
    assert s.n_candidates > 10
    first = s.items[0]
    assert "p_watch" in first.components and first.source in rec.source_names_
    assert set(s.stage_ms) >= {"retrieval", "features", "ranking", "rerank", "total"}
    cold = rec.serve(10**9, 10, RequestCtx(rec.now_ms_))
    assert cold.cold_start and not cold.degraded and len(cold.items) == 10
    # without explain the same slate, without the (costly) rule-action log
    ctx = RequestCtx(rec.now_ms_, device="mobile", surface="home")
    logged = 0
    for v in rec.history_.users()[:20].tolist():
        a, b = rec.serve(v, 10, ctx, explain=True), rec.serve(v, 10, ctx)
        assert [(i.video_id, i.score, i.source, i.exploration) for i in a.items] == [
            (i.video_id, i.score, i.source, i.exploration) for i in b.items
        ]
        assert not any(i.actions or i.components for i in b.items)
        logged += sum(len(i.actions) for i in a.items)
    assert logged > 0  # explanations do carry the rules' actions


def test_feature_store_failure_degrades_to_retrieval_order(
    rec: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*a: object, **k: object) -> np.ndarray:
        raise OnlineStoreUnavailable("redis down (test)")

    monkeypatch.setattr(rec.ranking.online_, "request_features", down)
    s = rec.serve(int(rec.history_.users()[0]), 10, RequestCtx(rec.now_ms_))
    assert s.degraded and "feature store" in (s.degraded_reason or "")
    assert len(s.items) == 10


def test_ranker_failure_and_retrieval_failure_degrade(
    rec: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("boom")

    u = int(rec.history_.users()[0])
    monkeypatch.setattr(rec.ranker_, "predict_proba", boom)
    s = rec.serve(u, 10, RequestCtx(rec.now_ms_))
    assert s.degraded and "ranker" in (s.degraded_reason or "") and len(s.items) == 10
    monkeypatch.setattr(rec.retrieval, "retrieve", boom)
    s = rec.serve(u, 10, RequestCtx(rec.now_ms_))
    assert s.degraded and "retrieval" in (s.degraded_reason or "")
    assert len(s.items) == 10 and all(it.source == "popular" for it in s.items)


def test_slow_stage_degrades(rec: Recommender, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rec, "config", rec.config.model_copy(update={"budget_ms": 0.001}))
    s = rec.serve(int(rec.history_.users()[0]), 10, RequestCtx(rec.now_ms_))
    assert s.degraded and "budget" in (s.degraded_reason or "") and len(s.items) == 10


def test_a_request_queued_past_its_budget_is_shed_to_the_fallback(rec: Recommender) -> None:
    import time

    u = int(rec.history_.users()[0])
    waited = RequestCtx(rec.now_ms_, received_at=time.perf_counter() - 1.0)  # queued 1 s
    s = rec.serve(u, 10, waited)
    assert s.degraded and "overload" in (s.degraded_reason or "") and len(s.items) == 10
    assert all(it.source == "popular" for it in s.items) and s.stage_ms["queue"] >= 1000
    # a wait within the queue budget is served in full
    within = rec.config.queue_budget_ms / 2000
    s = rec.serve(u, 10, RequestCtx(rec.now_ms_, received_at=time.perf_counter() - within))
    assert "overload" not in (s.degraded_reason or "") and "queue" in s.stage_ms
    fresh = rec.serve(u, 10, RequestCtx(rec.now_ms_, received_at=time.perf_counter()))
    assert not fresh.degraded and len(fresh.items) == 10
    assert "retrieval" in fresh.stage_ms  # served in full, through every stage


@pytest.mark.parametrize("cached", [False, True], ids=["online", "candidate-cache"])
def test_new_watches_shift_recommendations_toward_their_topic(data: Dataset, cached: bool) -> None:
    rec = Recommender(CFG).fit(data)
    if cached:  # the user's precomputed candidates must give way to their new history
        rec.precompute_candidates()
    cat = _catalog(data)
    u = int(rec.history_.users()[3])
    before = rec.serve(u, 20, RequestCtx(rec.now_ms_))
    topics_before = cat["topic"][np.searchsorted(cat["id"], [i.video_id for i in before.items])]
    # the topic this user saw least
    names, counts = np.unique(cat["topic"], return_counts=True)
    target = min(names, key=lambda t: (list(topics_before).count(t), -counts[names == t][0]))
    vids = cat["id"][(cat["topic"] == target) & ~cat["explicit"]][:12]
    dur = dict(
        zip(
            data.videos.column("video_id").to_pylist(),
            data.videos.column("duration_s").to_pylist(),
            strict=True,
        )
    )
    t0 = rec.now_ms_
    events = pa.table(
        {
            "user_id": pa.array([u] * len(vids), pa.int64()),
            "video_id": pa.array(vids, pa.int64()),
            "timestamp": pa.array([t0 + 1000 * i for i in range(len(vids))]).cast(
                pa.timestamp("ms", "UTC")
            ),
            "event_type": pa.array(["play"] * len(vids)),
            "watch_seconds": pa.array([float(dur[int(v)]) for v in vids]),
        }
    )
    from mlsd.data.schema import conform

    rec.apply_events(conform(events, "events")[0])
    after = rec.serve(u, 20, RequestCtx(t0 + 60_000))
    topics_after = cat["topic"][np.searchsorted(cat["id"], [i.video_id for i in after.items])]
    assert (topics_after == target).sum() > (topics_before == target).sum()
    assert not {i.video_id for i in after.items} & set(vids.tolist())  # watched now
    if cached:
        assert rec.candidate_cache_ is not None
        assert rec.candidate_cache_.hits == 1 and rec.candidate_cache_.misses == 1


def test_the_candidate_cache_serves_what_retrieval_computes(rec: Recommender) -> None:
    users = np.sort(rec.history_.users())
    picks = users[np.linspace(0, len(users) - 1, 40).astype(int)]
    ctx = RequestCtx(rec.now_ms_, device="mobile", surface="home")
    online = [rec.serve(int(u), 20, ctx, explain=True) for u in picks]
    try:
        cache = rec.precompute_candidates(batch=7, threads=2)  # many batches, two threads
        assert len(cache.users) == len(users) and cache.valid.all()
        for u in picks[:10]:
            want = rec.retrieval.retrieve(np.array([u]), rec.config.candidates)
            items, sources, feats = rec.cache.candidates_of(int(u), rec.config.candidates)
            np.testing.assert_array_equal(items, want.items[0])
            np.testing.assert_array_equal(sources, want.sources[0])
            # ranks exact; the similarity of a batched matmul may differ in the last bits
            np.testing.assert_allclose(feats, want.features[0], rtol=0, atol=1e-6)  # NaN==NaN
        cached = [rec.serve(int(u), 20, ctx, explain=True) for u in picks]
        assert cache.hits == 10 + len(picks) and cache.misses == 0
        for a, b in zip(online, cached, strict=True):
            assert [i.video_id for i in a.items] == [i.video_id for i in b.items]
            assert [i.source for i in a.items] == [i.source for i in b.items]
            np.testing.assert_allclose(
                [i.score for i in a.items], [i.score for i in b.items], rtol=1e-5
            )
            assert a.n_candidates == b.n_candidates and not b.degraded
        # a request wider than the cache (k > candidates) takes the online path
        wide = rec.serve(int(picks[0]), rec.config.candidates + 1, ctx)
        assert cache.misses == 0 and wide.n_candidates == rec.config.candidates + 1
        # unknown users are not cached: the online (cold-start) path
        assert rec.cache.candidates_of(-(2**62), rec.config.candidates)[0].shape == (
            rec.config.candidates,
        )
        assert cache.misses == 1
    finally:
        rec.cache.cache = None  # the other tests of this module exercise the online path


def test_save_load_round_trip_gives_the_same_recommendations(
    rec: Recommender, tmp_path: Path
) -> None:
    rec.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m")
    users = rec.history_.users()[:25]
    assert back.version == rec.version
    np.testing.assert_array_equal(back.recommend(users, 10), rec.recommend(users, 10))


def test_the_als_index_is_saved_and_an_older_bundle_without_it_is_rebuilt(
    rec: Recommender, tmp_path: Path
) -> None:
    import shutil

    rec.save(tmp_path / "m")
    assert (tmp_path / "m" / "als" / "index" / "index.faiss").is_file()
    shutil.rmtree(tmp_path / "m" / "als" / "index")  # as written before the index was saved
    back = Recommender.load(tmp_path / "m")
    users = rec.history_.users()[:25]
    np.testing.assert_array_equal(back.recommend(users, 10), rec.recommend(users, 10))
    rec.save(tmp_path / "m2")  # an index that does not belong to these factors is refused
    ids = np.load(tmp_path / "m2" / "als" / "index" / "ids.npy")
    np.save(tmp_path / "m2" / "als" / "index" / "ids.npy", ids[::-1].copy())
    with pytest.raises(DataError, match="does not match the item factors"):
        Recommender.load(tmp_path / "m2")


def test_load_refuses_a_corrupt_model(rec: Recommender, tmp_path: Path) -> None:
    rec.save(tmp_path / "m")
    (tmp_path / "m" / "recommender.json").write_text("{not json")
    with pytest.raises(DataError, match=r"recommender\.json"):
        Recommender.load(tmp_path / "m")


def test_k_out_of_range_is_a_clear_error(rec: Recommender) -> None:
    users = rec.history_.users()[:2]
    with pytest.raises(ConfigError, match="k=0"):
        rec.recommend_batch(users, 0)
    with pytest.raises(ConfigError, match="larger than the catalog"):
        rec.recommend_batch(users, 10**6)


def test_training_needs_positives_and_two_users(data: Dataset) -> None:
    ev = data.events
    impressions = ev.filter(pc.equal(ev.column("event_type"), "impression"))
    with pytest.raises(DataError, match="no positives"):
        Recommender(CFG).fit(Dataset(impressions, data.videos, data.users))
    one = ev.filter(pc.equal(ev.column("user_id"), ev.column("user_id")[0]))
    with pytest.raises(DataError, match="at least 2 users"):
        Recommender(CFG).fit(Dataset(one, data.videos, data.users))


class _Named:
    """A stand-in source: the retrieval stage only needs its name here."""

    def __init__(self, name: str) -> None:
        self.name = name

    def fit(self, *a: object, **k: object) -> _Named:
        return self

    def candidates(self, user_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        raise AssertionError("not called")


def test_retrieval_features_match_a_brute_force_reference() -> None:
    # ranks per source (1-based, best of duplicates, NaN when not proposed) and the number of
    # sources that proposed each merged item, against plain Python loops
    rng = np.random.default_rng(5)
    n, c, sizes = 4, 12, (10, 6, 8)
    lists = []
    for m in sizes:
        ids = rng.integers(1, 25, size=(n, m))
        ids[rng.random((n, m)) < 0.2] = PAD
        lists.append((ids, rng.random((n, m))))
    items = rng.integers(1, 25, size=(n, c))
    items[:, -2:] = PAD
    sources = [_Named(f"s{j}") for j in range(len(sizes))]
    stage = RetrievalStage(sources).restore(sources, History())  # type: ignore[arg-type]
    assert stage.feature_names_ == ["rank_s0", "rank_s1", "rank_s2", "n_sources"]
    got = stage.features(np.arange(n), items, lists)
    for i in range(n):
        for a in range(c):
            item = items[i, a]
            hits = 0
            for j, (ids, _) in enumerate(lists):
                where = np.flatnonzero((ids[i] == item) & (ids[i] != PAD)) if item != PAD else []
                want = float(where[0] + 1) if len(where) else np.nan
                np.testing.assert_equal(got[i, a, j], want)
                hits += len(where) > 0
            assert got[i, a, -1] == hits


def test_users_without_history_reuse_memoised_source_lists(
    rec: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    new = np.array([10**12 + 7], np.int64)
    k = rec.config.candidates
    stage = rec.retrieval
    memo = stage.retrieve(new, k)
    assert stage.cold_lists(k) is stage.cold_lists(k)  # computed once per k
    # the same request with every source asked afresh
    monkeypatch.setattr(stage, "cold_lists", lambda k: None)
    fresh = stage.retrieve(new, k)
    np.testing.assert_array_equal(memo.items, fresh.items)
    np.testing.assert_array_equal(memo.sources, fresh.sources)
    np.testing.assert_array_equal(memo.features, fresh.features)

    # a user with a history never reads the memo
    def boom(k: int) -> None:
        raise AssertionError("memo read for a user with history")

    monkeypatch.setattr(stage, "cold_lists", boom)
    stage.retrieve(rec.history_.users()[:1], k)


def test_a_saved_candidate_cache_is_reused_only_by_its_model(
    rec: Recommender, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from mlsd.serving.server import prepare

    rec.save(tmp_path / "m")
    model = Recommender.load(tmp_path / "m")
    cc = tmp_path / "cc"
    users = np.sort(model.history_.users())[:: max(1, len(model.history_.users()) // 15)]
    ctx = RequestCtx(model.now_ms_, device="mobile", surface="home")

    def slates() -> list[list[int]]:
        return [[i.video_id for i in model.serve(int(u), 10, ctx).items] for u in users]

    prepare(model, cache_dir=cc)  # nothing there: retrieved, then saved
    assert "retrieved ahead" in capsys.readouterr().err and (cc / "meta.json").is_file()
    computed = slates()
    model.cache.cache = None
    prepare(model, cache_dir=cc)  # a restart: memory-mapped, the same slates
    assert "memory-mapped" in capsys.readouterr().err
    cache = model.candidate_cache_
    assert cache is not None and isinstance(cache.items.base, np.memmap)  # a view of the file
    assert slates() == computed and cache.hits == len(users) and cache.misses == 0
    # saved for another model: not reused (said so), retrieved again and saved over
    meta = json.loads((cc / "meta.json").read_text())
    meta["key"]["model_version"] = "rec-other"
    (cc / "meta.json").write_text(json.dumps(meta))
    model.cache.cache = None
    prepare(model, cache_dir=cc)
    err = capsys.readouterr().err
    assert "not reused" in err and "rec-other" in err and "retrieved ahead" in err
    assert slates() == computed
    assert json.loads((cc / "meta.json").read_text())["key"]["model_version"] == model.version


def test_new_users_are_served_from_their_buckets_cold_start_rows(data: Dataset) -> None:
    # with no more two-tower hash buckets than users, the cache also holds, per bucket, what
    # a user without history or attributes is retrieved: new users then skip retrieval too,
    # and get exactly what the online path gives them
    cfg = PipelineConfig(two_tower={"epochs": 2, "n_user_buckets": 64}, candidates=200)
    rec = Recommender(cfg).fit(data)
    known = np.sort(rec.history_.users())
    news = np.arange(30, dtype=np.int64) + int(known.max()) + 1_000_000
    ctx = RequestCtx(rec.now_ms_, device="mobile", surface="home")
    online = [rec.serve(int(u), 20, ctx, explain=True) for u in news]
    cache = rec.precompute_candidates(threads=2)
    assert len(cache.users) == len(known) + 64  # every bucket found a stand-in id
    cached = [rec.serve(int(u), 20, ctx, explain=True) for u in news]
    assert cache.hits == len(news) and cache.misses == 0
    for a, b in zip(online, cached, strict=True):
        assert a.cold_start and b.cold_start and not b.degraded
        assert [i.video_id for i in a.items] == [i.video_id for i in b.items]
        assert [i.source for i in a.items] == [i.source for i in b.items]
        np.testing.assert_allclose([i.score for i in a.items], [i.score for i in b.items], 1e-5)
    # users of one bucket share its row; a user with attributes has their own inputs
    assert rec.cache.cold_key(int(news[0])) == rec.cache.cold_key(int(news[0]) + 0)
    with_attrs = data.users.column("user_id").to_numpy()[:1] if data.users is not None else []
    for u in with_attrs:
        assert rec.cache.cold_key(int(u)) is None
    # the automatic choice: more buckets than users -> no cold-start rows
    assert len(Recommender(CFG).fit(data).precompute_candidates().users) == len(known)


def test_stages_refuse_bad_assembly_and_use_before_fit(data: Dataset) -> None:
    with pytest.raises(ConfigError, match="at least one candidate source"):
        RetrievalStage([])
    with pytest.raises(ConfigError, match="unique names"):
        RetrievalStage([_Named("a"), _Named("a")])  # type: ignore[list-item]
    sources = [_Named("a"), _Named("b")]
    stage = RetrievalStage(sources, quotas={"a": 0.0})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="positive share"):
        stage.restore(sources, History())  # type: ignore[arg-type]
    with pytest.raises(NotFittedError, match="not fitted"):
        Recommender(CFG).recommend_batch(np.array([1]), 10)
    with pytest.raises(NotFittedError, match="not fitted"):
        Recommender(CFG).serve(1, 10, RequestCtx(0))
    bad = CFG.model_copy(update={"ranker": RankerConfig(weights={"share": 1.0})})
    with pytest.raises(ConfigError, match="unknown objective 'share'"):
        Recommender(bad).fit(data)
