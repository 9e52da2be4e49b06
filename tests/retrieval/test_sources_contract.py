"""One contract suite run against every CandidateSource (STYLE.md item 4)."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd.data.dataset import Dataset
from mlsd.errors import ConfigError
from mlsd.retrieval import (
    PAD,
    CandidateSource,
    ItemSimilarity,
    MergedSource,
    NotFittedError,
    PairScorer,
    PersistentSource,
    UserKeyed,
    default_quotas,
)
from mlsd.retrieval.evaluate import NextPeriod
from mlsd.retrieval.protocols import source_fingerprint

from .conftest import make_sources

NAMES = [s.name for s in make_sources()]
ALWAYS_FULL = {"two_tower", "topic_popular", "creator_popular", "popular"}


def _check_arrays(ids: np.ndarray, scores: np.ndarray, n: int, k: int) -> None:
    assert ids.shape == (n, k) and scores.shape == (n, k)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    pad = ids == PAD
    assert (np.isneginf(scores) == pad).all(), "padding <=> -inf score"
    # Padding only at the end of a row, scores non-increasing.
    assert (np.diff(pad.astype(int), axis=1) >= 0).all()
    finite = np.where(pad, np.nan, scores)
    diffs = np.diff(finite, axis=1)
    assert (diffs[~np.isnan(diffs)] <= 1e-6).all()
    for row in ids:
        real = row[row != PAD]
        assert len(real) == len(set(real.tolist())), "no duplicates within a row"


@pytest.mark.parametrize("name", NAMES)
def test_contract(name: str, fitted: dict[str, CandidateSource], tiny_period: NextPeriod) -> None:
    src = fitted[name]
    assert isinstance(src, CandidateSource)
    users = np.r_[tiny_period.users[:40], [10**9]]  # the last one is unknown: cold start
    ids, scores = src.candidates(users, 50)
    _check_arrays(ids, scores, len(users), 50)
    if name in ALWAYS_FULL:
        assert (ids != PAD).all(), f"{name} fills every slot, cold users included"
    # Already-watched videos are excluded.
    seen, _ = src.history_.recent(users)  # type: ignore[attr-defined]
    for row, s in zip(ids, seen, strict=True):
        assert not (set(row.tolist()) & (set(s.tolist()) - {PAD}))
    # Deterministic, batch-independent, and a scalar user id is a batch of one.
    again, _ = src.candidates(users[::-1], 50)
    assert (again[::-1] == ids).all()
    one, _ = src.candidates(users[0], 50)  # type: ignore[arg-type]
    assert (one[0] == ids[0]).all()


@pytest.mark.parametrize("name", NAMES)
def test_fit_returns_the_source_and_its_fingerprint_follows_its_state(
    name: str, fitted: dict[str, CandidateSource], tiny: Dataset, tiny_period: NextPeriod
) -> None:
    src = fitted[name]

    def fit(now_ms: int) -> CandidateSource:
        fresh = next(s for s in make_sources() if s.name == name)
        got = fresh.fit(
            tiny_period.train_positives, videos=tiny.videos, users=tiny.users, now_ms=now_ms,
            history=src.history_,  # type: ignore[attr-defined]
        )  # fmt: skip
        assert got is fresh  # scikit-learn style: fit returns the estimator
        return got

    assert source_fingerprint(fit(tiny_period.split_ms)) == source_fingerprint(src)
    # two days less of the log: what each source learned differs
    assert source_fingerprint(fit(tiny_period.split_ms - 2 * 86_400_000)) != source_fingerprint(src)


def test_every_source_declares_the_protocols_the_stages_use() -> None:
    have = {
        s.name: {
            p.__name__
            for p in (CandidateSource, PairScorer, UserKeyed, ItemSimilarity, PersistentSource)
            if isinstance(s, p)
        }
        for s in make_sources()
    }
    base = {"CandidateSource"}
    assert have["two_tower"] == base | {
        "PairScorer", "UserKeyed", "ItemSimilarity", "PersistentSource"
    }  # fmt: skip
    assert have["als"] == base | {"PairScorer", "PersistentSource"}
    assert have["covisit"] == base | {"PersistentSource"}
    assert have["ease"] == have["itemknn"] == base | {"PersistentSource"}
    assert all(have[n] == base for n in ("topic_popular", "creator_popular", "popular", "fresh"))


@pytest.mark.parametrize("name", NAMES)
def test_k_beyond_catalog_pads(name: str, fitted: dict[str, CandidateSource]) -> None:
    ids, scores = fitted[name].candidates(np.array([1, 2]), 5000)
    _check_arrays(ids, scores, 2, 5000)
    assert (ids[:, -1] == PAD).all()


@pytest.mark.parametrize("name", NAMES)
def test_unfitted_and_bad_k(name: str, fitted: dict[str, CandidateSource]) -> None:
    fresh = next(s for s in make_sources() if s.name == name)
    with pytest.raises(NotFittedError, match="fit"):
        fresh.candidates(np.array([1]), 10)
    with pytest.raises(ConfigError, match="positive integer"):
        fitted[name].candidates(np.array([1]), 0)


def test_merged_contract_tags_and_cold_start(
    fitted: dict[str, CandidateSource], tiny_period: NextPeriod
) -> None:
    merged = MergedSource(list(fitted.values()), default_quotas(), k=500)
    users = np.r_[tiny_period.users[:20], [10**9]]
    t = merged.tagged(users)
    _check_arrays(t.item_ids, t.scores, len(users), 500)
    # Cold start: a user with no history at all still gets 500 candidates.
    assert (t.item_ids[-1] != PAD).all()
    assert set(np.unique(t.sources).tolist()) <= set(range(len(merged.source_names)))
    # Tags are honest: a tagged candidate is among its source's own candidates.
    own = {n: fitted[n].candidates(users, 500)[0] for n in merged.source_names}
    for i in range(len(users)):
        for item, code in zip(t.item_ids[i][:50], t.sources[i][:50], strict=True):
            assert item in set(own[merged.source_names[code]][i].tolist())
