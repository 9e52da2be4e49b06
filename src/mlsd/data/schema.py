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

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlsd.data._coerce import TS_TYPE, coerce
from mlsd.errors import DataValidationError, Problem

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
    """What ``validate`` found: problems (raised unless repairing) and rows dropped per reason."""

    problems: list[Problem] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        parts = [f"{k}: {v:,} rows" for k, v in self.rows.items()]
        if self.dropped:
            parts.append(
                "dropped " + ", ".join(f"{n:,} ({why})" for why, n in self.dropped.items())
            )
        return "; ".join(parts)


class _Collector:
    """Accumulates row-level problems and the rows to drop for one table."""

    def __init__(self, kind: str, file: str, n: int, csv: bool) -> None:
        self.kind, self.file, self.n, self.csv = kind, file, n, csv
        self.problems: list[Problem] = []
        self.drop = np.zeros(n, dtype=bool)
        self.reasons: dict[str, int] = {}

    def column(self, column: str | None, found: str, expected: str, check: str) -> None:
        self.problems.append(Problem(self.file, column, None, found, expected, 0, None, check))

    def rows(
        self,
        mask: np.ndarray,
        column: str,
        found: str | None,
        expected: str,
        check: str,
        values: pa.Array | None = None,
    ) -> None:
        """Record rows where ``mask`` is True (first one located, all counted)."""
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            return
        first = int(idx[0])
        if found is None:
            v = values[first].as_py() if values is not None else None
            found = f"value {v!r}"
        line = first + 2 if self.csv else None
        self.problems.append(
            Problem(self.file, column, first, found, expected, int(idx.size), line, check)
        )
        new = mask & ~self.drop
        self.reasons[f"{self.kind}: {check}"] = self.reasons.get(f"{self.kind}: {check}", 0) + int(
            new.sum()
        )
        self.drop |= mask


def conform(
    table: pa.Table, kind: str, file: str = "<table>", *, csv: bool = False
) -> tuple[pa.Table, _Collector]:
    """Cast ``table`` onto the schema of ``kind``; record missing columns and bad values.

    Unknown extra columns are kept out (the schema is fixed) but not an error.
    """
    schema = SCHEMAS[kind]
    col = _Collector(kind, file, table.num_rows, csv)
    if table.num_rows == 0:
        col.column(None, "no rows (empty file)", f"at least one {kind} row", "empty")
    missing = [c for c in REQUIRED[kind] if c not in table.column_names]
    for c in missing:
        present = ", ".join(table.column_names) or "none"
        col.column(c, f"column missing (columns present: {present})", "a required column", "missing")
    arrays = []
    for f in schema:
        if f.name not in table.column_names:
            arrays.append(pa.nulls(table.num_rows, f.type))
            continue
        raw = table.column(f.name)
        out, bad = coerce(raw, f.type)
        if bad.any():
            raw_c = raw.combine_chunks() if isinstance(raw, pa.ChunkedArray) else raw
            col.rows(bad, f.name, None, f"type {_type_name(f.type)}", "dtype", values=raw_c)
        arrays.append(out)
    return pa.Table.from_arrays(arrays, schema=schema), col


def _type_name(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "timestamp (ISO-8601 or epoch seconds/ms)"
    if pa.types.is_list(t):
        return "list of strings (or 'a|b' text)"
    return str(t)


def _np(arr: pa.ChunkedArray | pa.Array, fill: float | int | bool) -> np.ndarray:
    return np.asarray(arr.fill_null(fill).to_numpy())


def _check_rows(t: pa.Table, kind: str, col: _Collector) -> None:
    """Row-level checks that need only this table."""
    if col.problems and any(p.check in ("missing", "empty") for p in col.problems):
        return
    for c in REQUIRED[kind]:
        nulls = ~np.asarray(pc.is_valid(t.column(c)).to_numpy(zero_copy_only=False), dtype=bool)
        # dtype failures are already reported (they are null now); report true nulls only.
        nulls &= ~col.drop
        col.rows(nulls, c, "missing value", "a value in every row", "null")
    idc = ID_COLUMN.get(kind)
    if idc is not None:
        ids = t.column(idc)
        valid = ~col.drop
        idv = _np(ids, 0)
        # duplicate ids: every occurrence after the first is a problem
        order = np.argsort(idv, kind="stable")
        s = idv[order]
        dup_sorted = np.zeros(len(s), dtype=bool)
        dup_sorted[1:] = s[1:] == s[:-1]
        dup = np.zeros(len(s), dtype=bool)
        dup[order] = dup_sorted
        dup &= valid
        col.rows(dup, idc, None, f"unique {idc} values (this one appears earlier)", "duplicate id",
                 values=ids.combine_chunks())
    now = datetime.now(UTC)
    lo = int(MIN_TIME.timestamp() * 1000)
    hi = int((now + MAX_FUTURE).timestamp() * 1000)
    for f in SCHEMAS[kind]:
        if pa.types.is_timestamp(f.type):
            v = t.column(f.name)
            present = np.asarray(pc.is_valid(v).to_numpy(zero_copy_only=False), dtype=bool)
            ms = _np(pc.cast(v, pa.int64()), lo)
            out = present & ((ms < lo) | (ms > hi))
            col.rows(out, f.name, None,
                     f"a time between {MIN_TIME.date()} and {(now + MAX_FUTURE).date()}",
                     "timestamp out of range", values=v.combine_chunks())
    if kind == "videos":
        d = _np(t.column("duration_s"), 1.0)
        col.rows(d < 0, "duration_s", None, "duration_s >= 0", "negative duration",
                 values=t.column("duration_s").combine_chunks())
    if kind == "events":
        et = t.column("event_type")
        known = np.asarray(pc.is_in(et, pa.array(EVENT_TYPES)).to_numpy(zero_copy_only=False))
        present = np.asarray(pc.is_valid(et).to_numpy(zero_copy_only=False), dtype=bool)
        col.rows(present & ~known, "event_type", None, "one of " + ", ".join(EVENT_TYPES),
                 "unknown event type", values=et.combine_chunks())
        w = _np(t.column("watch_seconds"), 0.0)
        col.rows(w < 0, "watch_seconds", None, "watch_seconds >= 0", "negative watch seconds",
                 values=t.column("watch_seconds").combine_chunks())
        pos = _np(t.column("position"), 1)
        col.rows(pos < 1, "position", None, "position >= 1 (1 = top of the slate)",
                 "bad position", values=t.column("position").combine_chunks())


def _check_refs(
    events: pa.Table, ecol: _Collector, other: pa.Table, ocol: _Collector, idc: str, kind: str
) -> None:
    ids = events.column(idc)
    known_ids = pc.filter(other.column(idc), pa.array(~ocol.drop))
    present = np.asarray(pc.is_valid(ids).to_numpy(zero_copy_only=False), dtype=bool)
    found = np.asarray(pc.is_in(ids, known_ids).to_numpy(zero_copy_only=False), dtype=bool)
    ecol.rows(present & ~found, idc, None, f"an {idc} present in the {kind} table ({ocol.file})",
              f"unknown {idc.removesuffix('_id')}", values=ids.combine_chunks())


def _check_watch_vs_duration(events: pa.Table, ecol: _Collector, videos: pa.Table) -> None:
    vid = videos.column("video_id")
    dur = videos.column("duration_s")
    idx = pc.index_in(events.column("video_id"), vid)
    d = pc.take(dur, idx)
    w = _np(events.column("watch_seconds"), 0.0).astype(np.float64)
    dv = d.combine_chunks() if isinstance(d, pa.ChunkedArray) else d
    dd = np.asarray(dv.fill_null(np.inf).to_numpy(zero_copy_only=False), dtype=np.float64)
    limit = dd * (1 + WATCH_TOLERANCE_REL) + WATCH_TOLERANCE_ABS_S
    ecol.rows(w > limit, "watch_seconds", None,
              f"watch_seconds <= the video's duration_s (+{WATCH_TOLERANCE_REL:.0%} "
              f"+{WATCH_TOLERANCE_ABS_S:g} s)", "watch beyond duration",
              values=events.column("watch_seconds").combine_chunks())


def validate(
    tables: Mapping[str, pa.Table | None],
    files: Mapping[str, str] | None = None,
    *,
    repair: bool = False,
    csv: Mapping[str, bool] | None = None,
) -> tuple[dict[str, pa.Table], ValidationReport]:
    """Validate raw tables (keys among users, creators, videos, events) against the contracts.

    Returns the tables conformed to the schemas and a report. Raises
    :class:`~mlsd.errors.DataValidationError` listing every problem unless ``repair`` is set;
    with ``repair`` offending rows are dropped and counted in ``report.dropped`` (column-level
    problems such as a missing column or an empty file cannot be repaired and always raise).
    Events referencing ids absent from a given users/videos table are problems; tables not given
    are not checked against.
    """
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
    structural = [p for c in cols.values() for p in c.problems if p.row is None]
    if structural:
        raise DataValidationError(structural + [p for c in cols.values() for p in c.problems
                                                if p.row is not None])
    if "events" in conformed:
        ev, ecol = conformed["events"], cols["events"]
        for kind, idc in (("videos", "video_id"), ("users", "user_id")):
            if kind in conformed:
                _check_refs(ev, ecol, conformed[kind], cols[kind], idc, kind)
        if "videos" in conformed:
            _check_watch_vs_duration(ev, ecol, conformed["videos"])
    if "videos" in conformed and "creators" in conformed:
        v, vcol = conformed["videos"], cols["videos"]
        cid = v.column("creator_id")
        present = np.asarray(pc.is_valid(cid).to_numpy(zero_copy_only=False), dtype=bool)
        known = np.asarray(pc.is_in(cid, conformed["creators"].column("creator_id"))
                           .to_numpy(zero_copy_only=False), dtype=bool)
        vcol.rows(present & ~known, "creator_id", None,
                  f"a creator_id present in the creators table ({cols['creators'].file})",
                  "unknown creator", values=cid.combine_chunks())
    report = ValidationReport(rows={k: t.num_rows for k, t in conformed.items()})
    problems = [p for c in cols.values() for p in c.problems]
    if problems and not repair:
        raise DataValidationError(problems)
    if repair:
        for kind, c in cols.items():
            if c.drop.any():
                conformed[kind] = conformed[kind].filter(pa.array(~c.drop))
            report.dropped.update({k: v for k, v in c.reasons.items() if v})
        report.problems = problems
        report.rows = {k: t.num_rows for k, t in conformed.items()}
        for kind in ("events",):
            if kind in conformed and conformed[kind].num_rows == 0:
                raise DataValidationError(
                    [Problem(files.get(kind, kind), None, None, "no valid rows left after repair",
                             "at least one valid row", 0, None, "empty")]
                )
    return conformed, report
