"""The ground-truth user-response model: "this user was shown this slate at this time: what do
they do?". Equations are in ``docs/simulator.md``; the coefficients below are named there.

Everything is vectorised over impressions; a request is (user, time) and its slate is the
``videos`` row shown at positions 1..S. The same object drives the simulated event log and,
later, simulated online A/B tests through the real serving path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlsd.data.simulate.world import DAY_MS, HOUR_MS, World
from mlsd.errors import DataError

# Coefficients (see docs/simulator.md, "Response model").
PLAY_BIAS = -2.0
PLAY_MATCH = 0.9
PLAY_QUALITY = 0.6
PLAY_LOYAL = 0.9
PLAY_FRESH = 0.6
PLAY_EVENING = 0.15
POSITION_EXPONENT = 0.6  # examination probability (position)^-0.6, cf. Joachims et al. 2017
FRESH_DAYS = 7.0
COMPL_BIAS = -1.0
COMPL_MATCH = 0.6
COMPL_QUALITY = 0.5
COMPL_LOYAL = 0.6
COMPL_EVENING = 0.2
COMPL_DURATION = 0.45  # per log-unit of duration relative to 2 minutes
COMPL_NOISE = 0.9
# Quick skips: the user abandons within the first seconds (a swipe), the main source of
# non-valid plays. P(skip) = sigmoid(SKIP_BIAS - SKIP_MATCH * m - SKIP_QUALITY * q).
SKIP_BIAS, SKIP_MATCH, SKIP_QUALITY = 0.0, 0.8, 0.5
SKIP_MAX_SECONDS = 25.0
LIKE_BIAS, LIKE_COMPL, LIKE_MATCH, LIKE_QUALITY, LIKE_LOYAL = -6.0, 2.5, 0.5, 0.5, 0.5
SHARE_BIAS, SHARE_COMPL, SHARE_MATCH, SHARE_QUALITY = -6.6, 2.0, 0.4, 0.6
DISLIKE_BIAS, DISLIKE_MATCH, DISLIKE_QUALITY = -4.2, 1.0, 0.5
EXPLICIT_DISLIKE = 0.5


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Responses:
    """Outcomes per impression, arrays of shape (n_requests, slate_size)."""

    play: np.ndarray  # bool
    watch_seconds: np.ndarray  # float32, 0 where no play
    like: np.ndarray  # bool
    share: np.ndarray  # bool
    dislike: np.ndarray  # bool (also "not interested")
    p_play: np.ndarray  # float, the true play probability (for analysis and tests)


class ResponseModel:
    """Samples what users do when shown slates; also exposes the true tastes.

    All inputs are indices (``id - 1``) unless a method says ids. ``times_ms`` are epoch ms.
    """

    def __init__(self, world: World) -> None:
        self.world = world
        w = world
        self._fav_keys = np.sort(
            (np.arange(w.n_users, dtype=np.int64)[:, None] * w.n_creators + w.favourites).ravel()
        )

    def _drift_share(self, times_ms: np.ndarray) -> np.ndarray:
        w = self.world
        return np.clip((times_ms - w.start_ms) / (w.end_ms - w.start_ms), 0.0, 1.0)

    def taste_logits(self, users: np.ndarray, times_ms: np.ndarray) -> np.ndarray:
        """Topic logits (n, n_topics) of ``users`` at ``times_ms``: a linear path in logit space
        from ``taste_start`` (window start) to ``taste_end`` (window end), remapped by the
        taste shift from its instant on when one happens in this window."""
        t = np.asarray(times_ms, dtype=np.float64)
        s = self._drift_share(t).astype(np.float32)[:, None]
        w = self.world
        z = (1 - s) * w.taste_start[users] + s * w.taste_end[users]
        if w.taste_shift_ms is not None:
            after = t >= w.taste_shift_ms
            if after.any():
                z[after] = w.shifted_logits(z[after], np.asarray(users)[after])
        return z

    def taste(self, users: np.ndarray, times_ms: np.ndarray) -> np.ndarray:
        """True topic preference distribution (n, n_topics), rows sum to 1."""
        z = self.taste_logits(users, times_ms)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def match(self, users: np.ndarray, times_ms: np.ndarray, videos: np.ndarray) -> np.ndarray:
        """Topic match m = log(K * p_user(topic)), averaged over a video's topics (0.7 / 0.3).

        ``users``/``times_ms`` have shape (n,), ``videos`` (n, S); returns (n, S). m > 0 means
        the user likes the topic more than a uniform taste would.
        """
        w = self.world
        z = self.taste_logits(users, times_ms)
        lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
        logp = z - lse[:, None] + np.log(w.cfg.n_topics)
        rows = np.arange(len(users))[:, None]
        m1 = logp[rows, w.video_topic[videos]]
        t2 = w.video_topic2[videos]
        m2 = logp[rows, np.maximum(t2, 0)]
        return np.where(t2 >= 0, 0.7 * m1 + 0.3 * m2, m1)

    def is_loyal(self, users: np.ndarray, videos: np.ndarray) -> np.ndarray:
        """True where the video's creator is one of the user's favourites; shape of ``videos``."""
        w = self.world
        keys = users[:, None].astype(np.int64) * w.n_creators + w.video_creator[videos]
        i = np.minimum(np.searchsorted(self._fav_keys, keys), len(self._fav_keys) - 1)
        return self._fav_keys[i] == keys

    def respond(
        self,
        users: np.ndarray,
        times_ms: np.ndarray,
        videos: np.ndarray,
        rng: np.random.Generator,
    ) -> Responses:
        """Sample responses to slates: users (n,), times_ms (n,), videos (n, S) as indices.

        Position p (1-based) is the column index + 1.
        """
        w = self.world
        users = np.asarray(users)
        videos = np.asarray(videos)
        n, s_len = videos.shape
        t = np.asarray(times_ms, dtype=np.int64)
        m = self.match(users, t, videos)
        q = w.video_quality[videos]
        loyal = self.is_loyal(users, videos).astype(np.float32)
        age_days = np.maximum(t[:, None] - w.upload_ms[videos], 0) / DAY_MS
        fresh = np.exp(-age_days / FRESH_DAYS)
        hour = (t // HOUR_MS) % 24
        evening = ((hour >= 18) & (hour <= 23)).astype(np.float32)[:, None]
        pos = np.arange(1, s_len + 1, dtype=np.float64)[None, :]
        examine = pos**-POSITION_EXPONENT
        x = (PLAY_BIAS + PLAY_MATCH * m + PLAY_QUALITY * q + PLAY_LOYAL * loyal
             + PLAY_FRESH * fresh + PLAY_EVENING * evening)  # fmt: skip
        p_play = examine * _sigmoid(x)
        blocked = w.is_explicit[videos] & ~w.allows_explicit[users][:, None]
        p_play = np.where(blocked, 0.0, p_play)
        play = rng.random((n, s_len)) < p_play

        dur = w.duration_s[videos].astype(np.float64)
        c_logit = (COMPL_BIAS + COMPL_MATCH * m + COMPL_QUALITY * q + COMPL_LOYAL * loyal
                   + COMPL_EVENING * evening - COMPL_DURATION * np.log(dur / 120.0)
                   + rng.normal(0.0, COMPL_NOISE, (n, s_len)))  # fmt: skip
        compl = _sigmoid(c_logit)
        compl = np.where(compl > 0.95, 1.0, compl)  # finished the video
        # A skip watches U(0.5, min(0.45 * duration, 25)) seconds: invalid under both rules.
        skip = rng.random((n, s_len)) < _sigmoid(SKIP_BIAS - SKIP_MATCH * m - SKIP_QUALITY * q)
        skip_s = 0.5 + rng.random((n, s_len)) * (np.minimum(0.45 * dur, SKIP_MAX_SECONDS) - 0.5)
        compl = np.where(skip, np.maximum(skip_s, 0.5) / dur, compl)
        watch = np.where(play, np.round(compl * dur, 1), 0.0).astype(np.float32)
        compl = np.where(play, compl, 0.0)

        like = play & (
            rng.random((n, s_len))
            < _sigmoid(
                LIKE_BIAS
                + LIKE_COMPL * compl
                + LIKE_MATCH * m
                + LIKE_QUALITY * q
                + LIKE_LOYAL * loyal
            )
        )
        share = play & (
            rng.random((n, s_len))
            < _sigmoid(SHARE_BIAS + SHARE_COMPL * compl + SHARE_MATCH * m + SHARE_QUALITY * q)
        )
        p_dis = np.where(
            blocked,
            EXPLICIT_DISLIKE,
            _sigmoid(DISLIKE_BIAS - DISLIKE_MATCH * m - DISLIKE_QUALITY * q),
        )
        dislike = ~play & (rng.random((n, s_len)) < p_dis)
        return Responses(play, watch, like, share, dislike, p_play)

    def respond_ids(
        self,
        user_id: int,
        video_ids: list[int] | np.ndarray,
        time_ms: int,
        rng: np.random.Generator | None = None,
    ) -> Responses:
        """One request by ids: ``user_id`` saw ``video_ids`` (position 1 first) at ``time_ms``.

        Raises :class:`DataError` for ids outside the simulated world.
        """
        w = self.world
        vids = np.asarray(video_ids, dtype=np.int64)
        if not 1 <= user_id <= w.n_users:
            raise DataError(f"user_id {user_id} is not in the simulated world (1..{w.n_users})")
        bad = (vids < 1) | (vids > w.n_videos)
        if bad.any():
            raise DataError(
                f"video_id {int(vids[bad][0])} is not in the simulated world (1..{w.n_videos})"
            )
        rng = rng or np.random.default_rng()
        return self.respond(np.array([user_id - 1]), np.array([time_ms]), (vids - 1)[None, :], rng)
