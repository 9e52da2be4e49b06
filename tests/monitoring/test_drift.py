"""Drift holds its promises on data with known truth: samples of one distribution rarely
drift (the tests at their level, the distances almost never), a shift of half a standard
deviation or of category shares always does, on both the small-sample and the large-sample
methods; PSI is the hand computation; bad input names its column."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from mlsd.errors import ConfigError, DataError
from mlsd.monitoring import column_drift, dataset_drift, prediction_drift, psi

SEEDS = range(50)
SHARES = [0.4, 0.3, 0.15, 0.1, 0.05]
CATS = np.array(["web", "ios", "android", "tv", "other"])


def _false_alarms(n: int, kind: str) -> tuple[set[str], int]:
    methods, alarms = set(), 0
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        if kind == "num":
            a, b = rng.normal(3, 2, n), rng.normal(3, 2, n)
        else:
            a, b = rng.choice(CATS, n, p=SHARES), rng.choice(CATS, n, p=SHARES)
        d = column_drift("x", a, b, kind)
        methods.add(d.method)
        alarms += d.drifted
    return methods, alarms


@pytest.mark.parametrize(
    ("n", "kind", "method", "max_alarms"),
    [
        (500, "num", "ks", 7),  # ~5% at p < 0.05; 15% of 50 seeds at most
        (5000, "num", "wasserstein", 0),
        (500, "cat", "chisquare", 7),
        (5000, "cat", "jensenshannon", 0),
    ],
)
def test_same_distribution_rarely_drifts(n: int, kind: str, method: str, max_alarms: int) -> None:
    methods, alarms = _false_alarms(n, kind)
    assert methods == {method}
    assert alarms <= max_alarms


@pytest.mark.parametrize(("n", "method"), [(500, "ks"), (5000, "wasserstein")])
def test_half_a_standard_deviation_drifts(n: int, method: str) -> None:
    for seed in range(10):
        rng = np.random.default_rng(seed)
        d = column_drift("watch_s", rng.normal(3, 2, n), rng.normal(4, 2, n), "num")
        assert d.method == method and d.drifted, d
        assert d.psi_drifted and d.severity > 1
        assert (d.n_reference, d.n_current) == (n, n)
    if method == "wasserstein":  # the normed distance is the shift in standard deviations
        assert d.statistic == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize(("n", "method"), [(500, "chisquare"), (5000, "jensenshannon")])
def test_category_shift_drifts(n: int, method: str) -> None:
    rng = np.random.default_rng(1)
    a = rng.choice(CATS, n, p=SHARES)
    b = rng.choice(CATS, n, p=[0.25, 0.3, 0.25, 0.1, 0.1])
    d = column_drift("device", a, b, "cat")
    assert d.method == method and d.drifted and d.psi_drifted


def test_two_categories_use_the_z_test_which_is_the_chi_square_of_the_table() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.random(400) < 0.3, rng.random(600) < 0.4
    d = column_drift("clicked", a, b, "cat")
    assert d.method == "z" and d.drifted
    from scipy.stats import chi2_contingency

    table = [[a.sum(), (~a).sum()], [b.sum(), (~b).sum()]]
    assert d.statistic == pytest.approx(chi2_contingency(table, correction=False).pvalue)


def test_few_distinct_numbers_are_compared_as_categories() -> None:
    rng = np.random.default_rng(3)
    stars = rng.integers(1, 6, 800).astype(float)  # 5 distinct values: Evidently's rule
    assert column_drift("stars", stars, stars[::-1], "num").method == "chisquare"
    assert column_drift("stars", np.tile(stars, 3), np.tile(stars, 3), "num").method == (
        "jensenshannon"
    )


def test_the_smaller_sample_picks_the_method() -> None:
    rng = np.random.default_rng(4)
    d = column_drift("x", rng.normal(size=50_000), rng.normal(size=300), "num")
    assert d.method == "ks" and (d.n_reference, d.n_current) == (50_000, 300)


def test_nulls_and_infinities_are_left_out() -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(size=400)
    b = np.concatenate([rng.normal(size=300), [np.nan] * 100, [np.inf]])
    d = column_drift("x", a, b, "num")
    assert d.n_current == 300 and not math.isnan(d.statistic)
    arrow = column_drift("x", pa.array([1.0, None, 2.0, 3.0, 4.0, 5.0, 6.0]), a, "num")
    assert arrow.n_reference == 6
    cats = column_drift(
        "c",
        np.array(["a", None, "b", float("nan")], dtype=object),
        pa.array(["a", "b", None]),
        "cat",
    )
    assert (cats.n_reference, cats.n_current) == (2, 2) and not cats.drifted


def test_psi_equals_the_hand_computation() -> None:
    # categorical: shares (0.5, 0.5) -> (0.25, 0.75)
    want = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    assert psi(["a", "a", "b", "b"], ["a", "b", "b", "b"], "cat") == pytest.approx(want)
    # numerical: deciles of 0..99 hold 10 values each; the current fills the two outer ones
    # only, the eight inner bins read 1e-4
    cur = np.r_[np.arange(10), np.arange(90, 100)]
    want = 2 * (0.5 - 0.1) * math.log(0.5 / 0.1) + 8 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert psi(np.arange(100.0), cur, "num") == pytest.approx(want)
    assert psi(np.arange(100.0), np.arange(100.0), "num") == 0.0
    # a constant reference: bins are its distinct values; a new value gets its own bin
    want = (0.5 - 1) * math.log(0.5 / 1) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert psi(np.ones(100), np.r_[np.ones(50), 2 * np.ones(50)], "num") == pytest.approx(want)


def test_psi_of_a_tied_reference_still_bins_its_tail() -> None:
    rng = np.random.default_rng(6)
    ref = np.where(rng.random(2000) < 0.6, 0.0, rng.exponential(size=2000))  # 60% zeros
    assert psi(ref, ref[::-1], "num") < 0.01
    assert psi(ref, ref + 1.0, "num") > 0.25


def test_dataset_drift_share() -> None:
    rng = np.random.default_rng(7)
    n = 600
    ref = {
        "a": rng.normal(size=n),
        "b": rng.normal(size=n),
        "c": rng.choice(CATS, n),
        "d": rng.normal(size=n),
        "unused": rng.normal(size=n),
    }
    cur = {**{k: v[::-1].copy() for k, v in ref.items()}}
    kinds = {"a": "num", "b": "num", "c": "cat", "d": "num"}
    clean = dataset_drift(ref, cur, kinds)
    assert [c.name for c in clean.columns] == ["a", "b", "c", "d"]
    assert not clean.drifted and clean.drifted_share == 0 and clean.share_threshold == 0.5
    cur["a"] = cur["a"] + 1
    one = dataset_drift(ref, cur, kinds)
    assert one.drifted_columns == ["a"] and one.drifted_share == 0.25 and not one.drifted
    assert dataset_drift(ref, cur, kinds, share=0.25).drifted
    cur["b"] = cur["b"] * 3
    two = dataset_drift(ref, cur, kinds)
    assert two.n_drifted == 2 and two.drifted  # 2 of 4 >= 0.5
    assert two.column("b").drifted and not two.column("c").drifted


def test_bad_input_names_the_column() -> None:
    with pytest.raises(DataError, match=r"'watch_s'.*reference has no values"):
        column_drift("watch_s", [], [1.0, 2.0], "num")
    with pytest.raises(DataError, match=r"'watch_s'.*current sample has no values"):
        column_drift("watch_s", [1.0, 2.0], [np.nan, np.nan], "num")
    with pytest.raises(DataError, match="'device'"):
        column_drift("device", ["a"], [None], "cat")
    with pytest.raises(DataError, match=r"'x'.*not numerical"):
        column_drift("x", ["a", "b"], [1.0], "num")
    with pytest.raises(ConfigError, match="'x'"):
        column_drift("x", [1.0], [1.0], "text")
    ref = {"a": np.ones(3), "b": np.ones(3)}
    with pytest.raises(DataError, match=r"reference data: c; .* current data: b, c"):
        dataset_drift(ref, {"a": np.ones(3)}, {"a": "num", "b": "num", "c": "cat"})
    with pytest.raises(ConfigError):
        dataset_drift(ref, ref, {"a": "num"}, share=0)
    with pytest.raises(ConfigError):
        dataset_drift(ref, ref, {})


def test_prediction_drift_is_the_drift_of_the_scores() -> None:
    rng = np.random.default_rng(8)
    scores = rng.beta(2, 5, 3000)
    assert not prediction_drift(scores, rng.beta(2, 5, 3000)).drifted
    shifted = prediction_drift(scores, rng.beta(3, 4, 3000))
    assert shifted.name == "prediction" and shifted.drifted
