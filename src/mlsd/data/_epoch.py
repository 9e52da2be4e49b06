"""Epoch units, decided value by value (the numeric half of timestamp coercion, see
:func:`mlsd.data._coerce.to_timestamp`).

A number is plausible as an epoch in unit u when, read in u, it falls in [1980, 2100). The four
bands (s, ms, us, ns) do not overlap, so a plausible number has exactly one unit; a column's
unit is the most common unit of its values, and a value plausible only in another unit is a
unit mix-up to report (:class:`MixedUnits`), never a 1970 or year-50000 date.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa


def _infer_epoch_unit(vals: np.ndarray) -> str:
    """Guess the unit of numeric epoch timestamps from their magnitude (used when no value is
    plausible in any unit, see :func:`_column_unit`)."""
    finite = vals[np.isfinite(vals)]
    if finite.size == 0:
        return "s"
    m = float(np.nanmax(np.abs(finite)))
    if m < 1e11:  # seconds until the year 5138
        return "s"
    if m < 1e14:
        return "ms"
    if m < 1e17:
        return "us"
    return "ns"


EPOCH_UNITS: tuple[str, ...] = ("s", "ms", "us", "ns")
UNIT_NAMES = {
    "s": "epoch seconds",
    "ms": "epoch milliseconds",
    "us": "epoch microseconds",
    "ns": "epoch nanoseconds",
}
# [1980, 2100) in epoch seconds; each unit's band is 1,000 times the previous one and spans
# less than that, so the bands do not overlap.
_PLAUSIBLE_S = (315_532_800.0, 4_102_444_800.0)
_UNIT_PER_S = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}


def unit_codes(vals: np.ndarray, present: np.ndarray) -> np.ndarray:
    """``int8[n]``: per value, the index in :data:`EPOCH_UNITS` of the one unit in which it is
    a plausible epoch, -1 when it is in none (0, a small count, a date beyond 2100...)."""
    codes = np.full(len(vals), -1, np.int8)
    lo, hi = _PLAUSIBLE_S
    with np.errstate(invalid="ignore"):
        for i, u in enumerate(EPOCH_UNITS):
            f = _UNIT_PER_S[u]
            codes[present & (vals >= lo * f) & (vals < hi * f)] = i
    return codes


def _column_unit(vals: np.ndarray, present: np.ndarray, codes: np.ndarray) -> str:
    """The unit of a column: the most common unit of its plausible values (ties: the coarser
    unit); by the magnitude of its largest value when none is plausible."""
    plausible = codes[codes >= 0]
    if plausible.size:
        return EPOCH_UNITS[int(np.argmax(np.bincount(plausible, minlength=len(EPOCH_UNITS))))]
    return _infer_epoch_unit(vals[present])


def epoch_units(vals: np.ndarray, present: np.ndarray) -> tuple[str, np.ndarray]:
    """``(column unit, mixed)``: the column's unit and which values are plausible only in
    another unit (a millisecond value in a seconds column: neither read is right)."""
    codes = unit_codes(vals, present)
    unit = _column_unit(vals, present, codes)
    return unit, (codes >= 0) & (codes != EPOCH_UNITS.index(unit))


@dataclass(frozen=True)
class MixedUnits:
    """Numeric epochs of one column in more than one unit: ``mask`` marks the values plausible
    only in a unit other than ``unit`` (the column's, the most common one), ``n_rest`` counts
    the values in ``unit``. :meth:`found` and :meth:`expected` word the problem."""

    mask: np.ndarray
    unit: str
    n_rest: int
    raw: pa.Array
    codes: np.ndarray
    vals: np.ndarray

    def found(self, row: int) -> str:
        u = EPOCH_UNITS[int(self.codes[row])]
        when = pd.Timestamp(self.vals[row] / _UNIT_PER_S[u], unit="s", tz="UTC")
        return (
            f"value {self.raw[row].as_py()!r}, a time in {UNIT_NAMES[u]} "
            f"({when.isoformat(timespec='seconds')})"
        )

    def expected(self) -> str:
        return (
            f"{UNIT_NAMES[self.unit]} like the rest of the column ({self.n_rest:,} value"
            f"{'' if self.n_rest == 1 else 's'}): "
            "one unit per column (convert these rows, or the others)"
        )
