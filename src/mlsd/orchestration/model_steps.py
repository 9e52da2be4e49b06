"""The model steps of a retraining run: ``train`` (the challenger, on everything before the
latest holdout) and ``evaluate`` (challenger and champion on that holdout and on earlier
backtest windows of the same length).

The champion is judged as it would be serving at each cut: its bundle, with the events between
its training data's end and the cut applied to its online state (what the service's event log
does), so that both models know the same history; truth is what users validly watched in the
window that they had not before (:func:`mlsd.evaluation.holdout.temporal_holdout`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlsd.data.dataset import Dataset, load_dataset
from mlsd.evaluation.holdout import temporal_holdout
from mlsd.evaluation.metrics import evaluate
from mlsd.orchestration.data_steps import dataset_path
from mlsd.orchestration.run import Run, RunStopped
from mlsd.pipeline import PipelineConfig, Recommender
from mlsd.serving.bundle import load_bundle, read_manifest, save_bundle

__all__ = ["evaluate_models", "train"]

K = 20
DAY_MS = 86_400_000


def _ms(events: pa.Table) -> np.ndarray:
    return pc.cast(events.column("timestamp"), pa.int64()).to_numpy()


def _before(ds: Dataset, cut_ms: int, since_ms: int | None = None) -> pa.Table:
    t = _ms(ds.events)
    keep = t < cut_ms if since_ms is None else (t >= since_ms) & (t < cut_ms)
    return ds.events.filter(pa.array(keep))


def cuts(run: Run, ds: Dataset) -> list[int]:
    """The cut of each evaluation window, latest first (epoch ms)."""
    end = int(_ms(ds.events).max()) + 1
    width = int(run.cfg.holdout_days * DAY_MS)
    return [end - (i + 1) * width for i in range(1 + run.cfg.backtest_windows)]


def _config(run: Run) -> PipelineConfig:
    if run.cfg.pipeline_config is not None:
        return PipelineConfig.model_validate(run.cfg.pipeline_config)
    return PipelineConfig.model_validate(read_manifest(run.champion_bundle())["config"])


def shuffle_within_users(events: pa.Table, seed: int) -> pa.Table:
    """The events with ``video_id`` permuted among each user's own rows: what a user did no
    longer goes with what they were shown (labels shuffled within users)."""
    rng = np.random.default_rng(seed)
    users = events.column("user_id").to_numpy()
    order = np.lexsort((rng.random(len(users)), users))  # rows grouped by user, random within
    grouped = np.argsort(users, kind="stable")  # the same groups, in row order
    videos = events.column("video_id").to_numpy().copy()
    videos[grouped] = videos[order]
    i = events.schema.get_field_index("video_id")
    return events.set_column(i, "video_id", pa.array(videos))


def _fit(run: Run, ds: Dataset, cut_ms: int) -> Recommender:
    events = _before(ds, cut_ms)
    if run.cfg.challenger_fault == "shuffle-labels":
        events = shuffle_within_users(events, run.cfg.seed)
    train_ds = Dataset(events=events, videos=ds.videos, users=ds.users, creators=ds.creators)
    rec = Recommender(_config(run), progress=lambda m: run.say(f"train: {m}"))
    rec.fit(train_ds)
    return rec


def train(run: Run) -> dict[str, Any]:
    """Fit the challenger on every event before the latest holdout; save it as the bundle
    ``challenger/`` (atomic: a run killed here leaves no bundle and re-trains)."""
    ds = load_dataset(dataset_path(run))
    cut = cuts(run, ds)[0]
    t0 = time.perf_counter()
    rec = _fit(run, ds, cut)
    out = run.path("challenger")
    save_bundle(
        rec,
        out,
        # the config as given (``auto`` settings unresolved), as mlsd train records it: the next
        # retrain tunes again instead of inheriting this fit's choices
        config=_config(run).model_dump(mode="json"),
        data_fingerprint=rec.data_fingerprints_["events"],
        metrics={
            "ranker": rec.ranker_.metrics_,
            "counts": rec.stats.counts,
            "seconds": {k: round(v, 2) for k, v in rec.stats.seconds.items()},
        },
        overwrite=True,
    )
    seconds = time.perf_counter() - t0
    run.say(f"train: challenger {rec.version} in {seconds:.1f} s")
    return {
        "bundle": str(out),
        "model_version": rec.version,
        "cut_ms": cut,
        "seconds": round(seconds, 2),
        "fault": run.cfg.challenger_fault,
    }


def _champion_at(run: Run, ds: Dataset, cut_ms: int) -> tuple[Any, int]:
    """The champion with the events after its training data, up to ``cut_ms``, applied;
    returns (model, its training data's end in ms)."""
    model = load_bundle(run.champion_bundle())
    trained = load_dataset(run.champion_bundle() / "artifacts" / "data")
    end = int(_ms(trained.events).max()) + 1
    if cut_ms > end:
        model.apply_events(_before(ds, cut_ms, since_ms=end))
    return model, end


def _score(model: Any, holdout: Any, users: int, seed: int) -> dict[str, float]:
    test = holdout.test.sample(users, seed=seed)
    recs = np.asarray(model.recommend(test.user_ids, K, exclude_seen=True))
    ev = evaluate(recs, test.truth, ks=(K,), train_counts=test.train_counts)
    return {
        f"ndcg@{K}": float(ev.metrics[f"ndcg@{K}"]),
        f"recall@{K}": float(ev.metrics[f"recall@{K}"]),
        "users": len(test),
    }


def evaluate_models(run: Run) -> dict[str, Any]:
    """Champion and challenger on the latest holdout and the backtest windows."""
    ds = load_dataset(dataset_path(run))
    width = timedelta(days=run.cfg.holdout_days)
    windows: list[dict[str, Any]] = []
    for i, cut in enumerate(cuts(run, ds)):
        when = datetime.fromtimestamp(cut / 1000, UTC)
        holdout = temporal_holdout(ds, split_time=when, horizon=width)
        if len(holdout.test) == 0:
            windows.append({"cut": when.isoformat(), "skipped": "no test users in the window"})
            continue
        champion, champion_end = _champion_at(run, ds, cut)
        if cut < champion_end:
            windows.append(
                {
                    "cut": when.isoformat(),
                    "skipped": "the champion was trained on "
                    "this window (its data ends after the cut)",
                }
            )
            continue
        challenger = load_bundle(run.results["train"]["bundle"]) if i == 0 else _fit(run, ds, cut)
        row: dict[str, Any] = {
            "window": "latest" if i == 0 else f"backtest {i}",
            "cut": when.isoformat(),
            "days": run.cfg.holdout_days,
            "champion": _score(champion, holdout, run.cfg.eval_users, run.cfg.seed),
            "challenger": _score(challenger, holdout, run.cfg.eval_users, run.cfg.seed),
        }
        run.say(
            f"evaluate {row['window']}: NDCG@{K} champion {row['champion'][f'ndcg@{K}']:.4f}, "
            f"challenger {row['challenger'][f'ndcg@{K}']:.4f} ({row['champion']['users']} users)"
        )
        windows.append(row)
    if not any("champion" in w for w in windows):
        raise RunStopped(
            "evaluate: no window to compare the models on: "
            + "; ".join(f"{w['cut']}: {w.get('skipped')}" for w in windows)
        )
    return {"k": K, "windows": windows}


def bundle_mb(path: str | Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20
