"""A model's version is a fingerprint of its content, and every cache is keyed by it.

The reproduction that motivated it: model A trained on a log, model B on the same log with its
item ids permuted (same config, same last timestamp, same row count: the old version hashed
only those), both served with one ``--candidate-cache-dir``. B must be served B's candidates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mlsd.config import SimulationConfig
from mlsd.data.dataset import Dataset
from mlsd.data.simulate import simulate
from mlsd.pipeline import Recommender, RequestCtx, ServingOptions

LIGHT = {
    "candidates": 100,
    "two_tower": {"epochs": 1, "dim": 16, "hidden": 32, "n_user_buckets": 64},
    "als": {"factors": 16, "iterations": 3},
    "ranker": {"n_estimators": 20},
}


@pytest.fixture(scope="module")
def data() -> Dataset:
    return simulate(SimulationConfig.for_scale("tiny", seed=0))


def permuted(ds: Dataset, seed: int = 1) -> Dataset:
    """The same log with the item ids permuted (each video gets another video's id)."""
    ids = np.sort(np.asarray(ds.videos.column("video_id")))
    new = dict(
        zip(ids.tolist(), np.random.default_rng(seed).permutation(ids).tolist(), strict=True)
    )

    def remap(t: pa.Table) -> pa.Table:
        col = np.array([new[v] for v in t.column("video_id").to_pylist()], np.int64)
        return t.set_column(t.column_names.index("video_id"), "video_id", pa.array(col))

    return Dataset(remap(ds.events), remap(ds.videos), ds.users, ds.creators)


@pytest.fixture(scope="module")
def models(data: Dataset) -> tuple[Recommender, Recommender]:
    a = Recommender(LIGHT).fit(data)
    b = Recommender(LIGHT).fit(permuted(data))
    return a, b


def _slates(model: Recommender, users: np.ndarray) -> list[list[int]]:
    ctx = RequestCtx(model.now_ms_)
    return [[i.video_id for i in model.serve(int(u), 10, ctx).items] for u in users]


def test_the_same_log_with_other_item_ids_is_another_version(
    models: tuple[Recommender, Recommender],
) -> None:
    a, b = models
    assert a.now_ms_ == b.now_ms_ and a.dataset_.events.num_rows == b.dataset_.events.num_rows
    # the same configuration (the candidate shares are tuned on the data itself, where item
    # ids break ties, so they may differ)
    pa_, pb_ = ({k: v for k, v in m.get_params().items() if k != "quotas"} for m in (a, b))
    assert pa_ == pb_
    assert a.version != b.version
    assert a.data_fingerprints_["events"] != b.data_fingerprints_["events"]


def test_b_is_served_its_own_candidates_from_a_shared_cache_dir(
    models: tuple[Recommender, Recommender], tmp_path: Path
) -> None:
    a, b = models
    said: list[str] = []
    users = np.sort(b.history_.users())[::10]
    online = _slates(b, users)  # B without any cache: the truth
    cache_dir = tmp_path / "candidates"
    a.prepare(ServingOptions(cache_dir=cache_dir, compile_ranker=False), said.append)
    b.prepare(ServingOptions(cache_dir=cache_dir, compile_ranker=False), said.append)
    assert "not reused" in said[-2] and a.version in said[-2]  # A's cache refused, and why
    assert _slates(b, users) == online
    assert b.status().cache_hits == len(users) and b.status().cache_misses == 0


def test_the_version_follows_the_content(data: Dataset, tmp_path: Path) -> None:
    a = Recommender(LIGHT).fit(data)
    again = Recommender(LIGHT).fit(data)
    assert again.version == a.version  # deterministic training, same content
    other_seed = Recommender({**LIGHT, "seed": 1}).fit(data)
    assert other_seed.version != a.version
    a.save(tmp_path / "m")
    assert Recommender.load(tmp_path / "m").version == a.version
