"""The online path: incremental feature state, writes to an :class:`OnlineStore`, and the
request-time feature vector serving scores.

:class:`OnlineFeatures` is the stream processor. ``update_from_events(events)`` folds new
events into per-entity state and rewrites the records of the entities they touched, so that
serving sees a user's watch within the same call (seconds, not a batch job later).
``advance_to(t)`` moves the clock: when an hour ends, events that leave a window are
subtracted and the entities concerned rewritten (run it at least once per hour, e.g. from a
timer; the skew check calls it before every read). The clock only ever moves to times it is
given (event timestamps, ``advance_to``), never to the wall clock, and counted signal values
are rounded to a fixed grid (:data:`SIGNAL_GRID`) so that window sums are exact: applying a
time-ordered log gives the same state whatever batches it arrives in.

:meth:`OnlineFeatures.state` and :meth:`~OnlineFeatures.load_state` export and replace the
whole state as plain data (the model's online-state snapshots);
:meth:`~OnlineFeatures.rewrite_store` writes every record again.

The state per stored entity is :class:`~mlsd.features._window_state.EntityState` (hourly window
sums, topic decay sums); its values are turned into features by the same ``Feature.compute``
functions the offline builder uses.

:func:`materialize` builds the state from a dataset and writes every entity's latest values.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from mlsd.config import LabelConfig
from mlsd.data.dataset import Dataset
from mlsd.errors import FeatureStoreError
from mlsd.features._request_plan import RequestPlan
from mlsd.features._window_state import EntityState, KeyIndex
from mlsd.features.definitions import VIDEO_REC
from mlsd.features.memory_store import MemoryStore
from mlsd.features.registry import STORED_ENTITIES, Feature, FeatureRegistry
from mlsd.features.signals import HOUR_MS, Catalog, Signals, Vocab, event_signals, timestamps_ms
from mlsd.features.store import EntityLayout, OnlineStore, Read
from mlsd.memory import release_memory

__all__ = ["SIGNAL_GRID", "OnlineFeatures", "UpdateStats", "materialize"]

#: Counted signal values are rounded to multiples of ``1 / SIGNAL_GRID`` before they enter
#: window sums (see ``update_from_events``); sums stay exact up to 2**29 per window.
SIGNAL_GRID = float(2**24)


@dataclass
class UpdateStats:
    """What one update did: events applied and records written per entity, seconds taken."""

    events: int = 0
    written: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


FLUSH_CHUNK = 500_000  # records computed and written at once by OnlineFeatures.flush


class OnlineFeatures:
    """Incremental feature state writing to ``store``, and the request-time feature vector.

    ``catalog`` gives videos' static attributes and creators; ``videos`` (the catalog table)
    feeds the label rule's durations. Layouts are defined in ``store`` on construction.
    Not thread-safe: one updater per store namespace.
    """

    def __init__(
        self,
        store: OnlineStore,
        catalog: Catalog,
        videos: pa.Table | None,
        *,
        registry: FeatureRegistry = VIDEO_REC,
        label_cfg: LabelConfig | None = None,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.vocab: Vocab = catalog.vocab
        self.videos = videos
        self.registry = registry
        self.label_cfg = label_cfg or LabelConfig()
        self.hour: int | None = None
        n_topics = len(self.vocab.topics)
        self.layouts = {
            e: EntityLayout.from_registry(registry, e, n_topics) for e in STORED_ENTITIES
        }
        self.states = {e: EntityState(e, registry.counters(e), n_topics) for e in STORED_ENTITIES}
        self._plans: dict[tuple[str, ...] | None, RequestPlan] = {}
        self._users = KeyIndex(1)  # id interning for user_creator pair keys
        self._creators = KeyIndex(1)
        for lay in self.layouts.values():
            store.define(lay)
        # every catalog video gets a record (static attributes), events or not
        vs = self.states["video"]
        vs.keys.lookup(catalog.video_id, catalog.video_id[:, None])
        vs.grow()

    # --- the one seam between raw state and values: Feature.compute -----------------------

    def _compute(self, feature: Feature, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Evaluate ``feature`` on ``inputs`` (online path); the offline builder calls the same
        ``Feature.compute``. Tests alter this seam to prove the skew check notices."""
        return feature(inputs)

    # --- updates --------------------------------------------------------------------------

    def _pair_keys(self, user: np.ndarray, creator: np.ndarray, add: bool) -> np.ndarray:
        ur = self._users.lookup(user, user[:, None] if add else None)
        cr = self._creators.lookup(creator, creator[:, None] if add else None)
        return np.where((ur >= 0) & (cr >= 0), (ur << 32) | cr, -1)

    def _rows(self, entity: str, sig: Signals) -> tuple[np.ndarray, np.ndarray]:
        """(event mask, state rows) of events for ``entity``; adds unseen keys."""
        st = self.states[entity]
        if entity == "user":
            ok = np.ones(len(sig), dtype=bool)
            return ok, st.keys.lookup(sig.user, sig.user[:, None])
        if entity == "video":
            ok = np.ones(len(sig), dtype=bool)
            return ok, st.keys.lookup(sig.video, sig.video[:, None])
        ok = sig.creator >= 0
        if entity == "creator":
            c = sig.creator[ok]
            return ok, st.keys.lookup(c, c[:, None])
        u, c = sig.user[ok], sig.creator[ok]
        return ok, st.keys.lookup(self._pair_keys(u, c, add=True), np.stack([u, c], axis=1))

    def update_from_events(self, events: pa.Table, *, write: bool = True) -> UpdateStats:
        """Apply ``events`` (mlsd events schema, any order) and, with ``write``, rewrite the
        records of every entity they touched. Returns what was done.

        Events older than the current hour still count in the windows that cover them (late
        data); events after it advance the clock first (:meth:`advance_to`).
        """
        t0 = time.perf_counter()
        stats = UpdateStats(events=events.num_rows)
        if events.num_rows == 0:
            return stats
        sig = event_signals(events, self.catalog, self.videos, self.label_cfg)
        if not bool(np.all(sig.ts[1:] >= sig.ts[:-1])):
            sig = sig.take(np.argsort(sig.ts, kind="stable"))
        hours = sig.ts // HOUR_MS
        if self.hour is None:
            self.hour = int(hours[0])
        per_entity = {}
        user_rows = np.zeros(0, np.int64)
        for entity, st in self.states.items():
            ok, rows = self._rows(entity, sig)
            st.grow()
            if entity == "user":
                user_rows = rows
            if st.signals:
                vals = np.stack([sig.values[s][ok] for s in st.signals], axis=1)
                # On a grid of 2**-24 (finer than float32 keeps of a share in [0, 1]) window
                # sums are exact in float64, so they do not depend on the order of additions
                # and subtractions, i.e. on how the log was cut into batches.
                vals = np.round(vals * SIGNAL_GRID) / SIGNAL_GRID
                per_entity[entity] = (np.flatnonzero(ok), rows, vals)
        cuts = np.flatnonzero(np.diff(hours)) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(hours)], strict=True):
            h = int(hours[lo])
            if h > self.hour:
                self._roll(h)
            for entity, (where, rows, vals) in per_entity.items():
                a, b = np.searchsorted(where, [lo, hi])
                self.states[entity].add(rows[a:b], vals[a:b], h, self.hour)
        user = self.states["user"]
        if any(f.inputs == ("topic_decay",) for f in self.registry.for_entity("user")):
            sel = (sig.values["valid"] > 0) & (sig.topic >= 0)
            user.add_topics(user_rows[sel], sig.ts[sel], sig.topic[sel].astype(np.int64))
        if write:
            stats.written = self.flush()
        stats.seconds = time.perf_counter() - t0
        return stats

    def _roll(self, hour: int) -> None:
        assert self.hour is not None
        for st in self.states.values():
            st.roll(self.hour, hour)
        self.hour = hour

    def advance_to(self, t_ms: int, *, write: bool = True) -> dict[str, int]:
        """Move the clock to time ``t_ms``: hours that ended leave their windows. Returns the
        records rewritten per entity."""
        h = int(t_ms) // HOUR_MS
        if self.hour is None:
            self.hour = h
        elif h > self.hour:
            self._roll(h)
        return self.flush() if write else {}

    # --- writes ---------------------------------------------------------------------------

    def records(self, entity: str, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(keys, values ``[n, layout.width]``) of state rows ``idx`` of ``entity``."""
        st = self.states[entity]
        lay = self.layouts[entity]
        keys = st.keys.ids[idx]
        raw = st.raw(idx)
        if entity == "video":
            raw.update(self.catalog.attributes(self.catalog.rows(keys[:, 0])))
        cols = []
        for name, width in zip(lay.features, lay.widths, strict=True):
            v = self._compute(self.registry[name], raw)
            cols.append(v.reshape(len(idx), width))
        values = np.concatenate(cols, axis=1) if cols else np.zeros((len(idx), 0))
        return (keys if entity == "user_creator" else keys[:, 0]), values

    def flush(self, *, everything: bool = False) -> dict[str, int]:
        """Write the records of touched entities (``everything``: of every known key)."""
        written = {}
        for entity, st in self.states.items():
            idx = np.arange(len(st.keys)) if everything else st.take_touched()
            if everything:
                st.touched = []
            if len(idx):
                # computed in slices (one entity's raw state at once, 10M user-creator pairs
                # on a large log, costs GBs of temporaries), written in one put (a store's
                # bulk path)
                parts = [self.records(entity, idx[lo : lo + FLUSH_CHUNK])
                         for lo in range(0, len(idx), FLUSH_CHUNK)]  # fmt: skip
                keys = parts[0][0] if len(parts) == 1 else np.concatenate([k for k, _ in parts])
                values = parts[0][1] if len(parts) == 1 else np.concatenate([v for _, v in parts])
                del parts
                self.store.put(entity, keys, values)
            written[entity] = len(idx)
        return written

    # --- snapshots ------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything updates change, as plain data (dicts, ints, numpy arrays; copies): the
        clock, each entity's keys and window state, and the id interning of pair keys.
        Records not yet written (``update_from_events(write=False)``) are not part of it."""
        return {
            "hour": self.hour,
            "states": {e: st.state() for e, st in self.states.items()},
            "users": self._users.state(),
            "creators": self._creators.state(),
        }

    def load_state(self, state: dict[str, Any], *, write: bool = True) -> int:
        """Replace the state by ``state`` (from :meth:`state` of an updater with the same
        registry and catalog). With ``write``, rewrite the store to match: every record of
        the new state, and the layout defaults for keys only the replaced state had (a store
        cannot delete; defaults read the same as no record). Returns the records written.
        Raises FeatureStoreError when ``state`` does not fit."""
        if set(state["states"]) != set(self.states):
            raise FeatureStoreError(f"online state of entities {sorted(state['states'])}; "
                                    f"expected {sorted(self.states)}")  # fmt: skip
        old = {e: st.keys.ids.copy() for e, st in self.states.items()} if write else {}
        try:
            for e, st in self.states.items():
                st.load_state(state["states"][e])
            self._users.load_state(state["users"])
            self._creators.load_state(state["creators"])
        except ValueError as err:
            raise FeatureStoreError(f"online state does not fit this model: {err}") from err
        self.hour = None if state["hour"] is None else int(state["hour"])
        if not write:
            return 0
        n = 0
        for e, ids in old.items():
            if e == "user_creator":
                rows = self.states[e].keys.lookup(self._pair_keys(ids[:, 0], ids[:, 1], False))
            else:
                ids = ids[:, 0]
                rows = self.states[e].keys.lookup(ids)
            gone = ids[rows < 0]
            if len(gone):
                lay = self.layouts[e]
                self.store.put(e, gone, np.tile(lay.defaults, (len(gone), 1)))
                n += len(gone)
        return n + sum(self.rewrite_store().values())

    def rewrite_store(self) -> dict[str, int]:
        """Define every layout and write every known key's record again (a store that lost
        its data: an emptied Redis lost the layouts too). Returns the records per entity."""
        for lay in self.layouts.values():
            self.store.define(lay)
        return self.flush(everything=True)

    # --- serving --------------------------------------------------------------------------

    def request_features(
        self,
        user_id: int,
        video_ids: np.ndarray | Sequence[int],
        t_ms: int,
        *,
        device: str | None = None,
        surface: str | None = None,
        features: Sequence[str] | None = None,
    ) -> np.ndarray:
        """Feature matrix ``[len(video_ids), len(features)]`` (float32) for one request.

        ``features`` default to the registry's matrix features (the training columns, same
        order). Stored values come from the store in one batched read; request-time features
        are computed here with the same functions the offline builder uses. Unknown ids get
        defaults (counted in ``store.stats.unknown_keys``); raises OnlineStoreUnavailable if
        the store is down.
        """
        plan = self._plan(features)
        vids = np.asarray(video_ids, dtype=np.int64)
        n = len(vids)
        creators = self.catalog.take("creator", self.catalog.rows(vids), -1).astype(np.int64)
        known = creators >= 0
        keys = {
            "user": np.array([user_id], dtype=np.int64),
            "video": vids,
            "creator": creators[known],
            "user_creator": np.stack([np.full(int(known.sum()), user_id), creators[known]], 1),
        }
        reads: list[Read] = [(e, keys[e], names) for e, names in plan.by_entity.items()]
        got = dict(zip(plan.by_entity, self.store.get_many(reads), strict=True))
        out = np.empty((n, plan.width), dtype=np.float32)
        x: dict[str, np.ndarray] = {}
        if plan.request:
            x["request.t_ms"] = np.full(n, int(t_ms), dtype=np.int64)
            x["request.device"] = np.full(n, float(self.vocab.code("devices", device)))
            x["request.surface"] = np.full(n, float(self.vocab.code("surfaces", surface)))
        for entity, (val_cols, out_cols, inputs) in plan.entities.items():
            vals = got[entity]
            if entity == "user":
                vals = np.broadcast_to(vals, (n, vals.shape[1]))
            elif entity in ("creator", "user_creator"):
                lay = self.layouts[entity]
                full = np.empty((n, vals.shape[1]), dtype=np.float32)
                full[known] = vals
                full[~known] = lay.defaults[lay.columns(plan.by_entity[entity])]
                vals = full
            if len(out_cols):  # every stored output column of the entity in one gather
                out[:, out_cols] = vals[:, val_cols]
            for name, j, w, vector in inputs:  # what request-time features read
                x[name] = vals[:, j : j + w] if vector else vals[:, j]
        for f, col in plan.request:
            v = self._compute(f, x).astype(np.float32)
            x[f.name] = v
            if col is not None:
                out[:, col] = v
        return out

    def _plan(self, features: Sequence[str] | None) -> RequestPlan:
        """Which store reads and column moves ``request_features`` does for ``features``
        (resolved once per feature list, not per request)."""
        key = None if features is None else tuple(features)
        plan = self._plans.get(key)
        if plan is None:
            plan = RequestPlan.build(self.registry, self.layouts, features)
            self._plans[key] = plan
        return plan


MATERIALIZE_CHUNK = 1_000_000  # events per update in materialize (bounds its memory)


def materialize(
    dataset: Dataset,
    store: OnlineStore | None = None,
    *,
    at_ms: int | None = None,
    registry: FeatureRegistry = VIDEO_REC,
    vocab: Vocab | None = None,
    label_cfg: LabelConfig | None = None,
    token: str | None = None,
) -> OnlineFeatures:
    """Build online state from ``dataset``'s events before ``at_ms`` (default: all) and write
    every entity's latest values (every catalog video, every user, creator and pair seen) into
    ``store`` (default: a new :class:`MemoryStore`). Returns the updater, ready for
    ``update_from_events``. ``token`` (e.g. the model version): written last as the store's
    population marker (``store.mark_populated``), so that a reader can tell a store that holds
    every record from one that lost them (an empty Redis has no marker).
    """
    store = store if store is not None else MemoryStore()
    catalog = Catalog.from_dataset(dataset, vocab)
    online = OnlineFeatures(store, catalog, dataset.videos, registry=registry,
                            label_cfg=label_cfg)  # fmt: skip
    events = dataset.events
    ts = timestamps_ms(events.column("timestamp"))
    if at_ms is not None:
        keep = ts < at_ms
        if not keep.all():  # (a filter copies the table: GBs for a large log)
            events, ts = events.filter(pa.array(keep)), ts[keep]
    elif len(ts):
        at_ms = int(ts.max()) + 1
    # In time order and in slices: the per-event signal arrays of a whole large log cost
    # several GB at once, and the result does not depend on the batching (update_from_events).
    order = None if bool(np.all(ts[1:] >= ts[:-1])) else np.argsort(ts, kind="stable")
    for lo in range(0, events.num_rows, MATERIALIZE_CHUNK):
        hi = min(lo + MATERIALIZE_CHUNK, events.num_rows)
        part = events.slice(lo, hi - lo) if order is None else events.take(order[lo:hi])
        online.update_from_events(part, write=False)
        release_memory()  # the slice's Arrow copies: the pool would keep them
    if at_ms is not None:
        online.advance_to(at_ms, write=False)
    online.flush(everything=True)
    if token is not None:
        store.mark_populated(token)
    return online
