"""Assembling a :class:`~mlsd.data.dataset.Dataset` from the tables a loader has read.

A loader maps the user's files onto the mlsd schema's column names, adds the tables to a
:class:`RawTables` along with how each column is spelled in the file, and calls
:meth:`RawTables.dataset`: validation (and ``repair``) is that of
:func:`mlsd.data.dataset.from_tables`, and every problem it reports is relabelled with the
user's file, column name and line. :func:`bad_values`, :func:`missing_column` and
:func:`raise_if` build and raise the problems a loader finds itself, before validation.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from mlsd.data.dataset import Dataset, from_tables, is_csv, read_table
from mlsd.errors import DataValidationError, Problem


@dataclass
class RawTables:
    """Raw tables on their way to ``from_tables``, with what messages need to know about them.

    ``names`` maps a file to {schema column: the column as spelled in that file}; files in
    ``headerless`` have no header line, so row i is on line i + 1.
    """

    tables: dict[str, pa.Table | None] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    csv: dict[str, bool] = field(default_factory=dict)
    names: dict[str, dict[str, str]] = field(default_factory=dict)
    headerless: set[str] = field(default_factory=set)

    def add(
        self,
        kind: str,
        table: pa.Table,
        path: Path,
        names: dict[str, str],
        *,
        header: bool = True,
    ) -> None:
        """Add the ``kind`` table (users, creators, videos, events) read from ``path``.

        ``names`` maps schema columns to the file's spelling of them (columns not in it are
        spelled as in the schema); ``header`` False for a file without a header line.
        """
        f = str(path)
        self.tables[kind], self.files[kind], self.names[f] = table, f, names
        self.csv[kind] = header and is_csv(path)
        if not header:
            self.headerless.add(f)

    def relabel(self, p: Problem) -> Problem:
        """``p`` with the user's column name and, for a headerless file, the line number."""
        col = self.names.get(p.file, {}).get(p.column or "", p.column)
        if p.file in self.headerless:
            return replace(p, column=col, line=None if p.row is None else p.row + 1)
        return replace(p, column=col)

    def dataset(
        self,
        meta: dict[str, str],
        *,
        videos: str | Path | None,
        users: str | Path | None,
        repair: bool,
    ) -> Dataset:
        """Validate the tables into a dataset whose ``meta`` is ``meta``.

        ``videos``/``users`` are files in the mlsd schema that replace the tables of that kind.
        Raises :class:`DataValidationError` (problems relabelled by :meth:`relabel`) as
        :func:`mlsd.data.dataset.from_tables` does; with ``repair`` the report's problems are
        relabelled likewise.
        """
        for kind, extra in (("videos", videos), ("users", users)):
            if extra is not None:
                self.add(kind, read_table(extra), Path(extra), {})
        try:
            ds = from_tables(self.tables, self.files, repair=repair, csv=self.csv)
        except DataValidationError as e:
            raise DataValidationError([self.relabel(p) for p in e.problems], e.note) from e
        if ds.report is not None:
            ds.report.problems = [self.relabel(p) for p in ds.report.problems]
        ds.meta = meta
        return ds


def raise_if(problems: list[Problem]) -> None:
    """Raise :class:`DataValidationError` listing ``problems``; do nothing if there are none."""
    if problems:
        raise DataValidationError(problems)


def bad_values(
    path: Path, column: str, mask: np.ndarray, values: pa.Array, expected: str, line0: int
) -> list[Problem]:
    """A problem for the rows where ``mask`` is set (none if no row is); ``line0`` is the line
    of row 0 in the file."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return []
    first = int(idx[0])
    return [
        Problem(
            str(path),
            column,
            first,
            f"value {values[first].as_py()!r}",
            expected,
            int(idx.size),
            first + line0,
            "dtype",
        )
    ]


def missing_column(
    path: Path, column: str, present: list[str], expected: str, line: int | None
) -> Problem:
    """The problem of a required ``column`` absent from the file at ``path``.

    ``present`` lists the columns the file has (named in the message); ``expected`` says what
    was looked for; ``line`` is the header's line (None when the file has no lines, e.g.
    Parquet).
    """
    return Problem(
        str(path),
        column,
        None,
        f"required column missing (columns present: {', '.join(present) or 'none'})",
        expected,
        0,
        line,
        "missing",
    )
