"""Type coercion of raw input columns onto the mlsd schema.

Every function takes an Arrow array as read (CSV columns arrive as strings, Parquet columns with
whatever type the writer chose) and returns ``(array_of_target_type, bad_mask)`` where
``bad_mask[i]`` is True when a non-null input value could not be converted (it is null in the
output). Nothing here raises on bad values: the caller turns masks into located problems.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

TS_TYPE = pa.timestamp("ms", tz="UTC")

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


def _valid_mask(arr: pa.Array) -> np.ndarray:
    return np.asarray(pc.is_valid(arr).to_numpy(zero_copy_only=False), dtype=bool)


def _strings_to_float(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Parse strings as floats; returns (values with NaN for null/bad, bad_mask)."""
    s = pd.Series(arr.to_pandas(), dtype=object)
    stripped = s.where(s.isna(), s.astype(str).str.strip())
    stripped = stripped.where(stripped != "", None)
    num = pd.to_numeric(stripped, errors="coerce")
    values = num.to_numpy(dtype=np.float64, na_value=np.nan)
    present = stripped.notna().to_numpy()
    bad = present & np.isnan(values)
    return values, bad


def _to_float64(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Any array -> float64 numpy values (NaN = missing) and a mask of unconvertible values."""
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.cast(t.value_type)
        t = arr.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        vals = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
        vals = np.where(_valid_mask(arr), vals, np.nan)
        return vals.astype(np.float64), np.zeros(len(arr), dtype=bool)
    if pa.types.is_null(t):
        return np.full(len(arr), np.nan), np.zeros(len(arr), dtype=bool)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return _strings_to_float(arr)
    # Types with no numeric meaning (lists, structs, timestamps...): every present value is bad.
    return np.full(len(arr), np.nan), _valid_mask(arr)


def to_int64(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Coerce to int64; floats with a fractional part or beyond int64 count as bad."""
    if pa.types.is_integer(arr.type):
        return pc.cast(arr, pa.int64()), np.zeros(len(arr), dtype=bool)
    vals, bad = _to_float64(arr)
    finite = np.isfinite(vals)
    frac = finite & (np.floor(vals) != vals)
    big = finite & (np.abs(vals) > 2**62)
    inf = ~np.isnan(vals) & ~finite
    bad = bad | frac | big | inf
    ok = finite & ~bad
    out = np.where(ok, vals, 0).astype(np.int64)
    return pa.array(out, type=pa.int64(), mask=~ok), bad


def to_float(arr: pa.Array, typ: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """Coerce to a float type; infinities count as bad."""
    vals, bad = _to_float64(arr)
    inf = ~np.isnan(vals) & ~np.isfinite(vals)
    bad = bad | inf
    ok = np.isfinite(vals)
    return pa.array(np.where(ok, vals, 0.0), type=pa.float64(), mask=~ok).cast(typ), bad


def to_bool(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Coerce to bool from bools, 0/1 numbers or strings like true/false/yes/no/1/0."""
    t = arr.type
    if pa.types.is_boolean(t):
        return arr, np.zeros(len(arr), dtype=bool)
    if pa.types.is_dictionary(t):
        arr = arr.cast(t.value_type)
        t = arr.type
    n = len(arr)
    present = _valid_mask(arr)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        vals = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
        good = present & ((vals == 0) | (vals == 1))
        out = np.where(good, vals == 1, False)
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        s = pd.Series(arr.to_pandas(), dtype=object).astype(str).str.strip().str.lower()
        is_t = s.isin(_TRUE).to_numpy()
        is_f = s.isin(_FALSE).to_numpy()
        good = present & (is_t | is_f)
        out = is_t
    else:
        good = np.zeros(n, dtype=bool)
        out = np.zeros(n, dtype=bool)
    bad = present & ~good
    return pa.array(out, type=pa.bool_(), mask=~good), bad


def to_string(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Coerce to string (anything scalar has a string form)."""
    t = arr.type
    if pa.types.is_string(t):
        return arr, np.zeros(len(arr), dtype=bool)
    if pa.types.is_dictionary(t):
        return arr.cast(t.value_type).cast(pa.string()), np.zeros(len(arr), dtype=bool)
    try:
        return pc.cast(arr, pa.string()), np.zeros(len(arr), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.nulls(len(arr), pa.string()), _valid_mask(arr)


def to_string_list(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Coerce to list<string>; a string is split on '|' ("comedy|music")."""
    t = arr.type
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        try:
            return pc.cast(arr, pa.list_(pa.string())), np.zeros(len(arr), dtype=bool)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return pa.nulls(len(arr), pa.list_(pa.string())), _valid_mask(arr)
    s, bad = to_string(arr)
    return pc.split_pattern(s, "|"), bad


def _infer_epoch_unit(vals: np.ndarray) -> str:
    """Guess the unit of numeric epoch timestamps from their magnitude."""
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


_UNIT_TO_MS = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}


def to_timestamp(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Coerce to timestamp[ms, UTC].

    Accepts Arrow timestamps (naive ones are taken as UTC), dates, numeric epochs (unit inferred
    from magnitude: s, ms, us or ns) and strings holding either epochs or ISO-8601 date-times.
    """
    t = arr.type
    n = len(arr)
    if pa.types.is_dictionary(t):
        arr = arr.cast(t.value_type)
        t = arr.type
    if pa.types.is_timestamp(t):
        if t.tz is None:
            arr = pc.assume_timezone(arr, "UTC")
        return pc.cast(arr, TS_TYPE, safe=False), np.zeros(n, dtype=bool)
    if pa.types.is_date(t):
        return pc.cast(pc.cast(arr, pa.timestamp("ms")), TS_TYPE), np.zeros(n, dtype=bool)
    present = _valid_mask(arr)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        vals = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
        return _epoch_to_ts(vals, present)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        s = pd.Series(arr.to_pandas(), dtype=object)
        s = s.where(s.isna(), s.astype(str).str.strip())
        s = s.where(s != "", None)
        present = s.notna().to_numpy()
        num = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        if present.any() and np.all(np.isfinite(num[present])):
            return _epoch_to_ts(num, present)
        parsed = pd.to_datetime(s, errors="coerce", utc=True, format="ISO8601")
        ok = parsed.notna().to_numpy()
        ms = parsed.to_numpy(dtype="datetime64[ns]", na_value=np.datetime64("NaT"))
        ms_int = np.where(ok, ms.astype("datetime64[ms]").astype(np.int64), 0)
        out = pa.array(ms_int, type=pa.int64(), mask=~ok).cast(TS_TYPE)
        return out, present & ~ok
    return pa.nulls(n, TS_TYPE), present


def _epoch_to_ts(vals: np.ndarray, present: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    unit = _infer_epoch_unit(vals[present])
    ms = vals * _UNIT_TO_MS[unit]
    ok = present & np.isfinite(ms) & (np.abs(ms) < 2**62)
    out = np.where(ok, np.round(np.where(ok, ms, 0)), 0).astype(np.int64)
    return pa.array(out, type=pa.int64(), mask=~ok).cast(TS_TYPE), present & ~ok


def coerce(arr: pa.Array, target: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """Coerce ``arr`` to ``target``; returns ``(converted, bad_mask)``."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_timestamp(target):
        return to_timestamp(arr)
    if pa.types.is_integer(target):
        out, bad = to_int64(arr)
        return (out if target == pa.int64() else pc.cast(out, target, safe=False)), bad
    if pa.types.is_floating(target):
        return to_float(arr, target)
    if pa.types.is_boolean(target):
        return to_bool(arr)
    if pa.types.is_list(target):
        return to_string_list(arr)
    return to_string(arr)
