"""The statistics of an online experiment: per-arm estimates, the difference between arms,
ratio metrics, CUPED, the sample-ratio-mismatch check, an always-valid sequential test and
the power planner. Inputs are per-user NumPy arrays (one value per user in the arm, the unit
of randomisation); distributions come from SciPy and statsmodels.

Sources:
- Welch's t interval for a difference of means (statsmodels ``CompareMeans``).
- Delta method for ratio metrics (a ratio of sums over users, e.g. CTR = clicks /
  impressions): Deng, Knoblich and Lu, "Applying the Delta Method in Metric Analytics", KDD
  2018, eq. 5; and for the relative lift, the ratio of two independent means.
- CUPED: Deng, Xu, Kohavi and Walker, "Improving the Sensitivity of Online Controlled
  Experiments by Utilizing Pre-Experiment Data", WSDM 2013: ``y - theta (x - mean x)`` with
  ``theta = cov(y, x) / var(x)`` pooled over arms; variance shrinks by ``corr(x, y)^2``.
- Sample ratio mismatch: Pearson's chi-square goodness of fit of the arms' counts to the
  split (``scipy.stats.chisquare``), alarm at p < 0.001 (Fabijan et al., "Diagnosing Sample
  Ratio Mismatch in Online Controlled Experiments", KDD 2019).
- Sequential testing: the mixture sequential probability ratio test (mSPRT) with a normal
  mixing distribution N(0, tau^2) over the difference of means, whose running minimum of
  1 / Lambda is an always-valid p-value: Johari, Koomen, Pekelis and Walsh, "Always Valid
  Inference: Continuous Monitoring of A/B Tests", Operations Research 70(3), 2022, eq. (11).
- Power and minimum detectable effect: statsmodels ``NormalIndPower``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from mlsd.errors import ConfigError, DataError

__all__ = [
    "Estimate",
    "SrmResult",
    "cuped",
    "difference",
    "mde",
    "mean",
    "msprt_pvalues",
    "ratio",
    "relative_lift",
    "sample_size",
    "srm",
]


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its standard error and two-sided ``1 - alpha`` interval;
    ``p_value`` of the null of no difference where that applies."""

    value: float
    se: float
    low: float
    high: float
    n: int
    p_value: float | None = None

    @property
    def width(self) -> float:
        return self.high - self.low


def _arr(x: np.ndarray | Sequence[float], name: str, min_n: int = 2) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1 or len(a) < min_n:
        raise DataError(f"{name}: {a.shape}; expected a 1-d array of at least {min_n} users")
    if not np.isfinite(a).all():
        raise DataError(f"{name}: {int((~np.isfinite(a)).sum())} values not finite")
    return a


def _z(alpha: float) -> float:
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha {alpha}: expected 0 < alpha < 1")
    return float(sps.norm.ppf(1 - alpha / 2))


def mean(y: np.ndarray, alpha: float = 0.05) -> Estimate:
    """The arm's mean per user with its t interval."""
    d = DescrStatsW(_arr(y, "y"))
    low, high = d.tconfint_mean(alpha=alpha)
    return Estimate(float(d.mean), float(d.std_mean), float(low), float(high), int(d.nobs))


def difference(y_a: np.ndarray, y_b: np.ndarray, alpha: float = 0.05) -> Estimate:
    """``mean(b) - mean(a)``, Welch's interval and two-sided p-value (unequal variances)."""
    a, b = _arr(y_a, "arm a"), _arr(y_b, "arm b")
    cm = CompareMeans(DescrStatsW(b), DescrStatsW(a))
    low, high = cm.tconfint_diff(alpha=alpha, usevar="unequal")
    _, p, _ = cm.ttest_ind(usevar="unequal")
    se = float(cm.std_meandiff_separatevar)
    return Estimate(float(b.mean() - a.mean()), se, float(low), float(high), len(a) + len(b),
                    float(p))  # fmt: skip


def relative_lift(y_a: np.ndarray, y_b: np.ndarray, alpha: float = 0.05) -> Estimate:
    """``mean(b) / mean(a) - 1`` with a delta-method normal interval (independent arms)."""
    a, b = _arr(y_a, "arm a"), _arr(y_b, "arm b")
    ma, mb = a.mean(), b.mean()
    if ma == 0:
        raise DataError("relative lift: arm a's mean is 0")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(vb / ma**2 + mb**2 * va / ma**4)
    lift = mb / ma - 1
    z = _z(alpha)
    p = float(2 * sps.norm.sf(abs(lift) / se)) if se > 0 else None
    return Estimate(float(lift), se, lift - z * se, lift + z * se, len(a) + len(b), p)


def ratio(num: np.ndarray, den: np.ndarray, alpha: float = 0.05) -> Estimate:
    """``sum(num) / sum(den)`` over the arm's users (e.g. CTR = clicks / impressions), with
    the delta-method variance of a ratio of means (Deng et al. 2018)."""
    x, y = _arr(num, "numerator"), _arr(den, "denominator")
    if len(x) != len(y):
        raise DataError(f"ratio: {len(x)} numerators vs {len(y)} denominators")
    n, mx, my = len(x), x.mean(), y.mean()
    if my == 0:
        raise DataError("ratio: the denominator sums to 0")
    c = np.cov(x, y, ddof=1)
    var = (c[0, 0] / my**2 - 2 * mx * c[0, 1] / my**3 + mx**2 * c[1, 1] / my**4) / n
    se = math.sqrt(max(var, 0.0))
    r, z = mx / my, _z(alpha)
    return Estimate(float(r), se, r - z * se, r + z * se, n)


def cuped(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, float, float]:
    """CUPED-adjusted metric ``y - theta (x - mean x)`` for every user of every arm (pass
    all arms together: theta is pooled), ``theta`` and the variance reduction
    ``1 - var(adjusted) / var(y)``. ``x``: the same metric (or a correlate) before the
    experiment, 0 for users without a pre-period."""
    yy, xx = _arr(y, "y"), _arr(x, "covariate")
    if len(yy) != len(xx):
        raise DataError(f"cuped: {len(yy)} values vs {len(xx)} covariates")
    vx = xx.var(ddof=1)
    theta = float(np.cov(yy, xx, ddof=1)[0, 1] / vx) if vx > 0 else 0.0
    adj = yy - theta * (xx - xx.mean())
    vy = yy.var(ddof=1)
    return adj, theta, float(1 - adj.var(ddof=1) / vy) if vy > 0 else 0.0


@dataclass(frozen=True)
class SrmResult:
    counts: tuple[int, ...]
    expected: tuple[float, ...]
    chi2: float
    p_value: float
    alarm: bool


def srm(counts: Sequence[int], split: Sequence[float], threshold: float = 0.001) -> SrmResult:
    """Do the arms' user counts fit the traffic split? Alarm when p < ``threshold``."""
    c = np.asarray(counts, dtype=np.float64)
    w = np.asarray(split, dtype=np.float64)
    if c.shape != w.shape or len(c) < 2 or w.sum() <= 0 or c.sum() <= 0:
        raise DataError(f"srm: counts {list(counts)} and split {list(split)} do not match")
    exp = c.sum() * w / w.sum()
    chi2, p = sps.chisquare(c, exp)
    return SrmResult(tuple(int(v) for v in c), tuple(float(v) for v in exp), float(chi2),
                     float(p), bool(p < threshold))  # fmt: skip


def msprt_pvalues(diff: Sequence[float], variance: Sequence[float], tau: float) -> np.ndarray:
    """Always-valid p-values at successive looks: ``diff[k]`` the estimated difference of
    means at look k, ``variance[k]`` its variance (``var_a/n_a + var_b/n_b``), ``tau`` the
    standard deviation of the normal mixing distribution over the true difference (in the
    metric's units; about the effect one expects). Rejecting the first time p <= alpha keeps
    the false-positive rate <= alpha however often one looks (Johari et al. 2022)."""
    d, v = np.asarray(diff, np.float64), np.asarray(variance, np.float64)
    if d.shape != v.shape or (v <= 0).any() or tau <= 0:
        raise DataError("msprt: diff and variance must align, variances and tau be positive")
    t2 = tau * tau
    log_lambda = 0.5 * np.log(v / (v + t2)) + t2 * d * d / (2 * v * (v + t2))
    p = np.minimum(1.0, np.exp(-log_lambda))
    return np.minimum.accumulate(p)


def sample_size(sd: float, mde_abs: float, alpha: float = 0.05, power: float = 0.8,
                ratio_b_to_a: float = 1.0) -> int:  # fmt: skip
    """Users needed in arm a to detect an absolute difference ``mde_abs`` of a metric with
    standard deviation ``sd`` (two-sided, normal approximation); arm b needs
    ``ratio_b_to_a`` times as many."""
    if sd <= 0 or mde_abs <= 0:
        raise ConfigError(f"sample size: sd {sd} and mde {mde_abs} must be positive")
    n = NormalIndPower().solve_power(effect_size=mde_abs / sd, alpha=alpha, power=power,
                                     ratio=ratio_b_to_a, alternative="two-sided")  # fmt: skip
    return math.ceil(float(n))


def mde(sd: float, n_a: int, alpha: float = 0.05, power: float = 0.8,
        ratio_b_to_a: float = 1.0) -> float:  # fmt: skip
    """The smallest absolute difference detectable with ``n_a`` users in arm a."""
    if sd <= 0 or n_a < 2:
        raise ConfigError(f"mde: sd {sd} must be positive and n {n_a} at least 2")
    es = NormalIndPower().solve_power(nobs1=n_a, alpha=alpha, power=power,
                                      ratio=ratio_b_to_a, alternative="two-sided")  # fmt: skip
    return float(es) * sd
