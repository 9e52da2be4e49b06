"""A tiny world in two parts (14 days, then 7 continued days) and a registry whose champion v1
was trained on the first part; each test gets its own copy of the registry database."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mlsd.config import SimulationConfig
from mlsd.data.simulate import simulate
from mlsd.data.simulate.continuation import continue_world
from mlsd.registry import Registry

#: small settings: a tiny retrain (two fits) in ~15 s
PIPELINE = {
    "two_tower": {"epochs": 1},
    "ranker": {"n_estimators": 20, "num_threads": 1},
    "candidates": 100,
    "negatives_per_user": 30,
}


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("world")
    first = simulate(SimulationConfig.for_scale("tiny", seed=0))
    first.write(root / "sim", manifest=first.meta)
    week = continue_world(first.meta, 7)
    week.write(root / "week", manifest=week.meta)
    return root / "sim", root / "week"


@pytest.fixture(scope="session")
def champion_db(tmp_path_factory: pytest.TempPathFactory, world: tuple[Path, Path]) -> Path:
    """A registry database with videorec v1 (trained on the first 14 days) as champion."""
    from mlsd.data.dataset import load_dataset
    from mlsd.pipeline import PipelineConfig, Recommender
    from mlsd.serving.bundle import save_bundle

    root = tmp_path_factory.mktemp("registry")
    ds = load_dataset(world[0])
    cfg = PipelineConfig.model_validate(PIPELINE)
    rec = Recommender(cfg).fit(ds)
    bundle = save_bundle(
        rec, root / "v1", config=cfg.model_dump(mode="json"),
        data_fingerprint=rec.data_fingerprints_["events"],
        metrics={"ranker": rec.ranker_.metrics_},
    )  # fmt: skip
    reg = Registry(f"sqlite:///{root / 'db' / 'mlflow.db'}")
    reg.register(bundle, "videorec")
    reg.promote("videorec", 1, reason="first version")
    return root / "db" / "mlflow.db"


@pytest.fixture
def registry_uri(tmp_path: Path, champion_db: Path) -> str:
    db = tmp_path / "registry" / "mlflow.db"
    db.parent.mkdir()
    shutil.copyfile(champion_db, db)
    return f"sqlite:///{db}"
