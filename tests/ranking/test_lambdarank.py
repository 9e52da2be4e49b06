"""The GBDT ranker's listwise objective: LambdaMART within each user's rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlsd.errors import DataError
from mlsd.ranking import GBDTRanker


def _lists(n_users: int, per_user: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of ``n_users`` users, shuffled across users: the relevant item of a user is the
    one whose feature 0 is closest to the user's taste (feature 1, the same on all their rows),
    a within-list signal that a row alone hardly shows."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    taste = rng.normal(size=n_users)[users]
    item = rng.normal(size=len(users))
    dist = np.abs(item - taste)
    best = np.zeros(len(users), bool)
    for u in range(n_users):
        rows = np.flatnonzero(users == u)
        best[rows[np.argsort(dist[rows])[:2]]] = True
    x = np.c_[item, taste, rng.normal(size=len(users))].astype(np.float32)
    o = rng.permutation(len(users))  # a user's rows are not contiguous
    return x[o], best[o], users[o]


def _ndcg_at(score: np.ndarray, y: np.ndarray, users: np.ndarray, k: int = 5) -> float:
    out = []
    for u in np.unique(users):
        r = np.flatnonzero(users == u)
        top = y[r][np.argsort(-score[r], kind="stable")][:k]
        dcg = float((top / np.log2(np.arange(2, len(top) + 2))).sum())
        ideal = np.sort(y[r])[::-1][:k]
        idcg = float((ideal / np.log2(np.arange(2, len(ideal) + 2))).sum())
        out.append(dcg / idcg if idcg > 0 else 0.0)
    return float(np.mean(out))


@pytest.fixture(scope="module")
def fitted() -> GBDTRanker:
    x, y, g = _lists(300, 30, 0)
    xv, yv, gv = _lists(100, 30, 1)
    r = GBDTRanker({"watch": 1.0}, objective="lambdarank", n_estimators=150, num_threads=1)
    return r.fit(x, {"watch": y}, ["item", "taste", "noise"], valid=(xv, {"watch": yv}),
                 groups=(g, gv))  # fmt: skip


def test_learns_the_order_within_each_list(fitted: GBDTRanker) -> None:
    x, y, g = _lists(200, 30, 2)
    s = fitted.score(x)
    assert _ndcg_at(s, y.astype(float), g) > 0.6  # random order: about 0.1
    p = fitted.predict_proba(x)["watch"]
    assert ((p >= 0) & (p <= 1)).all()
    # calibration keeps the booster's order
    margin = fitted.boosters_["watch"].predict(x, raw_score=True)
    assert (np.argsort(margin, kind="stable") == np.argsort(s, kind="stable")).mean() > 0.99
    assert fitted.metrics_["watch"]["valid_auc"] > 0.8


def test_lambdarank_needs_the_groups() -> None:
    x, y, _ = _lists(20, 10, 3)
    r = GBDTRanker({"watch": 1.0}, objective="lambdarank", n_estimators=5, num_threads=1)
    with pytest.raises(DataError, match="groups"):
        r.fit(x, {"watch": y}, ["a", "b", "c"], valid=(x, {"watch": y}))


def test_saved_and_loaded_scores_are_equal(fitted: GBDTRanker, tmp_path: Path) -> None:
    fitted.save(tmp_path)
    back = GBDTRanker.load(tmp_path)
    x, _, _ = _lists(20, 30, 4)
    np.testing.assert_allclose(back.score(x), fitted.score(x))


def test_weights_grade_the_positives() -> None:
    x, y, g = _lists(120, 20, 5)
    xv, yv, gv = _lists(40, 20, 6)
    w = np.where(y, 1.0 + 5.0 * (x[:, 2] > 0), 1.0)  # some positives count more

    def fit(sample_weight: dict[str, np.ndarray] | None) -> GBDTRanker:
        r = GBDTRanker({"watch": 1.0}, objective="lambdarank", n_estimators=30, num_threads=1)
        return r.fit(x, {"watch": y}, ["a", "b", "c"], valid=(xv, {"watch": yv}),
                     groups=(g, gv), sample_weight=sample_weight)  # fmt: skip

    assert fit({"watch": w}).fingerprint() != fit(None).fingerprint()
