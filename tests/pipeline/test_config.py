"""Typed sub-configs: a misspelled key or a bad value fails when the config is read (not as a
``TypeError`` deep in training), and their defaults are the constructors' defaults."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from mlsd.config import load_yaml
from mlsd.errors import ConfigError
from mlsd.pipeline import PipelineConfig
from mlsd.ranking import DeepRanker, GBDTRanker
from mlsd.ranking.config import NeuralRankerConfig, RankerConfig
from mlsd.retrieval import TwoTowerSource
from mlsd.retrieval.als import ALSSource
from mlsd.retrieval.config import ALSConfig, TwoTowerConfig


def _defaults(cls: type) -> dict[str, Any]:
    params = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
    return {n: p.default for n, p in params.items() if p.default is not inspect.Parameter.empty}


@pytest.mark.parametrize(
    ("config", "cls", "own"),
    [
        (TwoTowerConfig, TwoTowerSource, {"seed"}),  # the pipeline's seed
        (ALSConfig, ALSSource, {"seed"}),
        # a pipeline trains its ranker on one thread with its own seed; weights are positional
        # and chooses its objective (auto: both fitted, the better kept)
        (
            RankerConfig,
            GBDTRanker,
            {"seed", "num_threads", "weights", "deep", "student", "objective"},
        ),
        # the student's mix of labels is set for distillation only (StudentConfig)
        (NeuralRankerConfig, DeepRanker, {"seed", "weights", "hard_label_weight"}),
    ],
)
def test_defaults_are_the_constructors(config: type[BaseModel], cls: type, own: set[str]) -> None:
    want = {k: v for k, v in _defaults(cls).items() if k not in own}
    got = config().model_dump()
    assert {k: got[k] for k in want} == want
    assert set(got) - set(want) <= own  # no setting the constructor does not take


def test_a_misspelled_or_bad_setting_fails_when_read(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="epoch"):
        PipelineConfig.model_validate({"two_tower": {"epoch": 3}})
    with pytest.raises(ValidationError, match="n_estimators"):
        PipelineConfig.model_validate({"ranker": {"n_estimators": 0}})
    with pytest.raises(ValidationError, match="factor"):
        PipelineConfig.model_validate({"als": {"factor": 8}})
    cfg = tmp_path / "pipeline.yaml"
    cfg.write_text("two_tower:\n  epochs: 2\n  hiden: 64\n")
    with pytest.raises(ConfigError, match=r"pipeline\.yaml: key 'two_tower\.hiden'"):
        load_yaml(cfg, PipelineConfig)
    cfg.write_text("two_tower:\n  epochs: 2\nals: null\nranker:\n  weights: {watch: 1.0}\n")
    got = load_yaml(cfg, PipelineConfig)
    assert got.two_tower.epochs == 2 and got.als is None and got.ranker.weights == {"watch": 1.0}
    assert RankerConfig().kwargs(seed=7)["seed"] == 7
    assert RankerConfig(seed=3).kwargs(seed=7)["seed"] == 3
