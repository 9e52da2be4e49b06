"""Which format an input is in (:func:`detect_format`), and :func:`load`, which hands it to
that format's loader.

The formats (``FORMATS``) are described in :mod:`mlsd.data.loaders`. ``mlsd`` inputs are read by
:func:`mlsd.data.dataset.load_dataset`, ``interactions`` by
:func:`~mlsd.data.loaders.interactions.load_interactions` and ``movielens`` by
:func:`~mlsd.data.loaders.movielens.load_movielens`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mlsd.data.dataset import SUFFIXES, Dataset, load_dataset, read_table
from mlsd.data.loaders.columns import check_column_map, mapped_names
from mlsd.data.loaders.interactions import load_interactions
from mlsd.data.loaders.movielens import load_movielens, movielens_variant
from mlsd.errors import ConfigError, DataError

FORMATS: tuple[str, ...] = ("auto", "mlsd", "interactions", "movielens")


def load(
    path: str | Path,
    *,
    fmt: str = "auto",
    videos: str | Path | None = None,
    users: str | Path | None = None,
    repair: bool = False,
    columns: Mapping[str, str] | None = None,
) -> Dataset:
    """Load and validate a dataset in any supported format (see :mod:`mlsd.data.loaders`).

    ``videos``/``users`` are tables in the mlsd schema that replace (or supply) the catalog and
    user tables. ``repair`` drops offending rows instead of failing (see
    :func:`mlsd.data.schema.validate`). ``Dataset.meta`` records provenance: ``source``
    (``mlsd``, ``interactions``, ``movielens-100k``...) and ``path``. ``columns`` maps roles
    to an interactions file's own column names (:mod:`mlsd.data.loaders.columns`); the
    mlsd and MovieLens formats have fixed names, so a map is refused for them.

    Raises :class:`ConfigError` for an unknown ``fmt``, :class:`DataError` when the input is
    missing or its format cannot be told, :class:`DataValidationError` when it breaks the
    data contracts.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or directory")
    cmap = check_column_map(columns)
    if fmt == "auto":
        fmt, p = detect_format(p, columns=cmap)
    if fmt == "interactions":
        return load_interactions(p, videos=videos, users=users, repair=repair, columns=cmap)
    if cmap:
        raise ConfigError(
            f"{p}: a column map ({', '.join(f'{r}={n}' for r, n in cmap.items())}) applies to "
            f"interactions files; this is a {fmt} input, whose column names are fixed"
        )
    if fmt == "movielens":
        return load_movielens(p, videos=videos, users=users, repair=repair)
    ds = load_dataset(p, videos=videos, users=users, repair=repair)
    ds.meta = {"source": "mlsd", "path": str(p), **ds.meta}  # a manifest's own keys win
    return ds


def detect_format(
    path: str | Path, *, columns: Mapping[str, str] | None = None
) -> tuple[str, Path]:
    """Tell the format of ``path``; returns ``(fmt, path_to_load)``.

    A directory is MovieLens when it holds ``u.data``, ``ratings.dat``, or ``ratings.csv`` and
    ``movies.csv``; it is mlsd when it holds ``events.<suffix>``. A file is mlsd when it has an
    ``event_type`` column, interactions when it has ``user_id`` and ``item_id`` (or
    ``video_id``; ``timestamp`` optional); a MovieLens ratings file stands for its directory.
    Anything else raises :class:`DataError` naming the path and what was looked for. With a
    column map (``columns``), a file's columns are read as the roles the map names, and a file
    that is not mlsd events is an interactions file (the loader then names a mapped column it
    lacks).
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or directory")
    if p.is_dir():
        if movielens_variant(p) is not None:
            return "movielens", p
        if any((p / f"events{s}").exists() for s in SUFFIXES):
            return "mlsd", p
        listing = ", ".join(sorted(x.name for x in p.iterdir())[:10]) or "nothing"
        raise DataError(
            f"{p}: cannot tell the format; looked for events.parquet/events.csv (mlsd), "
            f"u.data, ratings.dat or ratings.csv + movies.csv (MovieLens) (found: {listing})"
        )
    if p.name in ("u.data", "ratings.dat"):
        return "movielens", p.parent
    cols = mapped_names(_columns(p), columns)  # a column map names the roles: read them so
    if "event_type" in cols:
        return "mlsd", p
    if "user_id" in cols and ({"item_id", "video_id"} & set(cols)):
        return "interactions", p
    if check_column_map(columns):  # a map names an interactions file's columns: it is one
        return "interactions", p
    if p.name == "ratings.csv" and (p.parent / "movies.csv").exists():
        return "movielens", p.parent
    raise DataError(
        f"{p}: cannot tell the format; looked for an 'event_type' column (mlsd events) or "
        f"'user_id' and 'item_id' (or 'video_id') columns (interactions) "
        f"(columns present: {', '.join(cols) or 'none'})"
    )


def _columns(p: Path) -> list[str]:
    """Column names of a Parquet or CSV file, reading only its footer or first block."""
    name = p.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return list(pq.read_schema(p).names)
        if name.endswith((".csv", ".csv.gz", ".tsv", ".txt")) and p.stat().st_size > 0:
            delim = "\t" if name.endswith(".tsv") else ","
            with pa.input_stream(str(p)) as f:  # decompresses .gz
                reader = pacsv.open_csv(f, parse_options=pacsv.ParseOptions(delimiter=delim))
                return list(reader.schema.names)
    except (pa.ArrowException, OSError):
        pass
    # Unreadable, empty or of an unknown type: read_table raises the message that says which.
    return list(read_table(p).column_names)
