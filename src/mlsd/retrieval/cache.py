"""Candidate cache: every known user's merged candidates, computed ahead in batch.

Retrieval is most of a request's cost (eight sources searching a large catalog), yet its result
is a function of the fitted sources and the user's retrieval history only: the popularity lists
are fixed when the model is fitted, and the request's time, device and surface enter at the
ranking stage. So the candidates of a user whose history has not changed since they were
computed are still exact, and computing them for all users at once (batched ANN searches and
array operations instead of one request's worth of small ones) costs a fraction of doing it per
request. A user whose history changes (new events) is invalidated and served by the online path
again; a user who is not in the cache (new, or history changed) costs what they did before.

Storage is compact (10 + 2 x sources bytes a candidate, 26 with eight sources): catalog
positions as int32, source codes as int8, per-source ranks as uint16 (0 = not proposed), the
two-tower similarity as float32 (exact) and the number of proposing sources as uint8. Reading a
user back gives the very arrays the online path would compute from the same batch, retrieval
features included.

A cache can be saved to a directory (one ``.npy`` per array and a ``meta.json`` naming the
model it belongs to) and loaded memory-mapped, so that a service restarted on the same model
starts in seconds and its forked workers share the pages. It is keyed, not trusted: ``load``
refuses a directory whose key (model version, mlsd version, layout) differs from the one asked.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from mlsd.errors import CacheMismatch, ConfigError

__all__ = ["FORMAT", "CacheMismatch", "CandidateCache"]

_NO_RANK = 0
#: Bumped whenever what a cache holds or how candidates are retrieved changes meaning.
FORMAT = 1
_ARRAYS = ("users", "items", "sources", "ranks", "similarity", "n_sources")


class CandidateCache:
    """Per-user candidate rows for ``users`` (sorted unique int64), ``width`` candidates each.

    Features are ``n_ranks`` source ranks (1-based, NaN when the source did not propose the
    item), then ``n_scores`` float scores (``scored``: one, the format before several), then
    the count of proposing sources: the layout of a retrieval stage's features
    (:mod:`mlsd.pipeline.retrieval`). ``put`` fills
    rows; ``get`` returns a user's arrays or None (not cached, not filled, or invalidated).
    """

    def __init__(
        self,
        users: np.ndarray,
        width: int,
        n_ranks: int,
        scored: bool = True,
        n_scores: int | None = None,
    ) -> None:
        users = np.asarray(users, np.int64)
        # compared pairwise, not by np.diff: keys span the whole int64 range (cold-start rows
        # sit near -2**63), where a difference overflows
        if users.ndim != 1 or (len(users) > 1 and not (users[1:] > users[:-1]).all()):
            raise ConfigError("CandidateCache users: expected sorted unique int64 ids")
        if not 1 <= width < np.iinfo(np.uint16).max:
            raise ConfigError(f"CandidateCache width={width}: expected 1..65534")
        n = len(users)
        self.users = users
        self.width = int(width)
        self.n_ranks = int(n_ranks)
        self.n_scores = int(scored) if n_scores is None else int(n_scores)
        self.items = np.full((n, width), -1, np.int32)  # catalog positions, -1 = padding
        self.sources = np.full((n, width), -1, np.int8)
        self.ranks = np.zeros((n, width, n_ranks), np.uint16)
        self.similarity = np.full((n, width, self.n_scores), np.nan, np.float32)
        self.n_sources = np.zeros((n, width), np.uint8)
        self.valid = np.zeros(n, bool)
        self.hits = 0
        self.misses = 0

    @property
    def n_features(self) -> int:
        """Features a candidate has: the ranks, the scores, the count."""
        return self.n_ranks + self.n_scores + 1

    @property
    def nbytes(self) -> int:
        return sum(
            a.nbytes
            for a in (self.items, self.sources, self.ranks, self.similarity, self.n_sources)
        )

    def _rows(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = np.asarray(users, np.int64)
        pos = np.searchsorted(self.users, u).clip(max=max(len(self.users) - 1, 0))
        found = (self.users[pos] == u) if len(self.users) else np.zeros(len(u), bool)
        return pos, found

    def put(
        self,
        users: np.ndarray,
        positions: np.ndarray,
        sources: np.ndarray,
        features: np.ndarray,
    ) -> None:
        """Store rows: ``positions`` ``int[n, width]`` catalog positions (-1 padding),
        ``sources`` ``int8[n, width]``, ``features`` ``float32[n, width, n_features]``.
        Users not in the cache are ignored. Raises ConfigError on a shape mismatch."""
        n = len(users)
        want = (n, self.width, self.n_features)
        if positions.shape != want[:2] or sources.shape != want[:2] or features.shape != want:
            raise ConfigError(
                f"CandidateCache.put: shapes {positions.shape}, {sources.shape}, "
                f"{features.shape}; expected {want[:2]}, {want[:2]}, {want}"
            )
        pos, found = self._rows(users)
        rows, sel = pos[found], np.flatnonzero(found)
        r = features[sel, :, : self.n_ranks]
        self.items[rows] = positions[sel]
        self.sources[rows] = sources[sel]
        self.ranks[rows] = np.where(np.isnan(r), _NO_RANK, r).astype(np.uint16)
        self.similarity[rows] = features[sel, :, self.n_ranks : self.n_ranks + self.n_scores]
        self.n_sources[rows] = features[sel, :, -1].astype(np.uint8)
        self.valid[rows] = True

    def get(self, user: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``(positions int64[w], sources int8[w], features float32[w, n_features])`` of a
        cached user, or None (counted as a miss)."""
        pos, found = self._rows(np.array([user], np.int64))
        row = int(pos[0])
        if not found[0] or not self.valid[row]:
            self.misses += 1
            return None
        self.hits += 1
        f = np.empty((self.width, self.n_features), np.float32)
        r = self.ranks[row]
        f[:, : self.n_ranks] = np.where(r == _NO_RANK, np.nan, r)
        f[:, self.n_ranks : self.n_ranks + self.n_scores] = self.similarity[row]
        f[:, -1] = self.n_sources[row]
        return self.items[row].astype(np.int64), self.sources[row].copy(), f

    def save(self, directory: str | Path, key: dict[str, Any]) -> Path:
        """Write the cache (every row must be filled) to ``directory`` with ``key`` (JSON-safe:
        what it was computed for). Atomic: written beside it, then renamed into place; a
        cache already there is replaced. Returns the directory."""
        if not bool(self.valid.all()):
            raise ConfigError("CandidateCache.save: some rows are not filled or invalidated")
        out = Path(directory)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name in _ARRAYS:
            with open(tmp / f"{name}.npy", "wb") as f:
                np.save(f, getattr(self, name))
                f.flush()
                os.fsync(f.fileno())
        meta = {
            "format": FORMAT,
            "key": key,
            "width": self.width,
            "n_ranks": self.n_ranks,
            "n_scores": self.n_scores,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
        return out

    @classmethod
    def load(cls, directory: str | Path, key: dict[str, Any]) -> CandidateCache:
        """The cache saved in ``directory``, memory-mapped read-only (rows can still be
        invalidated), its pages read in once. Raises :class:`CacheMismatch` naming
        the difference when it was saved for another ``key`` or format, or when a file is
        missing or has the wrong shape."""
        d = Path(directory)
        try:
            meta = json.loads((d / "meta.json").read_text())
        except (OSError, ValueError) as e:
            raise CacheMismatch(f"{d / 'meta.json'}: cannot read ({e})") from None
        if meta.get("format") != FORMAT:
            raise CacheMismatch(f"{d}: cache format {meta.get('format')!r}, expected {FORMAT}")
        saved = meta.get("key", {})
        diff = sorted(k for k in set(saved) | set(key) if saved.get(k) != key.get(k))
        if diff:
            what = ", ".join(f"{k} {saved.get(k)!r} (wanted {key.get(k)!r})" for k in diff[:3])
            raise CacheMismatch(f"{d}: saved for another model: {what}")
        try:
            # copy-on-write: rows retrieved again after events go to this process's own pages
            arrays = {n: np.load(d / f"{n}.npy", mmap_mode="c") for n in _ARRAYS}
        except (OSError, ValueError) as e:
            raise CacheMismatch(f"{d}: cannot read the arrays ({e})") from None
        width, n_ranks = int(meta["width"]), int(meta["n_ranks"])
        # caches saved before several scores: a 2-d similarity, present when "scored"
        n_scores = int(meta.get("n_scores", bool(meta.get("scored", True))))
        n = len(arrays["users"])
        want = {
            "items": ((n, width), np.int32),
            "sources": ((n, width), np.int8),
            "ranks": ((n, width, n_ranks), np.uint16),
            "similarity": (
                (n, width, n_scores) if "n_scores" in meta else (n, width if n_scores else 0),
                np.float32,
            ),
            "n_sources": ((n, width), np.uint8),
        }
        for name, (shape, dtype) in want.items():
            a = arrays[name]
            if a.shape != shape or a.dtype != dtype:
                raise CacheMismatch(
                    f"{d / (name + '.npy')}: {a.dtype}{list(a.shape)}, expected "
                    f"{np.dtype(dtype)}{list(shape)}"
                )
        for a in arrays.values():  # read the pages in now, in order: not a fault per request
            flat = a.reshape(-1).view(np.uint8)
            for lo in range(0, len(flat), 1 << 26):
                np.bitwise_or.reduce(flat[lo : lo + (1 << 26) : 4096])
        cache = cls.__new__(cls)
        cache.users = np.array(arrays["users"], np.int64)  # small, searched every request
        cache.width, cache.n_ranks, cache.n_scores = width, n_ranks, n_scores
        for name in _ARRAYS[1:]:  # plain views of the mapping: np.memmap slices cost more
            setattr(cache, name, arrays[name].view(np.ndarray))
        cache.similarity = cache.similarity.reshape(n, width, n_scores)
        cache.valid = np.ones(n, bool)
        cache.hits = cache.misses = 0
        return cache

    def invalidate(self, users: np.ndarray) -> int:
        """Drop ``users``' rows (their history changed); returns how many were valid."""
        pos, found = self._rows(np.asarray(users, np.int64))
        rows = pos[found]
        n = int(self.valid[rows].sum())
        self.valid[rows] = False
        return n
