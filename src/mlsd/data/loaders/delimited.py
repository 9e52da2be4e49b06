"""Reading delimited text files (MovieLens ``.data``, ``.dat``, ``.item``, ``.csv``) with Arrow.

Values that do not parse as the requested type are read as text rather than failing the whole
file, so that validation can report the bad value with its row.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from mlsd.errors import DataError


def read_text(
    path: Path,
    *,
    delimiter: str,
    names: list[str] | None = None,
    types: dict[str, pa.DataType] | None = None,
    include: list[str] | None = None,
    encoding: str = "utf8",
    quoted: bool = True,
) -> pa.Table:
    """Read a delimited text file (``names`` None: the first line is the header).

    Columns in ``types`` are parsed as those types (fast); if a value does not parse, the file
    is read again with those columns as text, so that validation reports the bad value with
    its row instead of the whole file failing. Other columns are read as text. ``include``
    keeps only those columns; ``quoted`` False reads ``"`` as an ordinary character. Raises
    :class:`DataError` naming ``path`` when it is missing or cannot be read.
    """
    read = pacsv.ReadOptions(column_names=names, encoding=encoding, block_size=1 << 24)
    parse = pacsv.ParseOptions(delimiter=delimiter, quote_char='"' if quoted else False)

    def attempt(typed: dict[str, pa.DataType]) -> pa.Table:
        conv = pacsv.ConvertOptions(
            column_types=typed,
            include_columns=include,
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        )
        return pacsv.read_csv(path, read_options=read, parse_options=parse, convert_options=conv)

    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        header = names or _header(path, delimiter, encoding)
        as_text = {c: pa.string() for c in header}
        try:
            return attempt({**as_text, **(types or {})})
        except pa.ArrowInvalid as e:
            if "conversion error" not in str(e):
                raise
            return attempt(as_text)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot be read as '{delimiter}'-separated text: {e}") from e


def _header(path: Path, delimiter: str, encoding: str) -> list[str]:
    """The first line of ``path`` split on ``delimiter`` (no unquoting); [""] for an empty file."""
    with path.open(encoding=encoding, newline="") as f:
        return next(iter(f), "").rstrip("\r\n").split(delimiter)


def with_gaps(cols: list[str]) -> list[str]:
    """Column names for a ``::`` file split on ``:``: the empty fields between get dummies."""
    out = []
    for i, c in enumerate(cols):
        out += [c] if i == 0 else [f"_{i}", c]
    return out
