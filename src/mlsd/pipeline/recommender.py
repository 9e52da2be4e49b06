"""The book's two-stage video recommender as ONE object: sources -> features -> ranker -> rules.

:class:`Recommender` is used offline (evaluation, batch scoring, backtests) and online (the
HTTP service) through the same methods, so the two cannot drift apart:

1. **Candidate generation** (step 4a): every :mod:`mlsd.retrieval` source proposes ``k`` videos
   for the user from their current :class:`~mlsd.retrieval.History`; :func:`merge_lists`
   unions them with quotas into ``candidates`` (500 by default), each tagged with its source.
2. **Features** (step 3b): the feature-store vector of every (user, candidate, request time)
   from the online path (:meth:`OnlineFeatures.request_features`), plus retrieval features
   computed here: each source's rank of the candidate and the two-tower similarity.
3. **Ranking** (step 4b): :class:`~mlsd.ranking.GBDTRanker`, calibrated probabilities per
   objective (valid watch, like) combined with configured weights.
4. **Re-ranking** (step 4c): :func:`mlsd.reranking.default_chain` (drop watched, explicit
   filter, blocked creators, topic diversity, exploration, creator dedup).

Training (:meth:`Recommender.fit`) follows the book's advice on label leakage: the training
log is cut once more. Retrieval is fitted on the part before the cut, then the candidates it
would have served at the cut are labelled by what each user did after it (valid watch, like);
impressions without a play after the cut are added as shown-but-not-watched negatives, and
for interactions-only logs the candidates are the sampled non-interacted negatives. Features
of those rows are computed point-in-time at the cut by the offline builder. The ranker learns
on them; finally retrieval is refitted on the whole log for serving.

Failure handling in :meth:`Recommender.serve`: a failing or slow stage never fails the
request; the best order available is returned (ranked, else retrieval order, else popular)
with ``degraded=True`` and the reason.
"""

from __future__ import annotations

import gc
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field

from mlsd.concurrency import ReadWriteLock
from mlsd.config import LabelConfig, StrictModel
from mlsd.data.dataset import Dataset
from mlsd.data.labels import positives as label_positives
from mlsd.data.labels import valid_watch
from mlsd.errors import ConfigError, DataError, MlsdError
from mlsd.features import VIDEO_REC, MemoryStore, OnlineStore, build_training_set, materialize
from mlsd.features.offline import feature_matrix
from mlsd.features.signals import timestamps_ms
from mlsd.pipeline.servable import ServingOptions
from mlsd.pipeline.types import (
    DegradedKind,
    RecommendationBatch,
    RequestCtx,
    Served,
    ServedItem,
    ServingStatus,
)
from mlsd.ranking.gbdt import GBDTRanker
from mlsd.reranking import Catalog as RuleCatalog
from mlsd.reranking import RerankConfig, RuleContext, Slate, default_chain
from mlsd.reranking.chain import DiversityConfig, ExplorationConfig
from mlsd.retrieval import PAD, History, TwoTowerSource, default_quotas, default_sources
from mlsd.retrieval._encode import hash_ids
from mlsd.retrieval.als import ALSSource
from mlsd.retrieval.base import row_keys
from mlsd.retrieval.cache import CacheMismatch, CandidateCache
from mlsd.retrieval.covisit import CoVisitationSource
from mlsd.retrieval.merge import TaggedCandidates, allocate, merge_lists

__all__ = ["PipelineConfig", "RecommendationBatch", "Recommender"]

DAY_MS = 86_400_000
_NO_HISTORY_USER = -(2**62)  # an id no log uses: stands for "a user without history"
# Candidate-cache keys of the cold-start rows: base + two-tower hash bucket (see
# Recommender.precompute_candidates); user ids in this range disable those rows.
_COLD_KEY_BASE = -(2**63)
_COLD_KEY_SPAN = 1 << 40
_COLD_PROBE_START = 1 << 52  # where unknown ids that stand for a bucket are looked for
ALS_SHARE = 0.15  # of the merged list, when ALS is on; the other sources share the rest
_FORMAT = 1


class PipelineConfig(StrictModel):
    """Everything that describes a trained :class:`Recommender` besides its data.

    - ``candidates``: merged candidates ranked per request (the book's "a few hundred");
    - ``label_split``: how training labels are cut from the log: ``global`` (the last
      ``label_days`` of the log), ``per-user`` (each user's last ``label_share`` of positives,
      for logs such as MovieLens where users' periods hardly overlap) or ``auto`` (global when
      the log spans at least ``2 * label_days`` and at least a quarter of the users have a
      positive in its last ``label_days``, else per-user);
    - ``max_label_users``: train the ranker on at most this many of the users with labels
      after the cut (a seeded sample; None: all), which bounds its cost on large logs;
    - ``negatives_per_user``: unwatched candidate rows kept per user for the ranker (all
      positives are kept; negatives are sampled uniformly, seeded);
    - ``two_tower``: :class:`~mlsd.retrieval.TwoTowerSource` overrides (e.g. ``epochs``);
    - ``two_tower_refit``: how the two-tower is brought up to the end of the log after the
      ranker's labels are cut: ``full`` (train a new one on every positive) or
      ``incremental`` (continue training the cut-time network for ``epochs`` on the positives
      after the cut only: several times cheaper, what production refreshes do daily);
    - ``als``: :class:`~mlsd.retrieval.als.ALSSource` overrides, or None to leave ALS out;
    - ``quotas``: merged-list share per source (default :func:`mlsd.retrieval.default_quotas`);
    - ``ranker``: :class:`~mlsd.ranking.GBDTRanker` keyword arguments; ``weights`` are the
      objective weights of the final score (an objective without positives is dropped);
    - ``rerank``: the served rule chain; ``offline_rerank``: the chain used by
      :meth:`Recommender.recommend` for offline evaluation (exploration and diversity off by
      default: their value is measured online, and random slots would only add noise here);
    - ``budget_ms``: total time budget of one request, from when the service received it;
      past it the remaining stages are skipped and the best order so far is served, marked
      degraded;
    - ``queue_budget_ms``: a request that waited longer than this for a model thread
      (overload) is answered at once with the popular fallback, marked degraded: the wait
      would leave too little of ``budget_ms`` for the stages, whose work would be wasted.
    """

    candidates: int = Field(default=500, ge=1)
    label_split: Literal["auto", "global", "per-user"] = "auto"
    label_days: float = Field(default=7.0, gt=0)
    label_share: float = Field(default=0.2, gt=0, lt=1)
    negatives_per_user: int = Field(default=150, ge=1)
    max_label_users: int | None = Field(default=None, ge=2)
    valid_users_share: float = Field(default=0.1, gt=0, lt=1)
    two_tower: dict[str, Any] = Field(default_factory=dict)
    two_tower_refit: Literal["full", "incremental"] = "full"
    als: dict[str, Any] | None = Field(default_factory=dict)
    quotas: dict[str, float] | None = None
    ranker: dict[str, Any] = Field(default_factory=dict)
    rerank: RerankConfig = RerankConfig()
    offline_rerank: RerankConfig = RerankConfig(
        diversity=DiversityConfig(enabled=False), exploration=ExplorationConfig(enabled=False)
    )
    budget_ms: float = Field(default=80.0, gt=0)
    queue_budget_ms: float = Field(default=30.0, gt=0)
    label: LabelConfig = LabelConfig()
    seed: int = 0


@dataclass
class _Candidates:
    """Merged candidates of a batch of users and their retrieval features."""

    users: np.ndarray
    items: np.ndarray  # int64[n, c], PAD-padded
    sources: np.ndarray  # int8[n, c]
    features: np.ndarray  # float32[n, c, r]


@dataclass
class _Stats:
    trained_at: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


def _ids(table: pa.Table, column: str) -> np.ndarray:
    return np.asarray(table.column(column).to_numpy(zero_copy_only=False), dtype=np.int64)


def _events_of(table: pa.Table, *types: str) -> np.ndarray:
    return np.asarray(
        pc.is_in(table.column("event_type"), pa.array(list(types))).to_numpy(zero_copy_only=False),
        dtype=bool,
    )


def _pair_set(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.unique(row_keys(u, v, 0) if len(u) else np.zeros(0, np.int64))


def _in_pairs(keys_sorted: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    if len(keys_sorted) == 0 or len(u) == 0:
        return np.zeros(len(u), bool)
    k = row_keys(u, v, 0)
    pos = np.minimum(np.searchsorted(keys_sorted, k), len(keys_sorted) - 1)
    return np.asarray(keys_sorted[pos] == k)


def as_dataset(
    data: Dataset | Any, videos: pa.Table | None = None, users: pa.Table | None = None
) -> Dataset:
    """A :class:`Dataset` from a dataset or an evaluation
    :class:`~mlsd.evaluation.Interactions` (its raw ``events``, or, for pure positives,
    synthetic ``play`` events whose unknown watch time counts as positive)."""
    if isinstance(data, Dataset):
        return data
    events = getattr(data, "events", None)
    if events is None:
        u, v = np.asarray(data.user_ids), np.asarray(data.item_ids)
        ts = data.timestamps if data.timestamps is not None else np.arange(len(u))
        events = pa.table(
            {
                "user_id": pa.array(u, pa.int64()),
                "video_id": pa.array(v, pa.int64()),
                "timestamp": pa.array(np.asarray(ts, np.int64)).cast(pa.timestamp("ms", "UTC")),
                "event_type": pa.array(["play"] * len(u), pa.string()),
            }
        )
    from mlsd.data.schema import conform

    events = conform(events, "events")[0]
    if videos is None:
        videos = conform(pa.table({"video_id": pc.unique(events.column("video_id"))}), "videos")[0]
    if users is None:
        users = conform(pa.table({"user_id": pc.unique(events.column("user_id"))}), "users")[0]
    return Dataset(events=events, videos=videos, users=users)


class Recommender:
    """The two-stage recommender (see the module docstring); implements the evaluation
    ``Model`` protocol (``fit``/``recommend``) and the serving ``Servable`` protocol.

    ``videos``/``users`` are used when ``fit`` receives an evaluation ``Interactions`` (which
    carries events but no catalog). ``online_store`` receives the online features (default: a
    new :class:`~mlsd.features.MemoryStore`). Reads (``serve``, ``recommend``) and writes
    (``apply_events``) are serialised by one lock, so the object is thread-safe.
    """

    def __init__(
        self,
        config: PipelineConfig | Mapping[str, Any] | None = None,
        *,
        videos: pa.Table | None = None,
        users: pa.Table | None = None,
        online_store: OnlineStore | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        if config is None:
            config = PipelineConfig()
        elif not isinstance(config, PipelineConfig):
            config = PipelineConfig.model_validate(dict(config))
        self.config = config
        self.videos = videos
        self.users = users
        self.online_store = online_store
        self._say = progress or (lambda _m: None)
        # requests read concurrently (their heavy parts release the GIL); apply_events writes
        self._lock = ReadWriteLock()
        self.candidate_cache_: CandidateCache | None = None  # see precompute_candidates
        self._cold_memo: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}  # see _cold_lists
        self.version = "unfitted"
        self.stats = _Stats()

    def get_params(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json")

    # ------------------------------------------------------------------------- training --
    def fit(self, data: Dataset | Any) -> Recommender:
        """Train every stage on ``data`` (a :class:`Dataset`, or an evaluation
        ``Interactions`` with its raw events). Raises :class:`DataError` when the log has no
        positives, a single user, or no labels after the internal cut."""
        cfg = self.config
        t_all = time.perf_counter()
        self.candidate_cache_ = None  # computed from the previous fit
        self._cold_memo = {}
        ds = as_dataset(data, self.videos, self.users)
        ev = ds.events
        if ev.num_rows == 0:
            raise DataError("training events: the log is empty; expected at least one event")
        pos = label_positives(ev, ds.videos, cfg.label, include_likes=True)
        n_users = len(np.unique(_ids(pos, "user_id")))
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
        self.now_ms_ = int(ts.max()) + 1
        self.dataset_ = ds
        self.stats = _Stats(trained_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

        # 1. The internal cut: retrieval before it, ranker labels after it.
        split = self._label_split(pos, ts)
        self._say(f"ranker labels: {split['mode']} cut, {split['n_label_users']:,} users")
        t0 = time.perf_counter()
        self._fit_retrieval(ds, split["before"], now_ms=split["now_ms"])
        self.stats.seconds["retrieval_fit_for_labels"] = time.perf_counter() - t0

        # 2. Ranker rows: the candidates retrieval would have served at the cut, labelled.
        t0 = time.perf_counter()
        rows, rfeat = self._training_rows(ds, split)
        self.stats.seconds["training_rows"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        table = build_training_set(ds, rows, registry=VIDEO_REC)
        self.feature_names_ = [f.name for f in VIDEO_REC.matrix_features()]
        x = np.concatenate([feature_matrix(table, self.feature_names_), rfeat], axis=1)
        self.stats.seconds["training_features"] = time.perf_counter() - t0
        names = self.feature_names_ + self.retrieval_feature_names_
        labels = {
            "watch": np.asarray(rows.column("label_watch").to_numpy(zero_copy_only=False)),
            "like": np.asarray(rows.column("label_like").to_numpy(zero_copy_only=False)),
        }
        self._fit_ranker(x, labels, names, _ids(rows, "user_id"))
        self.stats.counts.update(
            ranker_rows=len(x),
            ranker_positives=int(labels["watch"].sum()),
            ranker_likes=int(labels["like"].sum()),
        )

        # 3. Serving state: retrieval on the whole log, online features, rules.
        t0 = time.perf_counter()
        warm = self._two_tower if cfg.two_tower_refit == "incremental" else None
        self._fit_retrieval(ds, pos, now_ms=self.now_ms_, warm_two_tower=warm)
        self.stats.seconds["retrieval_fit"] = time.perf_counter() - t0
        self._init_serving(ds)
        self.stats.seconds["total"] = time.perf_counter() - t_all
        self.version = self._make_version()
        return self

    def _label_split(self, pos: pa.Table, ts: np.ndarray) -> dict[str, Any]:
        cfg = self.config
        t = timestamps_ms(pos.column("timestamp"))
        u = _ids(pos, "user_id")
        span = int(ts.max() - ts.min()) if len(ts) else 0
        mode = cfg.label_split
        if mode == "auto":
            # A global cut needs a log where most users are active near its end (a platform's
            # log); MovieLens-like logs, where each user rates in a burst, get per-user cuts.
            recent = np.unique(u[t >= int(ts.max()) + 1 - int(cfg.label_days * DAY_MS)])
            active = len(recent) / max(len(np.unique(u)), 1)
            long_enough = span >= 2 * cfg.label_days * DAY_MS
            mode = "global" if long_enough and active >= 0.25 else "per-user"
        if mode == "global":
            cut = int(ts.max()) + 1 - int(cfg.label_days * DAY_MS)
            if span < 2 * cfg.label_days * DAY_MS:
                cut = int(np.quantile(t, 1 - cfg.label_share)) if len(t) else cut
            after = t >= cut
            cut_of_user = None
        else:
            order = np.lexsort((t, u))
            uo = u[order]
            starts = np.flatnonzero(np.r_[True, uo[1:] != uo[:-1]])
            counts = np.diff(np.r_[starts, len(uo)])
            n_label = np.where(counts >= 2, np.maximum(1, np.floor(counts * cfg.label_share)), 0)
            rank = np.arange(len(uo)) - np.repeat(starts, counts)
            after_sorted = rank >= np.repeat(counts - n_label, counts)
            after = np.empty(len(u), bool)
            after[order] = after_sorted
            # a user's cut: the time of their first labelled positive
            cut_of_user = {}
            lu, lt = u[after], t[after]
            if len(lu):
                o = np.lexsort((lt, lu))
                first = np.r_[True, lu[o][1:] != lu[o][:-1]]
                cut_of_user = dict(zip(lu[o][first].tolist(), lt[o][first].tolist(), strict=True))
            cut = int(t[after].min()) if after.any() else int(ts.max()) + 1
        before = pos.filter(pa.array(~after))
        label_users = np.unique(u[after])
        if len(label_users) == 0 or before.num_rows == 0:
            raise DataError(
                "training events: cannot cut the log into a retrieval part and a label part "
                f"({before.num_rows:,} positives before, {int(after.sum()):,} after); expected "
                "positives on both sides: give a longer log or more users"
            )
        now_ms = (
            int(timestamps_ms(before.column("timestamp")).max()) + 1 if mode != "global" else cut
        )
        return {
            "mode": mode,
            "cut": cut,
            "cut_of_user": cut_of_user,
            "now_ms": now_ms,
            "before": before,
            "after": pos.filter(pa.array(after)),
            "label_users": label_users,
            "n_label_users": len(label_users),
        }

    def _fit_retrieval(
        self,
        ds: Dataset,
        pos: pa.Table,
        *,
        now_ms: int,
        warm_two_tower: TwoTowerSource | None = None,
    ) -> None:
        known = _ids(ds.videos, "video_id")
        history = History.from_positives(pos, max_len=None, known_video_ids=known)
        sources = self._make_sources()
        if warm_two_tower is not None:
            sources = [warm_two_tower if isinstance(s, TwoTowerSource) else s for s in sources]
        for s in sources:
            if warm_two_tower is not None and s is warm_two_tower:
                warm_two_tower.fit(pos, videos=ds.videos, users=ds.users, now_ms=now_ms,
                                   history=history, warm_start=True)  # fmt: skip
            else:
                s.fit(pos, videos=ds.videos, users=ds.users, now_ms=now_ms, history=history)
        self.sources_ = sources
        self.history_ = history
        self.source_names_ = tuple(s.name for s in sources)
        quotas = self._quotas()
        self.shares_ = np.array([float(quotas.get(n, 0.0)) for n in self.source_names_])
        if self.shares_.sum() <= 0:
            raise ConfigError(f"quotas {quotas!r}: give at least one source a positive share")
        self.retrieval_feature_names_ = [f"rank_{n}" for n in self.source_names_] + [
            "two_tower_score",
            "n_sources",
        ]
        tt = [s for s in sources if isinstance(s, TwoTowerSource)]
        self._two_tower = tt[0] if tt else None

    def _make_sources(self) -> list[Any]:
        cfg = self.config
        sources: list[Any] = list(default_sources(seed=cfg.seed, **cfg.two_tower))
        if cfg.als is not None:
            sources.append(ALSSource(seed=cfg.seed, **cfg.als))
        return sources

    def _quotas(self) -> dict[str, float]:
        cfg = self.config
        if cfg.quotas is not None:
            return dict(cfg.quotas)
        q = {k: v * (1 - ALS_SHARE) for k, v in default_quotas().items()}
        if cfg.als is not None:
            q["als"] = ALS_SHARE
        return q

    def merge(self, lists: list[tuple[np.ndarray, np.ndarray]], k: int) -> np.ndarray:
        """The merged candidate ids ``int64[n, k]`` (PAD-padded) of per-source
        ``(ids, scores)`` lists given in ``sources_`` order, under the configured quotas."""
        return self._merged(lists, k).item_ids

    def _merged(self, lists: list[tuple[np.ndarray, np.ndarray]], k: int) -> TaggedCandidates:
        return merge_lists(lists, allocate(self.shares_, k), k, 60.0, self.source_names_)

    def _retrieve(self, users: np.ndarray, k: int) -> _Candidates:
        """Merged candidates and retrieval features for a batch of users."""
        lists: list[tuple[np.ndarray, np.ndarray]] = []
        ue: np.ndarray | None = None  # the user tower runs once per request, not twice
        tt = self._two_tower
        # A user without history gets the same list from every source but the two-tower
        # (which also reads the user's id and attributes): computed once, then reused.
        cold = (
            self._cold_lists(k)
            if len(users) == 1 and self.history_.lengths(users)[0] == 0
            else None
        )
        for j, s in enumerate(self.sources_):
            if tt is not None and s is tt:
                ids, scores, ue = tt.candidates_with_embeddings(users, k)
                lists.append((ids, scores))
            elif cold is not None:
                lists.append(cold[j])
            else:
                lists.append(s.candidates(users, k))
        merged = self._merged(lists, k)
        return _Candidates(
            users,
            merged.item_ids,
            merged.sources,
            self._retrieval_features(users, merged.item_ids, lists, ue),
        )

    def _cold_lists(self, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each source's ``k`` candidates for a user without history (the two-tower's slot is
        a placeholder), memoised per ``k``: only the user's history enters these sources."""
        memo = self._cold_memo
        got = memo.get(k)
        if got is None:
            nobody = np.array([_NO_HISTORY_USER], np.int64)
            if self.history_.lengths(nobody)[0] != 0:
                raise MlsdError(f"user id {_NO_HISTORY_USER} has a history; cannot memoise")
            got = [
                (np.zeros((1, 0), np.int64), np.zeros((1, 0), np.float32))
                if s is self._two_tower
                else s.candidates(nobody, k)
                for s in self.sources_
            ]
            for ids, scores in got:  # shared by every request: never written to
                ids.flags.writeable = False
                scores.flags.writeable = False
            memo[k] = got
        return got

    def _retrieval_features(
        self,
        users: np.ndarray,
        items: np.ndarray,
        lists: Sequence[tuple[np.ndarray, np.ndarray]],
        user_embeddings: np.ndarray | None = None,
    ) -> np.ndarray:
        """``float32[n, c, r]``: each source's 1-based rank of the item (NaN: not proposed),
        the two-tower similarity and how many sources proposed it. ``user_embeddings``: the
        two-tower's ``(n, d)`` for ``users`` when already computed."""
        n, c = items.shape
        n_src = len(lists)
        out = np.full((n, c, len(self.retrieval_feature_names_)), np.nan, np.float32)
        # One sort for all sources (not one per source): key every proposed (row, id) together
        # with the merged ones, then find each merged pair's proposals by binary search.
        all_rows, all_ids = [np.repeat(np.arange(n), c)], [items.ravel()]
        srcs, ranks = [], []
        for j, (ids, _) in enumerate(lists):
            m = ids.shape[1]
            flat = ids.ravel()
            ok = flat != PAD
            all_rows.append(np.repeat(np.arange(n), m)[ok])
            all_ids.append(flat[ok])
            srcs.append(np.full(int(ok.sum()), j, np.int64))
            ranks.append(np.tile(np.arange(1, m + 1), n)[ok])
        keys = row_keys(np.concatenate(all_rows), np.concatenate(all_ids), n)
        kc, ks = keys[: n * c], keys[n * c :]
        src = np.concatenate(srcs) if srcs else np.zeros(0, np.int64)
        rank = np.concatenate(ranks) if ranks else np.zeros(0, np.int64)
        o = np.argsort(ks, kind="stable")
        ks, src, rank = ks[o], src[o], rank[o]
        lo = np.searchsorted(ks, kc, "left")
        cnt = np.where(items.ravel() != PAD, np.searchsorted(ks, kc, "right") - lo, 0)
        target = np.repeat(np.arange(n * c), cnt)
        entry = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        entry += np.repeat(lo, cnt)
        best = np.full((n * c, n_src), np.inf)
        np.minimum.at(best, (target, src[entry]), rank[entry])  # a source's best rank
        hit = np.isfinite(best)
        out[:, :, :n_src] = np.where(hit, best, np.nan).reshape(n, c, n_src)
        out[:, :, -1] = hit.sum(1).reshape(n, c)
        out[:, :, -2] = self._two_tower_scores(users, items, user_embeddings)
        return out

    def _two_tower_scores(
        self, users: np.ndarray, items: np.ndarray, ue: np.ndarray | None = None
    ) -> np.ndarray:
        tt = self._two_tower
        if tt is None:
            return np.full(items.shape, np.nan, np.float32)
        if ue is None:
            ue = tt.user_embeddings(users)  # (n, d)
        idx = tt.catalog_.index(items)
        ve = tt.video_embeddings_[np.maximum(idx, 0)]  # (n, c, d)
        s = np.einsum("nd,ncd->nc", ue, ve).astype(np.float32)
        return np.where(idx >= 0, s, np.nan).astype(np.float32)

    def _training_rows(self, ds: Dataset, split: dict[str, Any]) -> tuple[pa.Table, np.ndarray]:
        """Labelled (user, video, cut time) rows and their retrieval features."""
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        users = split["label_users"]
        if cfg.max_label_users is not None and len(users) > cfg.max_label_users:
            users = np.sort(rng.choice(users, size=cfg.max_label_users, replace=False))
        after = split["after"]
        ev = ds.events
        ts = timestamps_ms(ev.column("timestamp"))
        if split["cut_of_user"] is None:
            cut_u = np.full(len(users), split["cut"], np.int64)
        else:
            cut_u = np.array([split["cut_of_user"][int(x)] for x in users], np.int64)
        # labels: valid watches (and likes) at or after each user's cut
        eu, evid = _ids(ev, "user_id"), _ids(ev, "video_id")
        upos = np.searchsorted(users, eu).clip(max=len(users) - 1)
        is_label_user = users[upos] == eu
        ev_after = is_label_user & (ts >= np.where(is_label_user, cut_u[upos], 0))
        watch = valid_watch(ev, ds.videos, cfg.label) & ev_after
        like = _events_of(ev, "like") & ev_after
        impressed = _events_of(ev, "impression") & ev_after
        watch_keys = _pair_set(eu[watch], evid[watch])
        like_keys = _pair_set(eu[like], evid[like])
        del after
        parts_u, parts_v, parts_f = [], [], []
        k = cfg.candidates
        batch = 2048
        for lo in range(0, len(users), batch):
            ub = users[lo : lo + batch]
            cand = self._retrieve(ub, k)
            ok = cand.items != PAD
            rr = np.broadcast_to(np.arange(len(ub))[:, None], cand.items.shape)[ok]
            parts_u.append(ub[rr])
            parts_v.append(cand.items[ok])
            parts_f.append(cand.features[ok])
        cu = np.concatenate(parts_u) if parts_u else np.zeros(0, np.int64)
        cv = np.concatenate(parts_v) if parts_v else np.zeros(0, np.int64)
        cf = (
            np.concatenate(parts_f)
            if parts_f
            else np.zeros((0, len(self.retrieval_feature_names_)), np.float32)
        )
        # shown-but-not-watched after the cut: negatives the logging policy really served
        iu, iv = eu[impressed], evid[impressed]
        if len(iu):
            _, first = np.unique(row_keys(iu, iv, 0), return_index=True)
            iu, iv = iu[first], iv[first]
            fresh = ~_in_pairs(np.sort(row_keys(cu, cv, 0)), iu, iv)
            iu, iv = iu[fresh], iv[fresh]
            if len(iu):
                ifeat = self._retrieval_features_for_pairs(iu, iv)
                cu, cv = np.concatenate([cu, iu]), np.concatenate([cv, iv])
                cf = np.concatenate([cf, ifeat])
        y_watch = _in_pairs(watch_keys, cu, cv)
        y_like = _in_pairs(like_keys, cu, cv)
        # keep every positive, sample negatives per user
        keep = y_watch | y_like
        neg = np.flatnonzero(~keep)
        if len(neg):
            pri = rng.random(len(neg))
            o = np.lexsort((pri, cu[neg]))
            nu = cu[neg][o]
            starts = np.flatnonzero(np.r_[True, nu[1:] != nu[:-1]])
            rank = np.arange(len(nu)) - np.repeat(starts, np.diff(np.r_[starts, len(nu)]))
            keep[neg[o][rank < cfg.negatives_per_user]] = True
        sel = np.flatnonzero(keep)
        cu, cv, cf = cu[sel], cv[sel], cf[sel]
        y_watch, y_like = y_watch[sel], y_like[sel]
        upos = np.searchsorted(users, cu)
        t_row = cut_u[upos]
        rows = pa.table(
            {
                "user_id": pa.array(cu, pa.int64()),
                "video_id": pa.array(cv, pa.int64()),
                "timestamp": pa.array(t_row).cast(pa.timestamp("ms", "UTC")),
                "label_watch": pa.array(y_watch),
                "label_like": pa.array(y_like),
            }
        )
        if y_watch.sum() == 0:
            raise DataError(
                "ranker training: none of the candidates retrieval proposed at the cut was "
                "watched after it; expected some positives (give a longer log)"
            )
        return rows, cf

    def _retrieval_features_for_pairs(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Retrieval features of (user, video) pairs no source proposed: ranks NaN."""
        f = np.full((len(u), len(self.retrieval_feature_names_)), np.nan, np.float32)
        f[:, -1] = 0.0
        tt = self._two_tower
        if tt is not None and len(u):
            uu, inv = np.unique(u, return_inverse=True)
            ue = tt.user_embeddings(uu)[inv]
            idx = tt.catalog_.index(v)
            ve = tt.video_embeddings_[np.maximum(idx, 0)]
            f[:, -2] = np.where(idx >= 0, (ue * ve).sum(1), np.nan)
        return f

    def _fit_ranker(
        self, x: np.ndarray, labels: dict[str, np.ndarray], names: list[str], users: np.ndarray
    ) -> None:
        cfg = self.config
        params = dict(cfg.ranker)
        weights = dict(params.pop("weights", {"watch": 1.0, "like": 0.5}))
        for obj in list(weights):
            if obj not in labels:
                raise ConfigError(f"ranker weights: unknown objective {obj!r}; expected watch/like")
            y = labels[obj]
            if y.min() == y.max():
                self._say(f"ranker: objective {obj!r} has a single class; dropped")
                del weights[obj]
        if not weights:
            raise DataError("ranker training: no objective has both positives and negatives")
        rng = np.random.default_rng(cfg.seed + 1)
        uu = np.unique(users)
        valid_users = uu[rng.random(len(uu)) < cfg.valid_users_share]
        is_valid = np.isin(users, valid_users)
        if is_valid.all() or not is_valid.any():
            is_valid = np.zeros(len(users), bool)
            is_valid[-max(1, len(users) // 10) :] = True
        params.setdefault("seed", cfg.seed)
        # One thread unless configured: LightGBM's OpenMP threads spin while waiting, and on a
        # shared 2-core machine two of them ran 7x slower than one (6.6 s vs 44 s on `tiny`).
        params.setdefault("num_threads", 1)
        ranker = GBDTRanker(weights, **params)
        ranker.fit(
            x[~is_valid],
            {o: labels[o][~is_valid] for o in weights},
            names,
            valid=(x[is_valid], {o: labels[o][is_valid] for o in weights}),
        )
        self.ranker_ = ranker

    def _init_serving(self, ds: Dataset) -> None:
        """Online features, the rule catalog, seen/blocked state and the popular fallback."""
        t0 = time.perf_counter()
        store = self.online_store if self.online_store is not None else MemoryStore()
        self.online_ = materialize(ds, store, at_ms=self.now_ms_, label_cfg=self.config.label)
        self.stats.seconds["materialize"] = time.perf_counter() - t0
        ev = ds.events
        ts = timestamps_ms(ev.column("timestamp"))
        vids = _ids(ds.videos, "video_id")
        imp = _events_of(ev, "impression") & (ts >= self.now_ms_ - 7 * DAY_MS)
        exposure = np.zeros(len(vids))
        if imp.any():
            iv = _ids(ev.filter(pa.array(imp)), "video_id")
            pos = np.searchsorted(vids, iv).clip(max=len(vids) - 1)
            ok = vids[pos] == iv
            np.add.at(exposure, pos[ok], 1.0)
        order = np.argsort(vids, kind="stable")
        self.catalog_ = RuleCatalog.from_videos(ds.videos.take(pa.array(order)), exposure[order])
        self.video_ids_ = self.catalog_.item_ids
        # everything a user interacted with (for "drop watched"), dislikes (blocked creators)
        seen = _events_of(ev, "play", "like", "rating", "share")
        self.seen_ = History.from_positives(
            ev.filter(pa.array(seen)).select(["user_id", "video_id", "timestamp"]),
            max_len=None,
            known_video_ids=self.video_ids_,
        )
        self.blocked_: dict[int, set[int]] = {}
        self._add_blocked(ev)
        if "allows_explicit" in ds.users.column_names:
            au = _ids(ds.users, "user_id")
            ae = np.asarray(
                ds.users.column("allows_explicit").fill_null(False).to_numpy(zero_copy_only=False),
                bool,
            )
            self.allows_explicit_ = dict(zip(au[ae].tolist(), [True] * int(ae.sum()), strict=True))
        else:
            self.allows_explicit_ = {}
        pop = next((s for s in self.sources_ if s.name == "popular"), None)
        if pop is not None:
            self.popular_ids_, _ = pop.candidates(np.array([-1], np.int64), self.config.candidates)
            self.popular_ids_ = self.popular_ids_[0]
        else:
            self.popular_ids_ = self.video_ids_[: self.config.candidates]
        self.served_chain_ = default_chain(self.config.rerank)
        self.offline_chain_ = default_chain(self.config.offline_rerank)

    def _add_blocked(self, ev: pa.Table) -> None:
        dis = _events_of(ev, "dislike")
        if not dis.any():
            return
        d = ev.filter(pa.array(dis))
        du, dv = _ids(d, "user_id"), _ids(d, "video_id")
        idx = self.catalog_.index_of(dv)
        ok = idx >= 0
        cre = self.catalog_.creator[idx[ok]]
        for u, c in zip(du[ok].tolist(), cre.tolist(), strict=True):
            if c >= 0:
                self.blocked_.setdefault(u, set()).add(int(c))

    def _make_version(self) -> str:
        h = hashlib.sha256()
        h.update(json.dumps(self.get_params(), sort_keys=True).encode())
        h.update(str(self.now_ms_).encode())
        h.update(str(self.dataset_.events.num_rows).encode())
        return (
            f"rec-{time.strftime('%Y%m%d', time.gmtime(self.now_ms_ / 1000))}-{h.hexdigest()[:10]}"
        )

    # ---------------------------------------------------------------------- inference --
    def _check(self) -> None:
        if not hasattr(self, "ranker_"):
            raise MlsdError("Recommender is not fitted; call fit() or load() first")

    def _features(
        self, user_id: int, items: np.ndarray, t_ms: int, device: str | None, surface: str | None
    ) -> np.ndarray:
        return self.online_.request_features(
            int(user_id),
            items,
            int(t_ms),
            device=device,
            surface=surface,
            features=self.feature_names_,
        )

    def _context(self, user_id: int, k: int, t_ms: int, explain: bool = True) -> RuleContext:
        watched = self.seen_.recent(np.array([user_id], np.int64))[0][0]
        watched = watched[watched != PAD]
        blocked = self.blocked_.get(int(user_id))
        return RuleContext(
            catalog=self.catalog_,
            k=k,
            time_ms=int(t_ms),
            user_id=int(user_id),
            allows_explicit=bool(self.allows_explicit_.get(int(user_id), False)),
            watched=self.catalog_.index_of(watched) if len(watched) else np.zeros(0, np.int64),
            blocked_creators=np.array(sorted(blocked), np.int64)
            if blocked
            else np.zeros(0, np.int64),
            explain=explain,
        )

    def recommend_batch(
        self,
        user_ids: np.ndarray | Sequence[int],
        k: int,
        *,
        exclude_seen: bool = True,
        rules: Literal["offline", "served"] = "offline",
        time_ms: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> RecommendationBatch:
        """Top-``k`` video ids and scores per user (the same path as :meth:`serve`).

        ``rules``: the offline chain (default; see :class:`PipelineConfig`) or the served one.
        ``exclude_seen=False`` keeps the user's watched videos. ``progress(n_done)`` is called
        after each batch of users. Raises :class:`ConfigError` for ``k`` < 1 or larger than
        the catalog.
        """
        self._check()
        users = np.asarray(user_ids, dtype=np.int64)
        k = self._check_k(k)
        t_ms = self.now_ms_ if time_ms is None else int(time_ms)
        base = self.offline_chain_ if rules == "offline" else self.served_chain_
        chain = base
        if not exclude_seen and self.config.offline_rerank.filters.drop_watched:
            cfg = self.config.offline_rerank if rules == "offline" else self.config.rerank
            f = cfg.filters.model_copy(update={"drop_watched": False})
            chain = default_chain(cfg.model_copy(update={"filters": f}))
        out_i = np.full((len(users), k), PAD, np.int64)
        out_s = np.full((len(users), k), np.nan, np.float32)
        n_cand = max(self.config.candidates, k)
        with self._lock.read():
            cold = self.history_.lengths(users) == 0
            for lo in range(0, len(users), 512):
                ub = users[lo : lo + 512]
                cand = self._retrieve(ub, n_cand)
                # features per user (the online path), one ranker call for the whole batch
                xs, keep = [], []
                for i, u in enumerate(ub.tolist()):
                    ok = cand.items[i] != PAD
                    keep.append(ok)
                    fx = self._features(u, cand.items[i][ok], t_ms, None, None)
                    xs.append(np.concatenate([fx, cand.features[i][ok]], axis=1))
                sizes = np.array([len(x) for x in xs])
                scores = np.split(self.ranker_.score(np.concatenate(xs)), np.cumsum(sizes)[:-1])
                for i, u in enumerate(ub.tolist()):
                    items = cand.items[i][keep[i]]
                    order = np.argsort(-scores[i], kind="stable")
                    dense = self.catalog_.index_of(items[order])
                    known = dense >= 0
                    slate = Slate.from_arrays(
                        dense[known],
                        scores[i][order][known],
                        source=cand.sources[i][keep[i]][order][known],
                    )
                    slate = chain.apply(slate, self._context(u, k, t_ms))
                    m = len(slate)
                    out_i[lo + i, :m] = self.catalog_.item_ids[slate.items]
                    out_s[lo + i, :m] = slate.scores
                if progress is not None:
                    progress(min(lo + 512, len(users)))
        return RecommendationBatch(users, out_i, out_s, cold)

    def recommend(self, user_ids: np.ndarray, k: int, exclude_seen: bool = True) -> np.ndarray:
        """The evaluation ``Model`` interface: ``int64[n, k]`` ids, padded with -1."""
        return self.recommend_batch(user_ids, k, exclude_seen=exclude_seen).item_ids

    def _check_k(self, k: int) -> int:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ConfigError(f"k={k!r}: expected an integer >= 1")
        if k > len(self.video_ids_):
            raise ConfigError(f"k={k}: larger than the catalog ({len(self.video_ids_):,} videos)")
        return int(k)

    @property
    def n_unknown_users_(self) -> int:
        return 0

    # ------------------------------------------------------------------------ serving --
    def serve(self, user_id: int, k: int, ctx: RequestCtx, explain: bool = False) -> Served:
        """One request, through every stage; never raises for a valid request (degrades)."""
        self._check()
        t_start = time.perf_counter() if ctx.received_at is None else ctx.received_at
        budget = self.config.budget_ms
        stage: dict[str, float] = {}
        users = np.array([int(user_id)], np.int64)
        k = min(int(k), len(self.video_ids_))
        n_cand = max(self.config.candidates, k)
        kind: DegradedKind | None = None  # why degraded (None: not)
        reason: str | None = None

        def elapsed() -> float:
            return (time.perf_counter() - t_start) * 1000

        with self._lock.read():
            cold = bool(self.history_.lengths(users)[0] == 0)
            queued = elapsed() if ctx.received_at is not None else 0.0
            wait_budget = min(self.config.queue_budget_ms, budget)
            if queued > wait_budget:  # overload: shed to the cheap order, not more queueing
                stage["queue"] = queued
                return self._fallback(
                    user_id, k, ctx, cold, "overload",
                    f"waited {queued:.0f} ms before starting (queue budget {wait_budget:g} "
                    "ms): overload",
                    stage, t_start,
                )  # fmt: skip
            try:
                items, sources, rfeat = self._candidates_of(int(user_id), n_cand, cold)
                stage["retrieval"] = elapsed() - queued
                if queued >= 0.05:  # a measurable wait: reported as its own stage
                    stage["queue"] = queued
            except Exception as e:  # any source failure: popular fallback
                return self._fallback(
                    user_id, k, ctx, cold, "retrieval_failed",
                    f"retrieval failed: {type(e).__name__}", stage, t_start,
                )  # fmt: skip
            if elapsed() > budget:
                kind = "retrieval_over_budget"
                reason = f"retrieval took {elapsed():.0f} ms (budget {budget:g} ms)"
            x = None
            if kind is None:
                try:
                    ok = items != PAD
                    items, sources, rfeat = items[ok], sources[ok], rfeat[ok]
                    feats = self._features(
                        int(user_id), items, ctx.time_ms, ctx.device, ctx.surface
                    )
                    x = np.concatenate([feats, rfeat], axis=1)
                    stage["features"] = elapsed() - queued - stage["retrieval"]
                except Exception as e:
                    kind = "features_failed"
                    reason = f"feature store failed: {type(e).__name__}: {e}"[:200]
            proba: dict[str, np.ndarray] | None = None
            if x is not None and elapsed() > budget:
                kind, reason = (
                    "features_over_budget",
                    f"features took {elapsed():.0f} ms in all (budget {budget:g} ms)",
                )
            if kind is None and x is not None:
                try:
                    proba = self.ranker_.predict_proba(x)
                    stage["ranking"] = elapsed() - queued - stage["retrieval"] - stage["features"]
                except Exception as e:
                    kind, reason = "ranker_failed", f"ranker failed: {type(e).__name__}"
            if proba is not None:
                score = np.asarray(sum(self.ranker_.weights[o] * p for o, p in proba.items()))
                chain = self.served_chain_
            else:  # retrieval order, rules still applied (filters are not optional)
                ok = items != PAD
                items, sources = items[ok], sources[ok]
                score = -np.arange(len(items), dtype=np.float64)
                chain = self.served_chain_
            order = np.argsort(-score, kind="stable")
            dense = self.catalog_.index_of(items[order])
            known = dense >= 0
            slate = Slate.from_arrays(
                dense[known], score[order][known], source=sources[order][known]
            )
            t0 = time.perf_counter()
            try:
                out = chain.apply(slate, self._context(int(user_id), k, ctx.time_ms, explain))
            except Exception as e:
                if kind is None:
                    kind, reason = "reranking_failed", f"re-ranking failed: {type(e).__name__}"
                out = slate.truncate(k)
            stage["rerank"] = (time.perf_counter() - t0) * 1000
            served_items = self._served_items(out, explain, proba, order, known, rfeat, items)
        stage["total"] = elapsed()
        return Served(
            user_id=int(user_id),
            items=served_items,
            degraded_kind=kind,
            degraded_reason=reason,
            cold_start=cold,
            stage_ms=stage,
            n_candidates=int((items != PAD).sum()),
        )

    def _candidates_of(
        self, user_id: int, n_cand: int, cold: bool = False
    ) -> tuple[np.ndarray, ...]:
        """One user's merged candidates, sources and retrieval features: from the candidate
        cache when the user (``cold``: without history, their cold-start row) is in it (see
        :meth:`precompute_candidates`), else retrieved now."""
        cache = self.candidate_cache_
        if cache is not None and cache.width == n_cand:
            key = self._cold_key(user_id) if cold else user_id
            hit = cache.get(key) if key is not None else None
            if key is None:
                cache.misses += 1
            if hit is not None:
                pos, sources, rfeat = hit
                items = np.where(pos >= 0, self.catalog_.ids_at(np.maximum(pos, 0)), PAD)
                return items, sources, rfeat
        cand = self._retrieve(np.array([user_id], np.int64), n_cand)
        return cand.items[0], cand.sources[0], cand.features[0]

    def _cold_buckets(self, users: np.ndarray) -> tuple[int, np.ndarray]:
        """(number of buckets, bucket of each user): what tells users without history apart
        in retrieval, the two-tower's hashed user id (one bucket without it)."""
        tt = self._two_tower
        if tt is None or tt.net_.user_id is None:
            return 1, np.zeros(len(users), np.int64)
        return tt.n_user_buckets, hash_ids(users, tt.n_user_buckets)

    def _without_attributes(self, users: np.ndarray) -> np.ndarray:
        tt = self._two_tower
        if tt is None:
            return np.ones(len(users), bool)
        return np.asarray(~tt.user_features_.lookup(users).any(axis=1))

    def _cold_key(self, user_id: int) -> int | None:
        """The candidate-cache key of a user without history: their retrieval is that of any
        user without history or attributes in the same two-tower hash bucket (every source but
        the two-tower reads only the history; the two-tower reads the bucket, the attributes
        and the history). None for a user with attributes (not shared)."""
        u = np.array([user_id], np.int64)
        if not self._without_attributes(u)[0]:
            return None
        return _COLD_KEY_BASE + int(self._cold_buckets(u)[1][0])

    def _cold_representatives(self) -> tuple[np.ndarray, np.ndarray]:
        """(buckets, an id per bucket) of users without history or attributes, one per bucket
        found among the ids from ``_COLD_PROBE_START`` on (all, in practice)."""
        n, _ = self._cold_buckets(np.zeros(0, np.int64))
        reps = np.full(n, -1, np.int64)
        chunk = 1 << 20
        for i in range(max(8, 4 * n // chunk + 8)):  # ~n ln n ids cover n buckets
            ids = np.arange(chunk, dtype=np.int64) + _COLD_PROBE_START + i * chunk
            ids = ids[(self.history_.lengths(ids) == 0) & self._without_attributes(ids)]
            b = self._cold_buckets(ids)[1]
            ub, first = np.unique(b, return_index=True)
            new = reps[ub] < 0
            reps[ub[new]] = ids[first[new]]
            if bool((reps >= 0).all()):
                break
        have = np.flatnonzero(reps >= 0)
        return have, reps[have]

    def candidate_cache_key(self) -> dict[str, Any]:
        """What a saved candidate cache must have been computed for to be this model's: the
        model version (a bundle's content), the mlsd version, and the candidate layout."""
        from mlsd import __version__

        return {
            "model_version": self.version,
            "mlsd_version": __version__,
            "candidates": int(self.config.candidates),
            "sources": list(self.source_names_),
            "retrieval_features": list(self.retrieval_feature_names_),
        }

    def load_candidate_cache(self, directory: str | Path) -> CandidateCache:
        """Serve from the candidate cache saved in ``directory`` by
        :meth:`precompute_candidates` (memory-mapped: seconds instead of minutes, and pages
        shared by forked workers). Raises :class:`~mlsd.retrieval.cache.CacheMismatch` naming
        why when it was saved for another model (:meth:`candidate_cache_key`) or other users."""
        self._check()
        cache = CandidateCache.load(directory, self.candidate_cache_key())
        real = cache.users[cache.users >= _COLD_KEY_BASE + _COLD_KEY_SPAN]
        if not np.array_equal(real, np.sort(self.history_.users())):
            raise CacheMismatch(f"{directory}: saved for other users than this model's")
        self.candidate_cache_ = cache
        return cache

    def precompute_candidates(
        self,
        *,
        batch: int = 512,
        threads: int = 1,
        progress: Callable[[int, int], None] | None = None,
        cold: bool | None = None,
        directory: str | Path | None = None,
    ) -> CandidateCache:
        """Retrieve every user with a history ahead, in batches, into a
        :class:`~mlsd.retrieval.cache.CandidateCache` that :meth:`serve` then reads.

        Exact, not an approximation: candidates depend only on the fitted sources and the
        user's retrieval history, and :meth:`apply_events` invalidates a user whose history
        changes (served by the online path after that). Costs 26 bytes per candidate with
        eight sources (``config.candidates`` per user) and ~4 ms of CPU per user, spread over
        ``threads`` (the batches' ANN searches and array work release the GIL).
        ``progress(done, total)`` is called per batch.

        ``cold``: also retrieve, once per two-tower hash bucket, what a user without history
        or attributes gets (exact: their retrieval depends on nothing else), so that new users
        skip retrieval too. None (default): when there are no more buckets than users with a
        history (it then costs at most as much again). Not done when some user id falls in the
        reserved key range of those rows.

        ``directory``: also save the cache there (see :meth:`load_candidate_cache`).
        """
        self._check()
        users = np.sort(self.history_.users())
        n_buckets, _ = self._cold_buckets(users[:0])
        if cold is None:
            cold = n_buckets <= len(users)
        if cold and len(users) and users[0] < _COLD_KEY_BASE + _COLD_KEY_SPAN:
            cold = False  # a user id among the reserved keys: no cold-start rows
        keys, ids = users, users
        if cold:
            buckets, reps = self._cold_representatives()
            keys = np.concatenate([_COLD_KEY_BASE + buckets, users])
            ids = np.concatenate([reps, users])
        n_rank = len(self.retrieval_feature_names_) - 2
        cache = CandidateCache(keys, self.config.candidates, n_rank)
        batches = [(keys[i : i + batch], ids[i : i + batch]) for i in range(0, len(keys), batch)]
        done = 0

        def one(kb_ub: tuple[np.ndarray, np.ndarray]) -> int:
            kb, ub = kb_ub
            cand = self._retrieve(ub, self.config.candidates)
            cache.put(kb, self.catalog_.index_of(cand.items), cand.sources, cand.features)
            return len(ub)

        with (
            self._lock.read(),
            ThreadPoolExecutor(max(threads, 1), thread_name_prefix="mlsd-precompute") as pool,
        ):
            for n in pool.map(one, batches):
                done += n
                if progress is not None:
                    progress(done, len(keys))
        if directory is not None:
            cache.save(directory, self.candidate_cache_key())
        self.candidate_cache_ = cache
        return cache

    def _served_items(
        self,
        slate: Slate,
        explain: bool,
        proba: dict[str, np.ndarray] | None,
        order: np.ndarray,
        known: np.ndarray,
        rfeat: np.ndarray,
        items: np.ndarray,
    ) -> list[ServedItem]:
        ids = self.catalog_.item_ids
        names = self.source_names_
        pos_of: dict[int, int] = {}
        if explain:
            dense_sorted = self.catalog_.index_of(items[order][known])
            pos_of = {int(d): i for i, d in enumerate(dense_sorted.tolist())}
        actions_by_item: dict[int, list[str]] = {}
        if explain:
            for a in slate.actions:
                actions_by_item.setdefault(a.item, []).append(f"{a.rule}: {a.action} ({a.reason})")
        rf = rfeat[order][known] if explain and len(rfeat) == len(items) else None
        out = []
        for j in range(len(slate)):
            d = int(slate.items[j])
            src = int(slate.source[j])
            comp: dict[str, float] = {}
            if explain:
                i = pos_of.get(d)
                if i is not None:
                    if proba is not None:
                        for o, p in proba.items():
                            comp[f"p_{o}"] = float(p[order][known][i])
                            comp[f"weight_{o}"] = float(self.ranker_.weights[o])
                    if rf is not None:
                        for n_, v in zip(
                            self.retrieval_feature_names_, rf[i].tolist(), strict=True
                        ):
                            if v == v:  # not NaN
                                comp[n_] = float(v)
            sc = float(slate.scores[j])
            out.append(
                ServedItem(
                    video_id=int(ids[d]),
                    score=sc if sc == sc else 0.0,
                    source=names[src] if 0 <= src < len(names) else "exploration",
                    exploration=bool(slate.exploration[j]),
                    components=comp,
                    actions=actions_by_item.get(d, []),
                )
            )
        return out

    def _fallback(
        self,
        user_id: int,
        k: int,
        ctx: RequestCtx,
        cold: bool,
        kind: DegradedKind,
        reason: str,
        stage: dict[str, float],
        t_start: float,
    ) -> Served:
        watched = set(self.seen_.recent(np.array([user_id], np.int64))[0][0].tolist())
        picks = [int(v) for v in self.popular_ids_.tolist() if v != PAD and v not in watched][:k]
        stage["total"] = (time.perf_counter() - t_start) * 1000
        return Served(
            user_id=int(user_id),
            items=[ServedItem(v, 1.0 / (i + 1), "popular") for i, v in enumerate(picks)],
            degraded_kind=kind,
            degraded_reason=reason,
            cold_start=cold,
            stage_ms=stage,
            n_candidates=len(picks),
        )

    def similar(self, video_id: int, k: int) -> list[ServedItem]:
        """Nearest videos by two-tower embedding (cosine); KeyError for an unknown video."""
        self._check()
        tt = self._two_tower
        idx = int(tt.catalog_.index(np.array([video_id], np.int64))[0]) if tt else -1
        if tt is None or idx < 0:
            raise KeyError(video_id)
        q = tt.video_embeddings_[idx : idx + 1]
        with self._lock.read():
            ids, scores = tt.index_.search(q, k + 1)
        out = [
            ServedItem(int(i), float(s), "two_tower")
            for i, s in zip(ids[0].tolist(), scores[0].tolist(), strict=True)
            if i != PAD and i != video_id
        ]
        return out[:k]

    def known_videos(self, video_ids: np.ndarray) -> np.ndarray:
        v = np.asarray(video_ids, np.int64)
        pos = np.searchsorted(self.video_ids_, v).clip(max=len(self.video_ids_) - 1)
        return np.asarray(self.video_ids_[pos] == v)

    def apply_events(self, events: pa.Table) -> None:
        """Apply new events (mlsd events schema): online features, the retrieval history
        (valid watches and likes), the seen set and blocked creators. Unknown videos are
        ignored by each part and counted there."""
        self._check()
        if events.num_rows == 0:
            return
        with self._lock.write():
            if self.candidate_cache_ is not None:  # their candidates may change
                self.candidate_cache_.invalidate(_ids(events, "user_id"))
            self.online_.update_from_events(events)
            pos = label_positives(
                events, self.dataset_.videos, self.config.label, include_likes=True
            )
            self._append(self.history_, pos)
            seen = _events_of(events, "play", "like", "rating", "share")
            self._append(self.seen_, events.filter(pa.array(seen)))
            self._add_blocked(events)

    @staticmethod
    def _append(h: History, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        u, v = _ids(table, "user_id"), _ids(table, "video_id")
        t = timestamps_ms(table.column("timestamp"))
        order = np.lexsort((t, u))
        u, v, t = u[order], v[order], t[order]
        starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
        for s, e in zip(starts.tolist(), np.r_[starts[1:], len(u)].tolist(), strict=True):
            h.append(int(u[s]), v[s:e].tolist(), t[s:e].tolist())

    def history_of(self, user_id: int, n: int = 10) -> np.ndarray:
        """The user's most recent positive video ids, newest first."""
        items = self.history_.recent(np.array([user_id], np.int64), n)[0][0]
        return items[items != PAD]

    # -------------------------------------------------------------------- persistence --
    def save(self, directory: str | Path) -> None:
        """Write the model into ``directory``: ``recommender.json`` (config and fitted
        metadata), ``data/*.parquet`` (the training log, from which the cheap sources, the
        history and the online features are rebuilt deterministically on load),
        ``two_tower/`` (torch state dict, FAISS index) and ``ranker/`` (LightGBM text).
        Nothing written can execute code on load."""
        self._check()
        d = Path(directory)
        (d / "data").mkdir(parents=True, exist_ok=True)
        for name, table in self.dataset_.tables().items():
            pq.write_table(table, d / "data" / f"{name}.parquet", compression="zstd")
        if self._two_tower is not None:
            self._two_tower.save(d / "two_tower")
        for src in self.sources_:
            if isinstance(src, ALSSource):
                src.save(d / "als")
            elif isinstance(src, CoVisitationSource):
                src.save(d / "covisit")
        self.ranker_.save(d / "ranker")
        meta = {
            "format": _FORMAT,
            "version": self.version,
            "config": self.get_params(),
            "now_ms": self.now_ms_,
            "feature_names": self.feature_names_,
            "retrieval_feature_names": self.retrieval_feature_names_,
            "source_names": list(self.source_names_),
            "stats": {
                "trained_at": self.stats.trained_at,
                "seconds": self.stats.seconds,
                "counts": self.stats.counts,
            },
        }
        (d / "recommender.json").write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path, *, online_store: OnlineStore | None = None) -> Recommender:
        """Read a model written by :meth:`save`; :class:`DataError` names what is wrong."""
        d = Path(directory)
        try:
            meta = json.loads((d / "recommender.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(
                f"{d / 'recommender.json'}: cannot read the model metadata ({e})"
            ) from e
        if meta.get("format") != _FORMAT:
            raise DataError(
                f"{d / 'recommender.json'}: format {meta.get('format')!r}; expected {_FORMAT}"
            )
        self = cls(meta["config"], online_store=online_store)
        tables = {}
        for name in ("events", "videos", "users"):
            p = d / "data" / f"{name}.parquet"
            try:
                tables[name] = pq.read_table(p)
            except (OSError, pa.ArrowInvalid) as e:
                raise DataError(f"{p}: cannot read ({e})") from e
        ds = Dataset(**tables)
        self.dataset_ = ds
        self.now_ms_ = int(meta["now_ms"])
        pos = label_positives(ds.events, ds.videos, self.config.label, include_likes=True)
        known = _ids(ds.videos, "video_id")
        history = History.from_positives(pos, max_len=None, known_video_ids=known)
        sources = []
        for s in self._make_sources():
            if isinstance(s, TwoTowerSource):
                s = TwoTowerSource.load(d / "two_tower", history=history)
            elif isinstance(s, ALSSource):
                s = ALSSource.load(d / "als", videos=ds.videos, history=history)
            elif isinstance(s, CoVisitationSource) and (d / "covisit").is_dir():
                s.load_state(d / "covisit", videos=ds.videos, history=history)
            else:  # cheap to refit (or saved before their state was)
                s.fit(pos, videos=ds.videos, users=ds.users, now_ms=self.now_ms_, history=history)
            sources.append(s)
        self.sources_ = sources
        self.history_ = history
        self.source_names_ = tuple(s.name for s in sources)
        if list(self.source_names_) != meta["source_names"]:
            raise DataError(
                f"{d}: sources {meta['source_names']} do not match this code's "
                f"{list(self.source_names_)}"
            )
        quotas = self._quotas()
        self.shares_ = np.array([float(quotas.get(n, 0.0)) for n in self.source_names_])
        self.retrieval_feature_names_ = list(meta["retrieval_feature_names"])
        tt = [s for s in sources if isinstance(s, TwoTowerSource)]
        self._two_tower = tt[0] if tt else None
        self.feature_names_ = list(meta["feature_names"])
        try:
            self.ranker_ = GBDTRanker.load(d / "ranker")
        except Exception as e:
            raise DataError(
                f"{d / 'ranker'}: cannot load the ranker ({type(e).__name__}: {e})"
            ) from e
        st = meta.get("stats", {})
        self.stats = _Stats(
            st.get("trained_at", ""), dict(st.get("seconds", {})), dict(st.get("counts", {}))
        )
        self._init_serving(ds)
        self.version = str(meta["version"])
        # Loading leaves its intermediates in reference cycles that only a full collection
        # frees: ~7 GB of the `large` bundle's ~17 GB peak (measured), held until Python's
        # next generation-2 pass otherwise.
        gc.collect()
        self.warm_up()
        return self

    def prepare(self, options: ServingOptions, say: Callable[[str], None]) -> None:
        """Serving-only preparation after a load (the :class:`~mlsd.pipeline.Servable`
        protocol): the ranker compiled to native code (LightGBM kept when that is not
        possible), and with ``options.candidate_cache`` every known user's candidates
        retrieved ahead (see :meth:`precompute_candidates`), reused from ``options.cache_dir``
        when saved there for this model, else computed and saved there. Says each step."""
        self._check()
        if options.compile_ranker:
            t0 = time.perf_counter()
            ok = self.ranker_.compile()
            say(
                f"ranker {'compiled' if ok else 'NOT compiled'} in {time.perf_counter() - t0:.1f} s"
            )
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
        ranker = getattr(self, "ranker_", None)
        return ServingStatus(
            ranker_compiled=bool(getattr(ranker, "compiled_", None)),
            cache_hits=cache.hits if cache is not None else 0,
            cache_misses=cache.misses if cache is not None else 0,
        )

    def warm_up(self) -> None:
        """Serve two throwaway requests (a known and an unknown user) so that lazy
        initialisation (torch kernels, FAISS, LightGBM) is not paid by the first real
        request, which would otherwise overrun the budget and be served degraded."""
        users = self.history_.users()
        ctx = RequestCtx(self.now_ms_)
        for u in ([int(users[0])] if len(users) else []) + [-(2**62)]:
            self.serve(u, 10, ctx, explain=True)
