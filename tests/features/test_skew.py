"""The skew check: offline and online agree on tiny and small, and it notices when they don't."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd.data.dataset import Dataset
from mlsd.features._window_state import EntityState
from mlsd.features.registry import Feature
from mlsd.features.skew import skew_check
from mlsd.features.store import OnlineStore
from mlsd.features.stream import OnlineFeatures


def test_tiny_has_no_skew(tiny: Dataset) -> None:
    report = skew_check(tiny, n_points=400, seed=0)
    assert report.n_points == 400
    assert report.ok, report.mismatched
    assert len(report.features) >= 50
    assert report.to_dict()["mismatches"] == 0


@pytest.mark.redis
def test_tiny_has_no_skew_through_redis(tiny: Dataset, redis_store: OnlineStore) -> None:
    report = skew_check(tiny, n_points=100, seed=1, store=redis_store)
    assert report.ok, report.mismatched


@pytest.mark.slow
def test_small_has_no_skew(small: Dataset) -> None:
    report = skew_check(small, n_points=300, seed=0)
    assert report.ok, report.mismatched


def test_altered_online_computation_shows_for_exactly_that_feature(
    tiny: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = OnlineFeatures._compute

    def drifted(
        self: OnlineFeatures, feature: Feature, inputs: dict[str, np.ndarray]
    ) -> np.ndarray:
        out = original(self, feature, inputs)
        return out * 1.01 if feature.name == "video_like_rate_1d" else out

    monkeypatch.setattr(OnlineFeatures, "_compute", drifted)
    report = skew_check(tiny, n_points=200, seed=0)
    assert report.mismatched == ["video_like_rate_1d"]
    bad = next(f for f in report.features if f.name == "video_like_rate_1d")
    assert bad.rate == 1.0 and bad.example is not None


def test_windows_that_never_expire_online_are_caught(
    tiny: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(EntityState, "roll", lambda self, old, new: None)
    report = skew_check(tiny, n_points=200, seed=0)
    assert report.mismatched
    assert all(n.endswith(("_1h", "_1d", "_7d")) for n in report.mismatched), report.mismatched
