"""Per-user recent positive watches, the state retrieval reads at request time.

A :class:`History` maps each user id to their valid watches in time order, the most recent
``max_len`` kept. It is built once from training positives and then updated as events arrive
(``append``), which is what the HTTP service does: sources never read the dataset at request
time, so a watch appended here changes the user's very next candidates.

Video ids outside the known catalog (when one is given) are ignored and counted in
``n_unknown``: bad input never crashes a request and is never dropped silently.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlsd.errors import ConfigError, DataError
from mlsd.retrieval.base import PAD, as_user_ids

__all__ = ["History", "table_ms"]


def table_ms(table: pa.Table, column: str = "timestamp") -> np.ndarray:
    """A timestamp column as int64 epoch milliseconds."""
    col = pc.cast(table.column(column), pa.timestamp("ms", tz="UTC"), safe=False)
    return np.asarray(pc.cast(col, pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def _ids(table: pa.Table, column: str) -> np.ndarray:
    return np.asarray(table.column(column).to_numpy(zero_copy_only=False), dtype=np.int64)


class History:
    """Recent valid watches per user, oldest first internally, served most recent first.

    ``max_len`` caps what is kept per user (None keeps everything, e.g. for evaluation, where
    every past watch must be excluded). ``known_video_ids`` (optional) is the catalog:
    ids outside it are ignored on ``append``/``from_positives`` and counted in ``n_unknown``.
    Times are int64 epoch milliseconds.
    """

    def __init__(
        self, max_len: int | None = 200, known_video_ids: Iterable[int] | None = None
    ) -> None:
        if max_len is not None and max_len < 1:
            raise ConfigError(f"max_len={max_len!r}: expected a positive integer or None")
        self.max_len = max_len
        self._known = (
            None
            if known_video_ids is None
            else np.unique(np.asarray(list(known_video_ids), dtype=np.int64))
        )
        self._items: dict[int, np.ndarray] = {}
        self._times: dict[int, np.ndarray] = {}
        self.n_unknown = 0

    @classmethod
    def from_positives(
        cls,
        positives: pa.Table,
        *,
        max_len: int | None = 200,
        known_video_ids: Iterable[int] | None = None,
    ) -> History:
        """Build from a positives table (``user_id``, ``video_id``, ``timestamp``)."""
        for c in ("user_id", "video_id", "timestamp"):
            if c not in positives.column_names:
                raise DataError(
                    f"positives: missing column '{c}' (columns present: "
                    f"{', '.join(positives.column_names)}); expected user_id, video_id, timestamp"
                )
        h = cls(max_len=max_len, known_video_ids=known_video_ids)
        u, v, t = _ids(positives, "user_id"), _ids(positives, "video_id"), table_ms(positives)
        keep = h._known_mask(v)
        h.n_unknown += int((~keep).sum())
        u, v, t = u[keep], v[keep], t[keep]
        order = np.lexsort((t, u))  # by user, then time (stable: ties keep input order)
        u, v, t = u[order], v[order], t[order]
        starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]]) if len(u) else np.zeros(0, int)
        ends = np.r_[starts[1:], len(u)]
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            lo = s if max_len is None else max(s, e - max_len)
            uid = int(u[s])
            h._items[uid] = v[lo:e].copy()
            h._times[uid] = t[lo:e].copy()
        return h

    def _known_mask(self, video_ids: np.ndarray) -> np.ndarray:
        if self._known is None:
            return np.ones(len(video_ids), dtype=bool)
        pos = np.searchsorted(self._known, video_ids)
        pos = np.minimum(pos, max(len(self._known) - 1, 0))
        return (len(self._known) > 0) & (self._known[pos] == video_ids)

    def add_videos(self, video_ids: Iterable[int]) -> None:
        """Extend the known catalog (new uploads); no-op when no catalog was given."""
        if self._known is not None:
            new = np.asarray(list(video_ids), dtype=np.int64)
            self._known = np.union1d(self._known, new)

    def append(self, user_id: int, video_ids: Iterable[int], times_ms: Iterable[int]) -> int:
        """Add valid watches of one user; returns how many unknown video ids were ignored.

        Watches may arrive out of order: the user's list is kept sorted by time (stable, so
        equal times keep arrival order) and cut to the most recent ``max_len``.
        """
        v = np.asarray(list(video_ids), dtype=np.int64).reshape(-1)
        t = np.asarray(list(times_ms), dtype=np.int64).reshape(-1)
        if len(v) != len(t):
            raise ConfigError(
                f"append: {len(v)} video ids but {len(t)} times; expected one time per video"
            )
        keep = self._known_mask(v)
        n_bad = int((~keep).sum())
        self.n_unknown += n_bad
        v, t = v[keep], t[keep]
        if len(v) == 0:
            return n_bad
        uid = int(user_id)
        old_v = self._items.get(uid, np.zeros(0, np.int64))
        old_t = self._times.get(uid, np.zeros(0, np.int64))
        all_v, all_t = np.concatenate([old_v, v]), np.concatenate([old_t, t])
        order = np.argsort(all_t, kind="stable")
        if self.max_len is not None:
            order = order[-self.max_len :]
        self._items[uid], self._times[uid] = all_v[order], all_t[order]
        return n_bad

    def recent(self, user_ids: np.ndarray, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` most recent watches of each user, most recent first.

        Returns (``int64[len(user_ids), n]`` video ids, ``int64[..., n]`` times), padded with
        :data:`~mlsd.retrieval.base.PAD` (times 0). Unknown users get an all-padding row.
        ``n=None`` means the longest history among ``user_ids``.
        """
        users = as_user_ids(user_ids)
        rows = [self._items.get(int(u)) for u in users]
        if n is None:
            n = max((len(r) for r in rows if r is not None), default=0)
        items = np.full((len(users), n), PAD, dtype=np.int64)
        times = np.zeros((len(users), n), dtype=np.int64)
        if n == 0:
            return items, times
        for i, u in enumerate(users.tolist()):
            r = rows[i]
            if r is None or len(r) == 0:
                continue
            m = min(n, len(r))
            items[i, :m] = r[::-1][:m]
            times[i, :m] = self._times[u][::-1][:m]
        return items, times

    def lengths(self, user_ids: np.ndarray) -> np.ndarray:
        """Number of stored watches per user (0 for unknown users)."""
        users = as_user_ids(user_ids)
        return np.array([len(self._items.get(int(u), ())) for u in users], dtype=np.int64)

    def users(self) -> np.ndarray:
        """Every user id with at least one stored watch, sorted."""
        return np.array(sorted(self._items), dtype=np.int64)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, user_id: object) -> bool:
        return isinstance(user_id, int | np.integer) and int(user_id) in self._items
