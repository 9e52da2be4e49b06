"""Benchmark: the ranker trade-off (accuracy against latency and size) on the same feature rows.

For each dataset the full pipeline (:class:`~mlsd.pipeline.Recommender`, GBDT ranker) is
fitted once on the training side of the holdout that ``mlsd evaluate`` uses (``small``:
temporal, the last 7 days; Amazon Beauty: per-user temporal 80/20), and the rows and
validation split its ranker was trained on are kept. On those rows every ranker is trained:

- ``gbdt``: the pipeline's LightGBM ranker, predicting with LightGBM;
- ``gbdt_compiled``: the same boosters compiled with lleaves (identical margins);
- ``deep``: the DCN-v2 multi-task network (:class:`~mlsd.ranking.DeepRanker`);
- ``distilled``: a small MLP trained on the GBDT's probabilities;
- ``int8``: the deep network with its Linear layers quantized to int8.

Each then ranks the pipeline's candidates for the test users (same retrieval, features and
rules; only the ranker is swapped) for NDCG@20 and recall@20, and is timed ranking 500
candidate rows in process (``score``, one thread; p50/p99 over ``--calls`` calls). Size: the
bytes ``save`` writes (the compiled GBDT: its native code). ``--serve`` also saves a bundle
per ranker and drives ``mlsd serve`` at 200 rps on ``small`` (needs a quiet machine).

Writes ``benchmarks/results/rankers.json``; ``update_readme.py`` renders the README table.

    python benchmarks/rankers.py                             # both datasets, full size
    python benchmarks/rankers.py --max-users 600 --calls 100 # a smoke run (minutes)
    python benchmarks/rankers.py --only small --serve --serve-duration 60
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_result

from mlsd.config import SimulationConfig
from mlsd.data.dataset import Dataset
from mlsd.data.loaders import load
from mlsd.data.simulate import simulate
from mlsd.evaluation import per_user_holdout, temporal_holdout
from mlsd.evaluation.metrics import evaluate
from mlsd.pipeline import PipelineConfig, Recommender
from mlsd.pipeline import ranking as ranking_stage
from mlsd.ranking import DeepRanker, GBDTRanker, Ranker
from mlsd.ranking.quantize import rank_agreement

BEAUTY = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon-beauty" / "events.csv"
KINDS = ("gbdt", "gbdt_compiled", "deep", "distilled", "int8")
K = 20
CANDIDATES = 500


def _subsample(ds: Dataset, n_users: int | None, seed: int) -> Dataset:
    """``ds`` restricted to ``n_users`` users drawn uniformly (seeded) and their events."""
    users = np.unique(ds.events.column("user_id").to_numpy())
    if n_users is None or len(users) <= n_users:
        return ds
    keep = pa.array(np.random.default_rng(seed).choice(users, n_users, replace=False))
    events = ds.events.filter(pc.is_in(ds.events.column("user_id"), value_set=keep))
    table = ds.users.filter(pc.is_in(ds.users.column("user_id"), value_set=keep))
    return dataclasses.replace(ds, events=events, users=table)


def _fit_capturing(rec: Recommender, train: Any) -> dict[str, Any]:
    """Fit ``rec`` and return what its ranking stage handed the ranker (the same rows, split
    and seed every ranker here is trained on)."""
    seen: dict[str, Any] = {}
    real = ranking_stage.fit_ranker

    def capture(
        kind: str, config: Any, weights: Any, x: Any, labels: Any, names: Any, **kw: Any
    ) -> Any:
        seen.update(config=config, weights=dict(weights), x=x, labels=labels, names=list(names))
        seen.update(kw)
        t0 = time.perf_counter()
        out = real(kind, config, weights, x, labels, names, **kw)
        seen["seconds"] = time.perf_counter() - t0
        return out

    ranking_stage.fit_ranker = capture  # type: ignore[assignment]
    try:
        rec.fit(train)
    finally:
        ranking_stage.fit_ranker = real
    return seen


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _train_rankers(
    rec: Recommender, rows: dict[str, Any], say: Callable[[str], None]
) -> dict[str, tuple[Ranker, float]]:
    """Every kind, trained on the captured rows (the GBDT is the pipeline's own)."""
    cfg, w, seed = rows["config"], rows["weights"], rows["seed"]
    x, y, names, valid = rows["x"], rows["labels"], rows["names"], rows["valid"]
    gbdt = rec.ranker_
    assert isinstance(gbdt, GBDTRanker)
    out: dict[str, tuple[Ranker, float]] = {"gbdt": (gbdt, rows["seconds"])}
    with tempfile.TemporaryDirectory() as tmp:
        gbdt.save(tmp)
        compiled = GBDTRanker.load(tmp)
    ok, secs = _timed(compiled.compile)
    if not ok:
        raise SystemExit("lleaves could not compile the GBDT; gbdt_compiled cannot be measured")
    out["gbdt_compiled"] = (compiled, secs)
    say("  training deep")
    deep, secs = _timed(
        lambda: DeepRanker(w, **cfg.deep.kwargs(seed)).fit(x, y, names, valid=valid)
    )
    out["deep"] = (deep, secs)
    say("  training distilled (GBDT teacher)")
    student = DeepRanker(w, **cfg.student.kwargs(seed))
    out["distilled"] = _timed(lambda: student.fit(x, y, names, valid=valid, teacher=compiled))
    out["int8"] = _timed(lambda: deep.quantize(valid))
    return out


def _latency(ranker: Ranker, pool: np.ndarray, calls: int, seed: int) -> dict[str, float]:
    """``score`` of 500-row blocks drawn from ``pool`` (a fixed, seeded set of blocks used
    in turn), after 20 unmeasured calls: milliseconds per call."""
    rng = np.random.default_rng(seed)
    blocks = [
        pool[rng.choice(len(pool), CANDIDATES, replace=len(pool) < CANDIDATES)] for _ in range(16)
    ]
    for i in range(20):
        ranker.score(blocks[i % len(blocks)])
    ms = np.empty(calls)
    for i in range(calls):
        b = blocks[i % len(blocks)]
        t0 = time.perf_counter()
        ranker.score(b)
        ms[i] = (time.perf_counter() - t0) * 1000
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "calls": calls,
    }


def _size(kind: str, ranker: Ranker) -> int:
    """Bytes on disk: what ``save`` writes; for the compiled GBDT, lleaves' native code."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        if kind == "gbdt_compiled":
            import lleaves

            assert isinstance(ranker, GBDTRanker)
            ranker.save(d / "text")
            total = 0
            for obj in ranker.boosters_:
                m = lleaves.Model(model_file=str(d / "text" / f"ranker_{obj}.txt"))
                m.compile(cache=str(d / f"{obj}.so"), raw_score=True, fcodemodel="small")
                total += (d / f"{obj}.so").stat().st_size
            return total
        ranker.save(d)
        return sum(f.stat().st_size for f in d.rglob("*") if f.is_file())


def _run(name: str, ds: Dataset, protocol: str, a: argparse.Namespace) -> dict[str, Any]:
    say = print
    t_all = time.perf_counter()
    if protocol == "temporal":
        tmax = pc.max(ds.events.column("timestamp")).as_py()
        holdout = temporal_holdout(ds, split_time=tmax - timedelta(days=7))
    else:
        holdout = per_user_holdout(ds, test_share=0.2)
    say(f"  {holdout.summary()}")
    cfg = PipelineConfig(label_split="global" if protocol == "temporal" else "per-user")
    rec = Recommender(cfg, videos=ds.videos, users=ds.users, progress=lambda m: say(f"  {m}"))
    rows, secs = _timed(lambda: _fit_capturing(rec, holdout.train))
    say(f"  pipeline fitted in {secs:.0f} s on {len(rows['x']):,} ranker rows")
    rankers = _train_rankers(rec, rows, say)
    xv = rows["valid"][0]
    pool = xv if len(xv) >= CANDIDATES else rows["x"]
    ref_scores = rankers["gbdt"][0].score(xv)
    out: dict[str, Any] = {}
    for kind in KINDS:
        r, train_s = rankers[kind]
        rec.ranking.ranker_ = r
        t0 = time.perf_counter()
        recs = rec.recommend(holdout.test.user_ids, K, exclude_seen=True)
        rec_s = time.perf_counter() - t0
        ev = evaluate(recs, holdout.test.truth, ks=(K,), train_counts=holdout.test.train_counts)
        m = ev.metrics
        out[kind] = {
            f"ndcg@{K}": float(m[f"ndcg@{K}"]),
            f"recall@{K}": float(m[f"recall@{K}"]),
            "valid_auc": {o: v.get("valid_auc") for o, v in r.metrics_.items()},
            "spearman_vs_gbdt": rank_agreement(ref_scores, r.score(xv)),
            "rank_500": _latency(r, pool, a.calls, a.seed),
            "size_bytes": _size(kind, r),
            "train_seconds": train_s,
            "recommend_seconds": rec_s,
        }
        if isinstance(r, DeepRanker):
            out[kind]["details"] = r.details_
        lat = out[kind]["rank_500"]
        say(
            f"  {kind}: ndcg@{K} {out[kind][f'ndcg@{K}']:.4f}, rank 500 p50 {lat['p50_ms']:.2f} "
            f"ms p99 {lat['p99_ms']:.2f} ms, {out[kind]['size_bytes']:,} bytes"
        )
    rec.ranking.ranker_ = rankers["gbdt"][0]
    result: dict[str, Any] = {
        "dataset": name,
        "protocol": protocol,
        "holdout": holdout.summary(),
        "test_users": len(holdout.test),
        "ranker_rows": len(rows["x"]),
        "valid_rows": len(xv),
        "features": len(rows["names"]),
        "max_users": a.max_users,
        "rankers": out,
        "seconds": time.perf_counter() - t_all,
    }
    if a.serve and name.startswith("simulated"):
        result["served"] = _serve(rec, rankers, a)
    return result


def _serve(
    rec: Recommender, rankers: dict[str, tuple[Ranker, float]], a: argparse.Namespace
) -> dict[str, Any]:
    """Each ranker in a bundle of its own behind ``mlsd serve`` at ``--serve-rate``."""
    from mlsd.serving.bundle import save_bundle
    from mlsd.serving.loadtest import run_sweep

    served: dict[str, Any] = {}
    base = rec.config
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("gbdt", "deep", "distilled", "int8"):  # gbdt: compiled by the server
            rec.ranking.ranker_ = rankers[kind][0]
            rec.config = PipelineConfig.model_validate({**base.model_dump(), "ranker_kind": kind})
            rec.version = rec.content_version()
            bundle = save_bundle(
                rec, Path(tmp) / kind, config=rec.config.model_dump(mode="json"),
                data_fingerprint=rec.data_fingerprints_["events"], metrics={},
            )  # fmt: skip
            print(f"  serving {kind} at {a.serve_rate:g} rps for {a.serve_duration:g} s")
            res = run_sweep(
                bundle, rates=[a.serve_rate], duration_s=a.serve_duration, warmup_s=10.0,
                workers=1, log=lambda m: print(f"    {m}", file=sys.stderr),
            )[0]  # fmt: skip
            served[kind] = {
                k: res[k] for k in ("requests", "errors", "degraded", "achieved_rps", "latency_ms")
                if k in res
            }  # fmt: skip
    rec.config = base
    return served


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", choices=["small", "beauty"], default=None)
    ap.add_argument("--max-users", type=int, default=None, help="keep this many users (smoke)")
    ap.add_argument("--calls", type=int, default=300, help="timed ranking calls per ranker")
    ap.add_argument("--serve", action="store_true", help="also serve each ranker (small only)")
    ap.add_argument("--serve-rate", type=float, default=200.0)
    ap.add_argument("--serve-duration", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    runs: dict[str, Any] = {}
    if a.only in (None, "small"):
        print("small (simulated), temporal holdout")
        ds = _subsample(simulate(SimulationConfig.for_scale("small", seed=0)), a.max_users, a.seed)
        runs["small"] = _run("simulated small (seed 0)", ds, "temporal", a)
    if a.only in (None, "beauty"):
        if not BEAUTY.exists():
            raise SystemExit(f"{BEAUTY}: Amazon Beauty not found")
        print("Amazon Beauty 5-core, per-user temporal 80/20")
        runs["beauty"] = _run(
            "Amazon Beauty", _subsample(load(BEAUTY), a.max_users, a.seed), "per-user", a
        )
    path = RESULTS / "rankers.json"
    if a.only is not None and path.exists():
        runs = {**json.loads(path.read_text()).get("runs", {}), **runs}
    out = write_result(
        "rankers",
        {"k": K, "candidates": CANDIDATES, "runs": runs},
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
