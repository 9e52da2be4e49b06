"""Neural rankers: the deep network learns a known signal, the distilled student follows its
teacher, int8 orders rows as the float network does, and every kind saves and loads exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from mlsd.errors import ConfigError, DataError
from mlsd.ranking import DeepRanker, GBDTRanker, Ranker, fit_ranker, load_ranker
from mlsd.ranking.base import auc
from mlsd.ranking.calibration import expected_calibration_error
from mlsd.ranking.config import RankerConfig
from mlsd.ranking.nn import RankerNet
from mlsd.ranking.quantize import quantize_net, state_nbytes

NAMES = ["a", "b", "c", "d", "e"]


def _data(n: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Watch depends on a, b and the cross a*c; like on c among watches; d is noise; e is a
    heavy-tailed count, missing for a fifth of the rows, whose absence lowers the odds."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    x[:, 4] = rng.pareto(1.5, n) * 100
    gone = rng.random(n) < 0.2
    x[gone, 4] = np.nan
    logit = 1.5 * x[:, 0] - x[:, 1] + 1.2 * x[:, 0] * x[:, 2] - 1.0 * gone
    watch = rng.random(n) < 1 / (1 + np.exp(-logit))
    like = watch & (rng.random(n) < 1 / (1 + np.exp(-(x[:, 2] - 1.0))))
    return x, {"watch": watch, "like": like}


SMALL = {"hidden": (64, 32), "cross_layers": 2, "max_epochs": 12, "batch_size": 256}


@pytest.fixture(scope="module")
def deep() -> DeepRanker:
    x, y = _data(8000, 0)
    return DeepRanker({"watch": 1.0, "like": 0.5}, **SMALL).fit(x, y, NAMES, valid=_data(2000, 1))


@pytest.fixture(scope="module")
def gbdt() -> GBDTRanker:
    x, y = _data(8000, 0)
    return GBDTRanker(n_estimators=150, num_threads=1).fit(x, y, NAMES, valid=_data(2000, 1))


@pytest.fixture(scope="module")
def student(gbdt: GBDTRanker) -> DeepRanker:
    x, y = _data(8000, 0)
    return DeepRanker(hidden=(32,), cross_layers=0, learning_rate=3e-3, max_epochs=20).fit(
        x, y, NAMES, valid=_data(2000, 1), teacher=gbdt
    )


@pytest.fixture(scope="module")
def int8(deep: DeepRanker) -> DeepRanker:
    return deep.quantize(_data(2000, 1))


def test_deep_ranker_learns_the_signal_and_is_calibrated(deep: DeepRanker) -> None:
    xt, yt = _data(5000, 2)
    p = deep.predict_proba(xt)
    assert isinstance(deep, Ranker) and deep.kind_ == "deep"
    # random ordering scores 0.5; the Bayes-optimal ordering about 0.85 on watch
    assert auc(p["watch"], yt["watch"]) > 0.78
    assert auc(p["like"], yt["like"]) > 0.75
    assert auc(deep.score(xt), yt["watch"]) > 0.78
    assert expected_calibration_error(p["watch"], yt["watch"]) < 0.05
    assert deep.metrics_["watch"]["valid_auc"] > 0.78
    np.testing.assert_allclose(deep.score(xt), p["watch"] + 0.5 * p["like"])
    # the noise feature matters least to watch; the missing count's absence matters
    imp = deep.feature_importance("watch")
    assert imp["d"] < min(imp["a"], imp["b"], imp["e"])


def test_missing_values_are_information_not_errors(deep: DeepRanker) -> None:
    xt, _ = _data(3000, 3)
    xt[:, 4] = np.nan  # every count missing: lower odds than any present
    low = deep.predict_proba(xt)["watch"]
    xt[:, 4] = 5.0
    high = deep.predict_proba(xt)["watch"]
    assert np.isfinite(low).all() and low.mean() < high.mean()
    xt[:7, :] = np.nan  # a column never missing in training: scored, not crashed
    assert np.isfinite(deep.score(xt)).all()


def test_early_stopping_keeps_the_best_epoch() -> None:
    x, y = _data(3000, 4)
    r = DeepRanker({"watch": 1.0}, **{**SMALL, "max_epochs": 40, "patience": 2})
    r.fit(x, y, NAMES, valid=_data(600, 5))
    assert r.metrics_["watch"]["best_iteration"] < 40  # stopped before the last epoch


@pytest.mark.parametrize("kind", ["deep", "distilled", "int8"])
def test_save_load_round_trips_exactly(
    kind: str,
    deep: DeepRanker,
    student: DeepRanker,
    int8: DeepRanker,
    tmp_path: Path,
) -> None:
    r = {"deep": deep, "distilled": student, "int8": int8}[kind]
    r.save(tmp_path)
    assert json.loads((tmp_path / "ranker.json").read_text())["kind"] == kind
    back = load_ranker(tmp_path)
    assert isinstance(back, DeepRanker) and back.kind_ == kind
    xt, _ = _data(700, 6)
    np.testing.assert_array_equal(back.score(xt), r.score(xt))
    assert back.fingerprint() == r.fingerprint()
    assert (
        back.metrics_ == r.metrics_ and back.feature_importance("watch") == r.importances_["watch"]
    )


def test_fingerprints_differ_by_kind_and_weights(deep: DeepRanker, int8: DeepRanker) -> None:
    assert deep.fingerprint() != int8.fingerprint()
    x, y = _data(2000, 7)
    a = DeepRanker(**{**SMALL, "max_epochs": 1}).fit(x, y, NAMES)
    b = DeepRanker(**{**SMALL, "max_epochs": 1}).fit(x, y, NAMES)
    c = DeepRanker(**{**SMALL, "max_epochs": 1, "seed": 1}).fit(x, y, NAMES)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()  # seeded, deterministic


def test_the_distilled_student_follows_its_teacher(student: DeepRanker, gbdt: GBDTRanker) -> None:
    xt, yt = _data(5000, 8)
    assert student.kind_ == "distilled"
    assert student.details_["teacher"] == {"kind": "gbdt", "fingerprint": gbdt.fingerprint()}
    rho = spearmanr(student.score(xt), gbdt.score(xt)).statistic
    assert rho > 0.9
    # and it is much smaller than a deep network
    n_params = sum(p.numel() for p in student.net_.parameters())
    assert n_params < 1000
    assert auc(student.predict_proba(xt)["watch"], yt["watch"]) > 0.75


def test_a_student_learns_from_the_teacher_not_the_labels(gbdt: GBDTRanker) -> None:
    """Training labels that say nothing: a student trained on the teacher still ranks as it
    does (the validation rows, real, only calibrate it)."""
    x, _ = _data(6000, 9)
    rng = np.random.default_rng(0)
    noise = {"watch": rng.random(6000) < 0.3, "like": rng.random(6000) < 0.1}
    s = DeepRanker(hidden=(32,), cross_layers=0, learning_rate=3e-3, max_epochs=15)
    s.fit(x, noise, NAMES, valid=_data(2000, 1), teacher=gbdt)
    xt, _ = _data(3000, 10)
    assert spearmanr(s.score(xt), gbdt.score(xt)).statistic > 0.85


def test_int8_agrees_with_the_float_network(deep: DeepRanker, int8: DeepRanker) -> None:
    xt, yt = _data(5000, 11)
    assert int8.kind_ == "int8" and deep.kind_ == "deep"  # the float ranker is left as it was
    kinds = [type(m) for m in int8.net_.modules()]
    assert kinds.count(torch.ao.nn.quantized.dynamic.Linear) == 2 + 2 + 1  # cross, MLP, heads
    assert torch.nn.Linear not in kinds  # none left in float
    rho = spearmanr(int8.score(xt), deep.score(xt)).statistic
    assert rho > 0.995
    assert int8.details_["int8"]["score_spearman"] > 0.995
    top_f = set(np.argsort(-deep.score(xt))[:100])
    top_q = set(np.argsort(-int8.score(xt))[:100])
    assert len(top_f & top_q) >= 90
    assert abs(auc(int8.score(xt), yt["watch"]) - auc(deep.score(xt), yt["watch"])) < 0.01
    assert state_nbytes(int8.net_) < state_nbytes(deep.net_)
    big = RankerNet(60, 2, (128, 64), 2)  # weights dominate the file's fixed overhead
    assert state_nbytes(quantize_net(big)) < 0.35 * state_nbytes(big)


def test_fit_ranker_builds_each_kind() -> None:
    x, y = _data(3000, 12)
    valid = _data(800, 13)
    cfg = RankerConfig.model_validate(
        {
            "n_estimators": 30,
            "deep": {**SMALL, "max_epochs": 2},
            "student": {"max_epochs": 2, "teacher": "deep"},
        }
    )
    said: list[str] = []
    w = {"watch": 1.0, "like": 0.5}
    got = {
        k: fit_ranker(k, cfg, w, x, y, NAMES, valid=valid, seed=0, say=said.append)
        for k in ("gbdt", "deep", "distilled", "int8")
    }
    assert isinstance(got["gbdt"], GBDTRanker)
    kinds = {k: getattr(r, "kind_", "gbdt") for k, r in got.items()}
    assert kinds == {"gbdt": "gbdt", "deep": "deep", "distilled": "distilled", "int8": "int8"}
    student = got["distilled"]
    assert isinstance(student, DeepRanker) and student.details_["teacher"]["kind"] == "deep"
    assert any("Spearman" in m for m in said)
    with pytest.raises(ConfigError, match="ranker kind 'forest'"):
        fit_ranker("forest", cfg, w, x, y, NAMES, valid=valid, seed=0)


def test_bad_input_is_a_clear_error(deep: DeepRanker, tmp_path: Path) -> None:
    x, y = _data(500, 14)
    with pytest.raises(DataError, match="every training label is 0"):
        DeepRanker({"watch": 1.0}).fit(x, {"watch": np.zeros(500, bool)}, NAMES)
    with pytest.raises(ConfigError, match="share"):
        DeepRanker({"share": 1.0}).fit(x, y, NAMES)
    with pytest.raises(DataError, match="shape"):
        DeepRanker().fit(x, y, NAMES[:3])
    with pytest.raises(DataError, match="shape"):
        deep.score(x[:, :3])
    with pytest.raises(ConfigError, match="not fitted"):
        DeepRanker().score(x)
    deep.save(tmp_path / "r")
    (tmp_path / "r" / "model.pt").write_bytes(b"not a state dict")
    with pytest.raises(DataError, match=r"model\.pt"):
        load_ranker(tmp_path / "r")
    meta = json.loads((tmp_path / "r" / "ranker.json").read_text())
    (tmp_path / "r" / "ranker.json").write_text(json.dumps({**meta, "kind": "forest"}))
    with pytest.raises(DataError, match="ranker kind 'forest'"):
        load_ranker(tmp_path / "r")


def test_a_gbdt_saved_before_kinds_loads_as_gbdt(gbdt: GBDTRanker, tmp_path: Path) -> None:
    gbdt.save(tmp_path)
    meta = json.loads((tmp_path / "ranker.json").read_text())
    del meta["kind"]  # what every ranker.json was before the neural kinds
    (tmp_path / "ranker.json").write_text(json.dumps(meta))
    back = load_ranker(tmp_path)
    assert isinstance(back, GBDTRanker)
    assert back.fingerprint() == gbdt.fingerprint()


def test_prediction_uses_the_configured_threads_and_leaves_torch_as_it_was(
    deep: DeepRanker,
) -> None:
    before = torch.get_num_threads()
    deep.score(_data(100, 15)[0])
    assert torch.get_num_threads() == before
