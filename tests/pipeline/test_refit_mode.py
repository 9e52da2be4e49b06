"""two_tower_refit: auto refits incrementally only on large logs with a global cut."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from mlsd.pipeline import PipelineConfig, Recommender
from mlsd.pipeline.config import WARM_REFIT_POSITIVES
from mlsd.pipeline.labels import LabelSplit, incremental_refit


def _split(mode: str) -> LabelSplit:
    empty = pa.table({"user_id": pa.array([], pa.int64())})
    return LabelSplit(mode, 0, None, 0, empty, empty, np.zeros(0, np.int64))


@pytest.mark.parametrize(
    ("setting", "mode", "n", "want"),
    [
        (None, "global", WARM_REFIT_POSITIVES, True),
        (None, "global", WARM_REFIT_POSITIVES - 1, False),
        (None, "per-user", 10 * WARM_REFIT_POSITIVES, False),  # no "newest days" to train on
        (False, "global", 10 * WARM_REFIT_POSITIVES, False),
        (True, "per-user", 10, True),
    ],
)
def test_incremental_refit(setting: bool | None, mode: str, n: int, want: bool) -> None:
    said: list[str] = []
    assert incremental_refit(setting, _split(mode), n, said.append) is want
    assert bool(said) is (setting is None)  # auto says what it chose


def test_the_config_maps_to_the_stage() -> None:
    for value, warm in (("auto", None), ("full", False), ("incremental", True)):
        rec = Recommender(PipelineConfig(two_tower_refit=value))  # type: ignore[arg-type]
        assert rec.warm_refit is warm
    assert PipelineConfig().two_tower_refit == "auto"
