"""Weights of a bring-your-own log reach the models: ALS confidence (retrieval and the ALS
baseline), the ranker's sample weights; weight-0 rows are no positives anywhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from mlsd.data.dataset import Dataset
from mlsd.data.loaders import load
from mlsd.evaluation import ALS, EASE, ItemKNN, per_user_holdout
from mlsd.pipeline import Recommender
from mlsd.ranking.gbdt import GBDTRanker
from mlsd.retrieval.als import ALSSource


def _log(path: Path, weights: str, n_users: int = 60, n_items: int = 80) -> Dataset:
    """An interactions CSV with taste structure (users like items of their group) and a
    ``weight`` column: ``"counts"`` (1..49, seeded), ``"ones"``, or ``"none"`` (no column)."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(1, n_users + 1):
        items = rng.choice(np.arange(u % 4, n_items, 4) + 1, size=20, replace=False)
        for j, i in enumerate(items):
            rows.append((u, int(i), 1_700_000_000 + 3600 * (j * 7 + u % 5)))
    cols = {
        "user_id": [r[0] for r in rows],
        "item_id": [r[1] for r in rows],
        "timestamp": [r[2] for r in rows],
    }
    if weights != "none":
        w = rng.integers(1, 50, len(rows)) if weights == "counts" else np.ones(len(rows), int)
        cols["weight"] = w.tolist()
    pacsv.write_csv(pa.table(cols), path)
    return load(path)


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Dataset]:
    d = tmp_path_factory.mktemp("weights")
    return {w: _log(d / f"{w}.csv", w) for w in ("counts", "ones", "none")}


def test_als_source_learns_from_weights(logs: dict[str, Dataset]) -> None:
    f = {w: ALSSource(factors=8, iterations=3).fit(ds).item_factors_ for w, ds in logs.items()}
    assert np.abs(f["counts"] - f["none"]).max() > 1e-3  # counts change the model
    np.testing.assert_array_equal(f["ones"], f["none"])  # weight 1 is a plain positive


def test_als_source_weight_zero_is_not_a_positive(logs: dict[str, Dataset]) -> None:
    ds = logs["counts"]
    ev = ds.events
    w = ev.column("weight").to_numpy().copy()
    w[: len(w) // 2] = 0.0
    zeroed = Dataset(ev.set_column(ev.schema.get_field_index("weight"), "weight", pa.array(w)),
                     ds.videos, ds.users)  # fmt: skip
    dropped = Dataset(ev.slice(len(w) // 2), ds.videos, ds.users)
    a = ALSSource(factors=8, iterations=3).fit(zeroed).item_factors_
    b = ALSSource(factors=8, iterations=3).fit(dropped).item_factors_
    np.testing.assert_array_equal(a, b)  # weight-0 rows train like absent ones


@pytest.mark.parametrize("cls", [ALS, EASE, ItemKNN])
def test_baselines_read_weights_and_skip_weight_zero(logs: dict[str, Dataset], cls: type) -> None:
    def recs(ds: Dataset) -> np.ndarray:
        h = per_user_holdout(ds)
        model = cls(factors=8, iterations=3) if cls is ALS else cls()
        return np.asarray(model.fit(h.train).recommend(h.test.user_ids, 10))

    h = per_user_holdout(logs["counts"])
    assert h.train.weights.max() > 1  # the holdout hands the counts over
    assert not np.array_equal(recs(logs["counts"]), recs(logs["none"]))
    np.testing.assert_array_equal(recs(logs["ones"]), recs(logs["none"]))
    # weight 0: not a positive, neither in training nor in the truth
    ev = logs["counts"].events
    zero = pa.array(np.where(ev.column("video_id").to_numpy() == 5, 0, ev["weight"].to_numpy()))
    ds = Dataset(ev.set_column(ev.schema.get_field_index("weight"), "weight", zero),
                 logs["counts"].videos, logs["counts"].users)  # fmt: skip
    hz = per_user_holdout(ds)
    assert 5 not in hz.train.item_ids and 5 not in hz.test.truth.indices


def test_gbdt_sample_weight_changes_the_boosters() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3)).astype(np.float32)
    y = (x[:, 0] + rng.normal(size=400) > 0).astype(np.float32)
    w = np.where(y > 0, 1.0 + 10 * (x[:, 1] > 0), 1.0)
    kw = {"n_estimators": 20, "min_child_samples": 5, "early_stopping_rounds": 0}
    plain = GBDTRanker({"watch": 1.0}, **kw).fit(x, {"watch": y}, ["a", "b", "c"])  # type: ignore[arg-type]
    weighted = GBDTRanker({"watch": 1.0}, **kw).fit(  # type: ignore[arg-type]
        x, {"watch": y}, ["a", "b", "c"], sample_weight={"watch": w}
    )
    assert plain.fingerprint() != weighted.fingerprint()


def test_pipeline_trains_on_weights(
    logs: dict[str, Dataset], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The weights reach retrieval and the ranker of the full pipeline."""
    seen: dict[str, object] = {}
    fit = GBDTRanker.fit

    def spy(self: GBDTRanker, *args: object, **kwargs: object) -> GBDTRanker:
        seen["labels"], seen["sample_weight"] = args[1], kwargs.get("sample_weight")
        return fit(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(GBDTRanker, "fit", spy)
    fitted = {"none": Recommender().fit(logs["none"])}
    assert seen["sample_weight"] is None  # no weights: the ranker trains as before
    fitted["counts"] = Recommender().fit(logs["counts"])
    sw = seen["sample_weight"]["watch"]  # type: ignore[index]
    y = np.asarray(seen["labels"]["watch"], bool)  # type: ignore[index]
    assert (sw[~y] == 1).all()  # negatives weigh 1
    assert sw[y].min() >= 1 and sw[y].max() > 2  # positives by their counts (log2(1 + 49))
    ranker = {w: r.ranker_.fingerprint() for w, r in fitted.items()}
    assert ranker["counts"] != ranker["none"]
    als = {
        w: next(s for s in r.retrieval.sources_ if isinstance(s, ALSSource)).item_factors_
        for w, r in fitted.items()
    }
    assert np.abs(als["counts"] - als["none"]).max() > 1e-3
