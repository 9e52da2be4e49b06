"""Loaders: one entry point, :func:`load`, for every kind of input mlsd accepts.

Formats:

- ``mlsd``: a dataset directory or events file in the mlsd schema (see :mod:`mlsd.data.dataset`);
- ``interactions``: bring-your-own data, a Parquet or CSV file of
  ``user_id, item_id (or video_id), timestamp[, weight][, rating]``;
- ``movielens``: a MovieLens directory as GroupLens ships it (100k, 1M, 10M, 20M, 25M, latest);
- ``auto``: one of the above, told apart by the files and columns present.

Whatever the format, the tables go through :func:`mlsd.data.dataset.from_tables`, so the same
validation (and ``repair``) applies; problems name the user's file and columns as they are
spelled there (``item_id``, ``MovieID``...), not the schema's names. Parsing is vectorised
(Arrow CSV reader and compute kernels): MovieLens 25M has 25 million ratings.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mlsd.data._coerce import coerce
from mlsd.data.dataset import SUFFIXES, Dataset, from_tables, is_csv, load_dataset, read_table
from mlsd.errors import ConfigError, DataError, DataValidationError, Problem

FORMATS: tuple[str, ...] = ("auto", "mlsd", "interactions", "movielens")
GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens"

# Genre labels that mean "no genre": dropped, so such movies have null topic/topics.
_NO_GENRE = pa.array(["unknown", "(no genres listed)"])
# MovieLens 100k genre columns in u.item, used when u.genre is absent (order as in u.genre).
ML100K_GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
# Exact ages (100k) bucketed like the simulator's users (plus 0-12: 100k has users aged 7+).
_AGE_EDGES = np.array([13, 18, 25, 35, 45, 55])
_AGE_LABELS = ("0-12", "13-17", "18-24", "25-34", "35-44", "45-54", "55+")
# MovieLens 1M stores age as the code of a bucket (its README); labels keep its own bounds.
ML1M_AGES: dict[int, str] = {
    1: "0-17", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55", 56: "56+"
}  # fmt: skip
# GroupLens archive names: ml-100k, ml-1m, ml-10m, ml-25m, ml-latest-small...
_ML_NAME = re.compile(r"ml-[a-z0-9]+(-[a-z0-9]+)*")


def load(
    path: str | Path,
    *,
    fmt: str = "auto",
    videos: str | Path | None = None,
    users: str | Path | None = None,
    repair: bool = False,
) -> Dataset:
    """Load and validate a dataset in any supported format (see the module docstring).

    ``videos``/``users`` are tables in the mlsd schema that replace (or supply) the catalog and
    user tables. ``repair`` drops offending rows instead of failing (see
    :func:`mlsd.data.schema.validate`). ``Dataset.meta`` records provenance: ``source``
    (``mlsd``, ``interactions``, ``movielens-100k``...) and ``path``.

    Raises :class:`ConfigError` for an unknown ``fmt``, :class:`DataError` when the input is
    missing or its format cannot be told, :class:`DataValidationError` when it breaks the
    data contracts.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or directory")
    if fmt == "auto":
        fmt, p = detect_format(p)
    if fmt == "interactions":
        return load_interactions(p, videos=videos, users=users, repair=repair)
    if fmt == "movielens":
        return load_movielens(p, videos=videos, users=users, repair=repair)
    ds = load_dataset(p, videos=videos, users=users, repair=repair)
    ds.meta = {"source": "mlsd", "path": str(p), **ds.meta}  # a manifest's own keys win
    return ds


def detect_format(path: str | Path) -> tuple[str, Path]:
    """Tell the format of ``path``; returns ``(fmt, path_to_load)``.

    A directory is MovieLens when it holds ``u.data``, ``ratings.dat``, or ``ratings.csv`` and
    ``movies.csv``; it is mlsd when it holds ``events.<suffix>``. A file is mlsd when it has an
    ``event_type`` column, interactions when it has ``user_id``, ``item_id`` (or ``video_id``)
    and ``timestamp``; a MovieLens ratings file stands for its directory. Anything else raises
    :class:`DataError` naming the path and what was looked for.
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
    cols = _columns(p)
    if "event_type" in cols:
        return "mlsd", p
    if {"user_id", "timestamp"} <= set(cols) and ({"item_id", "video_id"} & set(cols)):
        return "interactions", p
    if p.name == "ratings.csv" and (p.parent / "movies.csv").exists():
        return "movielens", p.parent
    raise DataError(
        f"{p}: cannot tell the format; looked for an 'event_type' column (mlsd events) or "
        f"'user_id', 'item_id' (or 'video_id') and 'timestamp' columns (interactions) "
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


# --- assembling a dataset ------------------------------------------------------------------


@dataclass
class _Raw:
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


def _fail(problems: list[Problem]) -> None:
    if problems:
        raise DataValidationError(problems)


def _bad_values(
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


# --- interactions --------------------------------------------------------------------------


def load_interactions(
    path: str | Path,
    *,
    videos: str | Path | None = None,
    users: str | Path | None = None,
    repair: bool = False,
) -> Dataset:
    """Load a bring-your-own interactions file (Parquet or CSV) as a dataset.

    Columns: ``user_id``, ``item_id`` (or ``video_id``), ``timestamp`` (ISO-8601 or epoch
    s/ms/us/ns), optional ``weight`` and ``rating``; other columns are ignored. A row with a
    rating becomes a ``rating`` event; any other row a ``play`` event with unknown (null)
    ``watch_seconds``; ``weight`` is kept. Videos and users are derived from the ids unless
    ``videos``/``users`` files (mlsd schema) are given. Problems name the columns as spelled
    in the file; a missing required column is reported before anything is mapped.
    """
    p = Path(path)
    raw = read_table(p)
    cols = raw.column_names
    present = ", ".join(cols) or "none"
    header = 1 if is_csv(p) else None
    problems = []
    for need, alt in (("user_id", None), ("item_id", "video_id"), ("timestamp", None)):
        if need not in cols and (alt is None or alt not in cols):
            spelled = f"an '{need}'" if need[0] in "aeiou" else f"a '{need}'"
            if alt is not None:
                spelled += f" (or '{alt}')"
            problems.append(
                Problem(
                    str(p),
                    need,
                    None,
                    f"required column missing (columns present: {present})",
                    f"{spelled} column in the header",
                    0,
                    header,
                    "missing",
                )
            )
    if "item_id" in cols and "video_id" in cols:
        problems.append(
            Problem(
                str(p),
                "video_id",
                None,
                "both 'item_id' and 'video_id' columns",
                "one item id column, 'item_id' or 'video_id'",
                0,
                header,
                "ambiguous",
            )
        )
    _fail(problems)
    item = "item_id" if "item_id" in cols else "video_id"
    events = {
        "user_id": raw.column("user_id"),
        "video_id": raw.column(item),
        "timestamp": raw.column("timestamp"),
    }
    if "rating" in cols:
        rated = pc.is_valid(raw.column("rating"))
        events["event_type"] = pc.if_else(rated, "rating", "play")
        events["rating"] = raw.column("rating")
    else:
        events["event_type"] = pa.repeat(pa.scalar("play"), raw.num_rows)
    if "weight" in cols:
        events["weight"] = raw.column("weight")
    out = _Raw()
    out.add("events", pa.table(events), p, {"video_id": item})
    meta = {"source": "interactions", "path": str(p)}
    return out.dataset(meta, videos=videos, users=users, repair=repair)


# --- MovieLens -----------------------------------------------------------------------------


def movielens_variant(path: str | Path) -> str | None:
    """Which MovieLens layout the directory ``path`` holds, from its files; None if none.

    ``"100k"`` (``u.data``), ``"1m"`` (``ratings.dat`` and ``users.dat``), ``"10m"``
    (``ratings.dat`` alone), ``"csv"`` (``ratings.csv`` and ``movies.csv``: 20M, 25M, latest).
    """
    d = Path(path)
    if not d.is_dir():
        return None
    if (d / "u.data").is_file():
        return "100k"
    if (d / "ratings.dat").is_file():
        return "1m" if (d / "users.dat").is_file() else "10m"
    if (d / "ratings.csv").is_file() and (d / "movies.csv").is_file():
        return "csv"
    return None


def load_movielens(
    path: str | Path,
    *,
    videos: str | Path | None = None,
    users: str | Path | None = None,
    repair: bool = False,
) -> Dataset:
    """Load a MovieLens directory (variant detected by :func:`movielens_variant`).

    Ratings become ``rating`` events (``rating`` as given: 1-5, or 0.5-5 in half stars from
    10M on; ``timestamp`` from epoch seconds). Movies become videos with ``title``, ``topics``
    (the genres, in file order; "unknown" / "(no genres listed)" mean none: null) and
    ``topic`` (the first genre); durations, creators and upload times are unknown (null).
    Users (100k and 1M only; otherwise derived from the ratings) get ``age_bucket``: 100k
    ages are bucketed as ``0-12, 13-17, 18-24, 25-34, 35-44, 45-54, 55+``; 1M age codes keep
    1M's own buckets (``0-17`` ... ``45-49, 50-55, 56+``). Text files are decoded as latin-1
    (100k, 1M) or UTF-8 (10M falls back to latin-1). A ratings file (``u.data``...) stands
    for its directory. ``meta["source"]`` is ``movielens-<variant>``; for the CSV layout the
    variant is taken from the directory name (``ml-25m`` -> ``25m``) when it has that form.
    """
    d = Path(path)
    if d.is_file() and d.name in ("u.data", "ratings.dat", "ratings.csv"):
        d = d.parent
    variant = movielens_variant(d)
    if variant is None:
        raise DataError(
            f"{d}: not a MovieLens directory; expected u.data (100k), ratings.dat (1M, 10M) "
            "or ratings.csv and movies.csv (20M, 25M, latest)"
        )
    if variant == "100k":
        raw = _ml_100k(d)
    elif variant == "csv":
        raw = _ml_csv(d)
        m = re.fullmatch(r"ml-(.+)", d.resolve().name, flags=re.IGNORECASE)
        variant = m.group(1).lower() if m else "csv"
    else:
        raw = _ml_dat(d, variant)
    meta = {"source": f"movielens-{variant}", "path": str(d)}
    return raw.dataset(meta, videos=videos, users=users, repair=repair)


def _read_text(
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
    its row instead of the whole file failing. Other columns are read as text.
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
    with path.open(encoding=encoding, newline="") as f:
        return next(iter(f), "").rstrip("\r\n").split(delimiter)


def _rating_events(
    t: pa.Table, user: str, item: str, rating: str, ts: str
) -> tuple[pa.Table, dict[str, str]]:
    """Rating events from a ratings table; also {schema column: column in the file}."""
    names = {"user_id": user, "video_id": item, "rating": rating, "timestamp": ts}
    events = pa.table(
        {
            "user_id": t.column(user),
            "video_id": t.column(item),
            "timestamp": t.column(ts),
            "event_type": pa.repeat(pa.scalar("rating"), t.num_rows),
            "rating": t.column(rating),
        }
    )
    return events, names


_RATING_TYPES = (pa.int64(), pa.int64(), pa.float64(), pa.int64())


def _ml_100k(d: Path) -> _Raw:
    raw = _Raw()
    cols = ["user id", "item id", "rating", "timestamp"]
    data = _read_text(
        d / "u.data",
        delimiter="\t",
        names=cols,
        types=dict(zip(cols, _RATING_TYPES, strict=True)),
        quoted=False,
    )
    events, names = _rating_events(data, *cols)
    raw.add("events", events, d / "u.data", names, header=False)
    if (d / "u.item").is_file():
        genres = _ml_100k_genres(d / "u.genre")
        info = ["movie id", "movie title", "release date", "video release date", "IMDb URL"]
        item = _read_text(
            d / "u.item", delimiter="|", names=info + genres, encoding="latin-1", quoted=False
        )
        flags = []
        problems = []
        for g in genres:
            col = item.column(g)
            ok = np.asarray(pc.fill_null(pc.is_in(col, pa.array(["0", "1"])), False), dtype=bool)
            problems += _bad_values(d / "u.item", g, ~ok, col, "a genre flag, 0 or 1", 1)
            flags.append(np.asarray(pc.fill_null(pc.equal(col, "1"), False), dtype=bool))
        _fail(problems)
        topics = _flag_lists(np.column_stack(flags), genres)
        videos = _videos(item.column("movie id"), item.column("movie title"), topics)
        raw.add("videos", videos, d / "u.item", {"video_id": "movie id"}, header=False)
    if (d / "u.user").is_file():
        user = _read_text(
            d / "u.user",
            delimiter="|",
            names=["user id", "age", "gender", "occupation", "zip code"],
            encoding="latin-1",
            quoted=False,
        )
        age_raw = user.column("age")
        ages, bad = coerce(age_raw, pa.int64())
        _fail(_bad_values(d / "u.user", "age", bad, age_raw, "an age in years", 1))
        idx = np.digitize(np.asarray(ages.fill_null(0).to_numpy()), _AGE_EDGES)
        buckets = pa.array(np.asarray(_AGE_LABELS, dtype=object)[idx], pa.string())
        buckets = pc.if_else(pc.is_valid(ages), buckets, pa.scalar(None, pa.string()))
        users = pa.table({"user_id": user.column("user id"), "age_bucket": buckets})
        raw.add("users", users, d / "u.user", {"user_id": "user id"}, header=False)
    return raw


def _ml_100k_genres(path: Path) -> list[str]:
    """Genre names in column order, from u.genre (``name|index`` lines) or the 100k default."""
    if not path.is_file():
        return list(ML100K_GENRES)
    t = _read_text(path, delimiter="|", names=["genre", "index"], encoding="latin-1")
    names = [str(x) for x in t.column("genre").to_pylist()]
    idx = coerce(t.column("index"), pa.int64())[0].to_pylist()
    if sorted(i for i in idx if i is not None) != list(range(len(names))):
        raise DataError(
            f"{path}: genre indexes {idx} are not 0..{len(names) - 1}; expected one "
            "'name|index' line per genre column of u.item"
        )
    return [n for _, n in sorted(zip(idx, names, strict=True))]


def _ml_dat(d: Path, variant: str) -> _Raw:
    """MovieLens 1M / 10M: ``::``-separated ``.dat`` files."""
    raw = _Raw()
    # "::" is two characters and Arrow's reader splits on one: split on ":" and keep every
    # other field (ids, ratings and timestamps hold no ":").
    cols = ["UserID", "MovieID", "Rating", "Timestamp"]
    data = _read_text(
        d / "ratings.dat",
        delimiter=":",
        names=_with_gaps(cols),
        include=cols,
        types=dict(zip(cols, _RATING_TYPES, strict=True)),
        quoted=False,
    )
    events, names = _rating_events(data, *cols)
    raw.add("events", events, d / "ratings.dat", names, header=False)
    if (d / "movies.dat").is_file():
        raw.add(
            "videos",
            _ml_movies_dat(d / "movies.dat", "latin-1" if variant == "1m" else "utf8"),
            d / "movies.dat",
            {"video_id": "MovieID"},
            header=False,
        )
    if (d / "users.dat").is_file():
        ucols = ["UserID", "Gender", "Age", "Occupation", "Zip-code"]
        user = _read_text(
            d / "users.dat", delimiter=":", names=_with_gaps(ucols), include=ucols, quoted=False
        )
        age_raw = user.column("Age")
        codes, bad = coerce(age_raw, pa.int64())
        known = pc.is_in(codes, pa.array(list(ML1M_AGES), pa.int64()))
        bad |= np.asarray(pc.and_(pc.is_valid(codes), pc.invert(known)), dtype=bool)
        expected = "an age code, one of " + ", ".join(map(str, ML1M_AGES))
        _fail(_bad_values(d / "users.dat", "Age", bad, age_raw, expected, 1))
        labels = pa.array(list(ML1M_AGES.values()), pa.string())
        buckets = pc.take(labels, pc.index_in(codes, pa.array(list(ML1M_AGES), pa.int64())))
        users = pa.table({"user_id": user.column("UserID"), "age_bucket": buckets})
        raw.add("users", users, d / "users.dat", {"user_id": "UserID"}, header=False)
    return raw


def _with_gaps(cols: list[str]) -> list[str]:
    """Column names for a ``::`` file split on ``:``: the empty fields between get dummies."""
    out = []
    for i, c in enumerate(cols):
        out += [c] if i == 0 else [f"_{i}", c]
    return out


def _ml_movies_dat(path: Path, encoding: str) -> pa.Table:
    """``MovieID::Title::Genres`` lines; titles may hold ":" (even "::" is parsed right)."""
    data = path.read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # 10M is mostly UTF-8; latin-1 decodes any bytes
    lines = pa.array(text.rstrip("\r\n").splitlines(), pa.string())
    parts = pc.extract_regex(lines, r"^(?P<id>[^:]*)::(?P<title>.*)::(?P<genres>[^:]*)$")
    ok = np.asarray(pc.is_valid(parts), dtype=bool)
    expected = "a 'MovieID::Title::Genres' line"
    _fail(_bad_values(path, "MovieID::Title::Genres", ~ok, lines, expected, 1))
    return _videos(
        pc.struct_field(parts, "id"),
        pc.struct_field(parts, "title"),
        _genre_lists(pc.struct_field(parts, "genres")),
    )


def _ml_csv(d: Path) -> _Raw:
    """MovieLens 20M / 25M / latest: ``ratings.csv`` and ``movies.csv`` with headers."""
    raw = _Raw()
    cols = ["userId", "movieId", "rating", "timestamp"]
    data = _read_text(
        d / "ratings.csv", delimiter=",", types=dict(zip(cols, _RATING_TYPES, strict=True))
    )
    movies = _read_text(d / "movies.csv", delimiter=",")
    problems = []
    for path, t, need in ((d / "ratings.csv", data, cols), (d / "movies.csv", movies, ["movieId"])):
        present = ", ".join(t.column_names)
        problems += [
            Problem(
                str(path),
                c,
                None,
                f"required column missing (columns present: {present})",
                f"a '{c}' column in the header",
                0,
                1,
                "missing",
            )
            for c in need
            if c not in t.column_names
        ]
    _fail(problems)
    events, names = _rating_events(data, *cols)
    raw.add("events", events, d / "ratings.csv", names)
    n = movies.num_rows
    title = movies.column("title") if "title" in movies.column_names else pa.nulls(n, pa.string())
    genres = movies.column("genres") if "genres" in movies.column_names else pa.nulls(n)
    videos = _videos(movies.column("movieId"), title, _genre_lists(genres))
    raw.add("videos", videos, d / "movies.csv", {"video_id": "movieId"})
    return raw


def _videos(ids: pa.Array, titles: pa.Array, topics: pa.Array) -> pa.Table:
    return pa.table(
        {
            "video_id": ids,
            "title": titles,
            "topics": topics,
            "topic": pc.list_element(topics, 0),  # topics is null, never empty
        }
    )


def _genre_lists(genres: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``"A|B"`` strings to lists [A, B]; no genre (empty, "(no genres listed)") -> null."""
    if isinstance(genres, pa.ChunkedArray):
        genres = genres.combine_chunks()
    genres = genres.cast(pa.string())
    parts = pc.split_pattern(genres, "|")
    flat = pc.utf8_trim_whitespace(pc.list_flatten(parts))
    keep = np.asarray(
        pc.and_(pc.not_equal(flat, ""), pc.invert(pc.is_in(flat, _NO_GENRE))), dtype=bool
    )
    parents = np.asarray(pc.list_parent_indices(parts))
    counts = np.bincount(parents[keep], minlength=len(genres))
    return _lists(counts, flat.filter(pa.array(keep)))


def _flag_lists(flags: np.ndarray, names: list[str]) -> pa.Array:
    """Rows of 0/1 genre flags (n, g) to lists of the flagged names, in column order."""
    flags = flags & ~np.isin(np.asarray(names), _NO_GENRE.to_pylist())
    rows, cols = np.nonzero(flags)  # row-major: each row's genres in column order
    values = pa.array(np.asarray(names, dtype=object)[cols], pa.string())
    return _lists(np.bincount(rows, minlength=flags.shape[0]), values)


def _lists(counts: np.ndarray, values: pa.Array) -> pa.Array:
    """A list<string> array from per-row counts; rows with no values are null."""
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    out = pa.ListArray.from_arrays(offsets, values, mask=pa.array(counts == 0))
    return out.cast(pa.list_(pa.string()))


# --- download ------------------------------------------------------------------------------


def download_movielens(
    name: str,
    dest: str | Path,
    *,
    base_url: str = GROUPLENS_URL,
    timeout_s: float = 60.0,
) -> Path:
    """Download and unpack the MovieLens archive ``name`` (e.g. ``ml-100k``) into ``dest``.

    Returns ``dest/name``, a directory :func:`load` reads (whatever the archive's own folder
    is called: ``ml-10m.zip`` unpacks to ``ml-10M100K``). Does nothing if ``dest/name``
    already holds MovieLens. The archive (``{base_url}/{name}.zip``) is fetched into a
    temporary file, checked to be a zip, unpacked into a temporary sibling and renamed into
    place, so an interrupted download leaves nothing half-written. Raises
    :class:`ConfigError` for a malformed name and :class:`DataError` when the download
    fails or the archive is not a MovieLens zip.
    """
    if not _ML_NAME.fullmatch(name):
        raise ConfigError(
            f"unknown MovieLens name {name!r}; expected a GroupLens archive name like "
            "ml-100k, ml-1m, ml-10m, ml-20m, ml-25m or ml-latest-small"
        )
    dest = Path(dest)
    target = dest / name
    if movielens_variant(target) is not None:
        return target
    if target.exists() and any(target.iterdir()):
        raise DataError(f"{target}: exists but holds no MovieLens files; remove it to download")
    dest.mkdir(parents=True, exist_ok=True)
    url = f"{base_url.rstrip('/')}/{name}.zip"
    fd, part = tempfile.mkstemp(prefix=f".{name}.", suffix=".zip.part", dir=dest)
    tmp: Path | None = None
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout_s) as resp:
                    shutil.copyfileobj(resp, out, 1 << 20)
            except (urllib.error.URLError, OSError) as e:
                raise DataError(f"{url}: download failed ({e})") from e
        if not zipfile.is_zipfile(part):
            with open(part, "rb") as f:
                head = f.read(40)
            raise DataError(f"{url}: not a zip archive (starts with {head!r}); expected {name}.zip")
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=dest))
        try:
            with zipfile.ZipFile(part) as zf:
                # extractall drops absolute paths and ".." (no writing outside tmp).
                zf.extractall(tmp)
        except (zipfile.BadZipFile, OSError) as e:
            raise DataError(f"{url}: corrupt zip archive ({e})") from e
        entries = [e for e in tmp.iterdir() if e.name != "__MACOSX"]
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
        if movielens_variant(root) is None:
            found = ", ".join(sorted(e.name for e in root.iterdir())[:10]) or "nothing"
            raise DataError(
                f"{url}: archive holds no MovieLens ratings file (u.data, ratings.dat or "
                f"ratings.csv + movies.csv) (found: {found})"
            )
        try:
            os.replace(root, target)  # atomic; also replaces an empty directory
        except OSError:
            if movielens_variant(target) is None:  # else another process got there first
                raise
    finally:
        Path(part).unlink(missing_ok=True)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


__all__ = [
    "FORMATS",
    "GROUPLENS_URL",
    "detect_format",
    "download_movielens",
    "load",
    "load_interactions",
    "load_movielens",
    "movielens_variant",
]
