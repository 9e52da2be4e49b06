"""Offline evaluation of an experiment's arms, for the offline-vs-online comparison: each arm's
model serves (``serve``, as online, at the start of the window) the users who have valid
watches in a logged window the models did not see (e.g. ``mlsd simulate --continue``: the next
days under the platform's own logging policy), scored by NDCG@k against those watches.

This is what an offline evaluation of a recommender usually is: logged data of another
policy. The online experiment then says how far it predicts the lift.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlsd.config import LabelConfig
from mlsd.data.dataset import load_dataset
from mlsd.data.labels import positives
from mlsd.errors import DataError
from mlsd.evaluation.metrics import ndcg_at_k
from mlsd.pipeline import RequestCtx, Servable

__all__ = ["offline_ndcg"]


def offline_ndcg(
    arms: Sequence[tuple[str, Servable]],
    window: str | Path,
    after_ms: int,
    *,
    k: int = 20,
    max_users: int = 2000,
    seed: int = 0,
    say: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """NDCG@``k`` per arm on the valid watches logged in ``window`` (a dataset directory)
    after ``after_ms`` (the end of the training data), over at most ``max_users`` of their
    users (a seeded sample, the same for every arm). Raises :class:`DataError` when the window
    has no valid watch after ``after_ms``."""
    ds = load_dataset(window)
    pos = positives(ds.events, ds.videos, LabelConfig(), include_likes=False)
    t = pc.cast(pos.column("timestamp"), pa.int64()).to_numpy()
    keep = t > after_ms
    users = pos.column("user_id").to_numpy()[keep]
    videos = pos.column("video_id").to_numpy()[keep]
    if not len(users):
        raise DataError(f"{window}: no valid watch after the training data's end; nothing to score")
    test = np.unique(users)
    rng = np.random.default_rng(seed)
    if len(test) > max_users:
        test = np.sort(rng.choice(test, max_users, replace=False))
    order = np.argsort(users, kind="stable")
    bounds = np.searchsorted(users[order], test)
    ends = np.searchsorted(users[order], test, side="right")
    truth = [np.unique(videos[order][a:b]) for a, b in zip(bounds, ends, strict=True)]
    out = {}
    for name, model in arms:
        recs = np.full((len(test), k), -1, dtype=np.int64)
        for i, u in enumerate(test.tolist()):
            got = [it.video_id for it in model.serve(u, k, RequestCtx(time_ms=after_ms)).items]
            recs[i, : min(k, len(got))] = got[:k]
        out[name] = float(np.nanmean(ndcg_at_k(recs, truth, k)))
        if say is not None:
            say(f"offline NDCG@{k} of {name}: {out[name]:.4f} ({len(test):,} users)")
    return out
