"""Step 2 of the book, framing the ML task: which events are positive examples.

The rules are :class:`mlsd.config.LabelConfig`:

- implicit positive (a *valid watch*): a ``play`` with ``watch_seconds >= min_watch_seconds``,
  or, for a video shorter than ``short_video_seconds``, a completion share
  ``watch_seconds / duration_s >= min_completion`` (a 20 s clip watched to the end is as clear a
  signal as 30 s of a long video). A video with no known duration (null, zero, or absent from
  the videos table) gets the seconds rule only. A play whose ``watch_seconds`` is null counts as
  positive: in interactions-only logs the play itself is all we know.
- rating data: a ``rating`` event with ``rating >= min_rating`` (null rating: not positive).
- explicit positive: a ``like``.
- ``weight`` (bring-your-own logs: a play count or confidence): a row whose weight is 0 is
  not a positive, whatever its type (it stays an event: an exposure, a negative); a null
  weight means 1. Tables that passed validation have no negative weight; here a weight
  <= 0 is simply not a positive. Positives keep their weight (:func:`positives`), which
  retrieval and the ranker read as a confidence (:func:`confidence`).

Everything is vectorised (Arrow compute and numpy): event logs run to tens of millions of rows.
Input tables need the columns ``user_id``, ``video_id``, ``timestamp`` and ``event_type``;
``watch_seconds`` and ``rating`` are read when present (absent means all null). Tables that
passed :func:`mlsd.data.schema.validate` always have them all.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlsd.config import LabelConfig
from mlsd.errors import DataError

__all__ = [
    "confidence",
    "durations",
    "has_weights",
    "label_events",
    "positives",
    "valid_watch",
    "watched_enough",
    "weights",
    "zero_weight",
]

_REQUIRED = ("user_id", "video_id", "timestamp", "event_type")
_TS = pa.timestamp("ms", tz="UTC")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _check_columns(events: pa.Table, what: str = "events") -> None:
    missing = [c for c in _REQUIRED if c not in events.column_names]
    if missing:
        present = ", ".join(events.column_names) or "none"
        raise DataError(
            f"{what}: missing column(s) {', '.join(missing)} (columns present: {present}); "
            f"expected {', '.join(_REQUIRED)}"
        )


def _floats(table: pa.Table, column: str) -> np.ndarray:
    """A numeric column as float64 with NaN for null; all NaN when the column is absent."""
    if column not in table.column_names:
        return np.full(table.num_rows, np.nan)
    col = pc.cast(table.column(column), pa.float64())
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)


def _is_type(events: pa.Table, event_type: str) -> np.ndarray:
    eq = pc.equal(events.column("event_type"), event_type)
    return np.asarray(pc.fill_null(eq, False).to_numpy(zero_copy_only=False), dtype=bool)


def has_weights(events: pa.Table) -> bool:
    """Whether ``events`` has a ``weight`` column with at least one value."""
    return "weight" in events.column_names and events.column("weight").null_count < len(events)


def weights(events: pa.Table) -> np.ndarray:
    """Per event row, its ``weight`` as float64, 1 where null or when there is no column."""
    w = _floats(events, "weight")
    return np.where(np.isnan(w), 1.0, w)


def zero_weight(events: pa.Table) -> np.ndarray:
    """Per event row, whether its weight rules it out as a positive (a weight given and not
    > 0): ``bool[events.num_rows]``. Such a row is still an event (an exposure)."""
    return ~(weights(events) > 0)


def confidence(w: np.ndarray) -> np.ndarray:
    """How strongly a positive of weight ``w`` (a count; 1 for a plain positive) counts:
    ``log2(1 + w)``, float32.

    Hu, Koren & Volinsky ("Collaborative Filtering for Implicit Feedback Datasets", ICDM 2008,
    section 4) scale the confidence of an observation with the log of its count,
    ``c = 1 + alpha log(1 + r / eps)``: a hundred plays say more than one, not a hundred times
    more. Base 2 makes a plain positive (w = 1) count 1, so logs without weights train
    exactly as they did before weights were read; w = 3 counts 2, w = 7 counts 3.
    """
    return np.log2(1.0 + np.asarray(w, dtype=np.float64)).astype(np.float32)


_DURATION_LOOKUPS: list[tuple[pa.Table, np.ndarray, np.ndarray, np.ndarray]] = []


def _duration_lookup(videos: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted video ids, their order and durations, kept for the last few tables seen (by
    identity: Arrow tables are immutable). Why: the online path labels a few dozen events at a
    time against the whole catalog, and hashing a million ids on every call (``index_in``)
    costs far more than the events."""
    for t, ids, order, vdur in _DURATION_LOOKUPS:
        if t is videos:
            return ids, order, vdur
    raw = np.asarray(videos.column("video_id").to_numpy(zero_copy_only=False))
    order = np.argsort(raw, kind="stable")
    vdur = _floats(videos, "duration_s")
    _DURATION_LOOKUPS.insert(0, (videos, raw[order], order, vdur))
    del _DURATION_LOOKUPS[4:]
    return raw[order], order, vdur


def durations(events: pa.Table, videos: pa.Table | None) -> np.ndarray:
    """Per event row, the ``duration_s`` of its video as float64 (NaN when unknown; the first
    row wins when the videos table repeats an id)."""
    n = events.num_rows
    if videos is None or "duration_s" not in videos.column_names or videos.num_rows == 0:
        return np.full(n, np.nan)
    vid = events.column("video_id")
    if not pa.types.is_integer(vid.type) or not pa.types.is_integer(
        videos.schema.field("video_id").type
    ):
        pos = pc.index_in(vid, videos.column("video_id").combine_chunks())
        idx = np.asarray(pos.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
        vdur = _floats(videos, "duration_s")
        return np.where(idx >= 0, vdur[np.maximum(idx, 0)], np.nan)
    ids, order, vdur = _duration_lookup(videos)
    want = np.asarray(pc.fill_null(vid, -1).to_numpy(zero_copy_only=False), dtype=ids.dtype)
    at = np.minimum(np.searchsorted(ids, want), len(ids) - 1)
    found = ids[at] == want
    if vid.null_count:
        found &= np.asarray(pc.is_valid(vid).to_numpy(zero_copy_only=False), dtype=bool)
    return np.where(found, vdur[order[at]], np.nan)


def valid_watch(events: pa.Table, videos: pa.Table | None, cfg: LabelConfig) -> np.ndarray:
    """Per event row, whether it is an implicit positive: ``bool[events.num_rows]``.

    ``play`` rows follow the watch rules of the module docstring; ``rating`` rows are True when
    ``rating >= cfg.min_rating``; every other event type is False; a row of weight 0 is False
    (:func:`zero_weight`). ``videos`` (may be None) supplies ``duration_s`` for the completion
    rule.
    """
    _check_columns(events)
    play = _is_type(events, "play")
    watch = _floats(events, "watch_seconds")
    unknown = np.isnan(watch)
    enough = watched_enough(watch, durations(events, videos), cfg)
    rating = _is_type(events, "rating") & (_floats(events, "rating") >= cfg.min_rating)
    ok = (play & (unknown | enough)) | rating
    return ok & ~zero_weight(events) if "weight" in events.column_names else ok


def watched_enough(watch: np.ndarray, duration: np.ndarray, cfg: LabelConfig) -> np.ndarray:
    """The watch rule of a play, elementwise over arrays of any shape: at least
    ``cfg.min_watch_seconds`` watched, or a short video (``0 < duration <
    cfg.short_video_seconds``) watched to ``cfg.min_completion``. NaN compares False (an
    unknown watch time is :func:`valid_watch`'s to decide)."""
    long_enough = watch >= cfg.min_watch_seconds
    short = (duration > 0) & (duration < cfg.short_video_seconds)
    with np.errstate(divide="ignore", invalid="ignore"):
        completed = short & (watch / np.where(short, duration, 1.0) >= cfg.min_completion)
    return np.asarray(long_enough | completed)


def _pair_keys(users: np.ndarray, videos: np.ndarray, n_left: int) -> tuple[np.ndarray, np.ndarray]:
    """One int64 key per (user, video) pair, comparable between the first ``n_left`` rows and
    the rest (ids are factorized jointly, so any int64 ids work without overflow)."""
    u_codes, u_uniq = pd.factorize(users)
    v_codes, _ = pd.factorize(videos)
    key = v_codes.astype(np.int64) * max(len(u_uniq), 1) + u_codes.astype(np.int64)
    return key[:n_left], key[n_left:]


def _ids(table: pa.Table, column: str) -> np.ndarray:
    return np.asarray(table.column(column).to_numpy(zero_copy_only=False), dtype=np.int64)


def _ms(table: pa.Table) -> np.ndarray:
    ts = pc.cast(table.column("timestamp"), _TS, safe=False)
    return np.asarray(pc.cast(ts, pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def _ceil_ms(t: datetime) -> int:
    """Epoch milliseconds of ``t``, rounded up: for integer ``ms``, ``ms < _ceil_ms(t)`` holds
    exactly when ``ms`` is before ``t`` (naive datetimes are taken as UTC)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return -((_EPOCH - t) // timedelta(milliseconds=1))


def _keys(events: pa.Table, rows: np.ndarray) -> dict[str, pa.ChunkedArray]:
    """``user_id``, ``video_id`` (int64) and ``timestamp`` (timestamp[ms, UTC]) of ``rows``
    (integer indices into ``events``), in that order."""
    taken = events.select(["user_id", "video_id", "timestamp"]).take(pa.array(rows))
    return {
        "user_id": pc.cast(taken.column("user_id"), pa.int64()),
        "video_id": pc.cast(taken.column("video_id"), pa.int64()),
        "timestamp": pc.cast(taken.column("timestamp"), _TS, safe=False),
    }


def label_events(
    events: pa.Table,
    videos: pa.Table | None,
    cfg: LabelConfig,
    *,
    like_cutoff: datetime | None = None,
) -> pa.Table:
    """One labelled row per ``play`` or ``rating`` event, in input order.

    Columns: ``user_id`` (int64), ``video_id`` (int64), ``timestamp`` (timestamp[ms, UTC], the
    play's or rating's time), ``label_watch`` (bool, :func:`valid_watch`) and ``label_like``
    (bool: the same user liked the same video at some time in ``events``).

    Leakage: a like usually comes *after* the play it labels, so ``label_like`` looks into the
    future of the row's timestamp. That is what a label is, but when a training set is cut at a
    split time, likes after the cut must not label training rows (the model would learn from
    test-period behaviour). Pass ``like_cutoff`` (the split time) to count only likes strictly
    before it; naive datetimes are taken as UTC. Split first, then label each side.
    """
    _check_columns(events)
    watch = valid_watch(events, videos, cfg)
    keep = _is_type(events, "play") | _is_type(events, "rating")
    like = _is_type(events, "like")
    if like_cutoff is not None:
        like &= _ms(events) < _ceil_ms(like_cutoff)
    u, v = _ids(events, "user_id"), _ids(events, "video_id")
    rows = np.flatnonzero(keep)
    liked = np.flatnonzero(like)
    k_rows, k_liked = _pair_keys(
        np.concatenate([u[rows], u[liked]]), np.concatenate([v[rows], v[liked]]), len(rows)
    )
    label_like = np.isin(k_rows, k_liked)
    return pa.table(
        {
            **_keys(events, rows),
            "label_watch": pa.array(watch[rows], type=pa.bool_()),
            "label_like": pa.array(label_like, type=pa.bool_()),
        }
    )


def positives(
    events: pa.Table,
    videos: pa.Table | None,
    cfg: LabelConfig,
    *,
    include_likes: bool = True,
    first_only: bool = True,
    time_order: bool = True,
) -> pa.Table:
    """The positive interactions retrieval trains on: ``(user_id, video_id, timestamp)``.

    A row is positive when :func:`valid_watch` holds (valid plays, high ratings) or, with
    ``include_likes``, when it is a ``like``. With ``first_only`` (the default) each
    (user, video) pair appears once, at the time of its first positive event (ties: the earlier
    row), so a re-watch or a like after a valid play does not count the pair twice; otherwise
    every positive event is a row. Rows are sorted by timestamp, then input order; with
    ``time_order`` False they keep the input order (the order of a log: then the result does
    not depend on how a log with out-of-order times is cut into batches), and "first" is the
    first in that order.

    When ``events`` has weights (:func:`has_weights`), the result has a ``weight`` column too
    (float32): the weight of the row's event (null read as 1; with ``first_only``, the pair's
    first positive event, so no later event's count leaks back to its time). Rows of weight
    0 are never positive (likes included).
    """
    _check_columns(events)
    pos = valid_watch(events, videos, cfg)
    if include_likes:
        like = _is_type(events, "like")
        pos |= like & ~zero_weight(events) if "weight" in events.column_names else like
    rows = np.flatnonzero(pos)
    if time_order:
        ms = _ms(events)[rows]
        rows = rows[np.argsort(ms, kind="stable")]
    if first_only and len(rows):
        k, _ = _pair_keys(_ids(events, "user_id")[rows], _ids(events, "video_id")[rows], len(rows))
        _, first = np.unique(k, return_index=True)
        rows = rows[np.sort(first)]  # first occurrence in time order, kept in time order
    out = _keys(events, rows)
    if has_weights(events):
        out["weight"] = pa.chunked_array([pa.array(weights(events)[rows], pa.float32())])
    return pa.table(out)
