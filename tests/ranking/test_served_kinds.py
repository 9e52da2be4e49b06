"""`mlsd train --ranker deep|int8` writes a bundle that records its ranker, loads it and serves
with it over HTTP; an unknown kind is refused before any training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from mlsd.cli import app
from mlsd.pipeline import Recommender
from mlsd.pipeline.servable import ServingOptions
from mlsd.ranking import DeepRanker
from mlsd.serving.app import create_app
from mlsd.serving.bundle import load_bundle

runner = CliRunner()

CONFIG = """\
two_tower: {epochs: 1}
als: null
candidates: 100
negatives_per_user: 30
ranker:
  deep: {hidden: [32, 16], max_epochs: 3}
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from mlsd.config import SimulationConfig
    from mlsd.data.simulate import simulate

    d = tmp_path_factory.mktemp("kinds")
    ds = simulate(SimulationConfig.for_scale("tiny", seed=0))
    ds.write(d / "data", manifest=ds.meta)
    (d / "pipeline.yaml").write_text(CONFIG)
    return d / "data", d / "pipeline.yaml"


@pytest.mark.parametrize("kind", ["deep", "int8"])
def test_train_with_a_neural_ranker_writes_a_bundle_that_serves_it(
    tiny: tuple[Path, Path], tmp_path: Path, kind: str
) -> None:
    data, config = tiny
    out = tmp_path / "model"
    args = ["train", "--events", str(data), "--config", str(config), "--out", str(out)]
    r = runner.invoke(app, [*args, "--ranker", kind])
    assert r.exit_code == 0, r.output
    assert kind in r.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["ranker_kind"] == kind
    ranker_meta = json.loads((out / "artifacts" / "ranker" / "ranker.json").read_text())
    assert ranker_meta["kind"] == kind
    assert (out / "artifacts" / "ranker" / "model.pt").is_file()

    model = load_bundle(out)
    assert isinstance(model, Recommender)
    ranker = model.ranker_
    assert isinstance(ranker, DeepRanker) and ranker.kind_ == kind
    model.prepare(ServingOptions(candidate_cache=False), lambda _m: None)
    calls: list[tuple[int, int]] = []
    real = ranker.predict_proba

    def spy(x: np.ndarray) -> dict[str, np.ndarray]:
        calls.append(x.shape)
        return real(x)

    ranker.predict_proba = spy  # type: ignore[method-assign]
    user = int(model.retrieval.history_.users()[0])
    c = TestClient(create_app(model, model_threads=0))
    got = c.post("/v1/recommendations", json={"user_id": user, "k": 5, "explain": True})
    assert got.status_code == 200, got.text
    body = got.json()
    assert not body["degraded"], body.get("degraded_reason")
    assert body["model_version"] == model.version and len(body["items"]) == 5
    # the request's candidates were scored by this ranker, and its probabilities explain them
    assert len(calls) == 1 and calls[0][1] == len(ranker.feature_names_)
    for item in body["items"]:
        assert {"p_watch", "p_like"} <= set(item["explanation"]["components"])


def test_an_unknown_ranker_kind_is_refused_before_training(
    tiny: tuple[Path, Path], tmp_path: Path
) -> None:
    data, _ = tiny
    r = runner.invoke(
        app, ["train", "--events", str(data), "--out", str(tmp_path / "m"), "--ranker", "forest"]
    )
    assert r.exit_code == 2
    assert "--ranker 'forest': expected one of gbdt, deep, distilled, int8" in r.output
    assert not (tmp_path / "m").exists()
