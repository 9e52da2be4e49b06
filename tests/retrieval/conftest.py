"""Shared fixtures: the tiny simulated platform split at its last 4 days, fitted sources."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd.config import SimulationConfig
from mlsd.data.dataset import Dataset
from mlsd.data.simulate import simulate
from mlsd.retrieval import (
    CandidateSource,
    CoVisitationSource,
    CreatorPopularSource,
    FreshSource,
    History,
    PopularSource,
    TopicPopularSource,
    TwoTowerSource,
)
from mlsd.retrieval.als import ALSSource
from mlsd.retrieval.evaluate import NextPeriod, next_period
from mlsd.retrieval.item_item import EASESource, ItemKNNSource

FAST_TWO_TOWER = {"epochs": 2, "batch_size": 256, "dim": 16, "hidden": 32}


@pytest.fixture(scope="session")
def tiny() -> Dataset:
    return simulate(SimulationConfig.for_scale("tiny", seed=0))


@pytest.fixture(scope="session")
def tiny_period(tiny: Dataset) -> NextPeriod:
    return next_period(tiny, test_days=4.0)


def make_sources() -> list[CandidateSource]:
    return [
        TwoTowerSource(**FAST_TWO_TOWER),  # type: ignore[arg-type]
        CoVisitationSource(),
        TopicPopularSource(),
        CreatorPopularSource(),
        PopularSource(),
        PopularSource(half_life_days=1.0, window_days=3.0, name="trending"),
        FreshSource(),
        ALSSource(factors=16, iterations=3),
        EASESource(l2=50.0),
        ItemKNNSource(n_neighbors=50),
    ]


@pytest.fixture(scope="session")
def fitted(tiny: Dataset, tiny_period: NextPeriod) -> dict[str, CandidateSource]:
    """Every source fitted on tiny's training part, sharing one bounded History (a copy, so
    tests may append to it without touching ``tiny_period``)."""
    history = History.from_positives(
        tiny_period.train_positives,
        max_len=200,
        known_video_ids=np.asarray(tiny.videos.column("video_id")),
    )
    out: dict[str, CandidateSource] = {}
    for s in make_sources():
        s.fit(  # type: ignore[attr-defined]
            tiny_period.train_positives,
            videos=tiny.videos,
            users=tiny.users,
            now_ms=tiny_period.split_ms,
            history=history,
        )
        out[s.name] = s
    return out
