"""The internal label cut of training (the book's advice on label leakage): retrieval learns
from the positives before the cut; the ranker's labels are what users did after it.

A log whose times order nothing (no timestamps, or one time for every event: see
:func:`mlsd.data.timing.has_time_order`) cannot be cut by time: each user's labels are then a
seeded random share of their items (mode ``per-user-random``), and every event counts as at the
cut, so point-in-time features see none of them (constant) on either side. Time outliers (rows
far beyond the bulk of the log, :func:`mlsd.data.timing.late_outliers`) do not move the cut."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from mlsd.data.timing import NO_ORDER_NOTE, has_time_order, late_outliers, random_holdout
from mlsd.errors import DataError
from mlsd.features.signals import timestamps_ms
from mlsd.pipeline.config import WARM_REFIT_POSITIVES, StagesConfig
from mlsd.pipeline.data import ids, pair_set

__all__ = [
    "DAY_MS",
    "LabelSplit",
    "incremental_refit",
    "label_split",
    "log_end",
    "time_features",
]

DAY_MS = 86_400_000


@dataclass
class LabelSplit:
    """The positives cut in two. ``mode``: ``global`` (one ``cut`` time for everyone),
    ``per-user`` (``cut_of_user``: each label user's cut, the time of their first labelled
    positive) or ``per-user-random`` (a log without time order: ``after_pairs``, the keys of
    the labelled (user, item) pairs, say what is after the cut, whatever its time).
    ``now_ms``: the time retrieval is fitted as of; ``label_users``: sorted ``int64`` ids of
    the users with labels."""

    mode: str
    cut: int
    cut_of_user: dict[int, int] | None
    now_ms: int
    before: pa.Table
    after: pa.Table
    label_users: np.ndarray
    after_pairs: np.ndarray | None = None

    def summary(self) -> str:
        """One line for the training log (with :data:`~mlsd.data.timing.NO_ORDER_NOTE` when
        the log's times order nothing)."""
        note = f"; {NO_ORDER_NOTE}" if self.mode == "per-user-random" else ""
        return f"ranker labels: {self.mode} cut, {len(self.label_users):,} users{note}"

    def cuts(self, users: np.ndarray) -> np.ndarray:
        """``int64[n]``: the cut time of each of ``users`` (label users)."""
        if self.cut_of_user is None:
            return np.full(len(users), self.cut, np.int64)
        return np.array([self.cut_of_user[int(x)] for x in users], np.int64)


def log_end(ts: np.ndarray, say: Callable[[str], None]) -> int:
    """The last time of a log whose event times are ``ts`` (ms), time outliers left out (and
    reported through ``say``): the time a model trained on it is as of."""
    late = late_outliers(ts)
    if late.count:
        say(late.describe(ts) + "; training ignores them")
    return late.bulk_end_ms


def label_split(pos: pa.Table, ts: np.ndarray, cfg: StagesConfig) -> LabelSplit:
    """Cut the positives ``pos`` of a log whose event times are ``ts`` (ms) as ``cfg`` says
    (see :class:`~mlsd.pipeline.config.StagesConfig`). Raises :class:`DataError` when either
    side would be empty."""
    t = timestamps_ms(pos.column("timestamp"))
    u = ids(pos, "user_id")
    end = late_outliers(ts).bulk_end_ms  # the last time, time outliers left out
    span = int(end - ts.min()) if len(ts) else 0
    mode: str = cfg.label_split
    after_pairs = None
    if not has_time_order(ts):
        mode = "per-user-random"
    elif mode == "auto":
        # A global cut needs a log where most users are active near its end (a platform's
        # log); MovieLens-like logs, where each user rates in a burst, get per-user cuts.
        recent = np.unique(u[t >= end + 1 - int(cfg.label_days * DAY_MS)])
        active = len(recent) / max(len(np.unique(u)), 1)
        long_enough = span >= 2 * cfg.label_days * DAY_MS
        mode = "global" if long_enough and active >= 0.25 else "per-user"
    cut_of_user: dict[int, int] | None
    if mode == "per-user-random":
        v = ids(pos, "video_id")
        after = random_holdout(u, v, cfg.label_share, cfg.seed)
        after_pairs = pair_set(u[after], v[after])
        cut = int(ts.max()) if len(ts) else 0  # the one time of every event
        cut_of_user = None
    elif mode == "global":
        cut = end + 1 - int(cfg.label_days * DAY_MS)
        if span < 2 * cfg.label_days * DAY_MS:
            cut = int(np.quantile(t, 1 - cfg.label_share)) if len(t) else cut
        after = t >= cut
        cut_of_user = None
    else:
        order = np.lexsort((t, u))
        uo = u[order]
        starts = np.flatnonzero(np.r_[True, uo[1:] != uo[:-1]])
        counts = np.diff(np.r_[starts, len(uo)])
        n_label = np.where(counts >= 2, np.maximum(1, np.floor(counts * cfg.label_share)), 0)
        rank = np.arange(len(uo)) - np.repeat(starts, counts)
        after_sorted = rank >= np.repeat(counts - n_label, counts)
        after = np.empty(len(u), bool)
        after[order] = after_sorted
        # a user's cut: the time of their first labelled positive
        cut_of_user = {}
        lu, lt = u[after], t[after]
        if len(lu):
            o = np.lexsort((lt, lu))
            first = np.r_[True, lu[o][1:] != lu[o][:-1]]
            cut_of_user = dict(zip(lu[o][first].tolist(), lt[o][first].tolist(), strict=True))
        cut = int(t[after].min()) if after.any() else int(ts.max()) + 1
    before = pos.filter(pa.array(~after))
    label_users = np.unique(u[after])
    if len(label_users) == 0 or before.num_rows == 0:
        raise DataError(
            "training events: cannot cut the log into a retrieval part and a label part "
            f"({before.num_rows:,} positives before, {int(after.sum()):,} after); expected "
            "positives on both sides: give a longer log or more users"
        )
    now_ms = int(timestamps_ms(before.column("timestamp")).max()) + 1 if mode != "global" else cut
    return LabelSplit(
        mode=mode,
        cut=cut,
        cut_of_user=cut_of_user,
        now_ms=now_ms,
        before=before,
        after=pos.filter(pa.array(after)),
        label_users=label_users,
        after_pairs=after_pairs,
    )


def time_features(split: LabelSplit, label_days: float = 7.0) -> str:
    """``"off"`` when the labels are cut per user and most users' cuts lie more than
    ``label_days`` before the end of the log (users active in their own periods, as in
    MovieLens: a feature computed at a user's own cut, such as plays in the last hour or the
    hour of day, means something else at serving time, the log's end), else ``"on"``."""
    if split.mode != "per-user" or not split.cut_of_user:
        return "on"
    gap = split.now_ms - np.fromiter(split.cut_of_user.values(), np.int64)
    return "off" if float(np.median(gap)) > label_days * DAY_MS else "on"


def incremental_refit(
    setting: bool | None, split: LabelSplit, n_positives: int, say: Callable[[str], None]
) -> bool:
    """Whether retrieval is refitted on the whole log by continuing the cut-time sources
    (``True``) or from scratch. ``setting`` None (``two_tower_refit: auto``): incremental when
    the cut is global (the positives after it are the newest days, what an incremental
    refresh trains on) and the log has at least :data:`WARM_REFIT_POSITIVES` positives."""
    if setting is not None:
        return setting
    on = split.mode == "global" and n_positives >= WARM_REFIT_POSITIVES
    say(f"retrieval refit on the whole log: {'incremental' if on else 'full'}")
    return on
