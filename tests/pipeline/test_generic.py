"""The stages are generic over the system: a working two-stage pipeline assembled from blocks
on MovieLens 100k, with a feature registry that has no video-specific feature (no creator,
topic, duration, upload time, explicit flag), three generic sources and one rule."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from mlsd.data.loaders import load
from mlsd.evaluation import MostPop, evaluate_model, per_user_holdout
from mlsd.evaluation.holdout import Holdout
from mlsd.features import Feature, FeatureRegistry
from mlsd.pipeline import RequestCtx, StagesConfig, TwoStage
from mlsd.reranking import DropWatched, RuleChain
from mlsd.retrieval import CoVisitationSource, PopularSource
from mlsd.retrieval.als import ALSSource

ML100K = Path(__file__).resolve().parents[3] / "shared/data/ml-100k"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.slow,
    pytest.mark.skipif(not (ML100K / "u.data").exists(), reason=f"{ML100K} not found"),
]


def _count(name: str):
    def compute(x: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.asarray(x[name], dtype=np.float64)

    return compute


def _hour(x: Mapping[str, np.ndarray]) -> np.ndarray:
    return ((np.asarray(x["request.t_ms"], np.int64) // 3_600_000) % 24).astype(np.float64)


# Item and user activity and the request's hour: what any interaction log has.
GENERIC = FeatureRegistry(
    [
        *(
            Feature(f"{who}_positives_{w}", entity, "events", "count", 0.0, (f"valid_{w}",),
                    _count(f"valid_{w}"), f"{who} positives over {w}", window=w)
            for who, entity in (("item", "video"), ("user", "user"))
            for w in ("7d", "30d")
        ),
        Feature("context_hour", "context", "request", "category", 0.0, ("request.t_ms",), _hour),
    ]
)  # fmt: skip


def assemble() -> TwoStage:
    return TwoStage(
        [PopularSource(), CoVisitationSource(), ALSSource(factors=64, iterations=10)],
        registry=GENERIC,
        rules=RuleChain([DropWatched()]),
        quotas={"popular": 0.2, "covisit": 0.4, "als": 0.4},
        config=StagesConfig(candidates=200, negatives_per_user=50, ranker={"n_estimators": 100}),
    )


@pytest.fixture(scope="module")
def holdout() -> Holdout:
    return per_user_holdout(load(ML100K))


def test_a_pipeline_assembled_from_the_stages_works_on_movielens(holdout: Holdout) -> None:
    video_specific = {"creator", "user_creator"}
    assert not {f.entity for f in GENERIC} & video_specific
    assert not any(i in f.inputs for f in GENERIC for i in ("duration_s", "topic", "is_explicit"))

    pipe = assemble()
    result = evaluate_model(pipe, holdout, name="generic", k=20)
    ndcg = result.evaluation.metrics["ndcg@20"]
    pop = evaluate_model(MostPop(), holdout, k=20).evaluation.metrics["ndcg@20"]
    print(f"\ngeneric two-stage pipeline on MovieLens 100k: ndcg@20 {ndcg:.4f} (MostPop {pop:.4f})")
    assert ndcg > 1.5 * pop  # it learned something: well above the popularity baseline
    assert pipe.ranking.feature_names_ == [f.name for f in GENERIC]
    assert pipe.ranker_.feature_names_[: len(GENERIC)] == [f.name for f in GENERIC]
    # the retrieval features of these sources: ranks, ALS's score of every candidate
    assert pipe.retrieval.feature_names_ == [
        "rank_popular",
        "rank_covisit",
        "rank_als",
        "als_score",
        "n_sources",
    ]

    # the online path too: a known user, explained, and a new user
    u = int(holdout.test.user_ids[0])
    served = pipe.serve(u, 10, RequestCtx(pipe.now_ms_), explain=True)
    assert not served.degraded and len(served.items) == 10
    assert {"p_watch", "rank_als"} & set(served.items[0].components)
    new = pipe.serve(10**9, 10, RequestCtx(pipe.now_ms_))
    assert new.cold_start and len(new.items) == 10 and not new.degraded
    # and the candidate cache, whose layout has no similarity column here
    pipe.precompute_candidates()
    cached = pipe.serve(u, 10, RequestCtx(pipe.now_ms_), explain=True)
    assert [i.video_id for i in cached.items] == [i.video_id for i in served.items]
    assert pipe.status().cache_hits == 1
