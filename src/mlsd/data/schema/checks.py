"""The validation machinery: conforming a table onto its schema and the row-level checks.

A :class:`Collector` gathers one table's problems (each located by file, column, first row and,
for CSV, line) and the mask of rows to drop when repairing; the ``check_*`` functions add to it.
:func:`mlsd.data.schema.validate` runs them in order and decides whether to raise or repair.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlsd.data._coerce import coerce, mixed_epoch_units
from mlsd.data.schema.tables import (
    EVENT_TYPES,
    ID_COLUMN,
    MAX_FUTURE,
    MIN_TIME,
    REQUIRED,
    SCHEMAS,
    WATCH_TOLERANCE_ABS_S,
    WATCH_TOLERANCE_REL,
)
from mlsd.errors import Problem


def _fmt(v: object) -> str:
    """A value as a user would recognise it in their file."""
    if isinstance(v, float):
        return f"{v:.7g}"  # float32 values print without binary noise (-1.3, not -1.2999999523)
    if isinstance(v, datetime):
        return v.isoformat()
    return repr(v)


class _Ids(Protocol):
    """What messages need of an id map (:class:`mlsd.data.ids.IdMap`): a code's original id."""

    def value_of(self, code: int) -> str: ...


def _bools(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=bool)


def _present(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return _bools(pc.is_valid(arr))


def _np(arr: pa.ChunkedArray | pa.Array, fill: float | int) -> np.ndarray:
    """Numeric column as numpy with nulls replaced by ``fill``."""
    return np.asarray(arr.fill_null(fill).to_numpy())


def _contiguous(arr: pa.ChunkedArray | pa.Array) -> pa.Array:
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


class Collector:
    """Accumulates the problems of one table and the rows to drop when repairing."""

    def __init__(self, kind: str, file: str, n: int, csv: bool) -> None:
        self.kind, self.file, self.n, self.csv = kind, file, n, csv
        #: id column -> its map, when the input's ids were strings: messages show those
        self.id_maps: Mapping[str, _Ids] = {}
        self.problems: list[Problem] = []
        self.drop = np.zeros(n, dtype=bool)
        self.reasons: dict[str, int] = {}

    def show(self, column: str, value: object) -> str:
        """A value of ``column`` as the user wrote it (a string id rather than its code)."""
        m = self.id_maps.get(column)
        if m is not None and isinstance(value, int | np.integer):
            try:
                return _fmt(m.value_of(int(value)))
            except KeyError:
                pass
        return _fmt(value.item() if isinstance(value, np.generic) else value)

    def line(self, row: int) -> int | None:
        # CSV: line 1 is the header, so row i (0-based) is on line i + 2.
        return row + 2 if self.csv else None

    def column(
        self, column: str | None, found: str, expected: str, check: str, header: bool = False
    ) -> None:
        """Record a problem of a whole column or file (not repairable by dropping rows)."""
        line = 1 if header and self.csv else None
        self.problems.append(Problem(self.file, column, None, found, expected, 0, line, check))

    def rows(
        self,
        mask: np.ndarray,
        column: str,
        expected: str,
        check: str,
        values: pa.Array | pa.ChunkedArray | None = None,
        found: Callable[[int], str] | None = None,
    ) -> None:
        """Record rows where ``mask`` is True: the first one located, all counted and dropped.

        ``found(first_row)`` describes what was found; by default the value in ``values``.
        """
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            return
        first = int(idx[0])
        if found is not None:
            what = found(first)
        elif values is not None:
            what = f"value {self.show(column, values[first].as_py())}"
        else:
            what = "bad value"
        self.problems.append(
            Problem(
                self.file, column, first, what, expected, int(idx.size), self.line(first), check
            )
        )
        new = int((mask & ~self.drop).sum())
        if new:
            key = f"{self.kind}: {check}"
            self.reasons[key] = self.reasons.get(key, 0) + new
        self.drop |= mask

    def where(self, row: int) -> str:
        line = self.line(row)
        return f"row {row}" + (f" (line {line})" if line is not None else "")


def conform(
    table: pa.Table, kind: str, file: str = "<table>", *, csv: bool = False
) -> tuple[pa.Table, Collector]:
    """Cast ``table`` onto the schema of ``kind``; record missing columns and bad values.

    Unknown extra columns are left out (the schema is fixed) but are not an error; optional
    columns that are absent become all-null columns. Values that cannot be converted become null
    and are recorded as ``dtype`` problems. Every column of the result is one contiguous chunk.
    """
    schema = SCHEMAS[kind]
    col = Collector(kind, file, table.num_rows, csv)
    if table.num_rows == 0:
        if not table.num_columns:
            what = "no columns and no rows"
        else:
            what = "header only, no rows" if csv else "no rows"
        col.column(None, f"empty file ({what})", f"at least one {kind} row", "empty")
    present = ", ".join(table.column_names) or "none"
    for c in REQUIRED[kind]:
        if c not in table.column_names:
            col.column(
                c,
                f"required column missing (columns present: {present})",
                f"a column named '{c}'",
                "missing",
                header=True,
            )
    arrays = []
    for f in schema:
        if f.name not in table.column_names:
            arrays.append(pa.nulls(table.num_rows, f.type))
            continue
        raw = table.column(f.name)
        out, bad = coerce(raw, f.type)
        mixed = mixed_epoch_units(raw) if pa.types.is_timestamp(f.type) else None
        if mixed is not None:  # epochs in two units: say which unit the rest of the column has
            col.rows(mixed.mask, f.name, mixed.expected(), "mixed time units", found=mixed.found)
            bad = bad & ~mixed.mask
        col.rows(bad, f.name, _type_name(f.type), "dtype", values=raw)
        arrays.append(out)
    return pa.Table.from_arrays(arrays, schema=schema), col


def _type_name(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "a timestamp (ISO-8601 like 2024-05-01T12:00:00Z, or epoch seconds/ms)"
    if pa.types.is_list(t):
        return "a list of strings (or 'a|b' text)"
    if pa.types.is_integer(t):
        return f"an integer ({t})"
    if pa.types.is_floating(t):
        return f"a finite number ({t})"
    if pa.types.is_boolean(t):
        return "a boolean (true/false, yes/no or 1/0)"
    return f"a {t}"


def _duplicates(ids: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mask of the rows (among ``valid``) whose id already appeared in an earlier valid row."""
    rows = np.flatnonzero(valid)
    v = ids[rows]
    order = np.argsort(v, kind="stable")  # stable: the first occurrence sorts first
    s = v[order]
    later = np.zeros(len(s), dtype=bool)
    later[1:] = s[1:] == s[:-1]
    dup = np.zeros(len(ids), dtype=bool)
    dup[rows[order[later]]] = True
    return dup


def check_rows(t: pa.Table, kind: str, col: Collector) -> None:
    """Row-level checks that need only this table (all vectorised)."""
    if any(p.check in ("missing", "empty") for p in col.problems):
        return
    for c in REQUIRED[kind]:
        # dtype failures are already reported (they are null now): report true nulls only.
        nulls = ~_present(t.column(c)) & ~col.drop
        col.rows(nulls, c, "a value in every row", "null", found=lambda _: "missing value")
    idc = ID_COLUMN.get(kind)
    if idc is not None:
        ids = t.column(idc)
        idv = _np(ids, 0)
        valid = _present(ids) & ~col.drop

        def first_seen(row: int) -> str:
            earlier = int(np.flatnonzero(valid & (idv == idv[row]))[0])
            return f"value {col.show(idc, idv[row])}, already at {col.where(earlier)}"

        col.rows(
            _duplicates(idv, valid),
            idc,
            f"unique {idc} values",
            "duplicate id",
            found=first_seen,
        )
    now = datetime.now(UTC)
    lo = int(MIN_TIME.timestamp() * 1000)
    hi = int((now + MAX_FUTURE).timestamp() * 1000)
    for f in SCHEMAS[kind]:
        if pa.types.is_timestamp(f.type):
            v = t.column(f.name)
            ms = _np(pc.cast(v, pa.int64()), lo)
            col.rows(
                _present(v) & ((ms < lo) | (ms > hi)),
                f.name,
                f"a time between {MIN_TIME.date()} and {(now + MAX_FUTURE).date()}",
                "timestamp out of range",
                values=v,
            )
    if kind == "videos":
        d = t.column("duration_s")
        col.rows(_np(d, 0.0) < 0, "duration_s", "duration_s >= 0", "negative duration", values=d)
    if kind == "events":
        et = t.column("event_type")
        known = _bools(pc.is_in(et, pa.array(EVENT_TYPES)))
        col.rows(
            _present(et) & ~known,
            "event_type",
            "one of " + ", ".join(EVENT_TYPES),
            "unknown event type",
            values=et,
        )
        w = t.column("watch_seconds")
        col.rows(
            _np(w, 0.0) < 0, "watch_seconds", "watch_seconds >= 0", "negative watch seconds", w
        )
        pos = t.column("position")
        col.rows(
            _np(pos, 1) < 1,
            "position",
            "position >= 1 (1 = top of the slate)",
            "bad position",
            values=pos,
        )
        wt = t.column("weight")
        col.rows(
            _np(wt, 0.0) < 0,
            "weight",
            "weight >= 0 (a count or confidence; 0: seen but not a positive)",
            "negative weight",
            values=wt,
        )


def check_refs(
    table: pa.Table,
    tcol: Collector,
    idc: str,
    other: pa.Table,
    ocol: Collector,
    other_idc: str,
    repair: bool,
) -> None:
    """Rows of ``table`` whose ``idc`` is not an id of ``other``.

    When repairing, ids of rows of ``other`` that are being dropped count as absent (their
    references are dropped too, so the result stays consistent); otherwise they count as present,
    so that one bad catalog row is reported once, not once more per event that references it.
    """
    ids = table.column(idc)
    known = other.column(other_idc)
    if repair:
        known = pc.filter(known, pa.array(~ocol.drop))
    known = pc.drop_null(_contiguous(known))
    found = _bools(pc.is_in(ids, known))
    entity = other_idc.removesuffix("_id")
    expected = f"a {other_idc} listed in the {ocol.kind} table ({ocol.file})"
    if repair:
        expected += " among its valid rows"
    tcol.rows(_present(ids) & ~found, idc, expected, f"unknown {entity}", values=ids)


def check_watch_vs_duration(
    events: pa.Table, ecol: Collector, videos: pa.Table, vcol: Collector
) -> None:
    """Watch time beyond the video's duration (+ tolerance); videos whose own row is bad
    (e.g. a negative duration) are skipped: that row is reported already."""
    vdur = np.asarray(videos.column("duration_s").fill_null(np.inf).to_numpy(), dtype=np.float64)
    vdur[vcol.drop] = np.inf
    idx = pc.index_in(events.column("video_id"), _contiguous(videos.column("video_id")))
    pos = np.asarray(_contiguous(idx).fill_null(-1).to_numpy())
    dur = (
        np.where(pos >= 0, vdur[np.maximum(pos, 0)], np.inf)
        if len(vdur)
        else np.full(len(pos), np.inf)
    )
    w = _np(events.column("watch_seconds"), 0.0).astype(np.float64)
    limit = dur * (1 + WATCH_TOLERANCE_REL) + WATCH_TOLERANCE_ABS_S
    vids = _np(events.column("video_id"), 0)

    def found(row: int) -> str:
        return (
            f"value {_fmt(float(w[row]))} but video {ecol.show('video_id', vids[row])} has "
            "duration_s "
            f"{_fmt(float(dur[row]))}"
        )

    ecol.rows(
        w > limit,
        "watch_seconds",
        f"watch_seconds <= the video's duration_s (+{WATCH_TOLERANCE_REL:.0%} "
        f"+{WATCH_TOLERANCE_ABS_S:g} s tolerance)",
        "watch beyond duration",
        found=found,
    )
