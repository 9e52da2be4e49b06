"""The logging policy: which slates the simulated platform showed.

A mix of sources per slot, like a production platform that already personalises: a few
popular slots (the platform's biggest hits, sharply weighted by prior popularity), topic slots
(a topic drawn from the user's current taste, focused on their top topics, then a video of it,
mildly weighted by popularity), fresh uploads (uniform over the last 7 days) and videos of the
user's favourite creators (weighted by popularity within the creator). Videos not yet uploaded
at request time, explicit videos for users who do not allow them, and duplicates within a
slate are replaced by draws from a safe fallback (popular, pre-window, non-explicit). The
sources' shares are ``MIX``; the weights are the constants below (``docs/simulator.md``,
"Requests and the logging policy", gives the reasons for their values).
"""

from __future__ import annotations

import numpy as np

from mlsd.data.simulate.response import ResponseModel
from mlsd.data.simulate.world import DAY_MS, World

SOURCES = ("popular", "topic", "fresh", "favourite")
MIX = (0.10, 0.40, 0.10, 0.40)
POPULARITY_ALPHA = 2.5  # popular slots (and the fallback): weight = exp(alpha * log-popularity)
TOPIC_ALPHA = 0.7  # topic slots: weight within the topic = exp(alpha * log-popularity)
TOPIC_FOCUS = 3.0  # topic slots: topic ~ softmax(FOCUS * taste logits); > 1 favours top topics
FAVOURITE_ALPHA = 1.0  # favourite slots: weight within the creator (0: uniform)
FRESH_WINDOW_MS = 7 * DAY_MS


class _Weighted:
    """Inverse-CDF sampler over a subset of videos, optionally grouped (by topic)."""

    def __init__(
        self,
        idx: np.ndarray,
        weights: np.ndarray,
        groups: np.ndarray | None = None,
        n_groups: int = 1,
    ) -> None:
        if groups is None:
            groups = np.zeros(len(idx), dtype=np.int64)
        order = np.lexsort((idx, groups))
        self.idx = idx[order]
        cum = np.cumsum(weights[order].astype(np.float64))
        self.cum = cum
        self.cum0 = np.concatenate([[0.0], cum])
        counts = np.bincount(groups, minlength=n_groups)
        self.offsets = np.concatenate([[0], np.cumsum(counts)])

    def sample(self, rng: np.random.Generator, group: np.ndarray | int, n: int) -> np.ndarray:
        g = np.broadcast_to(np.asarray(group), (n,))
        lo, hi = self.offsets[g], self.offsets[g + 1]
        u = self.cum0[lo] + rng.random(n) * (self.cum0[hi] - self.cum0[lo])
        pos = np.searchsorted(self.cum, u, side="right")
        pos = np.clip(pos, lo, np.maximum(hi - 1, lo))
        out = self.idx[np.minimum(pos, len(self.idx) - 1)]
        return np.where(hi > lo, out, -1)


class LoggingPolicy:
    """Draws slates of video indices for (user, time) requests."""

    def __init__(self, world: World, response: ResponseModel) -> None:
        self.world = w = world
        self.response = response
        log_pop = w.video_log_popularity().astype(np.float64)
        weight = np.exp(POPULARITY_ALPHA * log_pop)
        allv = np.arange(w.n_videos)
        self._popular = _Weighted(allv, weight)
        self._topic = _Weighted(
            allv, np.exp(TOPIC_ALPHA * log_pop), w.video_topic.astype(np.int64), w.cfg.n_topics
        )
        safe = allv[(w.upload_ms < w.start_ms) & ~w.is_explicit]
        if safe.size == 0:  # degenerate configs: fall back to every video
            safe = allv
        self._safe = _Weighted(safe, weight[safe])
        self._by_upload = np.argsort(w.upload_ms, kind="stable")
        self._upload_sorted = w.upload_ms[self._by_upload]
        self._favourite = _Weighted(
            allv, np.exp(FAVOURITE_ALPHA * log_pop), w.video_creator.astype(np.int64), w.n_creators
        )
        self._focus = TOPIC_FOCUS

    def slates(
        self, users: np.ndarray, times_ms: np.ndarray, size: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (videos (n, size) indices, source codes (n, size) into ``SOURCES``)."""
        w = self.world
        n = len(users)
        src = rng.choice(len(SOURCES), size=(n, size), p=MIX)
        out = np.full((n, size), -1, dtype=np.int64)
        tt = np.broadcast_to(times_ms[:, None], (n, size))
        uu = np.broadcast_to(users[:, None], (n, size))

        sel = src == 0
        out[sel] = self._popular.sample(rng, 0, int(sel.sum()))

        sel = src == 1
        if sel.any():
            z = self._focus * self.response.taste_logits(users, times_ms)
            p = np.exp(z - z.max(axis=1, keepdims=True))
            cum = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
            draws = rng.random((n, size))
            topic = (cum[:, None, :] < draws[:, :, None]).sum(-1)
            topic = np.minimum(topic, w.cfg.n_topics - 1)
            out[sel] = self._topic.sample(rng, topic[sel], int(sel.sum()))

        sel = src == 2
        if sel.any():
            t = tt[sel]
            lo = np.searchsorted(self._upload_sorted, t - FRESH_WINDOW_MS, side="left")
            hi = np.searchsorted(self._upload_sorted, t, side="right")
            pick = lo + (rng.random(len(t)) * (hi - lo)).astype(np.int64)
            ok = hi > lo
            out[sel] = np.where(ok, self._by_upload[np.minimum(pick, w.n_videos - 1)], -1)

        sel = src == 3
        if sel.any():
            fav = w.favourites[uu[sel], rng.integers(0, w.favourites.shape[1], int(sel.sum()))]
            out[sel] = self._favourite.sample(rng, fav, len(fav))

        # Replace impossible picks: not uploaded yet, explicit for a user who disallows it.
        bad = out < 0
        vv = np.maximum(out, 0)
        bad |= w.upload_ms[vv] > tt
        bad |= w.is_explicit[vv] & ~w.allows_explicit[uu]
        out[bad] = self._safe.sample(rng, 0, int(bad.sum()))
        src[bad] = 0
        # Duplicates within a slate: two rounds of replacement from the safe fallback.
        for _ in range(2):
            order = np.argsort(out, axis=1, kind="stable")
            srt = np.take_along_axis(out, order, axis=1)
            dup_sorted = np.zeros_like(srt, dtype=bool)
            dup_sorted[:, 1:] = srt[:, 1:] == srt[:, :-1]
            if not dup_sorted.any():
                break
            dup = np.zeros_like(dup_sorted)
            np.put_along_axis(dup, order, dup_sorted, axis=1)
            out[dup] = self._safe.sample(rng, 0, int(dup.sum()))
            src[dup] = 0
        return out, src
