"""A two-stage pipeline assembled from blocks: candidate sources, a feature registry, a ranker
and rule chains. Generic over the system: the video recommender
(:class:`~mlsd.pipeline.Recommender`) is one assembly; another system hands its own sources,
features and rules to the same stages.

Training (:meth:`TwoStage.fit`, :mod:`.training`) cuts the log once more against label
leakage (:mod:`.labels`) and learns the ranker on the candidates served at the cut.

Serving (:mod:`.online`) and batch recommendation (:mod:`.batch`) run the same stages under
one readers-writer lock; the online state can be snapshot and restored (:mod:`.snapshot`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mlsd.concurrency import ReadWriteLock
from mlsd.data.dataset import Dataset
from mlsd.data.ids import IdMap
from mlsd.data.labels import positives as label_positives
from mlsd.errors import CacheMismatch, DataError, NotFittedError, OnlineStoreUnavailable
from mlsd.features import FeatureRegistry, MemoryStore, OnlineStore
from mlsd.features.signals import timestamps_ms
from mlsd.pipeline import batch, online, snapshot
from mlsd.pipeline.cache import CachedRetrieval
from mlsd.pipeline.cold_start import resolve_cold_start
from mlsd.pipeline.config import StagesConfig
from mlsd.pipeline.data import as_dataset, ids
from mlsd.pipeline.guard import choose_order
from mlsd.pipeline.labels import incremental_refit, label_split, log_end
from mlsd.pipeline.online import MonitorReference
from mlsd.pipeline.ranking import RankingStage
from mlsd.pipeline.retrieval import NO_HISTORY_USER, RetrievalStage
from mlsd.pipeline.servable import ServingOptions
from mlsd.pipeline.snapshot import TouchedUsers
from mlsd.pipeline.state import UserState, append_events
from mlsd.pipeline.training import training_rows
from mlsd.pipeline.tuning import tune_at_cut
from mlsd.pipeline.types import RequestCtx, Served, ServedItem, ServingStatus
from mlsd.pipeline.version import content_version, data_fingerprints
from mlsd.ranking.config import RankerConfig
from mlsd.ranking.gbdt import Ranker
from mlsd.reranking import RuleChain
from mlsd.retrieval import PAD, History
from mlsd.retrieval.cache import CandidateCache
from mlsd.retrieval.protocols import CandidateSource, ItemSimilarity

__all__ = ["Stats", "TwoStage"]


@dataclass
class Stats:
    """Training figures: when, seconds per step, row counts."""

    trained_at: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


class TwoStage:
    """Retrieval (``sources`` merged under ``quotas``), ranking (``registry`` features plus
    retrieval features, a ``config.ranker_kind`` ranker set by ``ranker``) and re-ranking (``rules``
    when serving, ``offline_rules`` for offline evaluation; default: ``rules``).

    ``config``: the generic knobs (:class:`~mlsd.pipeline.config.StagesConfig`);
    ``warm_refit``: after the label cut, continue training the sources that support it
    instead of fitting fresh ones on the whole log (None: on large logs, see
    :func:`~.labels.incremental_refit`); ``videos``/``users``: the catalog and user
    tables when ``fit`` receives evaluation ``Interactions`` (which carry neither);
    ``online_store``: where the online features live (default: a new in-memory store);
    ``progress``: called with a line per training step.

    Learned: ``now_ms_`` (one past the log's last event), ``dataset_``, ``version`` (a
    fingerprint of the content, :mod:`.version`), ``stats``, ``popular_ids_`` (the fallback
    order), and the stages' state: ``retrieval``, ``ranking``, ``state``, ``cache``.
    """

    # the monitor's tap and injected feature faults: see mlsd.pipeline.online
    monitor_tap: online.Tap | None = None
    feature_faults: dict[str, float] = {}  # noqa: RUF012 - replaced, never mutated

    def __init__(
        self,
        sources: Sequence[CandidateSource],
        *,
        registry: FeatureRegistry,
        rules: RuleChain,
        offline_rules: RuleChain | None = None,
        quotas: Mapping[str, float] | None = None,
        ranker: RankerConfig | None = None,
        config: StagesConfig | None = None,
        warm_refit: bool | None = False,
        videos: pa.Table | None = None,
        users: pa.Table | None = None,
        online_store: OnlineStore | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config if config is not None else StagesConfig()
        self.retrieval = RetrievalStage(sources, quotas)
        self.ranking = RankingStage(registry, ranker or self.config.ranker, self.config.ranker_kind)
        self.ranking.use_time_features(self.config.time_features != "off")
        self.rules = rules
        self.offline_rules = offline_rules if offline_rules is not None else rules
        self.warm_refit = warm_refit
        self.videos = videos
        self.users = users
        self.online_store = online_store
        self.say = progress or (lambda _m: None)
        # requests read concurrently (their heavy parts release the GIL); apply_events writes
        self.lock = ReadWriteLock()
        self.version = "unfitted"
        self.stats = Stats()
        self.n_unknown_users_ = 0
        self.ranker_compiled_ = False  # see prepare
        self.touched_users_ = TouchedUsers()  # users apply_events changed (see snapshot)
        self.store_missed_writes_: str | None = None  # why the store lacks applied events

    # ------------------------------------------------------------------------- training --
    def fit(self, data: Dataset | Any) -> TwoStage:
        """Train every stage on ``data`` (a :class:`Dataset`, or an evaluation
        ``Interactions`` with its raw events). Raises :class:`DataError` when the log has no
        positives, a single user, or no labels after the internal cut."""
        cfg = self.config
        t_all = time.perf_counter()
        ds = as_dataset(data, self.videos, self.users)
        ev = ds.events
        if ev.num_rows == 0:
            raise DataError("training events: the log is empty; expected at least one event")
        pos = label_positives(ev, ds.videos, cfg.label, include_likes=True)
        n_users = len(np.unique(ids(pos, "user_id")))
        if pos.num_rows == 0:
            raise DataError(
                "training events: no positives under the label rules (a valid watch of at "
                f"least {cfg.label.min_watch_seconds:g} s, a like, or a rating >= "
                f"{cfg.label.min_rating:g}); nothing to learn from"
            )
        if n_users < 2:
            raise DataError(
                f"training events: positives of {n_users} user(s); expected at least 2 users "
                "(a recommender learns from what users have in common)"
            )
        ts = timestamps_ms(ev.column("timestamp"))
        self.now_ms_ = log_end(ts, self.say) + 1  # time outliers left out
        self.dataset_ = ds
        self.stats = Stats(trained_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        sec = self.stats.seconds

        # 1. The internal cut: retrieval before it, ranker labels after it.
        split = label_split(pos, ts, cfg)
        self.say(split.summary())
        t0 = time.perf_counter()
        self.retrieval.scored = None  # chosen again by this fit (see RetrievalStage.restore)
        self.retrieval.fit(ds, split.before, now_ms=split.now_ms, seconds=(sec, "_for_labels"))
        sec["retrieval_fit_for_labels"] = time.perf_counter() - t0
        tune_at_cut(self, split)  # time features, EASE's L2, the shares: into self.config
        cfg = self.config

        # 2. Ranker rows: the candidates retrieval would have served at the cut, labelled.
        t0 = time.perf_counter()
        rows, rfeat = training_rows(ds, split, self.retrieval, cfg)
        sec["training_rows"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        x = self.ranking.training_matrix(ds, rows, rfeat)
        sec["training_features"] = time.perf_counter() - t0
        names = self.ranking.feature_names_ + self.retrieval.feature_names_
        labels = {k: np.asarray(rows.column(f"label_{k}").to_numpy(zero_copy_only=False))
                  for k in ("watch", "like")}  # fmt: skip
        sample_weight = (  # a log with weights: positives weigh by them (see training_rows)
            {"watch": np.asarray(rows.column("weight_watch").to_numpy())}
            if "weight_watch" in rows.column_names else None
        )  # fmt: skip
        t0 = time.perf_counter()
        self.ranking.fit(
            x, labels, names, ids(rows, "user_id"),
            seed=cfg.seed, valid_users_share=cfg.valid_users_share, say=self.say,
            sample_weight=sample_weight,
        )  # fmt: skip
        sec["ranker_fit"] = time.perf_counter() - t0
        resolve_cold_start(self, split, ids(rows, "user_id"), x, labels["watch"], names, self.say)
        choose_order(self, split, self.say)  # the ranker, unless a source orders better
        self.stats.counts.update(ranker_rows=len(x), ranker_positives=int(labels["watch"].sum()),
                                 ranker_likes=int(labels["like"].sum()))  # fmt: skip

        # 3. Serving state: retrieval on the whole log, online features, rules.
        del x, rows, rfeat, labels  # (GBs on a large log: not kept while the refit runs)
        t0 = time.perf_counter()
        warm_on = incremental_refit(self.warm_refit, split, len(pos), self.say)
        warm = self.retrieval.sources_ if warm_on else ()
        self.retrieval.fit(ds, pos, now_ms=self.now_ms_, warm=warm, seconds=(sec, ""))
        sec["retrieval_fit"] = time.perf_counter() - t0
        self.init_serving(ds)
        self.data_fingerprints_ = data_fingerprints(ds)
        self.version = self.content_version()
        self.mark_populated()
        sec["total"] = time.perf_counter() - t_all
        return self

    def init_serving(self, ds: Dataset) -> None:
        """Online features, the rules' user state, the candidate cache wrapper and the
        popular fallback, from ``ds`` as of ``now_ms_`` (after fit or load)."""
        t0 = time.perf_counter()
        store = self.online_store if self.online_store is not None else MemoryStore()
        self.ranking.materialize(ds, store, at_ms=self.now_ms_, label=self.config.label)
        self.mark_populated()
        self.stats.seconds["materialize"] = time.perf_counter() - t0
        self.state = UserState(ds, self.now_ms_)
        self.cache = CachedRetrieval(self.retrieval, self.state.catalog)
        pop = self.retrieval.source("popular")
        if pop is not None:
            self.popular_ids_ = pop.candidates(np.array([-1], np.int64), self.config.candidates)[0]
            self.popular_ids_ = self.popular_ids_[0]
        else:
            self.popular_ids_ = self.state.catalog.item_ids[: self.config.candidates]
        self.n_unknown_users_ = 0
        self.ranker_compiled_ = False  # a new ranker: see prepare
        self.touched_users_ = TouchedUsers()

    def mark_populated(self) -> None:
        """Mark the online store as holding every record of this version (once known)."""
        if self.version != "unfitted":
            self.ranking.online_.store.mark_populated(self.version)

    def content_version(self) -> str:
        """The version of the fitted pipeline (see :mod:`.version`)."""
        return content_version(
            config=self.get_params(),
            data=self.data_fingerprints_,
            now_ms=self.now_ms_,
            sources=self.retrieval.sources_,
            ranker=self.ranking.ranker_,
        )

    def get_params(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json")

    def _check(self) -> None:
        if not hasattr(self.ranking, "ranker_") or not hasattr(self, "state"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() or load()")

    # ----------------------------------------------------------------- learned state --
    @property
    def ranker_(self) -> Ranker:
        return self.ranking.ranker_

    @property
    def sources_(self) -> list[CandidateSource]:
        return self.retrieval.sources_

    @property
    def source_names_(self) -> tuple[str, ...]:
        return self.retrieval.names_

    @property
    def history_(self) -> History:
        """Users' retrieval history (positives), appended by :meth:`apply_events`."""
        return self.retrieval.history_

    @property
    def candidate_cache_(self) -> CandidateCache | None:
        return self.cache.cache if hasattr(self, "cache") else None

    @property
    def id_maps(self) -> dict[str, IdMap]:
        """The training data's string-id maps (:mod:`mlsd.data.ids`); empty for integer ids."""
        return self.dataset_.id_maps if hasattr(self, "dataset_") else {}

    # ------------------------------------------------------------------------ inference --
    recommend_batch = batch.recommend_batch

    def recommend(self, user_ids: np.ndarray, k: int, exclude_seen: bool = True) -> np.ndarray:
        """The evaluation ``Model`` interface: ``int64[n, k]`` ids, padded with -1."""
        return self.recommend_batch(user_ids, k, exclude_seen=exclude_seen).item_ids

    def serve(self, user_id: int, k: int, ctx: RequestCtx, explain: bool = False) -> Served:
        """One request, through every stage; never raises for a valid request (degrades;
        see :mod:`.online`)."""
        self._check()
        return online.serve(self, user_id, k, ctx, explain)

    def similar(self, video_id: int, k: int) -> list[ServedItem]:
        """Nearest items by the first source that offers item similarity; KeyError for an
        unknown item (or when no source offers it)."""
        self._check()
        src = next((s for s in self.sources_ if isinstance(s, ItemSimilarity)), None)
        if src is None:
            raise KeyError(video_id)
        with self.lock.read():
            got, scores = src.similar_items(int(video_id), k)
        name = getattr(src, "name", "similar")
        return [
            ServedItem(int(i), float(s), name)
            for i, s in zip(got.tolist(), scores.tolist(), strict=True)
            if i != PAD
        ]

    def known_videos(self, video_ids: np.ndarray) -> np.ndarray:
        """``bool[n]``: which ids are in the catalog."""
        return np.asarray(self.state.catalog.index_of(np.asarray(video_ids, np.int64)) >= 0)

    def apply_events(self, events: pa.Table) -> None:
        """Apply new events (mlsd events schema): online features, the retrieval history
        (valid watches and likes: a (user, video) pair once, at its first positive), the seen
        set and blocked creators; the candidate cache forgets the users whose history gained
        positives (candidates depend on nothing else that events change). Unknown items are
        ignored by each part and counted there.

        The result is a function of the events alone, whatever batches they come in, when
        their timestamps do not decrease from batch to batch (the order of a log); it never
        reads the wall clock (the feature clock is the events' hour)."""
        self._check()
        if events.num_rows == 0:
            return
        # outside the lock (requests wait on it): reads only the events and the catalog
        # log order, not time order: the same however the log is cut (retries come late)
        pos = label_positives(
            events, self.dataset_.videos, self.config.label, include_likes=True, time_order=False
        )
        with self.lock.write():
            self.touched_users_.add(ids(events, "user_id"))
            try:
                self.ranking.online_.update_from_events(events)
            except OnlineStoreUnavailable as e:  # the state has the events, the store not
                self.store_missed_writes_ = str(e)
            append_events(self.retrieval.history_, pos, new_pairs_only=True, time_order=False)
            if pos.num_rows:
                self.cache.invalidate(ids(pos, "user_id"))
            self.state.apply(events)

    def refresh_candidates(self, limit: int = 64) -> int:
        """Retrieve again up to ``limit`` cached rows served stale (see
        :attr:`~.cache.CachedRetrieval.stale_while_revalidate`), in one batch, from the
        thread that applies events; returns how many users."""
        self._check()
        cache = self.cache.cache
        users = self.cache.take_wanted(limit)
        if cache is None or not len(users):
            return 0
        with self.lock.read():  # requests go on while the batch is retrieved
            cand = self.retrieval.retrieve(users, cache.width)
        with self.lock.write():  # no request reads a row while it is overwritten
            self.cache.store_rows(users, cand)
        return len(users)

    def monitor_reference(self, n_users: int = 300, seed: int = 0) -> MonitorReference:
        """The drift monitor's reference (see :func:`.online.monitor_reference`)."""
        return online.monitor_reference(self, n_users, seed)

    def history_of(self, user_id: int, n: int = 10) -> np.ndarray:
        """The user's most recent positive item ids, newest first."""
        items = self.retrieval.history_.recent(np.array([user_id], np.int64), n)[0][0]
        return items[items != PAD]

    # ----------------------------------------------------------------- online state --
    def online_snapshot(self) -> bytes:
        """Everything :meth:`apply_events` changed, as bytes (see :mod:`.snapshot`): taken
        under the read lock, so requests go on while it is written."""
        self._check()
        with self.lock.read():
            return snapshot.dump(self)

    def restore_online(self, blob: bytes) -> None:
        """Replace the online state by a snapshot of this version (see :mod:`.snapshot`),
        under the write lock; :class:`~mlsd.errors.BundleError` for any other bytes."""
        self._check()
        payload = snapshot.load(blob, self.version)
        with self.lock.write():
            snapshot.restore(self, payload)
            self.mark_populated()

    def rewrite_online_store(self) -> int:
        """Write every stored entity's record from the in-process state to the online store,
        then its population marker; returns the records written."""
        self._check()
        with self.lock.write():  # serialised with apply_events, which writes records too
            n = sum(self.ranking.online_.rewrite_store().values())
            self.mark_populated()
        return n

    def online_store_problem(self) -> str | None:
        """Why the store lacks records (no population marker: an emptied Redis; or writes
        failed while it was down), else None. Another version's marker is fine (a reload)."""
        self._check()
        if self.ranking.online_.store.populated() is None:
            return "the online store holds no records (emptied or restarted)"
        if self.store_missed_writes_ is not None:
            return f"the online store missed writes: {self.store_missed_writes_}"
        return None

    def repopulate_online_store(self) -> int:
        """:meth:`rewrite_online_store` without the write lock, for the thread that applies
        events: requests go on, degraded by a store that checks its marker
        (``RedisStore.require_populated``) until the marker is written back, last."""
        self._check()
        n = sum(self.ranking.online_.rewrite_store().values())
        self.mark_populated()
        self.store_missed_writes_ = None
        return n

    def user_state(self, user_id: int) -> dict[str, Any]:
        """One user's online state, JSON-ready (see :func:`.snapshot.user_state`)."""
        self._check()
        with self.lock.read():
            return snapshot.user_state(self, int(user_id))

    # -------------------------------------------------------------- candidate cache --
    def candidate_cache_key(self) -> dict[str, Any]:
        """What a saved candidate cache must have been computed for (see
        :meth:`~mlsd.pipeline.cache.CachedRetrieval.key`)."""
        self._check()
        return self.cache.key(self.version, self.config.candidates)

    def load_candidate_cache(self, directory: str | Path) -> CandidateCache:
        """Serve from the candidate cache saved in ``directory`` by
        :meth:`precompute_candidates` (memory-mapped: pages shared by forked workers). Raises
        :class:`~mlsd.errors.CacheMismatch` naming why when it is another model's."""
        self._check()
        return self.cache.load(directory, self.candidate_cache_key())

    def precompute_candidates(
        self,
        *,
        batch: int = 512,
        threads: int = 1,
        progress: Callable[[int, int], None] | None = None,
        cold: bool | None = None,
        directory: str | Path | None = None,
    ) -> CandidateCache:
        """Retrieve every user with a history ahead into a candidate cache that :meth:`serve`
        then reads (see :mod:`.cache`); ``directory``: also save it there."""
        self._check()
        with self.lock.read():
            cache = self.cache.precompute(
                self.config.candidates, batch=batch, threads=threads, progress=progress,
                cold=cold,
            )  # fmt: skip
        if directory is not None:
            cache.save(directory, self.candidate_cache_key())
        return cache

    # ----------------------------------------------------------------------- serving --
    def prepare(self, options: ServingOptions, say: Callable[[str], None]) -> None:
        """Serving-only preparation after a load (the :class:`~mlsd.pipeline.Servable`
        protocol): the ranker compiled to native code (LightGBM kept when that is not
        possible), and with ``options.candidate_cache`` every known user's candidates
        retrieved ahead, reused from ``options.cache_dir`` when saved there for this model,
        else computed and saved there. Says each step."""
        self._check()
        for m in self.id_maps.values():  # string ids: the lookup before the first request
            m.prepare()
        if options.compile_ranker:
            t0 = time.perf_counter()
            ok = self.ranker_compiled_ = self.ranker_.compile()
            took = time.perf_counter() - t0
            say(f"ranker {'compiled' if ok else 'NOT compiled'} in {took:.1f} s")
        self.cache.stale_while_revalidate = options.stale_while_revalidate
        if not options.candidate_cache:
            return
        t0 = time.perf_counter()
        cache_dir = options.cache_dir
        if cache_dir is not None and Path(cache_dir, "meta.json").is_file():
            try:
                cache = self.load_candidate_cache(cache_dir)
            except CacheMismatch as e:
                say(f"candidate cache not reused ({e}); retrieving again")
            else:
                say(
                    f"{len(cache.users):,} candidate rows (users, new-user buckets) "
                    f"memory-mapped from {cache_dir} in {time.perf_counter() - t0:.1f} s"
                )
                return
        cache = self.precompute_candidates(threads=options.threads, directory=cache_dir)
        say(
            f"{len(cache.users):,} candidate rows (users, new-user buckets) retrieved ahead in "
            f"{time.perf_counter() - t0:.1f} s ({cache.nbytes / 1e9:.2f} GB)"
        )

    def status(self) -> ServingStatus:
        """The :class:`~mlsd.pipeline.Servable` figures: ranker compiled, cache hits/misses."""
        cache = self.candidate_cache_
        return ServingStatus(
            ranker_compiled=self.ranker_compiled_,
            cache_hits=cache.hits if cache is not None else 0,
            cache_misses=cache.misses if cache is not None else 0,
        )

    def warm_up(self) -> None:
        """Serve two throwaway requests (a known and an unknown user) so that lazy
        initialisation (torch kernels, FAISS, LightGBM) is not paid by the first real
        request, which would otherwise overrun the budget and be served degraded."""
        users = self.retrieval.history_.users()
        ctx = RequestCtx(self.now_ms_)
        for u in ([int(users[0])] if len(users) else []) + [NO_HISTORY_USER]:
            self.serve(u, 10, ctx, explain=True)
