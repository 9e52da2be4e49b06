"""The candidate cache as a wrapper around the retrieval stage: every known user's merged
candidates (and retrieval features) retrieved ahead, so that requests skip retrieval.

Exact, not an approximation: candidates depend only on the fitted sources and the user's
retrieval history, and a user whose history changes is invalidated (served by the online path
after that). Users without history can be cached too, one row per *cold-start key*: every
source but a :class:`~mlsd.retrieval.base.UserKeyed` one reads only the (empty) history, and
that one reads a hash bucket of the user id and the user's attributes, so users without
history or attributes in one bucket share a row.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from mlsd._version import __version__
from mlsd.errors import CacheMismatch
from mlsd.pipeline.retrieval import RetrievalStage
from mlsd.reranking import Catalog as RuleCatalog
from mlsd.retrieval import PAD
from mlsd.retrieval.cache import CandidateCache
from mlsd.retrieval.protocols import UserKeyed

__all__ = ["CachedRetrieval"]

# Candidate-cache keys of the cold-start rows: base + bucket (see CachedRetrieval.precompute);
# user ids in this range disable those rows.
COLD_KEY_BASE = -(2**63)
COLD_KEY_SPAN = 1 << 40
COLD_PROBE_START = 1 << 52  # where unknown ids that stand for a bucket are looked for


#: late rows kept at most (~10 KB each at 300 candidates)
LATE_ROWS = 20_000


class CachedRetrieval:
    """``retrieval``'s candidates, from a :class:`~mlsd.retrieval.cache.CandidateCache` when
    the user is in it, else retrieved now. ``catalog`` maps item ids to the dense positions
    the cache stores. ``cache`` is None until :meth:`precompute` or :meth:`load`."""

    def __init__(self, retrieval: RetrievalStage, catalog: RuleCatalog) -> None:
        self.retrieval = retrieval
        self.catalog = catalog
        self.cache: CandidateCache | None = None
        keyed = [s for s in retrieval.sources_ if isinstance(s, UserKeyed)]
        self._keyed: UserKeyed | None = keyed[0] if len(keyed) == 1 else None
        self._cold_ok = len(keyed) <= 1  # several keyed sources: no shared cold rows
        #: serve a cached row whose user's history changed and retrieve it again in the
        #: background (see :meth:`invalidate`); False: drop it and retrieve on the request
        self.stale_while_revalidate = False
        self._stale: set[int] = set()  # cached users whose history changed since retrieval
        self._wanted: set[int] = set()  # of those, the ones requested since
        self.stale_hits = 0
        # with stale_while_revalidate, rows of users outside the precomputed cache (new users
        # with a history), kept once retrieved: a bounded, first-in-first-out dict
        self._late: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._late_lock = threading.Lock()

    # --------------------------------------------------------------------------- reads --
    def candidates_of(self, user_id: int, n_cand: int, cold: bool = False) -> tuple[Any, ...]:
        """One user's merged candidates (``int64[n]``, PAD-padded), sources and retrieval
        features: from the cache when the user (``cold``: without history, their cold-start
        row) is in it, else retrieved now."""
        cache = self.cache
        if cache is not None and cache.width == n_cand:
            key = self.cold_key(user_id) if cold else user_id
            hit = cache.get(key) if key is not None else None
            if key is None:
                cache.misses += 1
            if hit is not None and self._stale and key in self._stale:
                self._wanted.add(key)  # served as it was; retrieved again in the background
                self.stale_hits += 1
            if hit is not None:
                pos, sources, rfeat = hit
                items = np.where(pos >= 0, self.catalog.ids_at(np.maximum(pos, 0)), PAD)
                return items, sources, rfeat
        late = not cold and self.stale_while_revalidate and cache is not None
        if late and cache is not None and cache.width == n_cand:
            row = self._late.get(user_id)
            if row is not None:
                if user_id in self._stale:
                    self._wanted.add(user_id)
                    self.stale_hits += 1
                return row
        cand = self.retrieval.retrieve(np.array([user_id], np.int64), n_cand)
        row = (cand.items[0], cand.sources[0], cand.features[0])
        if late:
            self._keep_late(user_id, row)
        return row

    def _keep_late(self, user_id: int, row: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        with self._late_lock:
            self._late[int(user_id)] = row
            while len(self._late) > LATE_ROWS:
                self._late.pop(next(iter(self._late)))

    def store_rows(self, users: np.ndarray, cand: Any) -> None:
        """Store freshly retrieved candidates (a :class:`~mlsd.pipeline.retrieval` result for
        ``users``): in the cache for its users, as late rows for the others."""
        cache = self.cache
        if cache is None:
            return
        cache.put(users, self.catalog.index_of(cand.items), cand.sources, cand.features)
        _, found = cache._rows(users)
        for i in np.flatnonzero(~found).tolist():
            self._keep_late(int(users[i]), (cand.items[i], cand.sources[i], cand.features[i]))

    def invalidate(self, users: np.ndarray) -> None:
        """``users``' history changed: drop their cached rows (the next request retrieves
        online), or with :attr:`stale_while_revalidate` mark them stale: a request still gets
        the row (ranked with fresh features, re-ranked with the fresh seen set) and asks for
        it to be retrieved again (:meth:`take_wanted`, then
        :meth:`~mlsd.pipeline.two_stage.TwoStage.refresh_candidates`), off the request
        path (HTTP's stale-while-revalidate, RFC 5861)."""
        if self.cache is None:
            return
        if not self.stale_while_revalidate:
            self.cache.invalidate(users)
            return
        self._stale.update(int(u) for u in np.asarray(users, np.int64).tolist())

    def take_wanted(self, limit: int) -> np.ndarray:
        """Up to ``limit`` stale users that were requested (no longer stale from now on:
        the caller retrieves and puts their rows before the history changes again)."""
        out: list[int] = []
        while self._wanted and len(out) < limit:
            u = self._wanted.pop()
            self._stale.discard(u)
            out.append(u)
        return np.array(sorted(out), np.int64)

    # ---------------------------------------------------------------------- cold start --
    def buckets(self, users: np.ndarray) -> tuple[int, np.ndarray]:
        """(number of buckets, bucket of each user) of users without history."""
        if self._keyed is None:
            return 1, np.zeros(len(users), np.int64)
        return self._keyed.user_buckets(users)

    def _without_attributes(self, users: np.ndarray) -> np.ndarray:
        if self._keyed is None:
            return np.ones(len(users), bool)
        return ~self._keyed.has_user_attributes(users)

    def cold_key(self, user_id: int) -> int | None:
        """The cache key a user without history is served from (see the module docstring);
        None for a user with attributes (their candidates are their own) or when cold rows
        cannot be shared."""
        u = np.array([user_id], np.int64)
        if not self._cold_ok or not self._without_attributes(u)[0]:
            return None
        return COLD_KEY_BASE + int(self.buckets(u)[1][0])

    def _cold_representatives(self) -> tuple[np.ndarray, np.ndarray]:
        """(buckets, an id per bucket) of users without history or attributes, one per bucket
        found among the ids from ``COLD_PROBE_START`` on (all, in practice)."""
        history = self.retrieval.history_
        n, _ = self.buckets(np.zeros(0, np.int64))
        reps = np.full(n, -1, np.int64)
        chunk = 1 << 20
        for i in range(max(8, 4 * n // chunk + 8)):  # ~n ln n ids cover n buckets
            probe = np.arange(chunk, dtype=np.int64) + COLD_PROBE_START + i * chunk
            probe = probe[(history.lengths(probe) == 0) & self._without_attributes(probe)]
            b = self.buckets(probe)[1]
            ub, first = np.unique(b, return_index=True)
            new = reps[ub] < 0
            reps[ub[new]] = probe[first[new]]
            if bool((reps >= 0).all()):
                break
        have = np.flatnonzero(reps >= 0)
        return have, reps[have]

    # ------------------------------------------------------------------ build and load --
    def key(self, model_version: str, candidates: int) -> dict[str, Any]:
        """What a saved cache must have been computed for to serve this model: its version (a
        fingerprint of its content), the mlsd version and the candidate layout."""
        return {
            "model_version": model_version,
            "mlsd_version": __version__,
            "candidates": int(candidates),
            "sources": list(self.retrieval.names_),
            "retrieval_features": list(self.retrieval.feature_names_),
        }

    def load(self, directory: str | Path, key: dict[str, Any]) -> CandidateCache:
        """Serve from the cache saved in ``directory`` (memory-mapped). Raises
        :class:`~mlsd.errors.CacheMismatch` naming why when it was saved for another model or
        other users."""
        cache = CandidateCache.load(directory, key)
        real = cache.users[cache.users >= COLD_KEY_BASE + COLD_KEY_SPAN]
        if not np.array_equal(real, np.sort(self.retrieval.history_.users())):
            raise CacheMismatch(f"{directory}: saved for other users than this model's")
        self.cache = cache
        return cache

    def precompute(
        self,
        candidates: int,
        *,
        batch: int = 512,
        threads: int = 1,
        progress: Callable[[int, int], None] | None = None,
        cold: bool | None = None,
    ) -> CandidateCache:
        """Retrieve ``candidates`` for every user with a history ahead, in batches spread over
        ``threads`` (the batches' ANN searches and array work release the GIL).
        ``progress(done, total)`` is called per batch.

        ``cold``: also retrieve, once per bucket, what a user without history or attributes
        gets, so that new users skip retrieval too. None (default): when there are no more
        buckets than users with a history (it then costs at most as much again). Not done when
        some user id falls in the reserved key range of those rows.
        """
        users = np.sort(self.retrieval.history_.users())
        n_buckets, _ = self.buckets(users[:0])
        if cold is None:
            cold = n_buckets <= len(users)
        if not self._cold_ok or (len(users) and users[0] < COLD_KEY_BASE + COLD_KEY_SPAN):
            cold = False  # a user id among the reserved keys: no cold-start rows
        keys, who = users, users
        if cold:
            buckets, reps = self._cold_representatives()
            keys = np.concatenate([COLD_KEY_BASE + buckets, users])
            who = np.concatenate([reps, users])
        n_rank = len(self.retrieval.names_)
        n_scores = len(self.retrieval.scorers_)
        cache = CandidateCache(keys, candidates, n_rank, n_scores=n_scores)
        batches = [(keys[i : i + batch], who[i : i + batch]) for i in range(0, len(keys), batch)]
        done = 0

        def one(kb_ub: tuple[np.ndarray, np.ndarray]) -> int:
            kb, ub = kb_ub
            cand = self.retrieval.retrieve(ub, candidates)
            cache.put(kb, self.catalog.index_of(cand.items), cand.sources, cand.features)
            return len(ub)

        with ThreadPoolExecutor(max(threads, 1), thread_name_prefix="mlsd-precompute") as pool:
            for n in pool.map(one, batches):
                done += n
                if progress is not None:
                    progress(done, len(keys))
        self.cache = cache
        return cache
