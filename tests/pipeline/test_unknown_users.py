"""Evaluation reports, per model, how many test users it met unseen in training; the pipeline
counts them like the baselines do (it used to report 0 whatever the data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlsd.data.loaders import load
from mlsd.evaluation import MostPop, compare, temporal_holdout
from mlsd.evaluation.report import comparison_sections
from mlsd.pipeline import Recommender

ML100K = Path(__file__).resolve().parents[3] / "shared/data/ml-100k"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.slow,
    pytest.mark.skipif(not (ML100K / "u.data").exists(), reason=f"{ML100K} not found"),
]

LIGHT = {
    "candidates": 100,
    "negatives_per_user": 30,
    "two_tower": {"epochs": 1},
    "als": None,
    "ranker": {"n_estimators": 30},
}


def test_unknown_test_users_are_counted_per_model() -> None:
    ds = load(ML100K)
    # a global cut: MovieLens users rate in bursts, so many test users are new after it
    holdout = temporal_holdout(ds, test_share=0.2)
    new = holdout.info["new_users"]
    assert new > 0
    cmp = compare(
        {"MostPop": MostPop, "pipeline": lambda: Recommender(LIGHT, videos=ds.videos)},
        holdout,
        k=20,
    )
    for name, result in cmp.results.items():
        assert result.n_unknown_users == new, name
    # and the report says so, per model
    table = next(s for s in comparison_sections(cmp) if getattr(s, "title", "") == "Models")
    col = table.columns.index("unknown test users")
    assert [row[col] for row in table.rows] == [new, new]
