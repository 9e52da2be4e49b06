"""Deterministic assignment of users to experiment arms by hashing ``(user, salt)``.

The same user, salt and split always give the same arm, in any process and on any machine
(no state to share between service workers); a new salt reshuffles everyone, independently of
other experiments' salts. The hash is SplitMix64 (Steele, Lea and Flood, "Fast splittable
pseudorandom number generators", OOPSLA 2014) of the user id XOR a 64-bit digest of the salt,
vectorised over NumPy ``uint64``; its top 53 bits make a uniform number in [0, 1) that picks the
arm by the cumulative traffic split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from mlsd.errors import ConfigError

__all__ = ["assign", "bucket"]

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _salt64(salt: str) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.sha256(salt.encode()).digest()[:8], "little"))


def bucket(user_ids: np.ndarray, salt: str) -> np.ndarray:
    """``float64[n]`` in [0, 1): each user's position under ``salt`` (uniform over users)."""
    x = np.asarray(user_ids).astype(np.int64).view(np.uint64) ^ _salt64(salt)
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def assign(user_ids: np.ndarray, salt: str, split: Sequence[float]) -> np.ndarray:
    """``int8[n]``: each user's arm index under the traffic ``split`` (weights, one per arm,
    normalised). :class:`ConfigError` for fewer than two arms, a negative weight or no weight."""
    w = np.asarray(split, dtype=np.float64)
    if w.ndim != 1 or len(w) < 2 or (w < 0).any() or w.sum() <= 0:
        raise ConfigError(f"traffic split {list(split)}: expected >= 2 non-negative weights")
    edges = np.cumsum(w / w.sum())[:-1]
    return np.searchsorted(edges, bucket(user_ids, salt), side="right").astype(np.int8)
