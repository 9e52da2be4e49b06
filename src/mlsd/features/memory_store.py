"""The embedded :class:`~mlsd.features.store.OnlineStore`: :class:`MemoryStore`, no server."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlsd.features.store import (
    EntityLayout,
    KeyArray,
    LayoutsMixin,
    Read,
    StoreStats,
    normalize_keys,
)

__all__ = ["MemoryStore"]

# Single-integer keys below this get a direct-address row table (int32, at most 32 MiB per
# entity) besides the dict, so that a read of 500 keys is one vectorised gather.
_DENSE_MAX_KEY = 1 << 23
# Pairs written since the sorted pair index was built are looked up in a dict overlay; past
# this many they are merged into the index (see MemoryStore._note_new_pairs).
_PAIR_OVERLAY_MAX = 4096


def _packable(pairs: np.ndarray) -> np.ndarray:
    """Per ``[n, 2]`` (user, creator) key: both ids in [0, 2**31), so that the pair packs into
    one int64, ``user << 32 | creator`` (cheaper to build, hash and sort than a tuple)."""
    return np.asarray(((pairs >= 0) & (pairs < (1 << 31))).all(axis=1), dtype=bool)


class MemoryStore(LayoutsMixin):
    """In-process store: a dict from key to row and one float32 matrix per entity.

    Entities keyed by one small non-negative integer (ids below 2**23) also keep a dense
    key -> row array, so ``get`` of 1 + 500 keys is a few vectorised gathers. (user, creator)
    pairs keep a sorted array of packed keys (``user << 32 | creator``) besides the dict, built
    at the first (bulk) write, else at the first read, and extended by a small overlay of the
    pairs written since (merged into it by the write that fills it), so that a request's 500
    pairs of one user are two binary searches and a gather, not 500 dict lookups. Not shared
    between processes; not thread-safe for concurrent writers.
    """

    def __init__(self) -> None:
        self.stats = StoreStats()
        self._layouts: dict[str, EntityLayout] = {}
        self._rows: dict[str, dict[object, int]] = {}
        self._dense: dict[str, np.ndarray | None] = {}
        self._values: dict[str, np.ndarray] = {}
        self._n: dict[str, int] = {}
        # user_creator: sorted packed keys and their rows (None: not built), and the pairs
        # written since it was built (packed key -> row), with their users
        self._pair_index: tuple[np.ndarray, np.ndarray] | None = None
        self._pair_new: dict[int, int] = {}
        self._pair_new_users: set[int] = set()
        self._populated: str | None = None

    def mark_populated(self, token: str) -> None:
        """Record that every record has been written, by whom (``token``: a model version)."""
        self._populated = str(token)

    def populated(self) -> str | None:
        """The token of the last :meth:`mark_populated`, None before one."""
        return self._populated

    def define(self, layout: EntityLayout) -> None:
        old = self._layouts.get(layout.entity)
        if old is not None and old.fingerprint == layout.fingerprint:
            return
        self._layouts[layout.entity] = layout
        self._rows[layout.entity] = {}
        self._dense[layout.entity] = (
            None if layout.entity == "user_creator" else np.full(0, -1, np.int32)
        )
        self._values[layout.entity] = np.zeros((1024, layout.width), dtype=np.float32)
        self._n[layout.entity] = 0
        if layout.entity == "user_creator":
            self._forget_pair_index()

    def _forget_pair_index(self) -> None:
        self._pair_index = None
        self._pair_new = {}
        self._pair_new_users = set()

    def _note_new_pairs(self, keys: list[object]) -> None:
        """Pairs just added to the dict: into the overlay while the sorted index exists; once
        the overlay outgrows :data:`_PAIR_OVERLAY_MAX` it is merged into the index here, by the
        writer. (Dropping the index instead left its rebuild, a walk of the whole dict, to the
        next read: a request stalled for over 100 ms on ``small``.)"""
        if self._pair_index is None:
            return
        rows = self._rows["user_creator"]
        for key in keys:
            if isinstance(key, int):
                self._pair_new[key] = rows[key]
                self._pair_new_users.add(key >> 32)
        if len(self._pair_new) > _PAIR_OVERLAY_MAX:
            self._merge_pair_overlay()

    def _merge_pair_overlay(self) -> None:
        """Insert the overlay's keys into the sorted index (a linear copy: the overlay's keys
        are new, so none is in the index yet) and empty the overlay."""
        assert self._pair_index is not None
        sk, sr = self._pair_index
        nk = np.fromiter(self._pair_new.keys(), np.int64, len(self._pair_new))
        nr = np.fromiter(self._pair_new.values(), np.int64, len(self._pair_new))
        order = np.argsort(nk)
        nk, nr = nk[order], nr[order]
        at = np.searchsorted(sk, nk)
        self._pair_index = (np.insert(sk, at, nk), np.insert(sr, at, nr))
        self._pair_new, self._pair_new_users = {}, set()

    def _index_pairs(self, keys: np.ndarray, idx: np.ndarray) -> None:
        """Build the sorted pair index from the first (bulk) write, vectorised: built at the
        first read instead, it costs seconds on millions of pairs (a dict walk), and in a
        pre-forked service every worker would pay that on its first request."""
        if len(keys) == 0 or not bool(_packable(keys).all()):
            return
        packed, first = np.unique((keys[:, 0] << 32) | keys[:, 1], return_index=True)
        self._pair_index = (packed, idx[first])
        self._pair_new, self._pair_new_users = {}, set()

    def _pair_rows(self, keys: np.ndarray) -> np.ndarray:
        """Rows of ``[n, 2]`` (user, creator) keys, -1 when absent (see the class docstring)."""
        rows = self._rows["user_creator"]
        if not bool(_packable(keys).all()):  # pairs outside the packed range live in the dict only
            return np.fromiter(
                (rows.get(k, -1) for k in self._hashable("user_creator", keys)),
                dtype=np.int64,
                count=len(keys),
            )
        if self._pair_index is None:
            packed_all = np.fromiter((k for k in rows if isinstance(k, int)), np.int64, count=-1)
            row_all = np.fromiter((rows[k] for k in packed_all.tolist()), np.int64, len(packed_all))
            order = np.argsort(packed_all, kind="stable")
            self._pair_index = (packed_all[order], row_all[order])
            self._pair_new, self._pair_new_users = {}, set()
        sk, sr = self._pair_index
        packed = (keys[:, 0] << 32) | keys[:, 1]
        if len(keys) and bool((keys[:, 0] == keys[0, 0]).all()):
            # one user (a request): its pairs are one contiguous slice of the sorted keys
            u = int(keys[0, 0])
            a, b = np.searchsorted(sk, [u << 32, (u + 1) << 32])
            sk, sr = sk[a:b], sr[a:b]
        idx = np.full(len(keys), -1, np.int64)
        if len(sk):
            pos = np.minimum(np.searchsorted(sk, packed), len(sk) - 1)
            found = sk[pos] == packed
            idx[found] = sr[pos[found]]
        if self._pair_new:
            users = np.unique(keys[:, 0]).tolist()
            if any(u in self._pair_new_users for u in users):
                new = self._pair_new
                for i in np.flatnonzero(idx < 0).tolist():
                    idx[i] = new.get(int(packed[i]), -1)
        return idx

    @staticmethod
    def _hashable(entity: str, keys: np.ndarray) -> list[object]:
        if entity != "user_creator":
            return keys.tolist()
        # a packable pair is one int, other pairs stay tuples. Decided per key, so a key always
        # maps the same way.
        inside = _packable(keys)
        out: list[object] = ((keys[:, 0] << 32) | np.where(inside, keys[:, 1], 0)).tolist()
        if not bool(inside.all()):
            for i in np.flatnonzero(~inside).tolist():
                out[i] = tuple(keys[i].tolist())
        return out

    def put(self, entity: str, keys: KeyArray, values: np.ndarray) -> None:
        lay = self.layout(entity)
        k = normalize_keys(entity, keys)
        v = self._check_values(lay, len(k), values)
        rows = self._rows[entity]
        n = self._n[entity]
        hk = self._hashable(entity, k)
        first_write = not rows
        if rows:
            idx = np.fromiter((rows.get(key, -1) for key in hk), np.int64, count=len(hk))
            miss = np.flatnonzero(idx < 0)
        else:  # the first write (materialize): every key is new, no lookups needed
            idx = np.full(len(hk), -1, np.int64)
            miss = np.arange(len(hk))
        if len(miss):
            new_keys = hk if len(miss) == len(hk) else [hk[i] for i in miss.tolist()]
            fresh = dict.fromkeys(new_keys)  # distinct new keys in first-seen order
            rows.update(zip(fresh, range(n, n + len(fresh)), strict=True))
            if entity == "user_creator":
                self._note_new_pairs(list(fresh))
            if len(fresh) == len(new_keys):  # no repeats: rows are handed out in order
                idx[miss] = np.arange(n, n + len(fresh))
            else:
                idx[miss] = np.fromiter((rows[key] for key in new_keys), np.int64, len(new_keys))
            n += len(fresh)
        self._update_dense(entity, k, idx)
        if first_write and entity == "user_creator":
            self._index_pairs(k, idx)
        buf = self._values[entity]
        if n > len(buf):
            grown = np.zeros((max(n, 2 * len(buf)), lay.width), dtype=np.float32)
            grown[: len(buf)] = buf
            buf = self._values[entity] = grown
        buf[idx] = v
        self._n[entity] = n
        self.stats.writes += len(k)

    def _update_dense(self, entity: str, k: np.ndarray, idx: np.ndarray) -> None:
        d = self._dense.get(entity)
        if d is None or len(k) == 0:
            return
        if int(k.min()) < 0 or int(k.max()) >= _DENSE_MAX_KEY:
            self._dense[entity] = None  # ids outside the dense range: the dict alone serves
            return
        top = int(k.max()) + 1
        if top > len(d):
            grown = np.full(max(top, 2 * len(d)), -1, np.int32)
            grown[: len(d)] = d
            d = self._dense[entity] = grown
        d[k] = idx

    def get(self, entity: str, keys: KeyArray, features: Sequence[str]) -> np.ndarray:
        lay = self.layout(entity)
        cols = self._columns(lay, features)
        k = normalize_keys(entity, keys)
        d = self._dense.get(entity)
        if d is not None:
            inside = (k >= 0) & (k < len(d))
            idx = np.full(len(k), -1, np.int64)
            idx[inside] = d[k[inside]]
        elif entity == "user_creator":
            idx = self._pair_rows(k)
        else:
            rows = self._rows[entity]
            idx = np.fromiter(
                (rows.get(key, -1) for key in self._hashable(entity, k)),
                dtype=np.int64,
                count=len(k),
            )
        missing = idx < 0
        # rows, then columns: two contiguous takes, ~4x faster than one 2-D fancy index
        out = self._values[entity].take(np.where(missing, 0, idx), axis=0).take(cols, axis=1)
        n_missing = int(missing.sum())
        if n_missing:
            out[missing] = lay.defaults[cols]
        self.stats.reads += 1
        self.stats.keys_read += len(k)
        self.stats.unknown_keys += n_missing
        return out

    def get_many(self, reads: Sequence[Read]) -> list[np.ndarray]:
        return [self.get(e, k, f) for e, k, f in reads]

    def __len__(self) -> int:
        return sum(self._n.values())

    def close(self) -> None:
        return None
