"""Data drift per column, prediction drift and dataset drift: a reference sample (the training
window) against a current one (what the service saw lately), one method per column chosen as
Evidently chooses its default, with the population stability index reported beside it.

Inputs are 1-d arrays (NumPy, or pyarrow arrays and chunked arrays) of one column each.
Numerical columns are read as float64; nulls (NaN, and for pyarrow nulls) and infinities are
left out of the drift computation (:func:`mlsd.monitoring.data_quality` counts nulls and
flags infinities as out of range). Categorical columns may hold any hashable values; ``None``
and NaN are their nulls.

Method selection (Evidently, data drift presets: default stattest selection; "Automatic
Stattest Selection", Evidently 0.1.50): a numerical column with at most 5 distinct values over
both samples is compared as a categorical one. Then, with ``n = min(n_reference, n_current)``
(non-null values):

============  ===============================  ==========================================
n <= 1000     numerical: two-sample KS         drift when p < 0.05
              categorical, 2 categories:       two-proportion Z-test, p < 0.05
              categorical, more:               chi-square test of homogeneity, p < 0.05
n > 1000      numerical: Wasserstein distance  divided by the reference's standard
                                               deviation (at least 0.001), drift when >= 0.1
              categorical: Jensen-Shannon      distance (base 2, in [0, 1]), drift when
                                               >= 0.1
============  ===============================  ==========================================

Two departures from Evidently, each for a false alarm rate that holds at the nominal level:

- The size that picks the family is the smaller sample's, not the reference's. The distances
  carry no sampling error model: between two samples of one distribution they shrink only as
  the samples grow, so a reference of 50,000 training rows against a window of 100 requests
  would read a normed Wasserstein distance near 0.1 by chance alone; a test is calibrated at
  any size.
- The chi-square test is the two-sample test of homogeneity of the 2 x k table of counts
  (``scipy.stats.chi2_contingency``), not Evidently's goodness of fit of the current counts to
  the reference proportions taken as exact. Those proportions are themselves a sample: with
  500 rows in each, 5 categories and no drift the goodness of fit fires 33% of the time at
  p < 0.05 (400 seeds), the homogeneity test 5.5%. Its expected counts come from both
  samples, so a category seen in only one of them needs no smoothing. For two categories it
  is the square of the pooled two-proportion Z statistic.

PSI, ``sum((c - r) * ln(c / r))`` over bins of the reference's and current's shares ``r`` and
``c``: numerical columns over the deciles of the reference (open-ended at both ends; tied
quantiles merged), or over their distinct values when the reference has at most 10;
categorical columns over the union of categories; an empty bin counts as 1e-4 (Evidently's
``psi`` stattest). Siddiqi, "Credit Risk Scorecards" (Wiley, 2006): below 0.1 no significant
change, 0.1 to 0.25 some, above 0.25 a major shift; Evidently's PSI threshold is 0.1.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from scipy import stats as sps
from scipy.spatial import distance
from statsmodels.stats.proportion import proportions_ztest

from mlsd.errors import ConfigError, DataError

__all__ = [
    "KINDS",
    "ColumnDrift",
    "DatasetDrift",
    "column_drift",
    "dataset_drift",
    "prediction_drift",
    "psi",
]

KINDS = ("num", "cat")

# Evidently's defaults (data drift presets: default stattest selection)
SMALL_N = 1000  # at most this many rows: a statistical test; above: a distance
P_THRESHOLD = 0.05  # a test's p-value below this: drift
DISTANCE_THRESHOLD = 0.1  # Wasserstein (normed) or Jensen-Shannon at or above this: drift
MAX_CAT_VALUES = 5  # a numerical column with at most this many distinct values is categorical
WASSERSTEIN_MIN_STD = 0.001  # the norm of a (nearly) constant reference
DATASET_SHARE = 0.5  # a dataset drifts when at least this share of its columns do

# PSI (Siddiqi 2006; Evidently's psi stattest: 10 bins, empty bins at 1e-4)
PSI_THRESHOLD = 0.1
#: PSI of a "major shift" (Siddiqi 2006): what the drift alert counts. Why not the tests'
#: verdicts: in 14 stable simulated days (~5,600 sampled rows a day) Evidently's tests
#: flagged half of the features or more from day 5 on (at such volumes they detect shifts too
#: small to matter), while at most 18% had a PSI of 0.25 (docs/monitoring.md).
PSI_ALERT = 0.25
PSI_BINS = 10
PSI_EPS = 1e-4

TESTS = ("ks", "z", "chisquare")  # methods whose statistic is a p-value
NONE = np.array([None], dtype=object)  # compared elementwise: the nulls of an object column


@dataclass(frozen=True)
class ColumnDrift:
    """The drift of one column. ``statistic`` is the p-value of the tests (``method`` "ks",
    "z", "chisquare": drift when below ``threshold``) or the distance ("wasserstein",
    "jensenshannon": drift when at or above it). ``psi`` is always computed; ``n_reference``
    and ``n_current`` count the non-null values compared."""

    name: str
    kind: str
    method: str
    statistic: float
    threshold: float
    drifted: bool
    psi: float
    n_reference: int
    n_current: int

    @property
    def is_test(self) -> bool:
        """Whether :attr:`statistic` is a p-value (smaller is more drift)."""
        return self.method in TESTS

    @property
    def psi_drifted(self) -> bool:
        """PSI at or above 0.1 (Siddiqi 2006: at least some shift; Evidently's threshold)."""
        return self.psi >= PSI_THRESHOLD

    @property
    def psi_major(self) -> bool:
        """PSI at or above :data:`PSI_ALERT` (0.25: a major shift)."""
        return self.psi >= PSI_ALERT

    @property
    def severity(self) -> float:
        """How far past its threshold the column is, on one scale for every method: 1 at the
        threshold, above 1 drifted. A distance over its threshold; for a p-value,
        ``log(p) / log(threshold)`` (a p-value of 0 reads as 1e-300)."""
        if self.is_test:
            return math.log(max(self.statistic, 1e-300)) / math.log(self.threshold)
        return self.statistic / self.threshold


@dataclass(frozen=True)
class DatasetDrift:
    """The columns' drift, in the order of ``kinds``; the dataset drifts when the share of
    drifted columns is at least ``share_threshold`` (Evidently's dataset drift: 0.5)."""

    columns: tuple[ColumnDrift, ...]
    drifted_share: float
    share_threshold: float
    drifted: bool

    @property
    def n_drifted(self) -> int:
        return sum(c.drifted for c in self.columns)

    @property
    def drifted_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.drifted]

    @property
    def psi_share(self) -> float:
        """Share of the columns whose PSI shows a major shift (:data:`PSI_ALERT`)."""
        return sum(c.psi_major for c in self.columns) / len(self.columns) if self.columns else 0.0

    @property
    def psi_alert(self) -> bool:
        """At least ``share_threshold`` of the columns shifted majorly: the drift alert."""
        return bool(self.columns) and self.psi_share >= self.share_threshold

    def column(self, name: str) -> ColumnDrift:
        """The drift of column ``name`` (``KeyError`` when it was not compared)."""
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def _to_numpy(values: Any) -> np.ndarray:
    if isinstance(values, pa.ChunkedArray | pa.Array):
        return np.asarray(values.to_numpy(zero_copy_only=False))
    return np.asarray(values)


def _check_kind(name: str, kind: str) -> None:
    if kind not in KINDS:
        raise ConfigError(f"column {name!r}: kind {kind!r}; expected one of {', '.join(KINDS)}")


def numeric_values(name: str, values: Any, which: str) -> np.ndarray:
    """The column as float64, nulls as NaN; a :class:`DataError` naming the column when it is
    not 1-d or not numbers."""
    a = _to_numpy(values)
    if a.ndim != 1:
        raise DataError(f"column {name!r}: {which} has shape {a.shape}; expected a 1-d array")
    if a.dtype == object:  # pyarrow nulls or Python None among numbers
        a = np.array([np.nan if v is None else v for v in a.tolist()], dtype=object)
    try:
        return a.astype(np.float64)
    except (TypeError, ValueError) as e:
        raise DataError(f"column {name!r}: {which} is not numerical ({a.dtype}): {e}") from None


def null_mask(values: np.ndarray) -> np.ndarray:
    """True where a value is null: NaN, or ``None`` in an object array."""
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype == object:
        # None, and NaN (the one value unequal to itself)
        return np.asarray(np.equal(values, NONE) | (values != values), dtype=bool)
    return np.zeros(len(values), dtype=bool)


def categorical_values(name: str, values: Any, which: str) -> np.ndarray:
    """The column as a 1-d NumPy array (object when it holds nulls); a :class:`DataError`
    naming the column when it is not 1-d."""
    a = _to_numpy(values)
    if a.ndim != 1:
        raise DataError(f"column {name!r}: {which} has shape {a.shape}; expected a 1-d array")
    return a


def _nonnull(name: str, values: Any, kind: str, which: str) -> np.ndarray:
    if kind == "num":
        a = numeric_values(name, values, which)
        a = a[np.isfinite(a)]
    else:
        a = categorical_values(name, values, which)
        a = a[~null_mask(a)]
    if len(a) == 0:
        raise DataError(f"column {name!r}: {which} has no values (no rows, or only nulls)")
    return a


def _counts(values: np.ndarray) -> dict[Hashable, int]:
    try:
        keys, n = np.unique(values, return_counts=True)
        return dict(zip(keys.tolist(), n.tolist(), strict=True))
    except TypeError:  # mixed types that do not sort (e.g. str and int)
        return dict(Counter(values.tolist()))


def _table(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """The 2 x k counts of reference and current over the union of their categories."""
    r, c = _counts(ref), _counts(cur)
    keys = list(r) + [k for k in c if k not in r]
    return np.array([[r.get(k, 0) for k in keys], [c.get(k, 0) for k in keys]], dtype=np.int64)


def _psi_shares(ref_n: np.ndarray, cur_n: np.ndarray) -> float:
    r = ref_n / ref_n.sum()
    c = cur_n / cur_n.sum()
    r = np.where(r == 0, PSI_EPS, r)
    c = np.where(c == 0, PSI_EPS, c)
    return float(np.sum((c - r) * np.log(c / r)))


def _psi(ref: np.ndarray, cur: np.ndarray, kind: str) -> float:
    if kind == "cat" or len(np.unique(ref)) <= PSI_BINS:
        table = _table(ref, cur)
        return _psi_shares(table[0], table[1])
    # inner edges at the reference's deciles; ties (a value filling several deciles) merge
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, PSI_BINS + 1)[1:-1]))
    k = len(edges) + 1
    ref_n = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=k)
    cur_n = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=k)
    return _psi_shares(ref_n, cur_n)


def psi(reference: Any, current: Any, kind: str, name: str = "column") -> float:
    """The population stability index of ``current`` against ``reference`` (see the module's
    docstring for the bins); nulls left out."""
    _check_kind(name, kind)
    ref = _nonnull(name, reference, kind, "the reference")
    cur = _nonnull(name, current, kind, "the current sample")
    return _psi(ref, cur, kind)


def _categorical(ref: np.ndarray, cur: np.ndarray, small: bool) -> tuple[str, float]:
    table = _table(ref, cur)
    k = table.shape[1]
    if not small:
        shares = table / table.sum(axis=1, keepdims=True)
        js = float(distance.jensenshannon(shares[0], shares[1], base=2))
        return "jensenshannon", js if math.isfinite(js) else 0.0
    if k == 1:  # one category in both samples: nothing can differ
        return ("z", 1.0)
    if k == 2:
        _, p = proportions_ztest(table[:, 0], table.sum(axis=1))
        return "z", float(p)
    return "chisquare", float(sps.chi2_contingency(table, correction=False).pvalue)


def column_drift(name: str, reference: Any, current: Any, kind: str) -> ColumnDrift:
    """The drift of one column (``kind`` "num" or "cat") of ``current`` against
    ``reference``, by the method the module's docstring gives for its kind and sizes.

    Raises :class:`~mlsd.errors.DataError` naming the column when either sample has no
    non-null value or is not a 1-d array (of numbers, for "num"), and
    :class:`~mlsd.errors.ConfigError` for another ``kind``.
    """
    _check_kind(name, kind)
    ref = _nonnull(name, reference, kind, "the reference")
    cur = _nonnull(name, current, kind, "the current sample")
    small = min(len(ref), len(cur)) <= SMALL_N
    as_cat = kind == "cat" or len(np.unique(np.concatenate([ref, cur]))) <= MAX_CAT_VALUES
    if as_cat:
        method, stat = _categorical(ref, cur, small)
    elif small:
        method, stat = "ks", float(sps.ks_2samp(ref, cur).pvalue)
    else:
        norm = max(float(np.std(ref)), WASSERSTEIN_MIN_STD)
        method, stat = "wasserstein", float(sps.wasserstein_distance(ref, cur)) / norm
    if method in TESTS:
        threshold, drifted = P_THRESHOLD, stat < P_THRESHOLD
    else:
        threshold, drifted = DISTANCE_THRESHOLD, stat >= DISTANCE_THRESHOLD
    return ColumnDrift(
        name, kind, method, stat, threshold, bool(drifted), _psi(ref, cur, kind), len(ref), len(cur)
    )


def prediction_drift(reference: Any, current: Any, kind: str = "num") -> ColumnDrift:
    """The drift of the model's output (scores: "num"; predicted classes: "cat") between two
    windows: :func:`column_drift` of the column ``"prediction"``."""
    return column_drift("prediction", reference, current, kind)


def missing_columns(
    kinds: Mapping[str, str], reference: Mapping[str, Any], current: Mapping[str, Any]
) -> None:
    """A :class:`DataError` naming the columns of ``kinds`` absent from either sample; a
    :class:`ConfigError` when ``kinds`` is empty or names an unknown kind."""
    if not kinds:
        raise ConfigError("no columns to compare: kinds is empty")
    for name, kind in kinds.items():
        _check_kind(name, kind)
    gone = []
    for which, sample in (("reference", reference), ("current", current)):
        absent = [c for c in kinds if c not in sample]
        if absent:
            gone.append(f"columns missing from the {which} data: {', '.join(absent)}")
    if gone:
        raise DataError("; ".join(gone))


def dataset_drift(
    reference: Mapping[str, Any],
    current: Mapping[str, Any],
    kinds: Mapping[str, str],
    share: float = DATASET_SHARE,
) -> DatasetDrift:
    """The drift of every column named in ``kinds`` (name -> "num" or "cat"; other columns of
    the samples are ignored), and whether at least ``share`` of them drifted.

    Raises :class:`~mlsd.errors.DataError` naming the columns missing from either sample (or
    a column with no values), :class:`~mlsd.errors.ConfigError` for a ``share`` outside
    (0, 1] or no columns.
    """
    if not 0 < share <= 1:
        raise ConfigError(f"dataset drift share {share}: expected 0 < share <= 1")
    missing_columns(kinds, reference, current)
    cols = tuple(column_drift(c, reference[c], current[c], k) for c, k in kinds.items())
    observed = sum(c.drifted for c in cols) / len(cols)
    return DatasetDrift(cols, observed, share, observed >= share)
