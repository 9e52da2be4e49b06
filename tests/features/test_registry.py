"""The feature registry: declarations, lookup errors, defaults, derived state."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd.errors import FeatureStoreError, UnknownFeatureError
from mlsd.features.definitions import PRIORS, VIDEO_REC, smoothed_rate
from mlsd.features.registry import ENTITIES, WINDOWS, Feature, FeatureRegistry, window_inputs


def test_video_recommendation_set_covers_the_issue() -> None:
    names = set(VIDEO_REC.names)
    for w in WINDOWS:
        for kind in ("impressions", "plays", "valid_watch_rate", "like_rate", "mean_completion"):
            assert f"video_{kind}_{w}" in names
        assert f"user_impressions_{w}" in names
    for name in ("video_age_h", "video_duration_s", "video_is_explicit", "video_topic",
                 "creator_impressions_7d", "user_creator_valid_watch_rate_30d",
                 "user_topic_affinity", "user_mean_completion_30d", "user_video_topic_affinity",
                 "context_hour_of_day", "context_day_of_week", "context_device",
                 "context_surface"):  # fmt: skip
        assert name in names
    assert {f.entity for f in VIDEO_REC} == set(ENTITIES)
    assert len(VIDEO_REC.matrix_features()) >= 50


@pytest.mark.parametrize("feature", [f for f in VIDEO_REC if f.source == "events"], ids=str)
def test_default_is_the_value_of_zero_counts(feature: Feature) -> None:
    zeros = {name: np.zeros(1) for name in feature.inputs}
    if feature.dtype == "vector":
        zeros = {name: np.zeros((1, 4)) for name in feature.inputs}
    np.testing.assert_allclose(feature(zeros), feature.default)


def test_smoothed_rate_moves_from_prior_to_data() -> None:
    m, _ = PRIORS["valid_watch_rate"]
    assert smoothed_rate(np.array([0.0]), np.array([0.0]), "valid_watch_rate")[0] == m
    big = smoothed_rate(np.array([5000.0]), np.array([10000.0]), "valid_watch_rate")[0]
    assert abs(big - 0.5) < 0.001


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(UnknownFeatureError) as err:
        VIDEO_REC["user_plays_7days"]
    assert "user_plays_7d" in err.value.suggestions
    assert "did you mean" in str(err.value)
    with pytest.raises(UnknownFeatureError, match="unknown feature 'zzz'"):
        VIDEO_REC.resolve(["video_plays_1d", "zzz"])


def test_declarations_are_checked() -> None:
    def f(x: object) -> np.ndarray:
        return np.zeros(1)

    with pytest.raises(FeatureStoreError, match="entity"):
        Feature("a", "movie", "events", "count", 0.0, (), f)
    with pytest.raises(FeatureStoreError, match="window"):
        Feature("a", "user", "events", "count", 0.0, (), f, window="2d")
    good = Feature("a", "user", "events", "count", 0.0, ("imp_1d",), f, window="1d")
    with pytest.raises(FeatureStoreError, match="declared twice"):
        FeatureRegistry([good, good])


def test_state_is_derived_from_feature_inputs() -> None:
    assert window_inputs(["valid_7d", "topic_decay", "imp_1h"]) == [("valid", "7d"), ("imp", "1h")]
    video = VIDEO_REC.counters("video")
    assert list(video) == list(WINDOWS)
    assert set(video["1d"]) == {"imp", "play", "valid", "like", "comp", "cplay"}
    assert VIDEO_REC.counters("user_creator") == {"30d": ("imp", "valid")}
    assert VIDEO_REC.counters("context") == {}
