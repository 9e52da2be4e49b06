"""MovieLens as GroupLens ships it: the 100k, 1M/10M (``::``-separated) and CSV layouts.

Each layout is read into the mlsd schema (see :func:`load_movielens` for the mapping) and
assembled by :class:`~mlsd.data.loaders.assemble.RawTables`, so problems name the MovieLens
file, its own column names (``MovieID``...) and the line. Parsing is vectorised (Arrow CSV
reader and compute kernels): MovieLens 25M has 25 million ratings.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlsd.data._coerce import coerce
from mlsd.data.dataset import Dataset
from mlsd.data.loaders.assemble import RawTables, bad_values, missing_column, raise_if
from mlsd.data.loaders.delimited import read_text, with_gaps
from mlsd.errors import DataError

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


def _add_headerless_ratings(
    raw: RawTables, path: Path, cols: list[str], *, delimiter: str, names: list[str]
) -> None:
    """Add the rating events of the headerless ratings file ``path`` to ``raw``.

    ``names`` are the file's fields, in order; ``cols`` are those holding the user id, item id,
    rating and timestamp, in that order (the other fields are not read).
    """
    data = read_text(
        path,
        delimiter=delimiter,
        names=names,
        include=cols,
        types=dict(zip(cols, _RATING_TYPES, strict=True)),
        quoted=False,
    )
    events, spelled = _rating_events(data, *cols)
    raw.add("events", events, path, spelled, header=False)


def _ml_100k(d: Path) -> RawTables:
    raw = RawTables()
    cols = ["user id", "item id", "rating", "timestamp"]
    _add_headerless_ratings(raw, d / "u.data", cols, delimiter="\t", names=cols)
    if (d / "u.item").is_file():
        genres = _ml_100k_genres(d / "u.genre")
        info = ["movie id", "movie title", "release date", "video release date", "IMDb URL"]
        item = read_text(
            d / "u.item", delimiter="|", names=info + genres, encoding="latin-1", quoted=False
        )
        flags = []
        problems = []
        for g in genres:
            col = item.column(g)
            ok = np.asarray(pc.fill_null(pc.is_in(col, pa.array(["0", "1"])), False), dtype=bool)
            problems += bad_values(d / "u.item", g, ~ok, col, "a genre flag, 0 or 1", 1)
            flags.append(np.asarray(pc.fill_null(pc.equal(col, "1"), False), dtype=bool))
        raise_if(problems)
        topics = _flag_lists(np.column_stack(flags), genres)
        videos = _videos(item.column("movie id"), item.column("movie title"), topics)
        raw.add("videos", videos, d / "u.item", {"video_id": "movie id"}, header=False)
    if (d / "u.user").is_file():
        user = read_text(
            d / "u.user",
            delimiter="|",
            names=["user id", "age", "gender", "occupation", "zip code"],
            encoding="latin-1",
            quoted=False,
        )
        age_raw = user.column("age")
        ages, bad = coerce(age_raw, pa.int64())
        raise_if(bad_values(d / "u.user", "age", bad, age_raw, "an age in years", 1))
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
    t = read_text(path, delimiter="|", names=["genre", "index"], encoding="latin-1")
    names = [str(x) for x in t.column("genre").to_pylist()]
    idx = coerce(t.column("index"), pa.int64())[0].to_pylist()
    if sorted(i for i in idx if i is not None) != list(range(len(names))):
        raise DataError(
            f"{path}: genre indexes {idx} are not 0..{len(names) - 1}; expected one "
            "'name|index' line per genre column of u.item"
        )
    return [n for _, n in sorted(zip(idx, names, strict=True))]


def _ml_dat(d: Path, variant: str) -> RawTables:
    """MovieLens 1M / 10M: ``::``-separated ``.dat`` files."""
    raw = RawTables()
    # "::" is two characters and Arrow's reader splits on one: split on ":" and keep every
    # other field (ids, ratings and timestamps hold no ":").
    cols = ["UserID", "MovieID", "Rating", "Timestamp"]
    _add_headerless_ratings(raw, d / "ratings.dat", cols, delimiter=":", names=with_gaps(cols))
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
        user = read_text(
            d / "users.dat", delimiter=":", names=with_gaps(ucols), include=ucols, quoted=False
        )
        age_raw = user.column("Age")
        codes, bad = coerce(age_raw, pa.int64())
        known = pc.is_in(codes, pa.array(list(ML1M_AGES), pa.int64()))
        bad |= np.asarray(pc.and_(pc.is_valid(codes), pc.invert(known)), dtype=bool)
        expected = "an age code, one of " + ", ".join(map(str, ML1M_AGES))
        raise_if(bad_values(d / "users.dat", "Age", bad, age_raw, expected, 1))
        labels = pa.array(list(ML1M_AGES.values()), pa.string())
        buckets = pc.take(labels, pc.index_in(codes, pa.array(list(ML1M_AGES), pa.int64())))
        users = pa.table({"user_id": user.column("UserID"), "age_bucket": buckets})
        raw.add("users", users, d / "users.dat", {"user_id": "UserID"}, header=False)
    return raw


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
    raise_if(bad_values(path, "MovieID::Title::Genres", ~ok, lines, expected, 1))
    return _videos(
        pc.struct_field(parts, "id"),
        pc.struct_field(parts, "title"),
        _genre_lists(pc.struct_field(parts, "genres")),
    )


def _ml_csv(d: Path) -> RawTables:
    """MovieLens 20M / 25M / latest: ``ratings.csv`` and ``movies.csv`` with headers."""
    raw = RawTables()
    cols = ["userId", "movieId", "rating", "timestamp"]
    data = read_text(
        d / "ratings.csv", delimiter=",", types=dict(zip(cols, _RATING_TYPES, strict=True))
    )
    movies = read_text(d / "movies.csv", delimiter=",")
    problems = []
    for path, t, need in ((d / "ratings.csv", data, cols), (d / "movies.csv", movies, ["movieId"])):
        problems += [
            missing_column(path, c, t.column_names, f"a '{c}' column in the header", 1)
            for c in need
            if c not in t.column_names
        ]
    raise_if(problems)
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
