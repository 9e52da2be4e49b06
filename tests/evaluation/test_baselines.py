"""Baselines: one contract suite run on every model, then each model's own maths."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from mlsd.errors import ConfigError, DataError
from mlsd.evaluation.baselines import ALS, EASE, ML100K_TUNED, ItemKNN, MostPop, factories
from mlsd.evaluation.baselines._base import BaseRecommender, top_k
from mlsd.evaluation.interactions import Interactions, Model
from mlsd.evaluation.metrics import check_recs

MODELS: dict[str, Callable[[], BaseRecommender]] = {
    "MostPop": MostPop,
    "ItemKNN": lambda: ItemKNN(n_neighbors=20),
    "EASE": lambda: EASE(l2=10.0),
    "ALS": lambda: ALS(factors=8, regularization=0.1, iterations=5),
}


def _data(seed: int = 0) -> Interactions:
    """200 users x 60 items, popularity-skewed, with arbitrary int64 ids (huge and negative;
    -1 is reserved, the others are fair game)."""
    rng = np.random.default_rng(seed)
    u = rng.integers(0, 200, 3000)
    i = np.minimum(rng.zipf(1.6, 3000) - 1, 59)
    return Interactions(u * 1_000_003 + 10**12, i * 17 - 500, np.ones(3000, np.float32))


@pytest.fixture(scope="module")
def data() -> Interactions:
    return _data()


@pytest.fixture(scope="module", params=list(MODELS))
def fitted(request: pytest.FixtureRequest, data: Interactions) -> BaseRecommender:
    return MODELS[request.param]().fit(data)


def _seen(data: Interactions, user: int) -> set[int]:
    return set(data.item_ids[data.user_ids == user].tolist())


def test_contract_shapes_ids_and_exclusion(fitted: BaseRecommender, data: Interactions) -> None:
    assert isinstance(fitted, Model)
    users = np.unique(data.user_ids)[:50]
    recs = fitted.recommend(users, 10)
    assert recs.shape == (50, 10) and recs.dtype == np.int64
    check_recs(recs)  # no repeats within a list
    catalog = set(data.item_ids.tolist())
    for u, row in zip(users, recs, strict=True):
        items = set(row[row != -1].tolist())
        assert items <= catalog
        assert not items & _seen(data, int(u)), "a training item was recommended"


def test_contract_scores_are_sorted(fitted: BaseRecommender, data: Interactions) -> None:
    ids, scores = fitted.candidates(np.unique(data.user_ids)[:20], 15)
    assert scores.shape == ids.shape == (20, 15)
    assert np.all(np.diff(scores, axis=1) <= 0)
    assert np.all((ids == -1) == np.isneginf(scores))


def test_contract_pads_when_the_catalog_runs_out(
    fitted: BaseRecommender, data: Interactions
) -> None:
    n_items = len(np.unique(data.item_ids))
    user = int(data.user_ids[0])
    row = fitted.recommend(np.array([user]), n_items + 5)[0]
    assert (row != -1).sum() == n_items - len(_seen(data, user))
    assert np.all(row[(row != -1).sum() :] == -1)  # padding only at the end


def test_contract_unknown_users_get_popular_items_and_are_counted(
    fitted: BaseRecommender, data: Interactions
) -> None:
    before = fitted.n_unknown_users_
    known = int(data.user_ids[0])
    recs = fitted.recommend(np.array([-42, known, 7]), 5)
    assert fitted.n_unknown_users_ == before + 2
    popular = MostPop().fit(data).recommend(np.array([-42]), 5)[0]
    np.testing.assert_array_equal(recs[0], popular)
    np.testing.assert_array_equal(recs[2], popular)


def test_contract_deterministic_and_order_free(data: Interactions) -> None:
    perm = np.random.default_rng(1).permutation(len(data))
    shuffled = Interactions(data.user_ids[perm], data.item_ids[perm], data.weights[perm])
    users = np.unique(data.user_ids)[:30]
    for make in MODELS.values():
        a = make().fit(data).recommend(users, 10)
        b = make().fit(shuffled).recommend(users, 10)
        np.testing.assert_array_equal(a, b)


def test_contract_accepts_a_tuple_and_reports_params(data: Interactions) -> None:
    u, i, w = data
    for make in MODELS.values():
        model = make().fit((u, i, w))
        assert model.recommend(u[:3], 4).shape == (3, 4)
        params = model.get_params()
        assert type(model)(**params).get_params() == params
        assert type(model).__name__ in repr(model)


def test_contract_errors(data: Interactions) -> None:
    for make in MODELS.values():
        with pytest.raises(ConfigError, match="call fit"):
            make().recommend(np.array([1]), 5)
        with pytest.raises(DataError, match="no interactions"):
            make().fit((np.zeros(0, np.int64), np.zeros(0, np.int64)))
        with pytest.raises(ConfigError, match="k="):
            make().fit(data).recommend(np.array([1]), 0)
    with pytest.raises(DataError, match="-1"):
        Interactions(np.array([1]), np.array([-1]), np.ones(1))
    with pytest.raises(DataError, match="weights row 1"):
        Interactions(np.array([1, 2]), np.array([3, 4]), np.array([1.0, np.nan]))
    for bad in (
        lambda: ItemKNN(n_neighbors=0),
        lambda: ItemKNN(shrink=-1.0),
        lambda: EASE(l2=0.0),
        lambda: ALS(factors=0),
        lambda: ALS(alpha=0.0),
        lambda: ALS(regularization=-1.0),
    ):
        with pytest.raises(ConfigError):
            bad().fit(data)


def test_top_k_orders_pads_and_skips_excluded() -> None:
    s = np.array([[0.1, 0.9, -np.inf, 0.5], [-np.inf, -np.inf, -np.inf, 2.0]])
    idx, vals = top_k(s, 3)
    np.testing.assert_array_equal(idx, [[1, 3, 0], [3, -1, -1]])
    np.testing.assert_allclose(vals[0], [0.9, 0.5, 0.1])
    idx, _ = top_k(s, 6)  # more than the catalog
    assert idx.shape == (2, 6) and np.all(idx[:, 4:] == -1)


def test_most_pop_ranks_by_distinct_users_then_id() -> None:
    u = np.array([1, 2, 3, 1, 2, 1, 1, 4])
    i = np.array([30, 30, 30, 20, 20, 10, 10, 40])  # user 1 saw item 10 twice: counts once
    model = MostPop().fit((u, i))
    np.testing.assert_array_equal(model.popularity_, [1, 2, 3, 1])  # items 10, 20, 30, 40
    np.testing.assert_array_equal(model.recommend(np.array([99]), 4)[0], [30, 20, 10, 40])
    np.testing.assert_array_equal(model.recommend(np.array([4]), 4)[0], [30, 20, 10, -1])
    np.testing.assert_array_equal(
        model.recommend(np.array([4]), 2, exclude_seen=False)[0], [30, 20]
    )


def test_item_knn_similarity_is_cosine_with_top_n_per_item() -> None:
    # users x items: 3 users, 3 items
    x = np.array([[1, 1, 0], [1, 0, 1], [1, 1, 1]], dtype=np.float64)
    u, i = np.nonzero(x)
    model = ItemKNN(n_neighbors=5).fit((u, i))
    norms = np.linalg.norm(x, axis=0)
    cos = (x.T @ x) / np.outer(norms, norms)
    np.fill_diagonal(cos, 0)
    np.testing.assert_allclose(model.similarity_.toarray(), cos, rtol=1e-6)
    # one neighbour per item: the most similar other item
    one = ItemKNN(n_neighbors=1).fit((u, i)).similarity_.toarray()
    assert np.all((one > 0).sum(axis=1) == 1)
    np.testing.assert_allclose(one.max(axis=1), cos.max(axis=1), rtol=1e-6)
    shrunk = ItemKNN(n_neighbors=5, shrink=2.0).fit((u, i)).similarity_.toarray()
    np.testing.assert_allclose(shrunk[0, 1], (x[:, 0] @ x[:, 1]) / (norms[0] * norms[1] + 2))


def test_ease_matches_the_closed_form(data: Interactions) -> None:
    model = EASE(l2=25.0).fit(data)
    u = np.searchsorted(model.user_ids_, data.user_ids)
    i = np.searchsorted(model.item_ids_, data.item_ids)
    x = np.zeros((len(model.user_ids_), len(model.item_ids_)))
    np.add.at(x, (u, i), 1.0)
    p = np.linalg.inv(x.T @ x + 25.0 * np.eye(x.shape[1]))
    b = np.eye(x.shape[1]) - p @ np.diag(1 / np.diag(p))  # Steck 2019: B = I - P diagMat(1/diag P)
    np.testing.assert_allclose(np.diag(b), 0, atol=1e-12)
    np.testing.assert_allclose(model.B_, b, atol=1e-4)  # solved in float32


def test_ease_refuses_large_catalogs() -> None:
    u, i = np.arange(10), np.arange(10)
    with pytest.raises(ConfigError, match=r"10 items, above max_items=5"):
        EASE(max_items=5).fit((u, i))


def test_als_is_seeded_and_thread_count_free(data: Interactions) -> None:
    a = ALS(factors=8, iterations=3, random_state=3).fit(data)
    b = ALS(factors=8, iterations=3, random_state=3, num_threads=2).fit(data)
    c = ALS(factors=8, iterations=3, random_state=4).fit(data)
    assert a.user_factors_.shape == (200, 8) and a.item_factors_.shape[1] == 8
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    assert not np.array_equal(a.item_factors_, c.item_factors_)


def test_tuned_factories_build_every_baseline() -> None:
    made = {name: make() for name, make in factories().items()}
    assert set(made) == set(ML100K_TUNED)
    assert made["EASE"].get_params()["l2"] == ML100K_TUNED["EASE"]["l2"]
