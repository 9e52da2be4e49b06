"""The training-serving skew check.

For sampled (user, video, time) points, compute every feature twice: offline with
:func:`~mlsd.features.offline.build_training_set` (the as-of join over the whole log), and
online by replaying the log into a fresh :class:`~mlsd.features.stream.OnlineFeatures` up to
(not including) each point's time, advancing its clock to that time, and reading the
request-time feature vector exactly as serving does. Then report, per feature, how many points
disagree.

"Agree" means ``|offline - online| <= atol + rtol * |offline|`` (NaN equals NaN). Counts agree
exactly; smoothed rates and shares are float32 values of float64 computations whose sums were
accumulated in a different order on each side, hence a tolerance of a few float32 ulps.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlsd.config import LabelConfig
from mlsd.data.dataset import Dataset
from mlsd.errors import DataError
from mlsd.features.definitions import VIDEO_REC
from mlsd.features.memory_store import MemoryStore
from mlsd.features.offline import build_training_set
from mlsd.features.registry import FeatureRegistry
from mlsd.features.signals import Catalog, Vocab, timestamps_ms
from mlsd.features.store import OnlineStore
from mlsd.features.stream import OnlineFeatures

__all__ = ["FeatureSkew", "SkewReport", "sample_points", "skew_check"]

RTOL = 1e-5
ATOL = 1e-6


@dataclass
class FeatureSkew:
    """Agreement of one feature over the sampled points."""

    name: str
    n: int
    mismatches: int
    max_abs_diff: float
    example: dict[str, Any] | None = None  # the first disagreeing point

    @property
    def rate(self) -> float:
        return self.mismatches / self.n if self.n else 0.0


@dataclass
class SkewReport:
    """Per-feature mismatch counts of offline vs online values at ``n_points`` points."""

    n_points: int
    features: list[FeatureSkew]
    rtol: float = RTOL
    atol: float = ATOL
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def mismatches(self) -> int:
        return sum(f.mismatches for f in self.features)

    @property
    def mismatched(self) -> list[str]:
        """Names of the features with at least one mismatch."""
        return [f.name for f in self.features if f.mismatches]

    @property
    def ok(self) -> bool:
        return self.mismatches == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_points": self.n_points,
            "rtol": self.rtol,
            "atol": self.atol,
            "mismatches": self.mismatches,
            "seconds": self.seconds,
            "features": [{**asdict(f), "rate": f.rate} for f in self.features],
        }


def sample_points(dataset: Dataset, n_points: int, seed: int = 0) -> pa.Table:
    """``n_points`` impressions drawn at random (without replacement, sorted by time):
    ``user_id, video_id, timestamp, device, surface`` - the requests serving answered."""
    ev = dataset.events
    imp = np.flatnonzero(
        np.asarray(pc.equal(ev.column("event_type"), "impression").fill_null(False))
    )
    if len(imp) == 0:
        raise DataError("skew check: the events hold no impressions to sample points from")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(imp, size=min(n_points, len(imp)), replace=False))
    pts = ev.select(["user_id", "video_id", "timestamp", "device", "surface"]).take(pick)
    order = np.argsort(timestamps_ms(pts.column("timestamp")), kind="stable")
    return pts.take(pa.array(order))


def skew_check(
    dataset: Dataset,
    n_points: int = 200,
    seed: int = 0,
    *,
    store: OnlineStore | None = None,
    features: Sequence[str] | None = None,
    registry: FeatureRegistry = VIDEO_REC,
    label_cfg: LabelConfig | None = None,
    rtol: float = RTOL,
    atol: float = ATOL,
) -> SkewReport:
    """Compare offline and online feature values at ``n_points`` sampled impressions.

    ``store`` (default: a new MemoryStore) receives the replayed online state; pass an empty
    RedisStore namespace to check the Redis path. ``features`` default to every matrix feature.
    """
    t0 = time.perf_counter()
    pts = sample_points(dataset, n_points, seed)
    vocab = Vocab.from_dataset(dataset)
    wanted = [f.name for f in registry.resolve(features)]
    offline = build_training_set(dataset, pts, features=wanted, registry=registry,
                                 vocab=vocab, label_cfg=label_cfg)  # fmt: skip
    t1 = time.perf_counter()
    online = OnlineFeatures(
        store if store is not None else MemoryStore(),
        Catalog.from_dataset(dataset, vocab),
        dataset.videos,
        registry=registry,
        label_cfg=label_cfg,
    )
    online.flush(everything=True)  # the catalog's static attributes, as serving would have
    ev = dataset.events
    ts = timestamps_ms(ev.column("timestamp"))
    if not bool(np.all(ts[1:] >= ts[:-1])):
        order = np.argsort(ts, kind="stable")
        ev, ts = ev.take(pa.array(order)), ts[order]
    p_ts = timestamps_ms(pts.column("timestamp"))
    users = np.asarray(pts.column("user_id").to_numpy(zero_copy_only=False), dtype=np.int64)
    videos = np.asarray(pts.column("video_id").to_numpy(zero_copy_only=False), dtype=np.int64)
    devices = pts.column("device").to_pylist()
    surfaces = pts.column("surface").to_pylist()
    got = np.empty((len(p_ts), len(wanted)), dtype=np.float32)
    done = 0
    for i in range(len(p_ts)):
        t = int(p_ts[i])
        upto = int(np.searchsorted(ts, t, side="left"))  # events strictly before t
        if upto > done:
            online.update_from_events(ev.slice(done, upto - done))
            done = upto
        online.advance_to(t)
        got[i] = online.request_features(int(users[i]), videos[i : i + 1], t,
                                         device=devices[i], surface=surfaces[i],
                                         features=wanted)[0]  # fmt: skip
    t2 = time.perf_counter()
    rows = []
    for j, name in enumerate(wanted):
        off = np.asarray(offline.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)
        on = got[:, j].astype(np.float64)
        bad = ~np.isclose(on, off, rtol=rtol, atol=atol, equal_nan=True)
        diff = np.abs(on - off)
        diff = diff[~np.isnan(diff)]
        example = None
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            example = {
                "point": k,
                "user_id": int(users[k]),
                "video_id": int(videos[k]),
                "t_ms": int(p_ts[k]),
                "offline": float(off[k]),
                "online": float(on[k]),
            }
        worst = float(diff.max()) if len(diff) else 0.0
        rows.append(FeatureSkew(name, len(off), int(bad.sum()), worst, example))
    return SkewReport(
        n_points=len(p_ts),
        features=rows,
        rtol=rtol,
        atol=atol,
        seconds={"offline": t1 - t0, "online_replay": t2 - t1},
    )
