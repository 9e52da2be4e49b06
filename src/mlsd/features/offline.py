"""Offline: point-in-time correct training matrices.

:func:`build_training_set` takes labelled ``(user_id, video_id, timestamp)`` rows and returns
them with one float32 column per feature, where every value uses only events strictly before
the row's timestamp (the as-of join of :mod:`mlsd.features._asof`). Feature values come from
the registry's ``compute`` functions, the same ones the online path calls.

Stored features are computed once per distinct (entity, time) probe (a slate of 10 videos shown
to a user shares one user probe); request-time features are evaluated in chunks of rows so that
memory stays bounded at tens of millions of rows.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlsd.config import LabelConfig
from mlsd.data.dataset import Dataset
from mlsd.errors import DataError, FeatureStoreError
from mlsd.features._asof import AsOf, factorized_keys, nonnegative_keys
from mlsd.features.definitions import VIDEO_REC
from mlsd.features.registry import (
    STORED_ENTITIES,
    WINDOWS,
    Feature,
    FeatureRegistry,
    window_inputs,
)
from mlsd.features.signals import (
    Catalog,
    Signals,
    Vocab,
    decay_weight,
    event_signals,
    timestamps_ms,
)

__all__ = ["build_training_set", "feature_matrix"]

_CHUNK = 1 << 20  # rows per chunk of request-time features
#: Stored-feature tasks, longest first at ``large`` (benchmarks/features.py), so that two
#: workers finish close together.
_TASK_ORDER = {"video": 0, "user": 1, "user_creator": 2, "creator": 3}
#: above this many events the entity kinds run one at a time by default: each running kind
#: holds its own sorted index of the events (several int64 per event)
PARALLEL_MAX_EVENTS = 10_000_000


@dataclass
class _Group:
    """Stored-feature values of one entity kind: per unique probe slot (float32, as the online
    store holds them), and the slot of every row."""

    slot: np.ndarray
    values: dict[str, np.ndarray] = field(default_factory=dict)


def _entity_keys(
    entity: str, sig: Signals, rows: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(event keys, event ok, probe keys, probe ok) of a stored entity kind; keys >= 0."""
    ones_e = np.ones(len(sig), dtype=bool)
    ones_p = np.ones(len(rows["t"]), dtype=bool)
    if entity in ("user", "video"):
        ek, pk, _ = nonnegative_keys(sig.user if entity == "user" else sig.video, ones_e,
                                     rows[entity], ones_p)  # fmt: skip
        return ek, ones_e, pk, ones_p
    cok_e, cok_p = sig.creator >= 0, rows["creator"] >= 0
    ce, cp, cbits = nonnegative_keys(sig.creator, cok_e, rows["creator"], cok_p)
    if entity == "creator":
        return ce, cok_e, cp, cok_p
    # user_creator: one int64 per (user, creator) pair
    ue, up, ubits = nonnegative_keys(sig.user, ones_e, rows["user"], ones_p)
    if ubits + cbits <= 62:
        return (ue << cbits) | ce, cok_e, (up << cbits) | cp, cok_p
    # ids too wide to pack: hash both to dense codes first
    ue, up, uok = factorized_keys(sig.user, ones_e, rows["user"], ones_p)
    ce, cp, cok = factorized_keys(sig.creator, cok_e, rows["creator"], cok_p)
    width = int(ce.max(initial=0)) + 1
    return ue * width + ce, cok_e, up * width + cp, uok & cok


def _stored_group(
    entity: str,
    feats: list[Feature],
    sig: Signals,
    rows: dict[str, np.ndarray],
    catalog: Catalog,
    registry: FeatureRegistry,
) -> _Group:
    n = len(rows["t"])
    if entity == "video" and not any(f.source == "events" for f in feats):
        # catalog attributes only: one slot per row, no as-of needed
        slot = np.arange(n)
        raw = catalog.attributes(catalog.rows(rows["video"]))
        return _Group(slot, {f.name: f(raw).astype(np.float32) for f in feats})
    ek, eok, pk, pok = _entity_keys(entity, sig, rows)
    asof = AsOf(ek, eok, sig.ts, pk, pok, rows["t"])
    group = _Group(asof.probe_slot)
    counters = registry.counters(entity)
    by_window: dict[str | None, list[Feature]] = {}
    for f in feats:
        windows = {w for _, w in window_inputs(f.inputs)}
        if len(windows) > 1:
            raise FeatureStoreError(f"feature {f.name!r} reads several windows {windows}")
        by_window.setdefault(next(iter(windows)) if windows else None, []).append(f)
    # Window sums signal by signal: a signal's prefix sums (one float64 per event of the log)
    # are dropped once its windows are read, so only per-row sums outlive it.
    sums: dict[str, np.ndarray] = {}
    for s in dict.fromkeys(s for w in by_window if w is not None for s in counters.get(w, ())):
        p = asof.prefix(sig.values[s])
        p_t = asof.at_t(p)
        for w in by_window:
            if w is not None and s in counters.get(w, ()):
                sums[f"{s}_{w}"] = asof.window_sum(p, p_t, WINDOWS[w])
        del p, p_t
    for w, fs in by_window.items():
        raw = {}
        if w is not None:
            raw = {f"{s}_{w}": sums.pop(f"{s}_{w}") for s in counters.get(w, ())}
        else:
            raw.update(_unwindowed_raw(entity, fs, asof, sig, rows, catalog))
        for f in fs:
            group.values[f.name] = f(raw).astype(np.float32)
        del raw
    return group


def _unwindowed_raw(
    entity: str, feats: list[Feature], asof: AsOf, sig: Signals, rows: dict[str, np.ndarray],
    catalog: Catalog,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Raw inputs that are neither window counters nor catalog attributes: topic decay sums."""
    need = {i for f in feats for i in f.inputs}
    raw: dict[str, np.ndarray] = {}
    if "topic_decay" in need:
        raw["topic_decay"] = _topic_decay(asof, sig, len(catalog.vocab.topics))
    return raw


def _topic_decay(asof: AsOf, sig: Signals, n_topics: int) -> np.ndarray:
    """Per user probe slot: decayed valid-watch weight per topic, events strictly before t.

    The anchor of :func:`~mlsd.features.signals.decay_weight` is the user's first valid watch
    of a known topic (events are sorted by user, then time, so the first of each run).
    """
    sel = (sig.values["valid"] > 0) & (sig.topic >= 0)
    sub, code = asof.subset(sel)
    if n_topics == 0 or len(sub) == 0:
        return np.zeros((asof.n_unique + 1, n_topics))
    start = np.ones(len(code), dtype=bool)
    start[1:] = code[1:] != code[:-1]
    anchor = sig.ts[sub][start][np.cumsum(start) - 1]
    vals = np.zeros((len(sub), n_topics), dtype=np.float64)
    vals[np.arange(len(sub)), sig.topic[sub]] = decay_weight(sig.ts[sub], anchor)
    return asof.segmented_state(sel, vals)


def _rows_arrays(rows: pa.Table, catalog: Catalog, vocab: Vocab) -> dict[str, np.ndarray]:
    for c in ("user_id", "video_id", "timestamp"):
        if c not in rows.column_names:
            have = ", ".join(rows.column_names) or "none"
            raise DataError(f"training rows: missing column {c!r} (columns present: {have}); "
                            "expected user_id, video_id, timestamp")  # fmt: skip
        if rows.column(c).null_count:
            raise DataError(f"training rows: column {c!r} has {rows.column(c).null_count:,} "
                            "null values; expected a value in every row")  # fmt: skip

    def ids(c: str) -> np.ndarray:
        return np.asarray(rows.column(c).to_numpy(zero_copy_only=False), dtype=np.int64)

    n = rows.num_rows
    video = ids("video_id")
    out = {"user": ids("user_id"), "video": video, "t": timestamps_ms(rows.column("timestamp"))}
    out["creator"] = catalog.take("creator", catalog.rows(video), -1).astype(np.int64)
    for c, kind in (("device", "devices"), ("surface", "surfaces")):
        out[c] = (
            vocab.codes(kind, rows.column(c)).astype(np.float64)
            if c in rows.column_names
            else np.full(n, -1.0)
        )
    return out


def build_training_set(
    dataset: Dataset,
    rows: pa.Table,
    *,
    features: Sequence[str] | None = None,
    registry: FeatureRegistry = VIDEO_REC,
    vocab: Vocab | None = None,
    label_cfg: LabelConfig | None = None,
    timings: dict[str, float] | None = None,
    workers: int | None = None,
) -> pa.Table:
    """``rows`` with one float32 column per feature, point-in-time correct.

    ``rows`` needs ``user_id``, ``video_id`` (int) and ``timestamp`` (no nulls); optional
    ``device`` and ``surface`` feed the context features (null: unknown, code -1); every other
    column (labels, weights...) is passed through unchanged, in the same row order. Each value
    uses only events of ``dataset.events`` strictly before the row's timestamp; ids unknown to
    the dataset get the feature's default. ``features`` (default: every matrix feature of
    ``registry``) are the output columns, in that order; an unregistered name raises
    :class:`~mlsd.errors.UnknownFeatureError`. ``vocab`` (default: fitted on
    ``dataset``) fixes category codes; pass the one the online store uses. ``timings``, if
    given, receives seconds per stage (per entity kind: that kind's own seconds, which overlap
    when kinds run concurrently; ``"stored features"``: their wall time). ``workers`` threads
    (default: the CPU count, one above :data:`PARALLEL_MAX_EVENTS` events, where memory
    matters more than the seconds it saves) compute the entity kinds concurrently; the
    result does not depend on it.
    """
    t_start = time.perf_counter()
    clock = _Clock(timings)
    label_cfg = label_cfg or LabelConfig()
    wanted = registry.resolve(features)
    for f in wanted:
        if f.dtype == "vector":
            raise FeatureStoreError(f"feature {f.name!r} is a vector (state read by other "
                                    "features), not a column of the training matrix")  # fmt: skip
        if f.name in rows.column_names:
            raise DataError(f"training rows already have a column named {f.name!r}")
    feats = registry.with_inputs([f.name for f in wanted])
    vocab = vocab or Vocab.from_dataset(dataset)
    catalog = Catalog.from_dataset(dataset, vocab)
    sig = event_signals(dataset.events, catalog, dataset.videos, label_cfg)
    if len(sig) and not bool(np.all(sig.ts[1:] >= sig.ts[:-1])):
        sig = sig.take(np.argsort(sig.ts, kind="stable"))
    clock("signals")
    r = _rows_arrays(rows, catalog, vocab)
    n = rows.num_rows
    row_order: np.ndarray | None = None
    if n and not bool(np.all(r["t"][1:] >= r["t"][:-1])):
        row_order = np.argsort(r["t"], kind="stable")
        r = {k: v[row_order] for k, v in r.items()}
    clock("rows")
    out = np.empty((len(wanted), n), dtype=np.float32)  # one contiguous row per column
    where = {f.name: i for i, f in enumerate(wanted)}
    on_demand = [f for f in feats if f.source == "request"]
    reads = {i for f in on_demand for i in f.inputs}
    tasks: list[tuple[str, str, list[Feature]]] = []
    for entity in STORED_ENTITIES:
        stored = [f for f in feats if f.entity == entity and f.stored and f.source != "request"]
        # catalog attributes hold for every row (no as-of): a group of their own
        parts = {entity: [f for f in stored if f.source == "events"],
                 f"{entity}:catalog": [f for f in stored if f.source == "videos"]}  # fmt: skip
        tasks.extend((entity, key, fs) for key, fs in parts.items() if fs)

    def stored_task(entity: str, fs: list[Feature], sig: Signals) -> tuple[_Group, float]:
        t0 = time.perf_counter()
        g = _stored_group(entity, fs, sig, r, catalog, registry)
        for name in list(g.values):
            if name in where:  # each task writes its own rows of ``out``
                np.take(g.values[name], g.slot, out=out[where[name]])
            if name not in reads:  # keep only what request-time features read
                del g.values[name]
        return g, time.perf_counter() - t0

    # Entity kinds are independent: numpy releases the GIL in its sorts, searches, gathers and
    # ufuncs, so threads use the cores. The largest kinds go first (the video kind's as-of
    # over every impression is the longest task).
    tasks.sort(key=lambda t: _TASK_ORDER.get(t[1], len(_TASK_ORDER)))
    if workers is None:
        workers = 1 if len(sig) > PARALLEL_MAX_EVENTS else (os.cpu_count() or 1)
    n_workers = max(1, min(workers, len(tasks)))
    groups: dict[str, _Group] = {}
    with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="mlsd-asof") as pool:
        futures = {key: pool.submit(stored_task, entity, fs, sig) for entity, key, fs in tasks}
        for entity, key, _ in tasks:
            groups[key], secs = futures[key].result()
            if timings is not None:  # per kind, summed over its parts (they overlap in time)
                timings[entity] = timings.get(entity, 0.0) + secs
    clock("stored features")
    del sig
    for lo in range(0, n, _CHUNK):
        hi = min(n, lo + _CHUNK)
        x: dict[str, np.ndarray] = {
            "request.t_ms": r["t"][lo:hi],
            "request.device": r["device"][lo:hi],
            "request.surface": r["surface"][lo:hi],
        }
        for g in groups.values():
            sl = g.slot[lo:hi]
            for name, vals in g.values.items():
                if name in reads:
                    x[name] = vals[sl]
        for f in on_demand:
            v = f(x).astype(np.float32)
            x[f.name] = v
            if f.name in where:
                out[where[f.name], lo:hi] = v
    clock("request features")
    if row_order is not None:
        inv = np.empty(n, dtype=np.int64)
        inv[row_order] = np.arange(n)
        out = out[:, inv]
    cols = {f.name: pa.array(out[i]) for i, f in enumerate(wanted)}
    table = rows
    for name, arr in cols.items():
        table = table.append_column(pa.field(name, pa.float32()), arr)
    clock("assemble")
    if timings is not None:
        timings["total"] = time.perf_counter() - t_start
    return table


def feature_matrix(table: pa.Table, names: Sequence[str]) -> np.ndarray:
    """The ``names`` columns of a training table as a float32 matrix ``[rows, len(names)]``."""
    missing = [c for c in names if c not in table.column_names]
    if missing:
        raise DataError(f"training table: missing feature column(s) {missing}")
    out = np.empty((table.num_rows, len(names)), dtype=np.float32)
    for j, c in enumerate(names):
        col = pc.cast(table.column(c), pa.float32())
        out[:, j] = np.asarray(col.to_numpy(zero_copy_only=False))
    return out


class _Clock:
    def __init__(self, sink: dict[str, float] | None) -> None:
        self.sink = sink
        self.t = time.perf_counter()

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        if self.sink is not None:
            self.sink[stage] = self.sink.get(stage, 0.0) + now - self.t
        self.t = now
