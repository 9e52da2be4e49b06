"""Loaders: one entry point, :func:`load`, for every kind of input mlsd accepts.

Formats:

- ``mlsd``: a dataset directory or events file in the mlsd schema (see :mod:`mlsd.data.dataset`);
- ``interactions``: bring-your-own data, a Parquet or CSV file of
  ``user_id, item_id (or video_id)[, timestamp][, weight][, rating]``;
- ``movielens``: a MovieLens directory as GroupLens ships it (100k, 1M, 10M, 20M, 25M, latest);
- ``auto``: one of the above, told apart by the files and columns present.

Whatever the format, the tables go through :func:`mlsd.data.dataset.from_tables`, so the same
validation (and ``repair``) applies; problems name the user's file and columns as they are
spelled there (``item_id``, ``MovieID``...), not the schema's names.

Modules: :mod:`.formats` (``load``, format detection), :mod:`.interactions`,
:mod:`.movielens` (with :mod:`.delimited`, the text reader), :mod:`.assemble` (raw tables to a
validated ``Dataset``, user-spelled problems), :mod:`.columns` (reading an interactions file
under its own column names), :mod:`.download` (fetching MovieLens).
"""

from mlsd.data.loaders.download import GROUPLENS_URL, download_movielens
from mlsd.data.loaders.formats import FORMATS, detect_format, load
from mlsd.data.loaders.interactions import load_interactions
from mlsd.data.loaders.movielens import load_movielens, movielens_variant

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
