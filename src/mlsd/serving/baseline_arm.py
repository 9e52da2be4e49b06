"""A baseline as a servable model: MostPop, ALS, ItemKNN or EASE (:mod:`mlsd.evaluation.baselines`)
fitted on a bundle's training positives and served through the :class:`~mlsd.pipeline.Servable`
protocol, so that an experiment can put a baseline in an arm (the book's "compare against a
simple heuristic online").

A baseline is a static model: events do not change its scores; they only add to the items a
user has watched, which it never recommends again (as the pipeline's re-ranking drops
watched items). The catalog, the string ids and item similarity are the bundle's.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from mlsd.config import LabelConfig
from mlsd.data.labels import positives
from mlsd.errors import BundleError, ConfigError
from mlsd.evaluation.baselines.tuned import BASELINES
from mlsd.pipeline.servable import Servable, ServingOptions
from mlsd.pipeline.types import RequestCtx, Served, ServedItem, ServingStatus

__all__ = ["BASELINE_POLICIES", "BaselineArm"]

#: Arm policy name -> baseline class name (:data:`mlsd.evaluation.baselines.tuned.BASELINES`).
BASELINE_POLICIES = {"most-popular": "MostPop", "als": "ALS", "itemknn": "ItemKNN", "ease": "EASE"}


class BaselineArm:
    """``policy`` (a key of :data:`BASELINE_POLICIES`) fitted on the positives (valid watches)
    of ``base``'s training data (``base.dataset_``: a loaded :class:`~mlsd.pipeline.Recommender`);
    ``params``: the baseline's hyperparameters (default: its defaults). Raises
    :class:`ConfigError` for an unknown policy or a base without training data."""

    def __init__(self, base: Servable, policy: str, params: dict[str, Any] | None = None) -> None:
        if policy not in BASELINE_POLICIES:
            raise ConfigError(
                f"arm policy {policy!r}: expected 'model' or one of {', '.join(BASELINE_POLICIES)}"
            )
        ds = getattr(base, "dataset_", None)
        if ds is None:
            raise ConfigError(f"arm policy {policy!r} needs a bundle with its training data")
        self.base = base
        self.policy = policy
        cls = BASELINES[BASELINE_POLICIES[policy]]
        try:
            self.model = cls(**(params or {}))
        except TypeError as e:
            raise ConfigError(f"arm policy {policy!r}: bad parameters {params}: {e}") from None
        pos = positives(ds.events, ds.videos, LabelConfig(), include_likes=False)
        self.model.fit(
            (
                pos.column("user_id").to_numpy().astype(np.int64),
                pos.column("video_id").to_numpy().astype(np.int64),
                np.ones(pos.num_rows, np.float32),
            )
        )
        self.version = f"{policy}@{base.version}"
        self._watched: dict[int, set[int]] = {}
        self._lock = threading.Lock()
        self._label = LabelConfig()
        self._videos = ds.videos
        maps = getattr(base, "id_maps", None)
        if maps:
            self.id_maps = maps

    def serve(self, user_id: int, k: int, ctx: RequestCtx, explain: bool = False) -> Served:
        """The baseline's top ``k`` for the user, less what they watched since training."""
        watched = self._watched.get(int(user_id), set())
        got = self.model.recommend(np.array([user_id], np.int64), k + len(watched))[0]
        items = [int(v) for v in got.tolist() if v >= 0 and int(v) not in watched][:k]
        cold = not np.isin(user_id, self.model.user_ids_).item()
        return Served(
            int(user_id),
            [ServedItem(v, float(k - i), self.policy) for i, v in enumerate(items)],
            cold_start=cold,
            n_candidates=len(items),
        )

    def similar(self, video_id: int, k: int) -> list[ServedItem]:
        return self.base.similar(video_id, k)

    def known_videos(self, video_ids: np.ndarray) -> np.ndarray:
        return self.base.known_videos(video_ids)

    def apply_events(self, events: pa.Table) -> None:
        """Remember each user's valid watches (never recommended to them again)."""
        if events.num_rows == 0:
            return
        pos = positives(events, self._videos, self._label, include_likes=False, time_order=False)
        users = pos.column("user_id").to_numpy()
        videos = pos.column("video_id").to_numpy()
        with self._lock:
            for u, v in zip(users.tolist(), videos.tolist(), strict=True):
                self._watched.setdefault(int(u), set()).add(int(v))

    def refresh_candidates(self, limit: int = 64) -> int:
        return 0

    def online_snapshot(self) -> bytes:
        """JSON (no pickle: snapshots are files a restart reads back)."""
        with self._lock:
            watched = {str(u): sorted(v) for u, v in self._watched.items()}
        return json.dumps({"version": self.version, "watched": watched}).encode()

    def restore_online(self, blob: bytes) -> None:
        try:
            d = json.loads(blob)
            version = d["version"]
            watched = {int(u): {int(v) for v in vs} for u, vs in d["watched"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise BundleError(f"{self.version}: not a baseline arm snapshot ({e})") from None
        if version != self.version:
            raise BundleError(f"snapshot of {version}, not of {self.version}")
        with self._lock:
            self._watched = watched

    def rewrite_online_store(self) -> int:
        return 0

    def online_store_problem(self) -> str | None:
        return None

    def repopulate_online_store(self) -> int:
        return 0

    def user_state(self, user_id: int) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "watched_since_training": sorted(self._watched.get(int(user_id), set())),
        }

    def prepare(self, options: ServingOptions, say: Callable[[str], None]) -> None:
        say(f"{self.policy} baseline fitted on the bundle's training positives")

    def status(self) -> ServingStatus:
        return ServingStatus()
