"""The video-recommendation feature set (book chapter 6, "Feature engineering").

Each feature's ``compute`` below is the one function used offline and online. Rates are
smoothed with additive (Beta-prior) smoothing: ``(positives + m * s) / (trials + s)`` is the
posterior mean of a rate under a ``Beta(m * s, (1 - m) * s)`` prior (Beta-binomial empirical
Bayes, e.g. Murphy, *Machine Learning: a Probabilistic Perspective*, sec. 3.3). ``m`` is a rough
platform-wide rate and ``s`` a pseudo-count: a video with no impressions gets ``m``, one with
thousands gets its own rate. The constants are fixed (not fitted) so that a feature's value
never depends on which data a store was built from.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mlsd.features.registry import WINDOWS, Compute, Feature, FeatureRegistry
from mlsd.features.signals import DAY_MS, HOUR_MS, UPLOAD_EPOCH_MS

__all__ = ["PRIORS", "VIDEO_REC", "smoothed_rate"]

Inputs = Mapping[str, np.ndarray]

#: (prior mean m, pseudo-count s) per smoothed rate.
PRIORS: dict[str, tuple[float, float]] = {
    "valid_watch_rate": (0.10, 20.0),  # valid watches per impression
    "like_rate": (0.01, 100.0),  # likes per impression
    "completion": (0.5, 2.0),  # mean completion share of plays (Laplace-like)
}


def smoothed_rate(pos: np.ndarray, n: np.ndarray, prior: str) -> np.ndarray:
    """``(pos + m * s) / (n + s)`` with ``(m, s) = PRIORS[prior]``; zero counts give ``m``."""
    m, s = PRIORS[prior]
    out = np.add(np.asarray(pos, dtype=np.float64), m * s)
    return np.divide(out, np.add(np.asarray(n, dtype=np.float64), s), out=out)


def _field(name: str) -> Compute:
    """The raw input ``name`` as it is (a count, a catalog attribute, a request field)."""

    def compute(x: Inputs) -> np.ndarray:
        return np.asarray(x[name], dtype=np.float64)

    return compute


def _rate(pos: str, n: str, prior: str) -> Compute:
    def compute(x: Inputs) -> np.ndarray:
        return smoothed_rate(x[pos], x[n], prior)

    return compute


def _windowed(
    entity: str, prefix: str, windows: tuple[str, ...], kinds: tuple[str, ...]
) -> list[Feature]:
    """Windowed event features of one entity: ``<prefix>_<kind>_<window>``."""
    out: list[Feature] = []
    for w in windows:
        spec = {
            "impressions": ("count", 0.0, (f"imp_{w}",), _field(f"imp_{w}"), "impressions"),
            "plays": ("count", 0.0, (f"play_{w}",), _field(f"play_{w}"), "plays"),
            "valid_watches": (
                "count", 0.0, (f"valid_{w}",), _field(f"valid_{w}"),
                "valid watches (play >= 30 s, or >= 50% of a video under 60 s)",
            ),
            "valid_watch_rate": (
                "rate", PRIORS["valid_watch_rate"][0], (f"valid_{w}", f"imp_{w}"),
                _rate(f"valid_{w}", f"imp_{w}", "valid_watch_rate"),
                "smoothed valid watches per impression",
            ),
            "like_rate": (
                "rate", PRIORS["like_rate"][0], (f"like_{w}", f"imp_{w}"),
                _rate(f"like_{w}", f"imp_{w}", "like_rate"), "smoothed likes per impression",
            ),
            "mean_completion": (
                "rate", PRIORS["completion"][0], (f"comp_{w}", f"cplay_{w}"),
                _rate(f"comp_{w}", f"cplay_{w}", "completion"),
                "smoothed mean completion share of plays",
            ),
        }  # fmt: skip
        for kind in kinds:
            dtype, default, inputs, compute, what = spec[kind]
            out.append(
                Feature(
                    name=f"{prefix}_{kind}_{w}",
                    entity=entity,
                    source="events",
                    dtype=dtype,
                    default=default,
                    inputs=inputs,
                    compute=compute,
                    window=w,
                    description=f"{prefix.replace('_', ' ')} {what} over {w} "
                    f"(events in [floor_hour(t) - {WINDOWS[w]} h, t))",
                )
            )
    return out


# --- on-demand (request-time) computations -------------------------------------------------


def _video_age_h(x: Inputs) -> np.ndarray:
    upload_ms = np.asarray(x["video_upload_minute"], dtype=np.float64) * 60_000.0 + UPLOAD_EPOCH_MS
    return (np.asarray(x["request.t_ms"], dtype=np.float64) - upload_ms) / HOUR_MS


def _topic_shares(x: Inputs) -> np.ndarray:
    s = np.atleast_2d(np.asarray(x["topic_decay"], dtype=np.float64))
    tot = s.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, s / np.where(tot > 0, tot, 1.0), 0.0)


def _pick_topic(x: Inputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    raw = np.asarray(x["user_topic_affinity"])
    topic = np.asarray(x["video_topic"], dtype=np.float64)
    n = len(topic)
    if raw.ndim == 2 and len(raw) and raw.strides[0] == 0:
        # one user's vector repeated for every candidate (a request): work on the one row
        aff = np.broadcast_to(raw[0].astype(np.float64), raw.shape)
    else:
        aff = np.atleast_2d(raw.astype(np.float64, copy=False))
    if aff.shape[1] == 0:
        return np.zeros(n), np.zeros(n, dtype=bool), np.zeros((n, 0))
    ok = (topic >= 0) & (topic < aff.shape[1])
    code = np.where(ok, topic, 0).astype(np.int64)
    picked = aff[0][code] if aff.strides[0] == 0 else aff[np.arange(n), code]
    share = np.where(ok, picked, 0.0)
    return share, ok, aff


def _topic_affinity(x: Inputs) -> np.ndarray:
    return _pick_topic(x)[0]


def _topic_is_top(x: Inputs) -> np.ndarray:
    share, ok, aff = _pick_topic(x)
    if aff.shape[1] == 0:
        return np.zeros(len(share))
    top = np.full(len(aff), aff[0].max()) if aff.strides[0] == 0 else aff.max(axis=1)
    return (ok & (top > 0) & (share >= top)).astype(np.float64)


def _hour_of_day(x: Inputs) -> np.ndarray:
    return ((np.asarray(x["request.t_ms"], dtype=np.int64) // HOUR_MS) % 24).astype(np.float64)


def _day_of_week(x: Inputs) -> np.ndarray:
    # 1970-01-01 was a Thursday; Monday is 0.
    days = np.asarray(x["request.t_ms"], dtype=np.int64) // DAY_MS
    return ((days + 3) % 7).astype(np.float64)


_ALL = tuple(WINDOWS)

_FEATURES: list[Feature] = [
    # --- video: catalog attributes and request-time age ---
    Feature("video_age_h", "video", "request", "float", float("nan"),
            ("video_upload_minute", "request.t_ms"), _video_age_h,
            "hours from upload to the request (minute resolution; NaN if unknown)"),
    Feature("video_duration_s", "video", "videos", "float", float("nan"), ("duration_s",),
            _field("duration_s"), "duration in seconds (NaN if unknown)"),
    Feature("video_is_explicit", "video", "videos", "flag", 0.0, ("is_explicit",),
            _field("is_explicit"), "explicit-content flag"),
    Feature("video_topic", "video", "videos", "category", -1.0, ("topic",), _field("topic"),
            "primary topic (code in the topic vocabulary, -1 unknown)"),
    Feature("video_upload_minute", "video", "videos", "float", float("nan"), ("upload_minute",),
            _field("upload_minute"), "upload time, minutes since 2020-01-01 (input of age)",
            in_matrix=False),
    # --- video popularity and engagement ---
    *_windowed("video", "video", _ALL,
               ("impressions", "plays", "valid_watch_rate", "like_rate", "mean_completion")),
    # --- creator popularity, and the user's history with the creator ---
    *_windowed("creator", "creator", ("1d", "7d", "30d"), ("impressions", "valid_watch_rate")),
    *_windowed("user_creator", "user_creator", ("30d",),
               ("impressions", "valid_watches", "valid_watch_rate")),
    # --- user activity and taste ---
    *_windowed("user", "user", _ALL, ("impressions", "plays", "valid_watches")),
    *_windowed("user", "user", ("30d",), ("valid_watch_rate", "mean_completion")),
    Feature("user_topic_affinity", "user", "events", "vector", 0.0, ("topic_decay",),
            _topic_shares,
            "time-decayed share of the user's valid watches per topic (half-life 14 d; "
            "vector over the topic vocabulary; 0 without valid watches)",
            width="topics", in_matrix=False),
    # --- user x video ---
    Feature("user_video_topic_affinity", "user_video", "request", "rate", 0.0,
            ("user_topic_affinity", "video_topic"), _topic_affinity,
            "the user's time-decayed share of valid watches in the video's topic"),
    Feature("user_video_topic_is_top", "user_video", "request", "flag", 0.0,
            ("user_topic_affinity", "video_topic"), _topic_is_top,
            "1 if the video's topic is (one of) the user's top topics"),
    # --- context ---
    Feature("context_hour_of_day", "context", "request", "category", 0.0, ("request.t_ms",),
            _hour_of_day, "hour of the request, 0-23 (UTC)"),
    Feature("context_day_of_week", "context", "request", "category", 0.0, ("request.t_ms",),
            _day_of_week, "day of the week of the request, Monday = 0 (UTC)"),
    Feature("context_device", "context", "request", "category", -1.0, ("request.device",),
            _field("request.device"), "device (code in the device vocabulary, -1 unknown)"),
    Feature("context_surface", "context", "request", "category", -1.0, ("request.surface",),
            _field("request.surface"), "surface (code in the surface vocabulary, -1 unknown)"),
]  # fmt: skip

#: The registry of the video-recommendation system.
VIDEO_REC = FeatureRegistry(_FEATURES)
