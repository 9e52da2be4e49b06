"""Data quality of the current sample against the reference, per column: the breakages a
feature pipeline makes (a join that stops matching, a default that starts filling in, a unit
that changes) rather than the slow shifts of :mod:`.drift`.

Checks, each at most once per column (``check`` names it; the service exports one gauge per
column and check):

- ``nulls``: the current share of nulls above the reference's plus 0.05 and above twice the
  reference's (so above 5% for a column without nulls in the reference; a column null by
  design in part, such as a candidate source's rank, moving with the candidate mix is not a
  breakage);
- ``out_of_range`` (numerical): more than 1% of the current non-null values outside the
  column's declared ``bounds`` when given (a rate in [0, 1], a count >= 0), else the
  reference's ``[min, max]`` widened by 10% of its range on both sides (infinities always
  outside; a constant reference has no width to widen). Declare bounds for counters: they
  outgrow the reference's range as the world goes on, without anything being broken;
- ``zeros`` (numerical): the share of exact zeros among non-null values up by at least 0.5
  on the reference's (a pipeline that starts sending zeros for what it cannot compute);
- ``constant``: one distinct non-null value in the current sample (of at least two), while
  no value held half of the reference (a sparse counter that is 0 nine times in ten may well
  read all 0 in a quiet window).

Columns in ``nullable`` (null by design in part, e.g. a candidate source's rank when the
candidate did not come from it: their share moves with the candidate mix) skip ``nulls``.

Nulls are NaN (and pyarrow nulls) in numerical columns, ``None`` and NaN in categorical ones.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlsd.errors import DataError

from .drift import categorical_values, missing_columns, null_mask, numeric_values

__all__ = ["CHECKS", "QualityIssue", "data_quality"]

CHECKS = ("nulls", "out_of_range", "zeros", "constant")

NULL_MARGIN = 0.05  # more nulls than the reference's share plus this
RANGE_WIDEN = 0.1  # the reference's range widened by this share of itself on each side
RANGE_SHARE = 0.01  # more than this share of values out of range
ZEROS_JUMP = 0.5  # the share of zeros up by at least this much


@dataclass(frozen=True)
class QualityIssue:
    """One failed check on one column: the observed ``value`` (a share, or for "constant" the
    number of distinct values) against the ``threshold`` it crossed; ``detail`` says it in
    words."""

    column: str
    check: str
    value: float
    threshold: float
    detail: str


def _shape(name: str, ref: np.ndarray, cur: np.ndarray) -> None:
    for which, a in (("the reference", ref), ("the current sample", cur)):
        if len(a) == 0:
            raise DataError(f"column {name!r}: {which} has no rows")


def _n_distinct(values: np.ndarray) -> int:
    try:
        return len(np.unique(values))
    except TypeError:  # mixed types that do not sort
        return len(set(values.tolist()))


def _modal_share(values: np.ndarray) -> float:
    try:
        _, counts = np.unique(values, return_counts=True)
    except TypeError:  # mixed types that do not sort
        counts = np.array(
            list({v: values.tolist().count(v) for v in set(values.tolist())}.values())
        )
    return float(counts.max() / counts.sum()) if len(counts) else 0.0


def _column(
    name: str,
    kind: str,
    reference: Any,
    current: Any,
    bounds: tuple[float, float] | None,
    nullable: bool = False,
) -> list[QualityIssue]:
    if kind == "num":
        ref = numeric_values(name, reference, "the reference")
        cur = numeric_values(name, current, "the current sample")
    else:
        ref = categorical_values(name, reference, "the reference")
        cur = categorical_values(name, current, "the current sample")
    _shape(name, ref, cur)
    issues = []
    ref_null, cur_null = null_mask(ref), null_mask(cur)
    ref_share, cur_share = float(ref_null.mean()), float(cur_null.mean())
    limit = max(ref_share + NULL_MARGIN, 2 * ref_share)
    if cur_share > limit and not nullable:
        issues.append(
            QualityIssue(
                name,
                "nulls",
                cur_share,
                limit,
                f"{cur_share:.1%} nulls (reference {ref_share:.1%})",
            )
        )
    ref, cur = ref[~ref_null], cur[~cur_null]
    if kind == "num" and len(cur) and (bounds is not None or np.isfinite(ref).any()):
        if bounds is not None:
            low, high = bounds
            why = "declared bounds"
        else:
            finite = ref[np.isfinite(ref)]
            lo, hi = float(finite.min()), float(finite.max())
            pad = RANGE_WIDEN * (hi - lo)
            low, high = lo - pad, hi + pad
            why = f"reference range [{lo:.6g}, {hi:.6g}] widened by {RANGE_WIDEN:.0%}"
        # infinities are outside a reference's range; with declared bounds, where they are
        bad = np.isnan(cur) if bounds is not None else ~np.isfinite(cur)
        outside = float(np.mean((cur < low) | (cur > high) | bad))
        if outside > RANGE_SHARE:
            issues.append(
                QualityIssue(
                    name,
                    "out_of_range",
                    outside,
                    RANGE_SHARE,
                    f"{outside:.1%} of values outside [{low:.6g}, {high:.6g}] ({why})",
                )
            )
    if kind == "num" and len(cur) and len(ref):
        ref_zeros, cur_zeros = float(np.mean(ref == 0)), float(np.mean(cur == 0))
        if cur_zeros - ref_zeros >= ZEROS_JUMP:
            issues.append(
                QualityIssue(
                    name,
                    "zeros",
                    cur_zeros,
                    ref_zeros + ZEROS_JUMP,
                    f"{cur_zeros:.1%} zeros (reference {ref_zeros:.1%})",
                )
            )
    if len(cur) >= 2 and _n_distinct(cur) == 1 and len(ref) and _modal_share(ref) < 0.5:
        only = cur[:1].tolist()[0]
        issues.append(
            QualityIssue(
                name,
                "constant",
                1.0,
                2.0,
                f"every one of {len(cur):,} values is {only!r} (reference: {_n_distinct(ref):,} "
                "distinct values)",
            )
        )
    return issues


def data_quality(
    reference: Mapping[str, Any],
    current: Mapping[str, Any],
    kinds: Mapping[str, str],
    bounds: Mapping[str, tuple[float, float]] | None = None,
    nullable: Collection[str] = (),
) -> list[QualityIssue]:
    """The failed checks (module docstring) of every column named in ``kinds`` (name -> "num"
    or "cat"), column by column in that order; ``[]`` when the current sample is clean.
    ``bounds``: the valid ``(low, high)`` of numerical columns (either may be infinite), which
    the range check uses instead of the reference's range; ``nullable``: columns whose nulls
    are not checked (null by design in part).

    Raises :class:`~mlsd.errors.DataError` naming the columns missing from either sample, or
    a column with no rows or (for "num") not numbers; :class:`~mlsd.errors.ConfigError` for an
    unknown kind or no columns.
    """
    missing_columns(kinds, reference, current)
    issues: list[QualityIssue] = []
    for name, kind in kinds.items():
        issues.extend(
            _column(
                name,
                kind,
                reference[name],
                current[name],
                (bounds or {}).get(name),
                name in nullable,
            )
        )
    return issues
