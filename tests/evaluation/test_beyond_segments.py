"""Beyond-accuracy metrics per model and user segment in the evaluation output: a hand-checked
example through ``compare`` and the report table, then ``mlsd evaluate`` end to end."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from typer.testing import CliRunner

from mlsd.cli import app
from mlsd.evaluation import compare
from mlsd.evaluation.beyond import ItemInfo
from mlsd.evaluation.holdout import EvalSet, Holdout
from mlsd.evaluation.interactions import Interactions
from mlsd.evaluation.metrics import Truth
from mlsd.evaluation.report import Assets, beyond_rows, beyond_table

# Catalog: items 1..5, topics a a b b c, creators 10 10 20 20 30.
ITEMS = ItemInfo(
    np.array([1, 2, 3, 4, 5]),
    topics=np.array(["a", "a", "b", "b", "c"], dtype=object),
    creator_ids=np.array([10, 10, 20, 20, 30]),
)
# Training: user 1 has items 1, 2 (heavy, with light_max=1), user 2 item 1 (light), user 3
# nothing (new). Popularity: item 1 has 2 training users, item 2 one, items 3-5 none.
TRAIN = Interactions(np.array([1, 1, 2]), np.array([1, 2, 1]), np.ones(3, np.float32))
RECS = {1: [3, 4, 5], 2: [3, 5, -1], 3: [1, -1, -1]}


class Fixed:
    """A model that recommends ``RECS``."""

    def fit(self, interactions: Interactions) -> Fixed:
        return self

    def recommend(self, user_ids: np.ndarray, k: int, exclude_seen: bool = True) -> np.ndarray:
        return np.array([RECS[int(u)][:k] for u in user_ids], np.int64)


def _holdout() -> Holdout:
    users = np.array([1, 2, 3])
    truth = Truth.from_pairs(users, np.array([3, 4, 5]), users)
    return Holdout("temporal", TRAIN, EvalSet(users, truth, TRAIN.per_user(users)))


def test_beyond_metrics_per_segment_by_hand() -> None:
    comparison = compare({"fixed": Fixed}, _holdout(), k=3, items=ITEMS, light_max=1)
    cols, rows = beyond_rows(comparison)
    assert cols == ["model", "segment", "users", "coverage@3", "ild@3", "novelty@3",
                    "creator_gini@3"]  # fmt: skip
    got = {r[1]: r[2:] for r in rows}
    assert [r[0] for r in rows] == ["fixed"] * 4 and list(got) == ["all", "new", "light", "heavy"]
    b = math.log2(3)  # self-information of an item no training user had: -log2((0+1)/(2+1))
    want = {
        # coverage: distinct items / 5. ILD: 1 - mean same-topic pairs (user 1: 3,4 share b of
        # 3 pairs -> 2/3; user 2: one pair, different -> 1; user 3: one item -> none).
        # novelty: per-user mean bits (b, b, 0): item 1 is had by both training users,
        # -log2(3/3) = 0, items 3-5 by none. creator Gini over
        # slots per creator (10, 20, 30): all 1,3,2 -> 4/18; new 1,0,0 -> 2/3;
        # light 0,1,1 -> 1/3; heavy 0,2,1 -> 4/9.
        "all": [3, 4 / 5, (2 / 3 + 1) / 2, (b + b + 0.0) / 3, 4 / 18],
        "new": [1, 1 / 5, math.nan, 0.0, 2 / 3],
        "light": [1, 2 / 5, 1.0, b, 1 / 3],
        "heavy": [1, 3 / 5, 2 / 3, b, 4 / 9],
    }
    for seg, values in want.items():
        assert got[seg] == pytest.approx(values, nan_ok=True), seg
    md = beyond_table(comparison).markdown(Assets(), 2)  # type: ignore[union-attr]
    assert "Beyond accuracy by user segment" in md and "| fixed | heavy | 1 | 0.6000 |" in md
    assert "Ziegler" in md and "Zhou" in md and "Gini" in md  # the definitions, with sources


def test_no_beyond_table_without_catalog_information() -> None:
    comparison = compare({"fixed": Fixed}, _holdout(), k=3)
    assert beyond_rows(comparison)[1] == [] and beyond_table(comparison) is None


def test_mlsd_evaluate_prints_and_reports_beyond_metrics_for_every_model(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for u in range(1, 61):
        items = rng.choice(np.arange(u % 4, 80, 4) + 1, size=20, replace=False)
        rows += [(u, int(i), 1_700_000_000 + 3600 * (j * 7 + u % 5)) for j, i in enumerate(items)]
    log = tmp_path / "log.csv"
    names = ("user_id", "item_id", "timestamp")
    pacsv.write_csv(pa.table({n: [r[c] for r in rows] for c, n in enumerate(names)}), log)
    args = ["evaluate", "--events", str(log), "--protocol", "per-user-temporal", "--k", "5"]
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "r")])
    assert r.exit_code == 0, r.output
    out = " ".join(re.sub("[│┃╭╮╰╯─━┏┓┗┛┡┩└┘╇┳┻┣┫╋]", " ", r.output).split())
    assert "beyond accuracy @5 by user segment" in out
    for c in ("coverage@5", "ild@5", "novelty@5", "creator_gini@5"):
        assert c in out
    md = (tmp_path / "r" / "report.md").read_text()
    section = md.split("## Beyond accuracy by user segment")[1].split("##")[0]
    for model in ("MostPop", "ItemKNN", "EASE", "ALS", "pipeline"):
        assert f"| {model} | all |" in section and f"| {model} | light |" in section
        assert re.search(rf"{model} +all +60 +\d\.\d{{4}} +- +\d\.\d{{4}} +-", out), model
