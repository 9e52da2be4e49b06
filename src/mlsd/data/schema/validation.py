"""``validate``: raw tables in, tables conformed to the schemas and a report out.

Checks types, required columns, referential integrity, value ranges and duplicate ids (see
:mod:`mlsd.data.schema.checks`), and reports every problem with the file, the column, the first
offending row and what was expected. With ``repair=True`` it drops offending rows instead, and
reports how many and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from mlsd.data.schema.checks import (
    Collector,
    check_refs,
    check_rows,
    check_watch_vs_duration,
    conform,
)
from mlsd.data.schema.tables import SCHEMAS
from mlsd.errors import DataError, DataValidationError, Problem


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


def validate(
    tables: Mapping[str, pa.Table | None],
    files: Mapping[str, str] | None = None,
    *,
    repair: bool = False,
    csv: Mapping[str, bool] | None = None,
    id_maps: Mapping[str, Any] | None = None,
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
    given are not checked against. ``id_maps`` (id column -> :class:`~mlsd.data.ids.IdMap`)
    says which id columns hold codes of string ids: messages show the ids instead.
    """
    unknown = sorted(set(tables) - set(SCHEMAS))
    if unknown:
        raise DataError(
            f"unknown table kind(s) {', '.join(unknown)}; expected some of {', '.join(SCHEMAS)}"
        )
    files = dict(files or {})
    csv = dict(csv or {})
    conformed: dict[str, pa.Table] = {}
    cols: dict[str, Collector] = {}
    for kind in ("users", "creators", "videos", "events"):
        raw = tables.get(kind)
        if raw is None:
            continue
        t, col = conform(raw, kind, files.get(kind, f"<{kind}>"), csv=csv.get(kind, False))
        col.id_maps = dict(id_maps or {})
        check_rows(t, kind, col)
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
        check_refs(
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
                check_refs(ev, ecol, idc, conformed[kind], cols[kind], idc, repair)
        if "videos" in conformed:
            check_watch_vs_duration(ev, ecol, conformed["videos"], cols["videos"])
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
