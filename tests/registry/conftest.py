"""Registry test fixtures: stub bundles (fast, distinct versions) and a fresh SQLite registry."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlsd.registry import Registry
from mlsd.serving.bundle import register_kind, save_bundle, unregister_kind
from tests.serving.stub_model import KIND, StubModel


@pytest.fixture
def make_bundle(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """``make_bundle(version, recall=...)``: a stub model bundle of that version."""
    register_kind(KIND, StubModel, replace=True)

    def make(version: str, recall: float = 0.25) -> Path:
        return save_bundle(
            StubModel(version),
            tmp_path / "bundles" / version,
            config={"dim": 16, "n_candidates": 50, "ranker": {"lr": 0.05}},
            data_fingerprint="sha256:" + version.encode().hex().ljust(64, "0")[:64],
            metrics={"recall@20": recall},
        )

    yield make
    unregister_kind(KIND)


@pytest.fixture(scope="session")
def empty_registry_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty MLflow database (creating one runs MLflow's migrations, ~1.5 s)."""
    db = tmp_path_factory.mktemp("registry-template") / "mlflow.db"
    Registry(f"sqlite:///{db}")._c.search_registered_models()
    return db


@pytest.fixture
def registry(tmp_path: Path, empty_registry_db: Path) -> Registry:
    """A fresh registry of its own (a copy of the empty database)."""
    db = tmp_path / "reg" / "mlflow.db"
    db.parent.mkdir()
    shutil.copyfile(empty_registry_db, db)
    return Registry(f"sqlite:///{db}")
