"""Non-personalised and lightly personalised sources: popular, trending, fresh, topic-popular.

- :class:`PopularSource`: count of positives per video, optionally within a window and
  time-decayed (half-life ``h``: an event ``a`` days old weighs ``2 ** (-a / h)``). With a
  short half-life it is the *trending* source.
- :class:`FreshSource`: videos uploaded in the last ``max_age_days`` (exploration of new
  uploads that have few or no positives yet), newest first.
- :class:`TopicPopularSource`: popular per topic, mixed by the user's topic shares in their
  recent history; a user with no history gets the platform's topic shares, so it doubles as the
  cold-start source.
- :class:`CreatorPopularSource`: the same with creators as groups ("more from creators you
  watch"), scoring only each user's most watched creators.

All exclude the user's already-watched videos (those in the ``History``) when
``exclude_seen`` is set, and pad with -1 / -inf when fewer than ``k`` candidates remain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mlsd.errors import ConfigError
from mlsd.retrieval._data import Catalog
from mlsd.retrieval._encode import creator_codes
from mlsd.retrieval.base import (
    PAD,
    NotFittedError,
    as_user_ids,
    check_k,
    exclude_and_take,
    top_k_rows,
)
from mlsd.retrieval.fitting import FitData, SourceBase

__all__ = [
    "CreatorPopularSource",
    "FreshSource",
    "PopularSource",
    "TopicPopularSource",
    "decayed_counts",
    "positive_counts",
]

DAY_MS = 86_400_000


def decayed_counts(
    video_index: np.ndarray,
    times_ms: np.ndarray,
    n_items: int,
    now_ms: int,
    *,
    half_life_days: float | None = None,
    window_days: float | None = None,
) -> np.ndarray:
    """Per-item popularity ``float64[n_items]``: events in ``(now - window, now]`` weighted by
    ``2 ** (-age_days / half_life_days)`` (weight 1 without a half-life). Events after ``now``
    are ignored (no peeking). ``video_index`` holds catalog positions (-1 = skip)."""
    age = (now_ms - times_ms) / DAY_MS
    keep = (video_index >= 0) & (age >= 0)
    if window_days is not None:
        keep &= age < window_days
    w = np.ones(int(keep.sum()))
    if half_life_days is not None:
        w = np.exp2(-age[keep] / half_life_days)
    return np.bincount(video_index[keep], weights=w, minlength=n_items)


def positive_counts(
    d: FitData, half_life_days: float | None, window_days: float | None = None
) -> np.ndarray:
    """:func:`decayed_counts` of the training positives as of ``d.now_ms``, per catalog video."""
    pos = d.positives
    return decayed_counts(
        d.catalog.index(pos.video_ids),
        pos.times_ms,
        len(d.catalog),
        d.now_ms,
        half_life_days=half_life_days,
        window_days=window_days,
    )


class _GlobalListSource(SourceBase):
    """A source whose ranking is the same list for everyone, minus each user's watched videos."""

    catalog_: Catalog
    order_: np.ndarray  # catalog positions, best first
    scores_: np.ndarray  # float32, aligned with order_

    def _check_fitted(self) -> None:
        if not hasattr(self, "order_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() first")

    def candidates(self, user_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """See :class:`~mlsd.retrieval.base.CandidateSource`."""
        self._check_fitted()
        k = check_k(k)
        users = as_user_ids(user_ids)
        seen = self._seen(users)
        extra = 0 if seen is None else seen.shape[1]
        take = min(k + extra, len(self.order_))
        ids = self.catalog_.video_ids[self.order_[:take]]
        items = np.broadcast_to(ids, (len(users), take))
        scores = np.broadcast_to(self.scores_[:take], (len(users), take))
        return exclude_and_take(items, scores, seen, k)


@dataclass(kw_only=True, eq=False)
class PopularSource(_GlobalListSource):
    """Most watched videos as of ``now``, optionally windowed and time-decayed.

    Hyperparameters: ``half_life_days`` (None: no decay), ``window_days`` (None: all history),
    ``name`` (the source tag; use "trending" for a short half-life), ``exclude_seen``.
    Only videos uploaded at or before ``now`` and with a positive count are candidates.
    Learned state: ``order_``, ``scores_``, ``now_ms_``, ``catalog_``, ``history_``.
    """

    half_life_days: float | None = None
    window_days: float | None = None
    name: str = "popular"
    exclude_seen: bool = True

    def _check_params(self) -> None:
        for v, what in ((self.half_life_days, "half_life_days"), (self.window_days, "window")):
            if v is not None and v <= 0:
                raise ConfigError(f"{what}={v!r}: expected a positive number of days or None")

    def _fit(self, d: FitData, **options: Any) -> None:
        """Count positives up to ``now_ms`` (see :meth:`SourceBase.fit`)."""
        catalog, now = d.catalog, d.now_ms
        counts = positive_counts(d, self.half_life_days, self.window_days)
        counts[catalog.upload_ms > now] = 0.0
        order = np.lexsort((np.arange(len(counts)), -counts))
        order = order[counts[order] > 0]
        self.catalog_, self.now_ms_ = catalog, now
        self.order_ = order.astype(np.int64)
        self.scores_ = counts[order].astype(np.float32)
        self.history_ = d.history


@dataclass(kw_only=True, eq=False)
class FreshSource(_GlobalListSource):
    """Videos uploaded in ``(now - max_age_days, now]``, newest first, whether or not anyone
    watched them yet (exploration). Score: ``-age_days`` (higher is fresher). Learned state as
    :class:`PopularSource`.
    """

    max_age_days: float = 7.0
    name: str = "fresh"
    exclude_seen: bool = True

    def _check_params(self) -> None:
        if self.max_age_days <= 0:
            raise ConfigError(f"max_age_days={self.max_age_days!r}: expected a positive number")

    def _fit(self, d: FitData, **options: Any) -> None:
        """Select recent uploads of the catalog as of ``now_ms`` (see :meth:`SourceBase.fit`)."""
        catalog, now = d.catalog, d.now_ms
        up = catalog.upload_ms
        known = up != np.iinfo(np.int64).min
        age_days = np.where(known, (now - up) / DAY_MS, np.inf)
        fresh = np.flatnonzero((age_days >= 0) & (age_days < self.max_age_days))
        order = fresh[np.lexsort((fresh, age_days[fresh]))]
        self.catalog_, self.now_ms_ = catalog, now
        self.order_ = order.astype(np.int64)
        self.scores_ = (-age_days[order]).astype(np.float32)
        self.history_ = d.history


def top_m_stable(w: np.ndarray, m: int) -> np.ndarray:
    """``np.argsort(-w, axis=1, kind="stable")[:, :m]`` without sorting whole rows.

    A partition finds each row's ``m``-th largest value; the values above it and the first
    ties (by column) make the ``m`` picks, which alone are sorted stably. Same result, about
    10x faster for 30 of 20,000 creators (one request's ``argsort`` took ~2 ms).
    """
    n, g = w.shape
    if m >= g or n == 0 or m <= 0:
        return np.argsort(-w, axis=1, kind="stable")[:, : max(m, 0)]
    neg = -w
    kth = np.partition(neg, m - 1, axis=1)[:, m - 1 : m]
    better = neg < kth
    tie = neg == kth
    need = m - better.sum(axis=1, keepdims=True)
    sel = better | (tie & (np.cumsum(tie, axis=1) <= need))
    cols = np.nonzero(sel)[1].reshape(n, m)  # row-major: ascending columns per row
    order = np.argsort(np.take_along_axis(neg, cols, axis=1), axis=1, kind="stable")
    return np.take_along_axis(cols, order, axis=1)


class _GroupPopular(SourceBase):
    """Popular videos per group (topic, creator), mixed by the user's group shares.

    For user ``u`` and video ``v`` of group ``g``: ``score = log w_u(g) + log p(v | g)``, with
    ``p(v | g) = (c_v + a) / (C_g + a n_g)`` (``c_v`` the video's decayed positives, ``a`` =
    ``smoothing``, ``n_g`` the group's videos) and ``w_u`` the group shares of the user's last
    ``history_len`` watches plus ``prior_strength`` pseudo-watches spread by the platform's
    group shares. This is the log-probability of "pick a group by taste, then a video in it", the
    shape of the book's popular-per-topic fallback. Only each user's ``max_groups`` heaviest
    groups are scored (None: all). A user with no history gets the platform shares: the source
    is then global popularity, which makes it the cold-start source.
    """

    group: str = "topic"
    history_len: int
    prior_strength: float
    half_life_days: float | None
    smoothing: float
    max_groups: int | None

    def _group_codes(self, catalog: Catalog) -> tuple[np.ndarray, int]:
        if self.group == "topic":
            return catalog.topic, len(catalog.topic_names)
        codes, ids = creator_codes(catalog)
        return codes, len(ids) + 1

    def _check_params(self) -> None:
        if self.history_len < 1 or self.prior_strength <= 0 or self.smoothing < 0:
            raise ConfigError(
                f"history_len={self.history_len!r}, prior_strength={self.prior_strength!r}, "
                f"smoothing={self.smoothing!r}: expected >= 1, > 0 and >= 0"
            )

    def _fit(self, d: FitData, **options: Any) -> None:
        """Count positives up to ``now_ms`` per video and group (see :meth:`SourceBase.fit`)."""
        catalog, now = d.catalog, d.now_ms
        counts = positive_counts(d, self.half_life_days)
        live = catalog.upload_ms <= now
        counts[~live] = 0.0
        group, n_groups = self._group_codes(catalog)
        member = live & ((counts > 0) | (self.smoothing > 0))
        mass = np.where(member, counts + self.smoothing, 0.0)
        tot = np.bincount(group, weights=mass, minlength=n_groups)
        watched = np.bincount(group, weights=counts, minlength=n_groups)
        self.group_share_ = (watched + 1e-9) / (watched.sum() + 1e-9 * n_groups)
        order = np.flatnonzero(member)
        order = order[np.lexsort((order, -mass[order], group[order]))]
        self.indptr_ = np.r_[0, np.cumsum(np.bincount(group[order], minlength=n_groups))]
        self.members_ = order.astype(np.int64)
        with np.errstate(divide="ignore"):
            self.logp_ = np.log(mass[order] / tot[group[order]]).astype(np.float32)
        self.group_of_ = group
        self.catalog_, self.now_ms_ = catalog, now
        self.history_ = d.history
        self.unknown_history_ids_ = 0

    def group_weights(self, user_ids: np.ndarray) -> np.ndarray:
        """``float64[n, groups]``: the smoothed group shares of each user's recent history."""
        items, _ = self.history_.recent(as_user_ids(user_ids), self.history_len)
        idx = self.catalog_.index(items)
        self.unknown_history_ids_ += int(((idx < 0) & (items != PAD)).sum())
        n, ng = len(items), len(self.group_share_)
        rows = np.broadcast_to(np.arange(n)[:, None], idx.shape)[idx >= 0]
        counts = np.zeros((n, ng))
        np.add.at(counts, (rows, self.group_of_[idx[idx >= 0]]), 1.0)
        w = counts + self.prior_strength * self.group_share_[None, :]
        return np.asarray(w / w.sum(axis=1, keepdims=True))

    def candidates(self, user_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """See :class:`~mlsd.retrieval.base.CandidateSource`."""
        if not hasattr(self, "members_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() first")
        k = check_k(k)
        users = as_user_ids(user_ids)
        out_i = np.full((len(users), k), PAD, np.int64)
        out_s = np.full((len(users), k), -np.inf, np.float32)
        size = np.diff(self.indptr_)
        for lo in range(0, len(users), 256):
            ub = users[lo : lo + 256]
            seen = self._seen(ub)
            want = k + (0 if seen is None else seen.shape[1])
            w = self.group_weights(ub)
            m = len(self.group_share_) if self.max_groups is None else self.max_groups
            m = min(m, w.shape[1])
            groups = top_m_stable(w, m)  # (n, m)
            width = int(min(want, size.max(initial=0)))
            if width == 0:
                continue
            j = np.arange(width)
            ok = j[None, None, :] < size[groups][:, :, None]  # (n, m, width)
            at = np.where(ok, self.indptr_[groups][:, :, None] + j, 0)
            with np.errstate(divide="ignore"):
                logw = np.log(np.take_along_axis(w, groups, axis=1))
            sc = np.where(ok, logw[:, :, None] + self.logp_[at], -np.inf)
            col, val = top_k_rows(sc.reshape(len(ub), -1), want)
            flat_at = at.reshape(len(ub), -1)
            pos = np.where(col >= 0, np.take_along_axis(flat_at, np.maximum(col, 0), axis=1), -1)
            ids = np.where(
                pos >= 0, self.catalog_.video_ids[self.members_[np.maximum(pos, 0)]], PAD
            )
            val = np.where(pos >= 0, val, -np.inf)
            out_i[lo : lo + 256], out_s[lo : lo + 256] = exclude_and_take(ids, val, seen, k)
        return out_i, out_s


@dataclass(kw_only=True, eq=False)
class TopicPopularSource(_GroupPopular):
    """Popular per topic, mixed by the user's topic shares; the cold-start source (see
    :class:`_GroupPopular` for the score). Learned state: ``indptr_``/``members_``/``logp_``
    (per-topic lists, CSR, best first), ``group_share_``, ``catalog_``, ``history_``,
    ``unknown_history_ids_`` (history ids outside the catalog, ignored and counted)."""

    group = "topic"

    history_len: int = 50
    prior_strength: float = 2.0
    half_life_days: float | None = 14.0
    smoothing: float = 0.0
    max_groups: int | None = None
    name: str = "topic_popular"
    exclude_seen: bool = True


@dataclass(kw_only=True, eq=False)
class CreatorPopularSource(_GroupPopular):
    """Videos of the creators a user watches ("more from creators you like"), mixed by the
    user's creator shares; ``smoothing`` pseudo-counts let a creator's unwatched videos in.
    Only the user's ``max_groups`` most watched creators are scored. Same learned state as
    :class:`TopicPopularSource`, with creators as groups (code 0: unknown creator)."""

    group = "creator"

    history_len: int = 100
    prior_strength: float = 1.0
    half_life_days: float | None = 14.0
    smoothing: float = 1.0
    max_groups: int | None = 30
    name: str = "creator_popular"
    exclude_seen: bool = True
