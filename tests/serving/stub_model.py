"""A small bundleable Servable for tests (and for the serving benchmark before a real bundle
exists): it knows videos 1..n_videos and users 0..n_users-1 and ranks ``n_candidates`` random
candidates by a dot product of embeddings, so a request costs a little real numpy work.

A real ``mlsd serve`` subprocess can load it with
``MLSD_BUNDLE_KINDS=stub=tests.serving.stub_model:StubModel`` and the repository root on
``PYTHONPATH``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mlsd.errors import BundleError
from mlsd.pipeline import RequestCtx, Served, ServedItem, ServingOptions, ServingStatus

KIND = "stub"
KIND_TARGET = "tests.serving.stub_model:StubModel"


class ReadOnlyServable:
    """The parts of a Servable that HTTP-layer test models do not exercise: no similar
    videos, every video known, events ignored, no online state (snapshots are empty and
    restore only into the same version)."""

    def similar(self, video_id: int, k: int) -> list[ServedItem]:
        return []

    def known_videos(self, video_ids: np.ndarray) -> np.ndarray:
        return np.ones(len(video_ids), bool)

    def apply_events(self, events: pa.Table) -> None:
        pass

    def online_snapshot(self) -> bytes:
        return f"stub-online-state:{getattr(self, 'version', None)}".encode()

    def restore_online(self, blob: bytes) -> None:
        if blob != self.online_snapshot():
            raise BundleError(f"online-state snapshot {blob[:40]!r}; this model is version "
                              f"{getattr(self, 'version', None)!r}")  # fmt: skip

    def rewrite_online_store(self) -> int:
        return 0

    def repopulate_online_store(self) -> int:
        return 0

    def refresh_candidates(self, limit: int = 64) -> int:
        return 0

    def online_store_problem(self) -> str | None:
        return None

    def user_state(self, user_id: int) -> dict[str, Any]:
        return {"history": [], "seen": 0, "blocked_creators": [], "features": {}}

    def prepare(self, options: ServingOptions, say: Callable[[str], None]) -> None:
        pass

    def status(self) -> ServingStatus:
        return ServingStatus()


class StubModel(ReadOnlyServable):
    def __init__(
        self,
        version: str = "stub-1",
        *,
        n_videos: int = 100,
        n_users: int = 1000,
        dim: int = 16,
        n_candidates: int = 50,
        seed: int = 0,
    ) -> None:
        self.version = version
        self.n_videos, self.n_users, self.dim = n_videos, n_users, dim
        self.n_candidates = min(n_candidates, n_videos)
        self.seed = seed
        rng = np.random.default_rng(seed)
        self.item_emb = rng.standard_normal((n_videos, dim)).astype(np.float32)
        self.popular = np.arange(1, n_videos + 1, dtype=np.int64)
        self.applied = 0

    # --- Servable -------------------------------------------------------------------------
    def serve(self, user_id: int, k: int, ctx: RequestCtx, explain: bool = False) -> Served:
        t0 = time.perf_counter()
        if user_id >= self.n_users:  # cold start: popular order
            ids = self.popular[:k]
            items = [ServedItem(int(v), 1.0 / (i + 1), "popular") for i, v in enumerate(ids)]
            return Served(user_id, items, cold_start=True, n_candidates=len(ids))
        rng = np.random.default_rng(user_id)
        u = rng.standard_normal(self.dim).astype(np.float32)
        cand = rng.choice(self.n_videos, size=self.n_candidates, replace=False)
        scores = self.item_emb[cand] @ u
        k = min(k, len(cand))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        items = [
            ServedItem(
                int(cand[j]) + 1,
                float(scores[j]),
                "embedding",
                components={"dot": float(scores[j])} if explain else {},
            )
            for j in top
        ]
        ms = (time.perf_counter() - t0) * 1000
        return Served(user_id, items, n_candidates=len(cand), stage_ms={"rank": ms})

    def similar(self, video_id: int, k: int) -> list[ServedItem]:
        v = self.item_emb[video_id - 1]
        s = self.item_emb @ v
        order = np.argsort(-s)[: k + 1]
        return [
            ServedItem(int(j) + 1, float(s[j]), "embedding") for j in order if j != video_id - 1
        ][:k]

    def known_videos(self, video_ids: np.ndarray) -> np.ndarray:
        return (video_ids >= 1) & (video_ids <= self.n_videos)

    def apply_events(self, events: pa.Table) -> None:
        self.applied += events.num_rows

    # --- bundle contract: safe formats only (JSON + .npy without pickle) -------------------
    def save(self, directory: Path) -> None:
        meta = {
            "version": self.version,
            "n_videos": self.n_videos,
            "n_users": self.n_users,
            "dim": self.dim,
            "n_candidates": self.n_candidates,
            "seed": self.seed,
        }
        (directory / "meta.json").write_text(json.dumps(meta))
        np.save(directory / "item_emb.npy", self.item_emb, allow_pickle=False)

    @classmethod
    def load(cls, directory: Path, *, online_store: Any = None) -> StubModel:
        meta = json.loads((directory / "meta.json").read_text())
        m = cls(
            meta["version"],
            n_videos=meta["n_videos"],
            n_users=meta["n_users"],
            dim=meta["dim"],
            n_candidates=meta["n_candidates"],
            seed=meta["seed"],
        )
        m.item_emb = np.load(directory / "item_emb.npy", allow_pickle=False)
        if m.item_emb.shape != (m.n_videos, m.dim):
            raise ValueError(f"item_emb.npy has shape {m.item_emb.shape}")
        return m
