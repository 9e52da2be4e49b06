"""Downloading a MovieLens archive from GroupLens (or any ``base_url``, e.g. a ``file://`` mirror).

The only network access in mlsd's data layer; everything else reads local files.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from mlsd.data.loaders.movielens import movielens_variant
from mlsd.errors import ConfigError, DataError

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens"
# GroupLens archive names: ml-100k, ml-1m, ml-10m, ml-25m, ml-latest-small...
_ML_NAME = re.compile(r"ml-[a-z0-9]+(-[a-z0-9]+)*")


def download_movielens(
    name: str,
    dest: str | Path,
    *,
    base_url: str = GROUPLENS_URL,
    timeout_s: float = 60.0,
) -> Path:
    """Download and unpack the MovieLens archive ``name`` (e.g. ``ml-100k``) into ``dest``.

    Returns ``dest/name``, a directory :func:`mlsd.data.loaders.load` reads (whatever the
    archive's own folder is called: ``ml-10m.zip`` unpacks to ``ml-10M100K``). Does nothing if
    ``dest/name`` already holds MovieLens. The archive (``{base_url}/{name}.zip``) is fetched into a
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
