"""Type coercion of raw input columns onto the mlsd schema.

Every function takes an Arrow array as read (CSV columns arrive as strings or as whatever type
the CSV reader inferred, Parquet columns with whatever type the writer chose; chunked or not)
and returns ``(array_of_target_type, bad_mask)`` where ``bad_mask[i]`` is True when a non-null
input value could not be converted (it is null in the output). Nothing here raises on bad
values: the caller turns masks into located problems.

Everything is vectorised (Arrow compute, numpy or pandas), because event logs run to tens of
millions of rows. Where Arrow's own cast can do the whole column it is tried first (fast, exact)
and the slower, forgiving path (stripping blanks, per-row errors) runs only when it fails.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlsd.data._epoch import EPOCH_UNITS, MixedUnits, epoch_units, unit_codes

TS_TYPE = pa.timestamp("ms", tz="UTC")

_TRUE = pa.array(["true", "t", "yes", "y", "1"])
_FALSE = pa.array(["false", "f", "no", "n", "0"])
# Integers beyond 2**53 are not exact as float64, so text ids are parsed as integers directly
# when they look like integers (up to 18 digits, always within int64).
_INT_TEXT = r"^[+-]?[0-9]{1,18}$"
_NUMBER_TEXT = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
# ISO-8601 forms Arrow's own cast parses (a zone offset or none, at most ms precision).
_ISO_DATE_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,3})?)?)?"
_ISO_NAIVE = _ISO_DATE_TIME + "$"
_ISO_ZONED = _ISO_DATE_TIME + r"(Z|[+-][0-9]{2}:?[0-9]{2})$"
_EXACT_FLOAT_INT = 2.0**53
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_CAST_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)


def _no_bad(n: int) -> np.ndarray:
    return np.zeros(n, dtype=bool)


def _valid_mask(arr: pa.Array) -> np.ndarray:
    return np.asarray(pc.is_valid(arr).to_numpy(zero_copy_only=False), dtype=bool)


def _plain(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array with dictionaries decoded and string variants as plain strings."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.cast(t.value_type)
        t = arr.type
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        arr = arr.cast(pa.string())
    return arr


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t))


def _trimmed(arr: pa.Array) -> pa.Array:
    """Strings with surrounding blanks stripped and empty strings as null."""
    t = pc.utf8_trim_whitespace(arr)
    return pc.if_else(pc.equal(t, ""), pa.scalar(None, pa.string()), t)


def _matches(arr: pa.Array, pattern: str) -> pa.Array:
    return pc.fill_null(pc.match_substring_regex(arr, pattern), False)


def _np_bool(arr: pa.Array) -> np.ndarray:
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=bool)


def _strings_to_float(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Parse strings as floats; returns (values with NaN for null/bad, bad_mask)."""
    try:
        vals = np.asarray(
            pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
        )
        # Arrow parses "nan" as NaN: a present value that is not a number is bad.
        return vals, _valid_mask(arr) & np.isnan(vals)
    except _CAST_ERRORS:
        pass
    # Some value does not parse: find which with a regex, parse the others (still vectorised).
    t = _trimmed(arr)
    num = _matches(t, _NUMBER_TEXT)
    vals = pc.cast(pc.if_else(num, t, pa.scalar(None, pa.string())), pa.float64())
    values = np.asarray(vals.to_numpy(zero_copy_only=False), dtype=np.float64)
    return values, _valid_mask(t) & ~_np_bool(num)


def _to_float64(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Any array -> float64 numpy values (NaN = missing) and a mask of unconvertible values."""
    t = arr.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        vals = np.asarray(
            pc.cast(arr, pa.float64(), safe=False).to_numpy(zero_copy_only=False), dtype=np.float64
        )
        vals = np.where(_valid_mask(arr), vals, np.nan)
        return vals, _no_bad(len(arr))
    if pa.types.is_null(t):
        return np.full(len(arr), np.nan), _no_bad(len(arr))
    if _is_text(t):
        return _strings_to_float(arr)
    # Types with no numeric meaning (lists, structs, timestamps...): every present value is bad.
    return np.full(len(arr), np.nan), _valid_mask(arr)


def _int_from_integers(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    try:
        return pc.cast(arr, pa.int64()), _no_bad(len(arr))
    except pa.ArrowInvalid:
        # uint64 values beyond int64: those rows are bad, the rest convert exactly.
        over = pc.fill_null(pc.greater(arr, pa.scalar(2**63 - 1, pa.uint64())), False)
        kept = pc.if_else(over, pa.scalar(None, arr.type), arr)
        bad = np.asarray(over.to_numpy(zero_copy_only=False), dtype=bool)
        return pc.cast(kept, pa.int64()), bad


def to_int64(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Coerce to int64; floats with a fractional part or beyond int64 count as bad.

    Text that looks like an integer is parsed exactly (so ids above 2**53 keep every digit);
    other text is parsed as a float ("3.0" is 3, "3.5" is bad).
    """
    arr = _plain(arr)
    t = arr.type
    if pa.types.is_integer(t):
        return _int_from_integers(arr)
    exact: np.ndarray | None = None
    intlike: np.ndarray | None = None
    if _is_text(t):
        try:
            return pc.cast(arr, pa.int64()), _no_bad(len(arr))
        except _CAST_ERRORS:
            pass
        trimmed = _trimmed(arr)
        like = _matches(trimmed, _INT_TEXT)
        intlike = _np_bool(like)
        if intlike.any():
            text = pc.if_else(like, trimmed, pa.scalar("0"))
            exact = np.asarray(pc.cast(text, pa.int64()).to_numpy(zero_copy_only=False))
    vals, bad = _to_float64(arr)
    finite = np.isfinite(vals)
    frac = finite & (np.floor(vals) != vals)
    limit = _EXACT_FLOAT_INT if _is_text(t) else 2.0**63
    big = finite & (np.abs(vals) >= limit)
    inf = ~np.isnan(vals) & ~finite
    bad = bad | frac | big | inf
    ok = finite & ~bad
    out = np.where(ok, vals, 0).astype(np.int64)
    if exact is not None and intlike is not None:
        out = np.where(intlike, exact, out)
        ok |= intlike
        bad &= ~intlike
    return pa.array(out, type=pa.int64(), mask=~ok), bad


def to_int(arr: pa.Array, typ: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """Coerce to any signed integer type; values outside its range count as bad."""
    out, bad = to_int64(arr)
    if typ == pa.int64():
        return out, bad
    info = np.iinfo(typ.to_pandas_dtype())
    vals = np.asarray(out.fill_null(0).to_numpy(zero_copy_only=False))
    outside = _valid_mask(out) & ((vals < info.min) | (vals > info.max))
    if outside.any():
        out = pc.if_else(pa.array(outside), pa.scalar(None, pa.int64()), out)
        bad = bad | outside
    return pc.cast(out, typ), bad


def to_float(arr: pa.Array, typ: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """Coerce to a float type; infinities and values the type cannot hold count as bad.

    NaN in a float input is taken as a missing value (pandas writes missing floats as NaN).
    """
    vals, bad = _to_float64(_plain(arr))
    ok = np.isfinite(vals)
    if typ == pa.float32():
        ok &= np.abs(np.where(ok, vals, 0.0)) <= _FLOAT32_MAX
    bad = bad | (~np.isnan(vals) & ~ok)
    return pa.array(np.where(ok, vals, 0.0), type=pa.float64(), mask=~ok).cast(typ), bad


def to_bool(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Coerce to bool from bools, 0/1 numbers or strings like true/false/yes/no/1/0."""
    arr = _plain(arr)
    t = arr.type
    n = len(arr)
    if pa.types.is_boolean(t):
        return arr, _no_bad(n)
    present = _valid_mask(arr)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        vals = np.asarray(pc.cast(arr, pa.float64(), safe=False).to_numpy(zero_copy_only=False))
        is_t = present & (vals == 1)
        good = present & ((vals == 0) | (vals == 1))
    elif _is_text(t):
        low = pc.utf8_lower(pc.utf8_trim_whitespace(arr))
        is_t = np.asarray(pc.is_in(low, _TRUE).to_numpy(zero_copy_only=False), dtype=bool)
        is_f = np.asarray(pc.is_in(low, _FALSE).to_numpy(zero_copy_only=False), dtype=bool)
        good = present & (is_t | is_f)
    else:
        is_t = good = np.zeros(n, dtype=bool)
    return pa.array(is_t & good, type=pa.bool_(), mask=~good), present & ~good


def to_string(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Coerce to string (anything scalar has a string form)."""
    arr = _plain(arr)
    if pa.types.is_string(arr.type):
        return arr, _no_bad(len(arr))
    try:
        return pc.cast(arr, pa.string()), _no_bad(len(arr))
    except _CAST_ERRORS:
        return pa.nulls(len(arr), pa.string()), _valid_mask(arr)


def to_string_list(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Coerce to list<string>; a string is split on '|' ("comedy | music" -> [comedy, music]).

    Pieces are stripped of blanks and empty pieces dropped ("a||b|" -> [a, b]).
    """
    arr = _plain(arr)
    t = arr.type
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        try:
            return pc.cast(arr, pa.list_(pa.string())), _no_bad(len(arr))
        except _CAST_ERRORS:
            return pa.nulls(len(arr), pa.list_(pa.string())), _valid_mask(arr)
    s, bad = to_string(arr)
    parts = pc.split_pattern(s, "|")
    pieces = pc.utf8_trim_whitespace(pc.list_flatten(parts))
    keep = np.asarray(pc.not_equal(pieces, "").to_numpy(zero_copy_only=False), dtype=bool)
    parents = np.asarray(pc.list_parent_indices(parts).to_numpy(zero_copy_only=False))
    counts = np.bincount(parents[keep], minlength=len(s))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    out = pa.ListArray.from_arrays(
        pa.array(offsets), pieces.filter(pa.array(keep)), mask=pc.is_null(s)
    )
    return out.cast(pa.list_(pa.string())), bad


_UNIT_TO_MS = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}


def mixed_epoch_units(arr: pa.Array | pa.ChunkedArray) -> MixedUnits | None:
    """The values of a timestamp column whose epoch unit differs from the column's, or None
    when its numeric epochs (numbers, or numeric text) agree on one unit. :func:`to_timestamp`
    leaves these values null and counts them bad; this says why."""
    arr = _plain(arr)
    t = arr.type
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        vals = np.asarray(
            pc.cast(arr, pa.float64(), safe=False).to_numpy(zero_copy_only=False), np.float64
        )
        present = _valid_mask(arr) & np.isfinite(vals)
    elif _is_text(t):
        trimmed = _trimmed(arr)
        num = _matches(trimmed, _NUMBER_TEXT)
        if not pc.any(num).as_py():
            return None
        text = pc.if_else(num, trimmed, pa.scalar(None, pa.string()))
        vals = np.asarray(pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False), np.float64)
        present = _np_bool(num) & np.isfinite(vals)
    else:
        return None
    codes = unit_codes(vals, present)
    unit, mixed = epoch_units(vals, present)
    if not mixed.any():
        return None
    n_rest = int((codes == EPOCH_UNITS.index(unit)).sum())
    return MixedUnits(mixed, unit, n_rest, arr, codes, vals)


def to_timestamp(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Coerce to timestamp[ms, UTC].

    Accepts Arrow timestamps (naive ones are taken as UTC), dates, numeric epochs and strings
    holding ISO-8601 date-times (naive ones taken as UTC) or epochs; a text column may mix
    both. An epoch's unit (s, ms, us or ns) follows from its magnitude, value by value (see
    :mod:`mlsd.data._epoch`); a value plausible only in a unit other than the rest of the
    column's is bad (null), never read as a 1970 or year-50000 date
    (:func:`mixed_epoch_units` says which unit the rest has).
    """
    arr = _plain(arr)
    t = arr.type
    n = len(arr)
    if pa.types.is_timestamp(t):
        if t.tz is None:
            arr = pc.assume_timezone(arr, "UTC")
        return pc.cast(arr, TS_TYPE, safe=False), _no_bad(n)
    if pa.types.is_date(t):
        return pc.cast(pc.cast(arr, pa.timestamp("ms")), TS_TYPE), _no_bad(n)
    present = _valid_mask(arr)
    if pa.types.is_integer(t):
        ints, over = _int_from_integers(arr)
        return _int_epoch_to_ts(np.asarray(ints.fill_null(0).to_numpy()), present & ~over)
    if pa.types.is_floating(t):
        vals = np.asarray(pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False))
        return _epoch_to_ts(vals, present)
    if _is_text(t):
        return _text_to_ts(arr)
    return pa.nulls(n, TS_TYPE), present


def _text_to_ts(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    n = len(arr)
    # Fast path: the whole column in one Arrow cast, zoned or naive as its first value is (a
    # cast that fails is costly, so only the likely one is tried).
    valid = _valid_mask(arr)
    if valid.any():
        first = str(arr[int(np.argmax(valid))].as_py())
        try:
            if re.search(r"(Z|[+-][0-9]{2}:?[0-9]{2})$", first):
                zoned = pc.cast(arr, pa.timestamp("us", "UTC"))
            else:
                zoned = pc.assume_timezone(pc.cast(arr, pa.timestamp("us")), "UTC")
            return pc.cast(zoned, TS_TYPE, safe=False), _no_bad(n)
        except _CAST_ERRORS:
            pass
    # Row by row, but vectorised: epochs, then the ISO forms Arrow parses, then whatever is
    # left (other ISO-8601 spellings, garbage) through pandas, on those rows only.
    t = _trimmed(arr)
    present = _valid_mask(t)
    ms = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    null_text = pa.scalar(None, pa.string())
    num = _np_bool(_matches(t, _NUMBER_TEXT))
    if num.any():
        vals = pc.cast(pc.if_else(pa.array(num), t, null_text), pa.float64())
        epoch, _ = _epoch_to_ts(np.asarray(vals.to_numpy(zero_copy_only=False)), num)
        ok |= _valid_mask(epoch)
        ms = np.where(num, np.asarray(pc.cast(epoch, pa.int64()).fill_null(0)), ms)
    rest = present & ~num
    if rest.any():
        zoned = _np_bool(_matches(t, _ISO_ZONED)) & rest
        naive = _np_bool(_matches(t, _ISO_NAIVE)) & rest
        for mask, typ in ((zoned, pa.timestamp("ms", "UTC")), (naive, pa.timestamp("ms"))):
            if not mask.any():
                continue
            try:
                got = pc.cast(pc.if_else(pa.array(mask), t, null_text), typ)
            except _CAST_ERRORS:
                continue  # e.g. month 13: leave these rows to pandas
            ms = np.where(mask, np.asarray(pc.cast(got, pa.int64()).fill_null(0)), ms)
            ok |= mask
            rest &= ~mask
    if rest.any():
        idx = np.flatnonzero(rest)
        sub = pd.Series(pc.take(t, pa.array(idx)).to_pandas(), dtype=object)
        parsed = pd.to_datetime(sub, errors="coerce", utc=True, format="ISO8601")
        good = parsed.notna().to_numpy()
        sub_ms = parsed.dt.tz_localize(None).to_numpy().astype("datetime64[ms]").astype(np.int64)
        ms[idx[good]] = sub_ms[good]
        ok[idx[good]] = True
    out = pa.array(np.where(ok, ms, 0), type=pa.int64(), mask=~ok).cast(TS_TYPE)
    return out, present & ~ok


_UNIT_DIV = {"us": 1_000, "ns": 1_000_000}


def _int_epoch_to_ts(vals: np.ndarray, present: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """Integer epochs, converted exactly (float64 would round nanosecond epochs)."""
    unit, mixed = epoch_units(vals.astype(np.float64), present)
    usable = present & ~mixed
    if unit in _UNIT_DIV:
        ms = np.floor_divide(vals, _UNIT_DIV[unit])
        ok = usable
    else:
        factor = 1000 if unit == "s" else 1
        ok = usable & (np.abs(vals) < 2**62 // factor)
        ms = np.where(ok, vals, 0) * factor
    return pa.array(np.where(ok, ms, 0), type=pa.int64(), mask=~ok).cast(TS_TYPE), present & ~ok


def _epoch_to_ts(vals: np.ndarray, present: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    unit, mixed = epoch_units(vals, present & np.isfinite(vals))
    ms = vals * _UNIT_TO_MS[unit]
    ok = present & ~mixed & np.isfinite(ms) & (np.abs(ms) < 2**62)
    out = np.round(np.where(ok, ms, 0)).astype(np.int64)
    return pa.array(out, type=pa.int64(), mask=~ok).cast(TS_TYPE), present & ~ok


def coerce(arr: pa.Array | pa.ChunkedArray, target: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """Coerce ``arr`` (chunked or not) to ``target``; returns ``(converted, bad_mask)``.

    The result is always one contiguous :class:`pyarrow.Array` of exactly ``target``.
    """
    plain = _plain(arr)
    if pa.types.is_timestamp(target):
        out, bad = to_timestamp(plain)
    elif pa.types.is_integer(target):
        out, bad = to_int(plain, target)
    elif pa.types.is_floating(target):
        out, bad = to_float(plain, target)
    elif pa.types.is_boolean(target):
        out, bad = to_bool(plain)
    elif pa.types.is_list(target):
        out, bad = to_string_list(plain)
    else:
        out, bad = to_string(plain)
    if out.type != target:
        out = out.cast(target)
    return out, bad
