"""Integer encodings of the two-tower inputs: video and user features, user-id hashing.

Every encoder maps "unknown" (null, unseen category, unknown id) to code 0, so the model
always has a row to look up and unknown inputs never crash a request.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlsd.retrieval._data import Catalog

__all__ = [
    "N_AGE_BUCKETS",
    "N_DURATION_BUCKETS",
    "N_POP_BUCKETS",
    "USER_FEATURES",
    "UserFeatures",
    "age_buckets",
    "creator_codes",
    "duration_buckets",
    "hash_ids",
    "popularity_buckets",
    "trailing_counts",
]

DAY_MS = 86_400_000
N_DURATION_BUCKETS = 12  # 0 unknown, then log2 buckets of duration / 5 s
N_AGE_BUCKETS = 13  # 0 unknown or not yet uploaded, then log2 buckets of age in days
N_POP_BUCKETS = 16  # 1 + floor(log2(1 + recent positives)), clipped
USER_FEATURES: tuple[str, ...] = ("country", "language", "age_bucket", "device")
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # 2**64 / golden ratio (Knuth's multiplicative hash)


def hash_ids(ids: np.ndarray, n_buckets: int) -> np.ndarray:
    """Multiplicative hashing of int64 ids into ``[0, n_buckets)``; stable across processes
    (unlike Python's ``hash``), so a saved model hashes a user to the same row after loading.
    Unseen ids land in some bucket too: the hashing trick (Weinberger et al., ICML 2009)."""
    x = np.asarray(ids, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        h = x * _GOLDEN
    h ^= h >> np.uint64(29)
    return (h % np.uint64(n_buckets)).astype(np.int64)


def duration_buckets(duration_s: np.ndarray) -> np.ndarray:
    """1 + floor(log2(duration / 5 s)) clipped to [1, 11]; 0 when unknown."""
    d = np.asarray(duration_s, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        b = 1 + np.clip(np.floor(np.log2(np.maximum(d, 1e-3) / 5.0)), 0, N_DURATION_BUCKETS - 2)
    return np.where(np.isfinite(d) & (d > 0), b, 0).astype(np.int64)


def age_buckets(upload_ms: np.ndarray, at_ms: np.ndarray | int) -> np.ndarray:
    """Freshness: 1 + floor(log2(1 + age_days)) clipped to [1, 12]; 0 when the upload time is
    unknown or after ``at_ms`` (a video cannot be watched before it exists)."""
    up = np.asarray(upload_ms, dtype=np.int64)
    known = up != np.iinfo(np.int64).min
    age = (np.asarray(at_ms, dtype=np.int64) - np.where(known, up, 0)) / DAY_MS
    b = 1 + np.clip(np.floor(np.log2(1.0 + np.maximum(age, 0.0))), 0, N_AGE_BUCKETS - 2)
    return np.where(known & (age >= 0), b, 0).astype(np.int64)


def popularity_buckets(counts: np.ndarray) -> np.ndarray:
    """1 + floor(log2(1 + count)) clipped to [1, N_POP_BUCKETS - 1] (code 0 is unused)."""
    c = np.maximum(np.asarray(counts, dtype=np.float64), 0.0)
    return (1 + np.clip(np.floor(np.log2(1.0 + c)), 0, N_POP_BUCKETS - 2)).astype(np.int64)


def trailing_counts(
    video: np.ndarray, times_ms: np.ndarray, at_ms: np.ndarray, at_video: np.ndarray, window_ms: int
) -> np.ndarray:
    """For each query ``(at_video[i], at_ms[i])``: how many of the events ``(video, times_ms)``
    fall in ``[at_ms - window_ms, at_ms)``; strictly before ``at_ms``, so a training example
    never counts itself or anything later (causal popularity)."""
    t0 = int(min(times_ms.min(initial=0), (np.asarray(at_ms) - window_ms).min(initial=0)))
    shift = np.int64(1 << 40)  # 2**40 ms is 34 years: (video, time) keys cannot collide

    def key(v: np.ndarray, t: np.ndarray) -> np.ndarray:
        return np.asarray(v, np.int64) * shift + (np.asarray(t, np.int64) - t0)

    keys = np.sort(key(video, times_ms))
    hi = np.searchsorted(keys, key(at_video, at_ms), side="left")
    lo = np.searchsorted(keys, key(at_video, np.asarray(at_ms) - window_ms), side="left")
    return (hi - lo).astype(np.int64)


def creator_codes(catalog: Catalog) -> tuple[np.ndarray, np.ndarray]:
    """Dense creator codes per catalog video (0 unknown) and the creator ids (code - 1)."""
    known = catalog.creator_ids >= 0
    ids = np.unique(catalog.creator_ids[known])
    codes = np.where(known, np.searchsorted(ids, catalog.creator_ids) + 1, 0)
    return codes.astype(np.int64), ids


@dataclass(frozen=True)
class UserFeatures:
    """Categorical user attributes as codes, looked up by user id (unknown users: all 0)."""

    user_ids: np.ndarray  # int64, sorted
    codes: np.ndarray  # int64[n_users, len(USER_FEATURES)]
    vocab: dict[str, list[str]]  # feature -> category names; code = index + 1

    @classmethod
    def from_users(cls, users: pa.Table | None) -> UserFeatures:
        if users is None or "user_id" not in users.column_names or users.num_rows == 0:
            empty = np.zeros((0, len(USER_FEATURES)), np.int64)
            return cls(np.zeros(0, np.int64), empty, {f: [] for f in USER_FEATURES})
        ids = np.asarray(users.column("user_id").to_numpy(zero_copy_only=False), np.int64)
        order = np.argsort(ids, kind="stable")
        codes = np.zeros((len(ids), len(USER_FEATURES)), np.int64)
        vocab: dict[str, list[str]] = {}
        for j, f in enumerate(USER_FEATURES):
            if f not in users.column_names:
                vocab[f] = []
                continue
            col = pc.cast(users.column(f), pa.string())
            names = sorted(x for x in pc.unique(col).to_pylist() if x is not None)
            vocab[f] = names
            idx = pc.index_in(col, pa.array(names, pa.string()))
            codes[:, j] = np.asarray(pc.fill_null(idx, -1).to_numpy(zero_copy_only=False)) + 1
        return cls(ids[order], codes[order], vocab)

    def lookup(self, user_ids: np.ndarray) -> np.ndarray:
        """``int64[n, len(USER_FEATURES)]`` codes for ``user_ids`` (0 rows for unknown users)."""
        u = np.asarray(user_ids, dtype=np.int64)
        out = np.zeros((len(u), len(USER_FEATURES)), np.int64)
        if len(self.user_ids) == 0:
            return out
        pos = np.minimum(np.searchsorted(self.user_ids, u), len(self.user_ids) - 1)
        hit = self.user_ids[pos] == u
        out[hit] = self.codes[pos[hit]]
        return out

    def cardinalities(self) -> list[int]:
        return [len(self.vocab[f]) + 1 for f in USER_FEATURES]
