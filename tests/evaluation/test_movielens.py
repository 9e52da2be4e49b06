"""MovieLens 100k under protocol (b): baselines tuned on the validation slice, compared on test.

Reads ``../shared/data/ml-100k`` (skipped when absent). Asserts orderings between models, not
figures; the figures measured with the full grids are in :mod:`mlsd.evaluation.baselines.tuned`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlsd.data.loaders import load
from mlsd.evaluation import Holdout, per_user_holdout, tune_and_compare, validation_holdout
from mlsd.evaluation.baselines import ALS, EASE, ML100K_TUNED, ItemKNN, MostPop
from mlsd.evaluation.protocol import Comparison, TuneResult

ML100K = Path(__file__).resolve().parents[3] / "shared/data/ml-100k"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not (ML100K / "u.data").exists(), reason=f"{ML100K} not found"),
]

# Small grids around the tuned optimum (the full grids are ML100K_GRIDS), each holding the
# documented ML100K_TUNED setting.
GRIDS: dict[str, tuple[Any, dict[str, list[Any]]]] = {
    "MostPop": (MostPop, {}),
    "ItemKNN": (ItemKNN, {"n_neighbors": [100, 800], "shrink": [0.0]}),
    "EASE": (EASE, {"l2": [100.0, 300.0, 1000.0]}),
    "ALS": (
        ALS,
        {"factors": [128], "regularization": [10.0, 30.0], "alpha": [1.0, 5.0], "iterations": [15]},
    ),
}


@pytest.fixture(scope="module")
def holdout() -> Holdout:
    return per_user_holdout(load(ML100K))


@pytest.fixture(scope="module")
def tuned_comparison(holdout: Holdout) -> tuple[Comparison, dict[str, TuneResult], Holdout]:
    valid = validation_holdout(holdout)
    cmp, tuned = tune_and_compare(GRIDS, holdout, metric="ndcg@20", k=20, valid=valid)
    return cmp, tuned, valid


def test_protocol_shape(holdout: Holdout) -> None:
    # 943 users with >= 20 ratings each; every user with two or more positives is tested
    assert 900 <= len(holdout.test) <= 943
    assert holdout.info["new_users"] == 0
    share = holdout.info["test_rows"] / (holdout.info["test_rows"] + holdout.info["train_rows"])
    assert 0.18 < share < 0.22


def test_ease_beats_item_knn_and_most_pop(
    tuned_comparison: tuple[Comparison, dict[str, TuneResult], Holdout],
) -> None:
    cmp, _, _ = tuned_comparison
    t = cmp.table()
    for metric in ("ndcg@20", "recall@20"):
        assert t["EASE"][metric] > t["ItemKNN"][metric] > t["MostPop"][metric], metric
        assert t["ALS"][metric] > t["ItemKNN"][metric], metric


def test_documented_defaults_are_near_the_validation_optimum(
    tuned_comparison: tuple[Comparison, dict[str, TuneResult], Holdout],
) -> None:
    _, tuned, _ = tuned_comparison
    for name, result in tuned.items():
        documented = [t for t in result.trials if t["params"] == ML100K_TUNED[name]]
        assert documented, f"{name}: ML100K_TUNED is not in the grid"
        assert documented[0]["score"] >= result.score - 0.003, name
