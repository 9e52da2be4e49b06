"""GBDT ranker: learns, calibrates, combines objectives by weight, saves safely."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlsd.errors import ConfigError, DataError
from mlsd.ranking import GBDTRanker, PlattCalibrator
from mlsd.ranking.calibration import expected_calibration_error


def _data(n: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    p_watch = 1 / (1 + np.exp(-(1.5 * x[:, 0] - x[:, 1])))
    watch = rng.random(n) < p_watch
    like = watch & (rng.random(n) < 1 / (1 + np.exp(-(x[:, 2] - 1.0))))
    return x, {"watch": watch, "like": like}


@pytest.fixture(scope="module")
def fitted() -> GBDTRanker:
    x, y = _data(6000, 0)
    xv, yv = _data(2000, 1)
    return GBDTRanker({"watch": 1.0, "like": 0.5}, n_estimators=150, num_threads=1).fit(
        x, y, ["a", "b", "c", "d"], valid=(xv, yv)
    )


def test_learns_and_is_calibrated(fitted: GBDTRanker) -> None:
    xt, yt = _data(4000, 2)
    probs = fitted.predict_proba(xt)
    assert fitted.metrics_["watch"]["valid_auc"] > 0.75
    assert expected_calibration_error(probs["watch"], yt["watch"]) < 0.05
    # the noise feature matters least for the watch objective
    imp = fitted.feature_importance("watch")
    assert imp["d"] < imp["a"] and imp["d"] < imp["b"]


def test_score_is_the_weighted_sum_of_probabilities(fitted: GBDTRanker) -> None:
    xt, _ = _data(100, 3)
    p = fitted.predict_proba(xt)
    np.testing.assert_allclose(fitted.score(xt), 1.0 * p["watch"] + 0.5 * p["like"])


def test_save_load_round_trip(fitted: GBDTRanker, tmp_path: Path) -> None:
    fitted.save(tmp_path)
    assert (tmp_path / "ranker_watch.txt").read_text().startswith("tree")
    loaded = GBDTRanker.load(tmp_path)
    xt, _ = _data(200, 4)
    np.testing.assert_allclose(loaded.score(xt), fitted.score(xt), rtol=1e-6)
    assert loaded.feature_names_ == ["a", "b", "c", "d"]


def test_corrupt_model_file_is_a_clear_error(fitted: GBDTRanker, tmp_path: Path) -> None:
    fitted.save(tmp_path)
    (tmp_path / "ranker_like.txt").write_text("not a model")
    with pytest.raises(DataError, match=r"ranker_like\.txt"):
        GBDTRanker.load(tmp_path)


def test_bad_labels_and_shapes() -> None:
    x, y = _data(500, 5)
    with pytest.raises(DataError, match="every training label is 0"):
        GBDTRanker({"watch": 1.0}).fit(x, {"watch": np.zeros(500, bool)}, list("abcd"))
    with pytest.raises(ConfigError, match="share"):
        GBDTRanker({"share": 1.0}).fit(x, y, list("abcd"))
    with pytest.raises(DataError, match="shape"):
        GBDTRanker().fit(x, y, list("abc"))


def test_platt_recovers_a_known_scale() -> None:
    rng = np.random.default_rng(0)
    m = rng.normal(size=50_000) * 2
    y = rng.random(50_000) < 1 / (1 + np.exp(-(0.5 * m - 1.0)))
    cal = PlattCalibrator().fit(m, y)
    assert cal.a_ == pytest.approx(0.5, abs=0.05)
    assert cal.b_ == pytest.approx(-1.0, abs=0.05)


@pytest.mark.parametrize("code_model", ["small", "large"])
def test_compiled_ranker_predicts_what_lightgbm_does(
    fitted: GBDTRanker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code_model: str
) -> None:
    import lleaves

    from mlsd.ranking import gbdt

    fitted.save(tmp_path)
    r = GBDTRanker.load(tmp_path)
    leaves = sum(b.trees_to_dataframe()["decision_type"].isna().sum() for b in r.boosters_.values())
    if code_model == "large":  # a forest over the bound keeps lleaves' default code model
        monkeypatch.setattr(gbdt, "_SMALL_CODE_LEAVES", leaves // 4)
    used: list[str] = []
    real = lleaves.Model.compile
    monkeypatch.setattr(
        lleaves.Model,
        "compile",
        lambda self, *a, **kw: used.append(kw["fcodemodel"]) or real(self, *a, **kw),
    )
    xt, _ = _data(500, 5)
    xt[::7, 1] = np.nan  # missing values take the learned default branch in both
    want = r.predict_proba(xt)
    assert r.compile() is True
    assert set(r.compiled_) == {"watch", "like"}
    assert used == [code_model, code_model]
    got = r.predict_proba(xt)
    for obj in want:
        np.testing.assert_allclose(got[obj], want[obj], rtol=0, atol=1e-12)
    np.testing.assert_allclose(r.score(xt), fitted.score(xt), rtol=0, atol=1e-12)


def test_a_compiler_that_misreads_the_model_is_not_used(
    fitted: GBDTRanker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lleaves

    fitted.save(tmp_path)
    r = GBDTRanker.load(tmp_path)
    real = lleaves.Model.predict
    monkeypatch.setattr(lleaves.Model, "predict", lambda self, x, n_jobs=None: real(self, x) + 0.1)
    assert r.compile() is False
    assert getattr(r, "compiled_", None) is None  # LightGBM still predicts
    xt, _ = _data(50, 6)
    np.testing.assert_allclose(r.score(xt), fitted.score(xt), rtol=1e-6)


def test_compile_without_lleaves_keeps_lightgbm(
    fitted: GBDTRanker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    fitted.save(tmp_path)
    r = GBDTRanker.load(tmp_path)
    monkeypatch.setitem(sys.modules, "lleaves", None)  # import fails
    assert r.compile() is False
    xt, _ = _data(50, 7)
    np.testing.assert_allclose(r.score(xt), fitted.score(xt), rtol=1e-6)
