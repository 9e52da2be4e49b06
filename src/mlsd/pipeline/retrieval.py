"""The retrieval stage: candidate sources fitted together on one history, merged under quotas,
and the retrieval features the ranker sees.

Sources are given as unfitted prototypes (scikit-learn style: each fit works on fresh copies).
The stage adds, per merged candidate, each source's 1-based rank of it (NaN: not proposed), the
score of every source that scores lists (:class:`~mlsd.retrieval.protocols.ListScorer`, named
``<source>_score``) and how many sources proposed it. A source that returns its per-user
state with its candidates (:class:`~mlsd.retrieval.protocols.PairScorer`: user embeddings or
factors) hands that state to its scoring, so a request computes it once.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from mlsd.data.dataset import Dataset
from mlsd.errors import ConfigError, MlsdError
from mlsd.memory import release_memory
from mlsd.pipeline.data import ids
from mlsd.retrieval import PAD, History
from mlsd.retrieval.base import row_keys
from mlsd.retrieval.merge import TaggedCandidates, allocate, merge_lists
from mlsd.retrieval.protocols import CandidateSource, ListScorer, PairScorer, UserKeyed

__all__ = ["Candidates", "RetrievalStage"]

NO_HISTORY_USER = -(2**62)  # an id no log uses: stands for "a user without history"
RRF_K = 60.0  # reciprocal-rank constant of the merge (see mlsd.retrieval.merge)


@dataclass
class Candidates:
    """Merged candidates of a batch of users: ``items`` ``int64[n, c]`` (PAD-padded),
    ``sources`` ``int8[n, c]`` (index of the proposing source), ``features``
    ``float32[n, c, r]`` (the stage's ``feature_names``)."""

    users: np.ndarray
    items: np.ndarray
    sources: np.ndarray
    features: np.ndarray


class RetrievalStage:
    """Fit ``sources`` on one shared :class:`~mlsd.retrieval.History`, retrieve merged
    candidates with their features.

    ``quotas``: share of the merged list per source name (None: equal shares); a source
    without a quota gets none of the list but still contributes its rank feature. Learned:
    ``sources_`` (fitted copies, in order), ``history_`` (the request-time positives, appended
    online), ``names_``, ``shares_``, ``feature_names_``.
    """

    def __init__(
        self, sources: Sequence[CandidateSource], quotas: Mapping[str, float] | None = None
    ) -> None:
        if not sources:
            raise ConfigError("a retrieval stage needs at least one candidate source")
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise ConfigError(f"candidate source names {names}: expected unique names")
        self.prototypes = list(sources)
        self.quotas = dict(quotas) if quotas is not None else {n: 1.0 for n in names}
        self._cold_memo: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        self.scored: list[str] | None = None  # sources with a score feature (see restore)

    # ------------------------------------------------------------------------- fitting --
    def fit(
        self,
        ds: Dataset,
        positives: pa.Table,
        *,
        now_ms: int,
        warm: Sequence[CandidateSource] = (),
        seconds: tuple[dict[str, float], str] | None = None,
    ) -> RetrievalStage:
        """Fit fresh copies of the sources on ``positives`` up to ``now_ms``. ``warm``: fitted
        sources (from a previous fit of this stage) that declare ``supports_warm_start``; each
        continues from its state instead of a fresh copy of its prototype. ``seconds``: a
        ``(dict, suffix)`` that receives each source's fit time as ``fit_<name><suffix>``."""
        known = ids(ds.videos, "video_id")
        history = History.from_positives(positives, max_len=None, known_video_ids=known)
        by_name = {s.name: s for s in warm if getattr(s, "supports_warm_start", False)}
        # The previous fit's other sources are replaced: release them before fitting the new
        # ones (on a large log, both generations at once cost GBs). In place, so every
        # reference to the list (``warm`` may be it) lets go of them.
        getattr(self, "sources_", []).clear()
        sources: list[CandidateSource] = []
        for proto in self.prototypes:
            t0 = time.perf_counter()
            s = by_name.get(proto.name)
            if s is not None:
                s.fit(positives, videos=ds.videos, users=ds.users, now_ms=now_ms,  # type: ignore[call-arg]
                      history=history, warm_start=True)  # fmt: skip
            else:
                s = copy.deepcopy(proto)
                s.fit(positives, videos=ds.videos, users=ds.users, now_ms=now_ms, history=history)
            sources.append(s)
            release_memory()  # the source's fitting temporaries (GBs on a large log)
            if seconds is not None:
                seconds[0][f"fit_{proto.name}{seconds[1]}"] = time.perf_counter() - t0
        return self.restore(sources, history)

    def restore(
        self,
        sources: Sequence[CandidateSource],
        history: History,
        scored: Sequence[str] | None = None,
    ) -> RetrievalStage:
        """Serve from fitted ``sources`` (in the prototypes' order) reading ``history``.
        ``scored``: the names of the sources whose scores are features (``<name>_score``);
        None: as decided at this stage's first fit (every
        :class:`~mlsd.retrieval.protocols.ListScorer` source that was not skipped), so a
        refit keeps the features the ranker was trained on."""
        self.sources_ = list(sources)
        self.history_ = history
        self.names_ = tuple(s.name for s in sources)
        if list(self.names_) != [p.name for p in self.prototypes]:
            raise MlsdError(f"sources {list(self.names_)} are not the stage's prototypes")
        self.shares_ = np.array([float(self.quotas.get(n, 0.0)) for n in self.names_])
        if self.shares_.sum() <= 0:
            raise ConfigError(f"quotas {self.quotas!r}: give at least one source a positive share")
        # The source whose candidates for a user without history depend on more than the
        # history (its user-id bucket and attributes): recomputed even for cold requests.
        pair = [s for s in self.sources_ if isinstance(s, PairScorer)]
        keyed = [s for s in pair if isinstance(s, UserKeyed)]
        self.scorer_: PairScorer | None = (keyed or pair or [None])[0]
        # per source: whether it returns per-user state with its candidates (checked once
        # here: a runtime protocol check costs microseconds per request)
        self.stateful_ = [isinstance(s, PairScorer) for s in self.sources_]
        if scored is not None:
            self.scored = list(scored)
        elif self.scored is None:
            self.scored = [
                s.name for s in self.sources_
                if isinstance(s, ListScorer) and not getattr(s, "skipped_", None)
            ]  # fmt: skip
        self.scorers_: list[ListScorer] = [
            s for s in self.sources_ if s.name in self.scored and isinstance(s, ListScorer)
        ]
        self.feature_names_ = [f"rank_{n}" for n in self.names_]
        self.feature_names_ += [f"{s.name}_score" for s in self.scorers_]
        self.feature_names_.append("n_sources")
        self._cold_memo = {}
        return self

    def set_quotas(self, quotas: Mapping[str, float]) -> None:
        """Serve under ``quotas`` (source name -> share) from now on."""
        self.quotas = dict(quotas)
        if hasattr(self, "names_"):
            self.shares_ = np.array([float(self.quotas.get(n, 0.0)) for n in self.names_])

    def source(self, name: str) -> CandidateSource | None:
        """The fitted source called ``name``, if any."""
        return next((s for s in self.sources_ if s.name == name), None)

    # ------------------------------------------------------------------------ retrieval --
    def merge(self, lists: list[tuple[np.ndarray, np.ndarray]], k: int) -> TaggedCandidates:
        """Per-source ``(ids, scores)`` lists, in ``sources_`` order, merged into ``k``
        candidates under the quotas."""
        return merge_lists(lists, allocate(self.shares_, k), k, RRF_K, self.names_)

    def retrieve(self, users: np.ndarray, k: int) -> Candidates:
        """Merged candidates and retrieval features for a batch of ``users``."""
        lists: list[tuple[np.ndarray, np.ndarray]] = []
        # per-user state (embeddings, factors) by source name: computed once per request
        states: dict[str, np.ndarray] = {}
        # A user without history gets the same list from every source but the user-keyed
        # scorer (which may also read the user's id and attributes): computed once, reused.
        cold = (
            self.cold_lists(k) if len(users) == 1 and self.history_.lengths(users)[0] == 0 else None
        )
        for j, s in enumerate(self.sources_):
            if cold is not None and s is not self.scorer_:
                lists.append(cold[j])
            elif self.stateful_[j]:
                got, scores, states[s.name] = s.candidates_with_embeddings(users, k)  # type: ignore[attr-defined]
                lists.append((got, scores))
            else:
                lists.append(s.candidates(users, k))
        merged = self.merge(lists, k)
        return Candidates(
            users,
            merged.item_ids,
            merged.sources,
            self.features(users, merged.item_ids, lists, states),
        )

    def cold_lists(self, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each source's ``k`` candidates for a user without history (the pair scorer's slot
        is a placeholder), memoised per ``k``: only the user's history enters these sources.
        The arrays are shared by every request and read-only."""
        got = self._cold_memo.get(k)
        if got is None:
            nobody = np.array([NO_HISTORY_USER], np.int64)
            if self.history_.lengths(nobody)[0] != 0:
                raise MlsdError(f"user id {NO_HISTORY_USER} has a history; cannot memoise")
            got = [
                (np.zeros((1, 0), np.int64), np.zeros((1, 0), np.float32))
                if s is self.scorer_
                else s.candidates(nobody, k)
                for s in self.sources_
            ]
            for a, b in got:
                a.flags.writeable = False
                b.flags.writeable = False
            self._cold_memo[k] = got
        return got

    # ------------------------------------------------------------------------- features --
    def features(
        self,
        users: np.ndarray,
        items: np.ndarray,
        lists: Sequence[tuple[np.ndarray, np.ndarray]],
        states: Mapping[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """``float32[n, c, r]`` retrieval features of the merged ``items`` (``int64[n, c]``)
        given the per-source ``lists`` they were merged from. ``states``: source name ->
        its per-user state (``float32[n, d]``) when already computed for these users."""
        n, c = items.shape
        n_src = len(lists)
        out = np.full((n, c, len(self.feature_names_)), np.nan, np.float32)
        # One sort for all sources (not one per source): key every proposed (row, id) together
        # with the merged ones, then find each merged pair's proposals by binary search.
        all_rows, all_ids = [np.repeat(np.arange(n), c)], [items.ravel()]
        srcs, ranks = [], []
        for j, (got, _) in enumerate(lists):
            m = got.shape[1]
            flat = got.ravel()
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
        for j, s in enumerate(self.scorers_):
            out[:, :, n_src + j] = s.score_lists(users, items, (states or {}).get(s.name))
        return out

    def features_for_pairs(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """``float32[n, r]`` retrieval features of (user, item) pairs no source proposed:
        ranks NaN, no proposing source, the scorers' scores."""
        f = np.full((len(u), len(self.feature_names_)), np.nan, np.float32)
        f[:, -1] = 0.0
        n_src = len(self.names_)
        for j, s in enumerate(self.scorers_):
            if len(u):
                f[:, n_src + j] = s.score_pairs(u, v)
        return f
