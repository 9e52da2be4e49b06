"""Every source's opinion of any candidate (ListScorer): ALS's inner product, EASE's and
item-kNN's ``x W``, equal to the scores their own candidate lists carry."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd.retrieval import PAD, CandidateSource, ListScorer
from mlsd.retrieval.evaluate import NextPeriod


@pytest.mark.parametrize("name", ["als", "ease", "itemknn", "two_tower"])
def test_scores_of_proposed_items_are_the_lists_scores(
    name: str, fitted: dict[str, CandidateSource], tiny_period: NextPeriod
) -> None:
    src = fitted[name]
    assert isinstance(src, ListScorer)
    users = np.asarray(tiny_period.users)[:40]
    got, scores = src.candidates(users, 15)
    s = src.score_lists(users, np.where(got == PAD, -12345, got))
    ok = got != PAD
    assert ok.sum() > 100
    if name == "two_tower":  # cosine scores; the list holds its index's own
        assert np.isfinite(s[ok]).all()
    else:
        np.testing.assert_allclose(s[ok], scores[ok], rtol=1e-4, atol=1e-5)
    assert np.isnan(s[~ok]).all()  # an unknown item: no opinion
    # pairs give the same numbers as lists
    r, c = np.nonzero(ok)
    pairs = src.score_pairs(users[r], got[r, c])
    np.testing.assert_allclose(pairs, s[r, c], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["als", "ease", "itemknn"])
def test_a_user_without_history_gets_no_opinion(
    name: str, fitted: dict[str, CandidateSource], tiny_period: NextPeriod
) -> None:
    src = fitted[name]
    assert isinstance(src, ListScorer)
    nobody = np.array([10**12], np.int64)
    items, _ = src.candidates(np.asarray(tiny_period.users)[:1], 5)
    assert np.isnan(src.score_lists(nobody, items[:, :5])).all()


def test_the_stage_solves_each_users_state_once_per_request(
    fitted: dict[str, CandidateSource], tiny_period: NextPeriod, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ALS's user factors (a least-squares solve per user) and the two-tower's user
    embeddings are computed once per retrieve: the candidates' state is reused for the score
    features, which equal the scores computed afresh."""
    from mlsd.pipeline.retrieval import RetrievalStage

    names = ["two_tower", "als", "popular"]
    sources = [fitted[n] for n in names]
    stage = RetrievalStage(sources).restore(sources, fitted["als"].history_)  # type: ignore[attr-defined]
    assert stage.scored == ["two_tower", "als"]
    users = np.asarray(tiny_period.users)[:30]
    calls = {"als": 0, "two_tower": 0}
    for name, method in (("als", "user_factors"), ("two_tower", "user_embeddings")):
        real = getattr(fitted[name], method)

        def counted(u: np.ndarray, _real=real, _name=name) -> np.ndarray:  # type: ignore[no-untyped-def]
            calls[_name] += 1
            return _real(u)

        monkeypatch.setattr(fitted[name], method, counted)
    cand = stage.retrieve(users, 25)
    assert calls == {"als": 1, "two_tower": 1}
    col = stage.feature_names_.index("als_score")
    fresh = fitted["als"].score_lists(users, cand.items)  # type: ignore[attr-defined]
    np.testing.assert_allclose(cand.features[:, :, col], fresh, rtol=1e-5, equal_nan=True)


def test_als_fit_threads_change_speed_not_factors(
    tiny_period: NextPeriod, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ALS fits on every core; each user's and item's solve is independent, so the factors
    equal a single-threaded fit's exactly."""
    from mlsd.retrieval import als

    def fit(threads: int) -> np.ndarray:
        monkeypatch.setattr(als, "FIT_THREADS", threads)
        src = als.ALSSource(factors=16, iterations=4)
        src.fit(tiny_period.train_positives, now_ms=tiny_period.split_ms)
        assert src._model_.num_threads == 1  # requests solve on one thread
        return src.item_factors_

    np.testing.assert_array_equal(fit(1), fit(2))
