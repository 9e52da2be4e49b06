"""Data contracts: the Arrow schemas of users, creators, videos and events, and ``validate``.

Tables are stored as Parquet (CSV is accepted on input). Only the id columns and, for events,
``timestamp`` and ``event_type`` are required; other columns are optional and, when absent,
are added as nulls so that every block downstream sees one fixed schema.

Event types (one row per event, the log is long, not wide):

- ``impression``: the video was shown (``request_id``, ``position`` 1-based, ``surface``);
- ``play``: the user started it; ``watch_seconds`` is how long they watched (null if unknown);
- ``like``, ``share``, ``dislike`` (dislike also stands for "not interested");
- ``rating``: explicit rating data (``rating``), e.g. MovieLens.

``validate`` checks types, required columns, referential integrity, value ranges and duplicate
ids, and reports every problem with the file, the column, the first offending row and what was
expected. With ``repair=True`` it drops offending rows instead, and reports how many and why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlsd.data._coerce import TS_TYPE, coerce
from mlsd.errors import DataError, DataValidationError, Problem

EVENT_TYPES: tuple[str, ...] = ("impression", "play", "like", "share", "dislike", "rating")

USERS = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("signup_time", TS_TYPE),
        pa.field("country", pa.string()),
        pa.field("language", pa.string()),
        pa.field("age_bucket", pa.string()),
        pa.field("device", pa.string()),
        pa.field("allows_explicit", pa.bool_()),
    ]
)

CREATORS = pa.schema(
    [
        pa.field("creator_id", pa.int64(), nullable=False),
        pa.field("language", pa.string()),
        pa.field("created_time", TS_TYPE),
    ]
)

VIDEOS = pa.schema(
    [
        pa.field("video_id", pa.int64(), nullable=False),
        pa.field("creator_id", pa.int64()),
        pa.field("duration_s", pa.float32()),
        pa.field("upload_time", TS_TYPE),
        pa.field("topic", pa.string()),  # primary topic
        pa.field("topics", pa.list_(pa.string())),  # all topics, primary first
        pa.field("language", pa.string()),
        pa.field("is_explicit", pa.bool_()),
        pa.field("title", pa.string()),
    ]
)

EVENTS = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("video_id", pa.int64(), nullable=False),
        pa.field("timestamp", TS_TYPE, nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("watch_seconds", pa.float32()),
        pa.field("request_id", pa.int64()),
        pa.field("position", pa.int16()),
        pa.field("surface", pa.string()),
        pa.field("device", pa.string()),
        pa.field("rating", pa.float32()),
        pa.field("weight", pa.float32()),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "users": USERS,
    "creators": CREATORS,
    "videos": VIDEOS,
    "events": EVENTS,
}
ID_COLUMN = {"users": "user_id", "creators": "creator_id", "videos": "video_id"}
REQUIRED: dict[str, tuple[str, ...]] = {
    "users": ("user_id",),
    "creators": ("creator_id",),
    "videos": ("video_id",),
    "events": ("user_id", "video_id", "timestamp", "event_type"),
}

# Timestamps outside [MIN_TIME, now + MAX_FUTURE] are treated as corrupt (a seconds/ms mix-up,
# a zero default...). MovieLens 100k starts in 1997, so 1990 leaves room for older public logs.
MIN_TIME = datetime(1990, 1, 1, tzinfo=UTC)
MAX_FUTURE = timedelta(days=366)
# Watch time may exceed duration slightly (player heartbeats, rounding): 5% + 2 s tolerance.
WATCH_TOLERANCE_REL = 0.05
WATCH_TOLERANCE_ABS_S = 2.0


@dataclass
class ValidationReport:
    """What ``validate`` found: problems (raised unless repairing) and rows dropped per reason.

    ``dropped`` maps ``"<kind>: <reason>"`` (e.g. ``"events: negative watch seconds"``) to the
    number of rows removed for that reason; a row with several problems is counted once, under
    the first reason found, so the counts add up to the rows removed. ``rows`` holds the row
    counts of the returned tables.
    """

    problems: list[Problem] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())

    def summary(self) -> str:
        parts = [f"{k}: {_rows(v)}" for k, v in self.rows.items()]
        if self.dropped:
            parts.append(
                f"dropped {_rows(self.n_dropped)}: "
                + ", ".join(f"{n:,} ({why})" for why, n in self.dropped.items())
            )
        return "; ".join(parts)


def _rows(n: int) -> str:
    return f"{n:,} row" + ("" if n == 1 else "s")


def _fmt(v: object) -> str:
    """A value as a user would recognise it in their file."""
    if isinstance(v, float):
        return f"{v:.7g}"  # float32 values print without binary noise (-1.3, not -1.2999999523)
    if isinstance(v, datetime):
        return v.isoformat()
    return repr(v)


def _bools(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=bool)


def _present(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return _bools(pc.is_valid(arr))


def _np(arr: pa.ChunkedArray | pa.Array, fill: float | int) -> np.ndarray:
    """Numeric column as numpy with nulls replaced by ``fill``."""
    return np.asarray(arr.fill_null(fill).to_numpy())


def _contiguous(arr: pa.ChunkedArray | pa.Array) -> pa.Array:
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


class _Collector:
    """Accumulates the problems of one table and the rows to drop when repairing."""

    def __init__(self, kind: str, file: str, n: int, csv: bool) -> None:
        self.kind, self.file, self.n, self.csv = kind, file, n, csv
        self.problems: list[Problem] = []
        self.drop = np.zeros(n, dtype=bool)
        self.reasons: dict[str, int] = {}

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
            what = f"value {_fmt(values[first].as_py())}"
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
) -> tuple[pa.Table, _Collector]:
    """Cast ``table`` onto the schema of ``kind``; record missing columns and bad values.

    Unknown extra columns are left out (the schema is fixed) but are not an error; optional
    columns that are absent become all-null columns. Values that cannot be converted become null
    and are recorded as ``dtype`` problems. Every column of the result is one contiguous chunk.
    """
    schema = SCHEMAS[kind]
    col = _Collector(kind, file, table.num_rows, csv)
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


def _check_rows(t: pa.Table, kind: str, col: _Collector) -> None:
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
            return f"value {idv[row]}, already at {col.where(earlier)}"

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


def _check_refs(
    table: pa.Table,
    tcol: _Collector,
    idc: str,
    other: pa.Table,
    ocol: _Collector,
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


def _check_watch_vs_duration(
    events: pa.Table, ecol: _Collector, videos: pa.Table, vcol: _Collector
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
            f"value {_fmt(float(w[row]))} but video {vids[row]} has duration_s "
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


def validate(
    tables: Mapping[str, pa.Table | None],
    files: Mapping[str, str] | None = None,
    *,
    repair: bool = False,
    csv: Mapping[str, bool] | None = None,
) -> tuple[dict[str, pa.Table], ValidationReport]:
    """Validate raw tables (keys among users, creators, videos, events) against the contracts.

    ``files`` names the file each table came from (used in messages); ``csv`` says which were
    CSV files, so that messages also give the line in the file.

    Returns the tables conformed to the schemas and a report. Raises
    :class:`~mlsd.errors.DataValidationError` listing every problem unless ``repair`` is set;
    with ``repair`` offending rows are dropped and counted in ``report.dropped`` (column-level
    problems such as a missing column or an empty file cannot be repaired and always raise, as
    does a repair that leaves no events). Events referencing ids absent from a given
    users/videos table are problems (videos referencing absent creators likewise); tables not
    given are not checked against.
    """
    unknown = sorted(set(tables) - set(SCHEMAS))
    if unknown:
        raise DataError(
            f"unknown table kind(s) {', '.join(unknown)}; expected some of {', '.join(SCHEMAS)}"
        )
    files = dict(files or {})
    csv = dict(csv or {})
    conformed: dict[str, pa.Table] = {}
    cols: dict[str, _Collector] = {}
    for kind in ("users", "creators", "videos", "events"):
        raw = tables.get(kind)
        if raw is None:
            continue
        t, col = conform(raw, kind, files.get(kind, f"<{kind}>"), csv=csv.get(kind, False))
        _check_rows(t, kind, col)
        conformed[kind], cols[kind] = t, col

    def everything() -> list[Problem]:
        return [p for c in cols.values() for p in c.problems]

    if any(p.row is None for p in everything()):
        # Column-level problems first: they are what to fix first, and repair cannot fix them.
        problems = sorted(everything(), key=lambda p: p.row is not None)
        raise DataValidationError(
            problems,
            note="a missing column or an empty file cannot be repaired by dropping rows"
            if repair
            else "",
        )
    # Videos before events: a video dropped for an unknown creator drops its events too.
    if "videos" in conformed and "creators" in conformed:
        _check_refs(
            conformed["videos"],
            cols["videos"],
            "creator_id",
            conformed["creators"],
            cols["creators"],
            "creator_id",
            repair,
        )
    if "events" in conformed:
        ev, ecol = conformed["events"], cols["events"]
        for kind, idc in (("videos", "video_id"), ("users", "user_id")):
            if kind in conformed:
                _check_refs(ev, ecol, idc, conformed[kind], cols[kind], idc, repair)
        if "videos" in conformed:
            _check_watch_vs_duration(ev, ecol, conformed["videos"], cols["videos"])
    problems = everything()
    if problems and not repair:
        raise DataValidationError(problems)
    report = ValidationReport(problems=problems)
    for kind, c in cols.items():
        if c.drop.any():
            conformed[kind] = conformed[kind].filter(pa.array(~c.drop))
        report.dropped.update(c.reasons)
    report.rows = {k: t.num_rows for k, t in conformed.items()}
    if "events" in conformed and conformed["events"].num_rows == 0:
        left = Problem(
            cols["events"].file,
            None,
            None,
            f"no valid rows left after repair ({report.summary()})",
            "at least one valid event",
            check="empty",
        )
        raise DataValidationError([left, *problems])
    return conformed, report
