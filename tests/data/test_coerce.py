"""``mlsd.data._coerce``: every raw column type onto every schema type, with a bad-value mask."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from mlsd.data._coerce import (
    TS_TYPE,
    coerce,
    to_bool,
    to_float,
    to_int,
    to_int64,
    to_string,
    to_string_list,
    to_timestamp,
)
from mlsd.data.schema import SCHEMAS

NOON = datetime(2024, 3, 1, 12, tzinfo=UTC)


def check(out: pa.Array, bad: np.ndarray, values: list[Any], bad_rows: list[int]) -> None:
    assert isinstance(out, pa.Array)
    assert out.to_pylist() == values
    assert isinstance(bad, np.ndarray) and bad.dtype == bool and len(bad) == len(out)
    assert np.flatnonzero(bad).tolist() == bad_rows
    # a bad value is always null in the output
    assert all(values[i] is None for i in bad_rows)


# --- integers ---------------------------------------------------------------------------------


def test_int_from_text_whole_floats_ok_fractions_bad() -> None:
    out, bad = to_int64(pa.array(["3", "3.0", " 4 ", "3.5", None, "abc", "", "1e3", "-2", "inf"]))
    check(out, bad, [3, 3, 4, None, None, None, None, 1000, -2, None], [3, 5, 9])


def test_int_from_clean_text_uses_the_fast_path() -> None:
    check(*to_int64(pa.array(["1", "22", None])), [1, 22, None], [])


def test_int_from_text_keeps_every_digit_beyond_2_pow_53() -> None:
    big = 2**53 + 1
    out, bad = to_int64(pa.array([str(big), "x", f" {big} "]))
    check(out, bad, [big, None, big], [1])
    # a float spelling of such a number cannot be exact: refused rather than rounded
    out, bad = to_int64(pa.array([f"{big}.0", "1"]))
    check(out, bad, [None, 1], [0])


def test_int_from_floats() -> None:
    out, bad = to_int64(pa.array([3.0, 3.5, None, float("nan"), float("inf"), -0.0, 1e19]))
    check(out, bad, [3, None, None, None, None, 0, None], [1, 4, 6])


def test_int_from_unsigned_beyond_int64() -> None:
    out, bad = to_int64(pa.array([2**64 - 1, 5, None], type=pa.uint64()))
    check(out, bad, [None, 5, None], [0])


@pytest.mark.parametrize("typ", [pa.int8(), pa.int32(), pa.uint16(), pa.int64()])
def test_int_from_other_integer_types(typ: pa.DataType) -> None:
    check(*to_int64(pa.array([1, None, 7], type=typ)), [1, None, 7], [])


def test_narrow_int_out_of_range_is_bad_not_wrapped() -> None:
    out, bad = to_int(pa.array(["40000", "-40000", "12", None]), pa.int16())
    assert out.type == pa.int16()
    check(out, bad, [None, None, 12, None], [0, 1])


def test_int_from_bool_and_unconvertible_types() -> None:
    check(*to_int64(pa.array([True, False])), [1, 0], [])
    check(*to_int64(pa.array([[1], None])), [None, None], [0])
    check(*to_int64(pa.nulls(2)), [None, None], [])


# --- floats -----------------------------------------------------------------------------------


def test_float_from_text_and_numbers() -> None:
    out, bad = to_float(pa.array(["1.5", " 2 ", "x", None, "nan", "-inf", "1e-3"]), pa.float64())
    check(out, bad, [1.5, 2.0, None, None, None, None, 0.001], [2, 4, 5])
    out, bad = to_float(pa.array([1, None, 3], type=pa.int16()), pa.float32())
    assert out.type == pa.float32()
    check(out, bad, [1.0, None, 3.0], [])


def test_float_nan_is_missing_but_infinity_is_bad() -> None:
    check(*to_float(pa.array([np.nan, np.inf, 2.0]), pa.float64()), [None, None, 2.0], [1])


def test_float32_overflow_is_bad_not_infinite() -> None:
    check(*to_float(pa.array([1e300, 3.0]), pa.float32()), [None, 3.0], [0])


# --- booleans ---------------------------------------------------------------------------------


def test_bool_from_text() -> None:
    out, bad = to_bool(pa.array(["true", "0", " YES ", "n", "T", "1", "maybe", None, "2", "False"]))
    check(
        out,
        bad,
        [True, False, True, False, True, True, None, None, None, False],
        [6, 8],
    )


def test_bool_from_numbers_and_bools() -> None:
    check(*to_bool(pa.array([0, 1, 2, None])), [False, True, None, None], [2])
    check(*to_bool(pa.array([1.0, 0.0, 0.5])), [True, False, None], [2])
    check(*to_bool(pa.array([True, None])), [True, None], [])
    check(*to_bool(pa.array([datetime(2024, 1, 1)])), [None], [0])


# --- strings and topic lists ------------------------------------------------------------------


def test_string_from_anything_scalar() -> None:
    check(*to_string(pa.array([1, None, 3])), ["1", None, "3"], [])
    check(*to_string(pa.array(["a", "b", "a"]).dictionary_encode()), ["a", "b", "a"], [])
    check(*to_string(pa.array(["x"], type=pa.large_string())), ["x"], [])
    out, bad = to_string(pa.array([[1, 2], None]))
    check(out, bad, [None, None], [0])


def test_topic_list_from_pipe_text() -> None:
    out, bad = to_string_list(pa.array(["comedy|music", "news", None, " a | b |", "||", ""]))
    assert out.type == pa.list_(pa.string())
    check(out, bad, [["comedy", "music"], ["news"], None, ["a", "b"], [], []], [])


def test_topic_list_from_lists() -> None:
    arr = pa.array([["a", "b"], None, []], type=pa.large_list(pa.large_string()))
    check(*to_string_list(arr), [["a", "b"], None, []], [])
    check(*to_string_list(pa.chunked_array([["x|y"], ["z"]])), [["x", "y"], ["z"]], [])


# --- timestamps -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "2024-03-01T12:00:00Z",
        "2024-03-01T12:00:00",
        "2024-03-01 12:00:00",
        "2024-03-01T14:00:00+02:00",
        "2024-03-01T07:00:00-0500",
        "2024-03-01T12:00:00.000Z",
        "2024-03-01T12:00:00.000000Z",
        " 2024-03-01T12:00:00Z ",
        "2024-03-01T12:00",
        "1709294400",
        "1709294400000",
        "1709294400.0",
    ],
)
def test_timestamp_text_forms(text: str) -> None:
    # alone, then mixed with a bad value (the row-by-row path), then after an ISO value
    check(*to_timestamp(pa.array([text])), [NOON], [])
    check(*to_timestamp(pa.array([text, "garbage"])), [NOON, None], [1])
    check(*to_timestamp(pa.array(["2024-03-01T12:00:00Z", text])), [NOON, NOON], [])


def test_timestamp_from_epoch_numbers_unit_inferred() -> None:
    for v in (1_709_294_400, 1_709_294_400_000, 1_709_294_400_000_000, 1_709_294_400 * 10**9):
        check(*to_timestamp(pa.array([v, None])), [NOON, None], [])
    check(*to_timestamp(pa.array([1_709_294_400.0])), [NOON], [])
    check(*to_timestamp(pa.array([np.inf, 1_709_294_400.0])), [None, NOON], [0])


def test_timestamp_from_arrow_types() -> None:
    naive = pa.array([datetime(2024, 3, 1, 12)], type=pa.timestamp("ns"))
    check(*to_timestamp(naive), [NOON], [])
    paris = pa.array([datetime(2024, 3, 1, 12)], type=pa.timestamp("s")).cast(
        pa.timestamp("s", "UTC")
    )
    paris = paris.cast(pa.timestamp("s", "Europe/Paris"))
    check(*to_timestamp(paris), [NOON], [])
    check(*to_timestamp(pa.array([date(2024, 3, 1)])), [datetime(2024, 3, 1, tzinfo=UTC)], [])


def test_timestamp_bad_values_are_located() -> None:
    out, bad = to_timestamp(
        pa.array(["2024-03-01T12:00:00Z", "yesterday", None, "2024-13-01", "", "3000-01-01"])
    )
    assert out.type == TS_TYPE
    # an absurd but well-formed date parses (the range check rejects it later)
    check(out, bad, [NOON, None, None, None, None, datetime(3000, 1, 1, tzinfo=UTC)], [1, 3])


def test_timestamp_from_unconvertible_type() -> None:
    check(*to_timestamp(pa.array([[1]])), [None], [0])
    check(*to_timestamp(pa.nulls(2)), [None, None], [])


# --- coerce -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(SCHEMAS))
def test_coerce_gives_exactly_the_schema_type_from_chunked_text(kind: str) -> None:
    samples = {
        pa.int64(): "7",
        pa.int16(): "3",
        pa.float32(): "1.5",
        TS_TYPE: "2024-03-01T12:00:00Z",
        pa.string(): "x",
        pa.bool_(): "true",
        pa.list_(pa.string()): "a|b",
    }
    for f in SCHEMAS[kind]:
        raw = pa.chunked_array([[samples[f.type], None], [], [samples[f.type]]])
        out, bad = coerce(raw, f.type)
        assert isinstance(out, pa.Array) and out.type == f.type, f.name
        assert len(out) == 3 and out.null_count == 1 and not bad.any(), f.name


def test_coerce_of_empty_and_dictionary_input() -> None:
    out, bad = coerce(pa.chunked_array([], type=pa.string()), pa.int64())
    assert len(out) == 0 and out.type == pa.int64() and len(bad) == 0
    out, bad = coerce(pa.array(["1", "x"]).dictionary_encode(), pa.int64())
    check(out, bad, [1, None], [1])
    out, bad = coerce(pa.array(["1", "x"], type=pa.large_string()), pa.float32())
    check(out, bad, [1.0, None], [1])
