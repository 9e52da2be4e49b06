"""The simulated platform's entities and their hidden (ground-truth) parameters.

Observable attributes end up in the users/creators/videos tables; latent ones (tastes, quality,
activity, favourite creators) stay in :class:`World` and drive the logging policy and the
response model. Equations and constants are documented in ``docs/simulator.md``.

Ids are 1-based (``id = index + 1``) so that 0 can serve as padding in embedding tables.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np

from mlsd.config import SimulationConfig, TasteShift

DAY_MS = 86_400_000
HOUR_MS = 3_600_000

TOPIC_WORDS: dict[str, tuple[str, ...]] = {
    topic: tuple(words.split())
    for topic, words in {
        "music": "song live cover album remix guitar concert lyrics",
        "gaming": "speedrun boss walkthrough multiplayer mod quest arena loot",
        "comedy": "sketch prank standup parody bloopers roast funny skit",
        "news": "breaking election report analysis interview update debate headlines",
        "sports": "goal highlights match league training final dunk race",
        "cooking": "recipe pasta baking vegan grill dessert spicy kitchen",
        "travel": "island roadtrip hostel backpacking city beach flight hike",
        "science": "physics space chemistry experiment biology quantum planet atoms",
        "tech": "smartphone laptop unboxing review coding gadget linux chip",
        "education": "lesson tutorial exam math grammar lecture study course",
        "fitness": "workout yoga cardio muscle stretch running squat hiit",
        "fashion": "outfit haul streetwear runway vintage sneakers style lookbook",
        "beauty": "makeup skincare nails hair lipstick routine glow contour",
        "diy": "woodworking repair craft garden build paint restore tools",
        "pets": "puppy kitten parrot aquarium rescue grooming dog cat",
        "movies": "trailer reaction ending scene review director sequel oscar",
        "animation": "anime cartoon storyboard stopmotion pixel short 3d character",
        "finance": "stocks budget crypto investing savings taxes market retirement",
        "history": "empire war ancient medieval documentary castle revolution pharaoh",
        "nature": "wildlife forest ocean volcano birds storm mountain desert",
        "cars": "supercar engine drift restoration electric test offroad tuning",
        "kids": "nursery toys learning colors alphabet bedtime puppets songs",
        "art": "painting sketching watercolor sculpture gallery digital portrait ink",
        "dance": "choreography ballet hiphop salsa tutorial battle routine kpop",
    }.items()
}
GENERIC_WORDS = (
    "best",
    "how",
    "to",
    "my",
    "first",
    "top",
    "ten",
    "ultimate",
    "day",
    "new",
    "in",
    "the",
    "why",
    "guide",
    "with",
    "vs",
)

COUNTRIES = ("US", "IN", "BR", "GB", "DE", "ID", "MX", "JP", "FR", "NG")
COUNTRY_P = (0.24, 0.18, 0.1, 0.07, 0.06, 0.08, 0.07, 0.06, 0.05, 0.09)
COUNTRY_LANG = {
    "US": "en",
    "IN": "hi",
    "BR": "pt",
    "GB": "en",
    "DE": "de",
    "ID": "id",
    "MX": "es",
    "JP": "ja",
    "FR": "fr",
    "NG": "en",
}
AGE_BUCKETS = ("13-17", "18-24", "25-34", "35-44", "45-54", "55+")
AGE_P = (0.08, 0.24, 0.28, 0.18, 0.12, 0.10)
DEVICES = ("android", "ios", "web", "tv")
DEVICE_P = (0.45, 0.25, 0.2, 0.1)
SURFACES = ("home", "up_next", "trending")
SURFACE_P = (0.7, 0.2, 0.1)
# Share of each hour of the day (UTC) in request volume: low at night, peak around 20:00.
DIURNAL = np.array(
    [
        2,
        1.4,
        1,
        0.8,
        0.8,
        1,
        1.6,
        2.4,
        3,
        3.2,
        3.4,
        3.6,
        4,
        4,
        4,
        4.2,
        4.6,
        5.2,
        6,
        6.8,
        7.2,
        6.6,
        5,
        3.2,
    ]
)
DIURNAL = DIURNAL / DIURNAL.sum()


@dataclass
class World:
    """Everything the simulator knows, observable or not. Arrays are indexed by ``id - 1``.

    Latent parameters (not in the tables): ``taste_start``/``taste_end`` are topic logits
    (n_users, n_topics) at the first and last instant of the window; ``activity`` scales the
    number of requests; ``favourites`` (n_users, 3) are creator indices a user is loyal to;
    ``video_quality`` is a per-video appeal offset; ``creator_pop`` a log-popularity.

    Taste shift (``cfg.taste_shift``, see :func:`schedule_taste_shift`):
    ``taste_shift_origin_ms`` is the start of the first window simulated with a shift
    configured (``start_day`` counts from it), ``taste_shifted`` whether the shift has happened
    (in this window or before). In the window where it happens, ``taste_shift_ms`` is its
    instant and ``taste_shift_map`` (n_users, n_topics) says where each topic's logit comes
    from afterwards (row ``u``: topic ``j`` gets the logit of topic ``map[u, j]``, blended by
    ``taste_shift_strength``; the identity for users it spares); ``taste_start``/``taste_end``
    stay the unshifted path. Both are None in every other window.
    """

    cfg: SimulationConfig
    start_ms: int
    end_ms: int
    topics: tuple[str, ...]
    # users
    signup_ms: np.ndarray
    country: np.ndarray  # int8 codes into COUNTRIES
    age: np.ndarray  # int8 codes into AGE_BUCKETS
    device: np.ndarray  # int8 codes into DEVICES
    allows_explicit: np.ndarray
    activity: np.ndarray
    taste_start: np.ndarray
    taste_end: np.ndarray
    favourites: np.ndarray
    # creators
    creator_topic: np.ndarray
    creator_country: np.ndarray
    creator_pop: np.ndarray
    creator_created_ms: np.ndarray
    # videos
    video_creator: np.ndarray
    video_topic: np.ndarray
    video_topic2: np.ndarray  # -1 when the video has a single topic
    video_quality: np.ndarray
    duration_s: np.ndarray
    upload_ms: np.ndarray
    is_explicit: np.ndarray
    title_words: np.ndarray  # (n_videos, 5) int16 codes into the word vocabulary, -1 = none
    vocab: tuple[str, ...]
    # taste shift (all unset without one)
    taste_shift_origin_ms: int | None = None
    taste_shifted: bool = False
    taste_shift_ms: int | None = None
    taste_shift_map: np.ndarray | None = None
    taste_shift_strength: float = 1.0

    @property
    def n_users(self) -> int:
        return len(self.signup_ms)

    @property
    def n_videos(self) -> int:
        return len(self.upload_ms)

    @property
    def n_creators(self) -> int:
        return len(self.creator_pop)

    def video_log_popularity(self) -> np.ndarray:
        """Prior log-popularity of each video: creator reach plus the video's own quality."""
        return self.creator_pop[self.video_creator] + 1.2 * self.video_quality

    def shifted_logits(self, z: np.ndarray, users: np.ndarray) -> np.ndarray:
        """Topic logits ``z`` (n, n_topics) of ``users`` (n,) after this window's taste shift
        (``z`` itself when there is none in this window)."""
        if self.taste_shift_map is None:
            return z
        a = self.taste_shift_strength
        moved = np.take_along_axis(z, self.taste_shift_map[users], axis=1)
        return ((1 - a) * z + a * moved).astype(np.float32)

    def final_tastes(self) -> np.ndarray:
        """Topic logits (n_users, n_topics) at the window's end: ``taste_end``, shifted when the
        taste shift happened in this window. The next window starts from them."""
        if self.taste_shift_map is None:
            return self.taste_end
        return self.shifted_logits(self.taste_end, np.arange(self.n_users))


def parse_start(start: str) -> int:
    """ISO-8601 start instant -> epoch milliseconds (UTC)."""
    return int(datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp() * 1000)


def build_world(cfg: SimulationConfig) -> World:
    """Draw all entities for ``cfg`` (deterministic for ``cfg.seed``)."""
    ss = np.random.SeedSequence([cfg.seed, 0x57D])
    rng_u, rng_c, rng_v = (np.random.default_rng(s) for s in ss.spawn(3))
    start = parse_start(cfg.start)
    end = start + cfg.days * DAY_MS
    topics = (
        tuple(list(TOPIC_WORDS)[: cfg.n_topics])
        if cfg.n_topics <= len(TOPIC_WORDS)
        else (
            tuple(TOPIC_WORDS) + tuple(f"topic{i}" for i in range(len(TOPIC_WORDS), cfg.n_topics))
        )
    )
    k = cfg.n_topics
    # Some topics are broadly popular (music, gaming), others niche: a shared topic offset.
    topic_base = rng_c.normal(0.0, 0.8, k)

    # ---- users
    nu = cfg.n_users
    is_new = rng_u.random(nu) < cfg.new_user_share
    signup = np.where(
        is_new,
        start + (rng_u.random(nu) * 0.9 * (end - start)).astype(np.int64),
        start - (rng_u.random(nu) * 730 * DAY_MS).astype(np.int64) - HOUR_MS,
    ).astype(np.int64)
    country = rng_u.choice(len(COUNTRIES), nu, p=COUNTRY_P).astype(np.int8)
    age = rng_u.choice(len(AGE_BUCKETS), nu, p=AGE_P).astype(np.int8)
    device = rng_u.choice(len(DEVICES), nu, p=DEVICE_P).astype(np.int8)
    allows_explicit = (age > 0) & (rng_u.random(nu) < 0.7)
    # Heavy-tailed activity (a few heavy users, many light ones), mean 1.
    activity = rng_u.lognormal(0.0, 1.0, nu)
    activity /= activity.mean()
    taste_start = (topic_base[None, :] + rng_u.normal(0.0, 1.6, (nu, k))).astype(np.float32)
    taste_end = (taste_start + rng_u.normal(0.0, cfg.taste_drift, (nu, k))).astype(np.float32)

    # ---- creators
    nc = cfg.n_creators
    tb = np.exp(topic_base) / np.exp(topic_base).sum()
    creator_topic = rng_c.choice(k, nc, p=tb).astype(np.int16)
    creator_country = rng_c.choice(len(COUNTRIES), nc, p=COUNTRY_P).astype(np.int8)
    creator_pop = rng_c.normal(0.0, 1.3, nc).astype(np.float32)
    creator_created = start - (rng_c.random(nc) * 1500 * DAY_MS).astype(np.int64) - 400 * DAY_MS

    # favourite creators: drawn from creators in the user's top topics, weighted by reach
    favourites = _favourites(rng_u, taste_start, creator_topic, creator_pop, nc)

    # ---- videos
    nv = cfg.n_videos
    # Prolific creators upload more: per-creator upload rate ~ lognormal, correlated with reach.
    rate = np.exp(0.5 * creator_pop + rng_c.normal(0.0, 0.8, nc))
    video_creator = rng_v.choice(nc, nv, p=rate / rate.sum()).astype(np.int32)
    own = rng_v.random(nv) < 0.85
    video_topic = np.where(own, creator_topic[video_creator], rng_v.choice(k, nv, p=tb)).astype(
        np.int16
    )
    t2 = rng_v.integers(0, k, nv)
    has2 = (rng_v.random(nv) < 0.3) & (t2 != video_topic)
    video_topic2 = np.where(has2, t2, -1).astype(np.int16)
    video_quality = (0.3 * creator_pop[video_creator] + rng_v.normal(0.0, 0.8, nv)).astype(
        np.float32
    )
    # Durations: a mix of shorts (~25 s) and long-form (~8 min), in seconds.
    short = rng_v.random(nv) < 0.35
    duration = np.where(
        short, rng_v.lognormal(np.log(25), 0.5, nv), rng_v.lognormal(np.log(480), 0.8, nv)
    )
    duration = np.clip(np.round(duration), 5, 7200).astype(np.float32)
    fresh = rng_v.random(nv) < cfg.fresh_upload_share
    # Older catalog: upload ages skew recent (exponential, mean 120 days, capped at 3 years).
    age_ms = np.minimum(rng_v.exponential(120.0, nv), 1095.0) * DAY_MS
    upload = np.where(
        fresh,
        start + (rng_v.random(nv) * (end - start)).astype(np.int64),
        start - age_ms.astype(np.int64) - 60_000,
    ).astype(np.int64)
    upload = np.maximum(upload, creator_created[video_creator] + 60_000)
    is_explicit = rng_v.random(nv) < cfg.explicit_share
    vocab, title_words = _titles(rng_v, topics, video_topic, video_topic2)

    world = World(
        cfg=cfg, start_ms=start, end_ms=end, topics=topics,
        signup_ms=signup, country=country, age=age, device=device,
        allows_explicit=allows_explicit, activity=activity,
        taste_start=taste_start, taste_end=taste_end, favourites=favourites,
        creator_topic=creator_topic, creator_country=creator_country, creator_pop=creator_pop,
        creator_created_ms=creator_created.astype(np.int64),
        video_creator=video_creator, video_topic=video_topic, video_topic2=video_topic2,
        video_quality=video_quality, duration_s=duration, upload_ms=upload,
        is_explicit=is_explicit, title_words=title_words, vocab=vocab,
    )  # fmt: skip
    return schedule_taste_shift(world, cfg)


def schedule_taste_shift(w: World, cfg: SimulationConfig) -> World:
    """``w`` (a window with no shift recorded yet) with ``cfg.taste_shift`` scheduled.

    The shift is due ``start_day`` days after ``w.taste_shift_origin_ms`` (set to this window's
    start when the world had no shift configured before). It happens once: in the first window
    that reaches the due instant (at that instant, or at the window's start when an earlier
    window ran without the shift configured). ``w`` itself when ``cfg`` has no shift.
    """
    shift = cfg.taste_shift
    if shift is None or w.taste_shifted:
        return w
    origin = w.start_ms if w.taste_shift_origin_ms is None else w.taste_shift_origin_ms
    due = origin + round(shift.start_day * DAY_MS)
    if due >= w.end_ms:
        return replace(w, taste_shift_origin_ms=origin)
    return replace(
        w,
        taste_shift_origin_ms=origin,
        taste_shifted=True,
        taste_shift_ms=max(due, w.start_ms),
        taste_shift_map=taste_shift_map(cfg.seed, shift, w.n_users, len(w.topics)),
        taste_shift_strength=shift.strength,
    )


def taste_shift_map(seed: int, shift: TasteShift, n_users: int, k: int) -> np.ndarray:
    """(n_users, k) topic maps of a taste shift: for ``share_of_users`` of the users (drawn
    without replacement), a uniformly random k-cycle over the topics (every topic takes another
    topic's logit); the identity for the others. Deterministic for ``seed`` and ``shift.seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5A1F7, shift.seed]))
    out = np.broadcast_to(np.arange(k, dtype=np.int16), (n_users, k)).copy()
    hit = rng.permutation(n_users)[: round(shift.share_of_users * n_users)]
    order = np.argsort(rng.random((len(hit), k)), axis=1).astype(np.int16)
    cycle = np.empty_like(order)
    # topic order[i] takes the logit of topic order[i + 1]: one cycle through all k topics
    np.put_along_axis(cycle, order, np.roll(order, -1, axis=1), axis=1)
    out[hit] = cycle
    return out


def _favourites(
    rng: np.random.Generator,
    taste: np.ndarray,
    creator_topic: np.ndarray,
    creator_pop: np.ndarray,
    nc: int,
    n_fav: int = 3,
) -> np.ndarray:
    """For each user, ``n_fav`` creators of their favourite topics, weighted by creator reach."""
    nu, k = taste.shape
    # the user's top topic at the start of the window
    top = np.argmax(taste + rng.gumbel(size=taste.shape).astype(np.float32), axis=1)
    order = np.lexsort((-creator_pop, creator_topic))  # creators grouped by topic
    counts = np.bincount(creator_topic, minlength=k)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    w = np.exp(creator_pop[order].astype(np.float64))
    cum = np.cumsum(w)
    cum0 = np.concatenate([[0.0], cum])
    out = np.empty((nu, n_fav), dtype=np.int32)
    for j in range(n_fav):
        t = top if j < 2 else rng.integers(0, k, nu)
        lo, hi = offsets[t], offsets[t + 1]
        empty = hi == lo
        u = cum0[lo] + rng.random(nu) * (cum0[hi] - cum0[lo])
        pos = np.clip(np.searchsorted(cum, u, side="right"), lo, np.maximum(hi - 1, lo))
        pick = order[np.minimum(pos, nc - 1)]
        out[:, j] = np.where(empty, rng.integers(0, nc, nu), pick)
    return out


def _titles(
    rng: np.random.Generator,
    topics: tuple[str, ...],
    topic: np.ndarray,
    topic2: np.ndarray,
    n_words: int = 5,
) -> tuple[tuple[str, ...], np.ndarray]:
    """Titles as word codes: 2-4 words of the topic(s), plus generic filler words."""
    words_per = [TOPIC_WORDS.get(t, (t, f"{t}s", f"{t}ing")) for t in topics]
    vocab_list: list[str] = []
    offsets = []
    for ws in words_per:
        offsets.append(len(vocab_list))
        vocab_list.extend(ws)
    sizes = np.array([len(ws) for ws in words_per])
    g0 = len(vocab_list)
    vocab_list.extend(GENERIC_WORDS)
    offsets_a = np.array(offsets)
    n = len(topic)
    out = np.full((n, n_words), -1, dtype=np.int16)
    n_topic_words = rng.integers(2, 5, n)
    for j in range(n_words):
        # secondary topic supplies the last topical word when present
        tj = np.where((j == 1) & (topic2 >= 0), topic2, topic)
        tj = np.maximum(tj, 0)
        tw = offsets_a[tj] + (rng.random(n) * sizes[tj]).astype(np.int64)
        gw = g0 + rng.integers(0, len(GENERIC_WORDS), n)
        use_topic = j < n_topic_words
        filler = rng.random(n) < 0.5
        out[:, j] = np.where(use_topic, tw, np.where(filler, gw, -1))
    return tuple(vocab_list), out
