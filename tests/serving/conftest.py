"""Shared fixtures of the serving tests: a registered stub model kind, bundles of it, a tiny
real Recommender bundle (trained once per session, small settings), and the environment a
real ``mlsd serve`` subprocess needs to load the stub kind."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlsd.serving.bundle import KINDS_ENV, register_kind, save_bundle, unregister_kind
from tests.serving.stub_model import KIND, KIND_TARGET, StubModel

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stub_kind() -> Iterator[str]:
    register_kind(KIND, StubModel, replace=True)
    yield KIND
    unregister_kind(KIND)


@pytest.fixture
def stub_bundle(tmp_path: Path, stub_kind: str) -> Path:
    return save_bundle(
        StubModel("stub-v1"),
        tmp_path / "bundle-v1",
        config={"dim": 16, "n_candidates": 50},
        data_fingerprint="sha256:" + "0" * 64,
        metrics={"recall@20": 0.25},
    )


@pytest.fixture
def server_env() -> dict[str, str]:
    """What a `mlsd serve` child needs to load the stub kind from tests/."""
    path = os.environ.get("PYTHONPATH", "")
    return {
        KINDS_ENV: f"{KIND}={KIND_TARGET}",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT),
    }


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny simulation written to a directory (shared by the session)."""
    from mlsd.config import SimulationConfig
    from mlsd.data.simulate import simulate

    ds = simulate(SimulationConfig.for_scale("tiny", seed=0))
    out = tmp_path_factory.mktemp("tiny") / "data"
    ds.write(out, manifest=ds.meta)
    return out


@pytest.fixture(scope="session")
def real_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: Path) -> Path:
    """A real Recommender trained on the tiny simulation with small settings (a few s)."""
    from mlsd.data.dataset import load_dataset
    from mlsd.pipeline import Recommender
    from mlsd.serving.bundle import fingerprint_table

    ds = load_dataset(tiny_dataset)
    config = {
        "two_tower": {"epochs": 1},
        "ranker": {"n_estimators": 20, "num_threads": 1},
        "candidates": 100,
        "negatives_per_user": 30,
    }
    rec = Recommender(config)
    rec.fit(ds)
    return save_bundle(
        rec,
        tmp_path_factory.mktemp("real") / "rec",
        config=config,
        data_fingerprint=fingerprint_table(ds.events),
        metrics={"ranker": rec.ranker_.metrics_},
    )
