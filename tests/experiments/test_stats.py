"""The experiment statistics hold their promises on data with known truth: error rates,
interval coverage, SRM detection, CUPED's variance reduction, the planner's round trip."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd.errors import ConfigError, DataError
from mlsd.experiments import (
    assign,
    bucket,
    cuped,
    difference,
    mde,
    mean,
    msprt_pvalues,
    ratio,
    relative_lift,
    sample_size,
    srm,
)


def test_assignment_is_deterministic_balanced_and_salted() -> None:
    users = np.arange(1, 200_001, dtype=np.int64)
    a = assign(users, "exp-1", [0.5, 0.5])
    assert np.array_equal(a, assign(users, "exp-1", [0.5, 0.5]))
    assert np.array_equal(a[::-1], assign(users[::-1], "exp-1", [0.5, 0.5]))
    assert abs(a.mean() - 0.5) < 0.005
    other = assign(users, "exp-2", [0.5, 0.5])
    assert abs((a == other).mean() - 0.5) < 0.005  # another salt: independent
    three = assign(users, "exp-3", [0.2, 0.3, 0.5])
    shares = np.bincount(three, minlength=3) / len(users)
    np.testing.assert_allclose(shares, [0.2, 0.3, 0.5], atol=0.005)
    u = bucket(users, "exp-1")
    assert u.min() >= 0 and u.max() < 1
    with pytest.raises(ConfigError):
        assign(users, "x", [1.0])


def _fixed_horizon_fpr(rng: np.random.Generator, sims: int, n: int) -> float:
    hits = 0
    for _ in range(sims):
        y = rng.exponential(1.0, 2 * n)  # skewed, as watch counts are
        hits += difference(y[:n], y[n:]).p_value < 0.05  # type: ignore[operator]
    return hits / sims


def test_fixed_horizon_false_positive_rate_is_alpha() -> None:
    fpr = _fixed_horizon_fpr(np.random.default_rng(0), 2000, 400)
    assert 0.03 <= fpr <= 0.07, fpr  # the A/A band of the issue; the binomial s.e. is 0.005


def _peeks(rng: np.random.Generator, effect: float, days: int = 14, per_day: int = 100):  # type: ignore[no-untyped-def]
    a = rng.normal(0, 1, days * per_day)
    b = rng.normal(effect, 1, days * per_day)
    diffs, variances, naive = [], [], []
    for k in range(1, days + 1):
        aa, bb = a[: k * per_day], b[: k * per_day]
        diffs.append(bb.mean() - aa.mean())
        variances.append(aa.var(ddof=1) / len(aa) + bb.var(ddof=1) / len(bb))
        naive.append(difference(aa, bb).p_value)
    return np.array(diffs), np.array(variances), np.array(naive)


def test_the_sequential_test_stays_valid_under_daily_peeking() -> None:
    rng = np.random.default_rng(1)
    seq = naive = 0
    sims = 400
    for _ in range(sims):
        d, v, p_naive = _peeks(rng, 0.0)
        seq += (msprt_pvalues(d, v, tau=0.1) <= 0.05).any()
        naive += (p_naive < 0.05).any()
    assert seq / sims <= 0.05, seq / sims
    assert naive / sims > 0.12  # peeking at a fixed-horizon test inflates its error


def test_the_sequential_test_finds_a_real_effect() -> None:
    rng = np.random.default_rng(2)
    found = sum((msprt_pvalues(*_peeks(rng, 0.25)[:2], tau=0.1) <= 0.05).any() for _ in range(100))
    assert found >= 80
    p = msprt_pvalues([0.1, 0.0, 0.3], [0.01, 0.01, 0.01], tau=0.1)
    assert (np.diff(p) <= 0).all()  # running minimum: never increases
    with pytest.raises(DataError):
        msprt_pvalues([0.1], [0.0], tau=0.1)


def test_ratio_interval_covers_the_true_ratio() -> None:
    rng = np.random.default_rng(3)
    covered, sims = 0, 500
    for _ in range(sims):
        imps = rng.poisson(20, 1000) + 1
        clicks = rng.binomial(imps, rng.beta(2, 18, 1000))  # per-user CTR varies, mean 0.1
        e = ratio(clicks, imps)
        covered += e.low <= 0.1 <= e.high
    assert 0.92 <= covered / sims <= 0.98, covered / sims


def test_relative_lift_interval_covers_the_true_lift() -> None:
    rng = np.random.default_rng(4)
    covered, sims = 0, 400
    for _ in range(sims):
        e = relative_lift(rng.exponential(2.0, 2000), rng.exponential(2.2, 2000))
        covered += e.low <= 0.1 <= e.high
    assert 0.92 <= covered / sims <= 0.98, covered / sims


def test_srm_detects_a_lost_share_of_one_arms_exposures() -> None:
    rng = np.random.default_rng(5)
    # exposures (slates served), each assigned by its user's arm: a week of `small` logs ~10^5
    users = np.arange(100_000)
    detected = clean_alarms = 0
    for t in range(100):
        arm = assign(users, f"srm-{t}", [0.5, 0.5])
        counts = np.bincount(arm, minlength=2)
        clean_alarms += srm(counts, [0.5, 0.5]).alarm
        kept_b = rng.random(counts[1]) >= 0.05  # 5% of arm b's exposure logs dropped
        detected += srm([counts[0], int(kept_b.sum())], [0.5, 0.5]).alarm
    assert detected >= 95 and clean_alarms <= 1


def test_cuped_reduces_variance_by_the_squared_correlation() -> None:
    rng = np.random.default_rng(6)
    n = 20_000
    pre = rng.normal(5, 2, n)
    post = 0.7 * pre + rng.normal(0, 2 * np.sqrt(1 - 0.49), n)  # corr(pre, post) = 0.7
    arm = assign(np.arange(n), "cuped", [0.5, 0.5])
    post = post + 0.05 * arm  # a small true effect
    adj, theta, reduction = cuped(post, pre)
    assert reduction == pytest.approx(0.49, abs=0.03)
    assert theta == pytest.approx(0.7, abs=0.05)
    raw = difference(post[arm == 0], post[arm == 1])
    better = difference(adj[arm == 0], adj[arm == 1])
    assert better.width < 0.8 * raw.width
    assert better.low <= 0.05 <= better.high


def test_the_planner_round_trips() -> None:
    n = sample_size(sd=2.0, mde_abs=0.1)
    assert 6000 < n < 6500  # 2 (1.96 + 0.84)^2 (2 / 0.1)^2 = 6,280
    assert mde(sd=2.0, n_a=n) == pytest.approx(0.1, rel=0.01)
    m = mean(np.array([1.0, 2.0, 3.0, 4.0]))
    assert m.value == 2.5 and m.low < 2.5 < m.high
    with pytest.raises(DataError):
        difference(np.array([1.0]), np.array([1.0, 2.0]))
