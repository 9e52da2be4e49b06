"""Per-user state the rules read at request time, and its online updates: what each user has
seen (the "drop watched" filter), the creators they blocked (dislikes), whether they allow
explicit items; plus the rule catalog (item attributes and recent exposure)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from mlsd.data.dataset import Dataset
from mlsd.features.signals import timestamps_ms
from mlsd.pipeline.data import events_of, ids
from mlsd.pipeline.labels import DAY_MS
from mlsd.reranking import Catalog as RuleCatalog
from mlsd.reranking import RuleContext
from mlsd.retrieval import PAD, History

__all__ = ["SEEN_EVENTS", "UserState", "append_events"]

#: event types after which an item counts as seen (never recommended again to that user)
SEEN_EVENTS = ("play", "like", "rating", "share")
EXPOSURE_DAYS = 7  # impressions counted in an item's recent exposure (exploration's input)


def append_events(
    history: History, table: pa.Table, *, new_pairs_only: bool = False, time_order: bool = True
) -> None:
    """Append the (user, video, time) rows of ``table`` to ``history``, in time order (with
    ``time_order`` False: in the table's order, a log's arrival order, so that appending a log
    batch by batch gives the same history however it is cut, even with out-of-order times).

    ``new_pairs_only``: skip the items a user's history already holds, so that a history
    built from a log's first positive per (user, video) pair (``positives(first_only=True)``)
    stays one, whichever batches the log arrives in (``table`` itself must hold each pair
    once)."""
    if table.num_rows == 0:
        return
    u, v = ids(table, "user_id"), ids(table, "video_id")
    t = timestamps_ms(table.column("timestamp"))
    order = np.lexsort((t, u)) if time_order else np.argsort(u, kind="stable")
    u, v, t = u[order], v[order], t[order]
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    for s, e in zip(starts.tolist(), np.r_[starts[1:], len(u)].tolist(), strict=True):
        uv, ut = v[s:e], t[s:e]
        if new_pairs_only:
            have = history.recent(u[s : s + 1])[0][0]
            if len(have):  # a set, not np.isin: a few items each, np.isin's overhead dominates
                held = set(have.tolist())
                fresh = np.fromiter((x not in held for x in uv.tolist()), bool, len(uv))
                uv, ut = uv[fresh], ut[fresh]
        history.append(int(u[s]), uv.tolist(), ut.tolist())


class UserState:
    """Built from a dataset's log as of ``now_ms``; updated by :meth:`apply`.

    ``catalog``: the rule catalog (items sorted by id, with their impressions of the last
    week); ``seen``: every item each user interacted with; ``blocked``: user -> creator ids
    they disliked; ``allows_explicit``: users who allow explicit items.
    """

    def __init__(self, ds: Dataset, now_ms: int) -> None:
        ev = ds.events
        ts = timestamps_ms(ev.column("timestamp"))
        vids = ids(ds.videos, "video_id")
        imp = events_of(ev, "impression") & (ts >= now_ms - EXPOSURE_DAYS * DAY_MS)
        exposure = np.zeros(len(vids))
        if imp.any():
            iv = ids(ev.filter(pa.array(imp)), "video_id")
            pos = np.searchsorted(vids, iv).clip(max=len(vids) - 1)
            ok = vids[pos] == iv
            np.add.at(exposure, pos[ok], 1.0)
        order = np.argsort(vids, kind="stable")
        self.catalog = RuleCatalog.from_videos(ds.videos.take(pa.array(order)), exposure[order])
        seen = events_of(ev, *SEEN_EVENTS)
        self.seen = History.from_positives(
            ev.filter(pa.array(seen)).select(["user_id", "video_id", "timestamp"]),
            max_len=None,
            known_video_ids=self.catalog.item_ids,
        )
        self.blocked: dict[int, set[int]] = {}
        self._add_blocked(ev)
        self.allows_explicit: dict[int, bool] = {}
        if "allows_explicit" in ds.users.column_names:
            au = ids(ds.users, "user_id")
            ae = np.asarray(
                ds.users.column("allows_explicit").fill_null(False).to_numpy(zero_copy_only=False),
                bool,
            )
            self.allows_explicit = dict(zip(au[ae].tolist(), [True] * int(ae.sum()), strict=True))

    def _add_blocked(self, ev: pa.Table) -> None:
        dis = events_of(ev, "dislike")
        if not dis.any():
            return
        d = ev.filter(pa.array(dis))
        du, dv = ids(d, "user_id"), ids(d, "video_id")
        idx = self.catalog.index_of(dv)
        ok = idx >= 0
        cre = self.catalog.creator[idx[ok]]
        for u, c in zip(du[ok].tolist(), cre.tolist(), strict=True):
            if c >= 0:
                self.blocked.setdefault(u, set()).add(int(c))

    def apply(self, events: pa.Table) -> None:
        """New events (a log's next records, in its order): seen items and blocked
        creators."""
        seen = events.filter(pa.array(events_of(events, *SEEN_EVENTS)))
        append_events(self.seen, seen, time_order=False)
        self._add_blocked(events)

    def watched(self, user_id: int) -> np.ndarray:
        """``int64[n]``: the item ids the user has seen, newest first."""
        items = self.seen.recent(np.array([user_id], np.int64))[0][0]
        return items[items != PAD]

    def context(self, user_id: int, k: int, t_ms: int, explain: bool = True) -> RuleContext:
        """The rules' view of one request."""
        watched = self.watched(user_id)
        blocked = self.blocked.get(int(user_id))
        return RuleContext(
            catalog=self.catalog,
            k=k,
            time_ms=int(t_ms),
            user_id=int(user_id),
            allows_explicit=bool(self.allows_explicit.get(int(user_id), False)),
            watched=self.catalog.index_of(watched) if len(watched) else np.zeros(0, np.int64),
            blocked_creators=np.array(sorted(blocked), np.int64)
            if blocked
            else np.zeros(0, np.int64),
            explain=explain,
        )
