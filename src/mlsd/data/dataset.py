"""The ``Dataset``: users, creators, videos and events tables that passed validation.

A dataset on disk is a directory with ``events.parquet`` (or ``.csv``) and optionally
``videos``, ``users`` and ``creators`` files of the same kinds. Writing is atomic: files are
written into a temporary sibling directory which then replaces the target, so a crash never
leaves a half-written dataset behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mlsd.data.ids import IdMap, map_string_ids
from mlsd.data.schema import SCHEMAS, ValidationReport, validate
from mlsd.errors import DataError
from mlsd.memory import release_memory

KINDS: tuple[str, ...] = ("events", "videos", "users", "creators")
SUFFIXES: tuple[str, ...] = (".parquet", ".pq", ".csv", ".csv.gz", ".tsv")
#: Columns read as text from CSV whatever they hold: ids, whose kind (integer or string ids)
#: is decided over the whole column (see :mod:`mlsd.data.ids`), never guessed per block.
TEXT_ID_COLUMNS: tuple[str, ...] = ("user_id", "video_id", "item_id")


@dataclass
class Dataset:
    """Validated tables, each conforming exactly to its schema in :mod:`mlsd.data.schema`.

    ``videos`` and ``users`` are never None after :func:`load_dataset`: when the input has no
    such file they are derived from the ids in ``events`` (other columns null), so that an
    interactions-only log is a complete dataset.

    ``id_maps`` holds, for an id column (``user_id``, ``video_id``) whose input ids were
    strings, the :class:`~mlsd.data.ids.IdMap` from those ids to the int64 codes the tables
    hold; it is empty when the ids were integers.
    """

    events: pa.Table
    videos: pa.Table
    users: pa.Table
    creators: pa.Table | None = None
    files: dict[str, str] = field(default_factory=dict)
    report: ValidationReport | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    id_maps: dict[str, IdMap] = field(default_factory=dict)

    def tables(self) -> dict[str, pa.Table]:
        out = {"events": self.events, "videos": self.videos, "users": self.users}
        if self.creators is not None:
            out["creators"] = self.creators
        return out

    def write(self, out_dir: str | Path, *, manifest: dict[str, Any] | None = None) -> Path:
        """Write every table as Parquet (zstd) into ``out_dir`` atomically; returns the path.

        All files are first written and synced in a temporary sibling directory, then moved
        into place, so a failure while writing leaves the previous files untouched and no
        temporary directory behind. Existing files of the same names in ``out_dir`` are
        replaced; a ``<kind>.parquet`` or ``manifest.json`` left from an earlier dataset that
        this one does not have is removed (reading the directory back must give this dataset);
        other files are left alone. Output is deterministic: the same tables give
        byte-identical files. Ids of a dataset with ``id_maps`` are written as the original
        string ids, so that reading the directory back maps them again.
        """
        target = Path(out_dir)
        out = target.resolve()
        if out.exists() and not out.is_dir():
            raise DataError(f"{out}: exists and is not a directory; expected a directory")
        out.parent.mkdir(parents=True, exist_ok=True)
        tables = {k: self._original_ids(t) for k, t in self.tables().items()}
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            for kind, t in tables.items():
                pq.write_table(
                    t, tmp / f"{kind}.parquet", compression="zstd", row_group_size=1 << 20
                )
            if manifest is not None:
                (tmp / "manifest.json").write_text(
                    json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n"
                )
            for f in tmp.iterdir():
                _fsync(f)
            out.mkdir(parents=True, exist_ok=True)
            for f in sorted(tmp.iterdir()):
                os.replace(f, out / f.name)
            stale = [f"{k}.parquet" for k in KINDS if k not in tables]
            if manifest is None:
                stale.append("manifest.json")
            for name in stale:
                (out / name).unlink(missing_ok=True)
            _fsync(out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target

    def _original_ids(self, table: pa.Table) -> pa.Table:
        """``table`` with each mapped id column decoded to the original (string) ids."""
        for column, m in self.id_maps.items():
            if column in table.column_names:
                codes = table.column(column).combine_chunks()
                ids = m.decode_arrow(codes.fill_null(0))
                if codes.null_count:
                    ids = pc.if_else(pc.is_valid(codes), ids, pa.scalar(None, pa.string()))
                i = table.column_names.index(column)
                table = table.set_column(i, pa.field(column, pa.string()), ids)
        return table


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_table(path: str | Path, *, text_columns: Iterable[str] = TEXT_ID_COLUMNS) -> pa.Table:
    """Read one Parquet or CSV/TSV file as-is (types are fixed later by validation).

    CSV columns named in ``text_columns`` (the id columns) are read as text, whatever they
    hold: whether ids are integers is decided later over the whole column (a loader whose ids
    lie in columns of other names passes those). Raises :class:`DataError` naming the file
    when it is missing, empty or unreadable.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file")
    if p.is_dir():
        raise DataError(f"{p}: is a directory; expected a .parquet or .csv file")
    if p.stat().st_size == 0:
        raise DataError(f"{p}: empty file (0 bytes); expected a header and at least one row")
    name = p.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pq.read_table(p)
        if name.endswith((".csv", ".csv.gz", ".tsv", ".txt")):
            delim = "\t" if name.endswith(".tsv") else ","
            try:
                return _read_csv(p, delim, text=text_columns)
            except pa.ArrowInvalid as e:
                if "conversion error" not in str(e).lower():
                    raise
                # pyarrow guesses column types from the first block; a bad value further down
                # fails the whole read without a row number. Read every column as text instead
                # so that validation can locate the bad row and name what was expected.
                return _read_csv(p, delim, all_text=True)
    except (pa.ArrowException, OSError) as e:
        if "Empty CSV file" in str(e):
            raise DataError(
                f"{p}: empty file (no header line); expected a header and at least one row"
            ) from e
        kind = "Parquet" if name.endswith((".parquet", ".pq")) else "CSV"
        raise DataError(f"{p}: cannot be read as {kind}: {e}") from e
    raise DataError(f"{p}: unsupported file type; expected .parquet, .csv, .csv.gz or .tsv")


def _read_csv(p: Path, delim: str, *, all_text: bool = False, text: Iterable[str] = ()) -> pa.Table:
    parse = pacsv.ParseOptions(delimiter=delim)
    # ids as text: "007" and "7" stay apart until the whole column is seen (mlsd.data.ids)
    types: dict[str, pa.DataType] = dict.fromkeys(text, pa.string())
    if all_text:
        with pacsv.open_csv(p, parse_options=parse) as reader:
            types = {n: pa.string() for n in reader.schema.names}
    return pacsv.read_csv(
        p,
        parse_options=parse,
        convert_options=pacsv.ConvertOptions(
            column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False
        ),
    )


def is_csv(path: str | Path) -> bool:
    return not str(path).lower().endswith((".parquet", ".pq"))


def find_files(path: str | Path) -> dict[str, Path]:
    """Map table kinds to files: a directory holds ``<kind>.<suffix>``; a file is the events."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or directory")
    if p.is_file():
        return {"events": p}
    found: dict[str, Path] = {}
    for kind in KINDS:
        for suf in SUFFIXES:
            f = p / f"{kind}{suf}"
            if f.exists():
                found[kind] = f
                break
    if "events" not in found:
        listing = ", ".join(sorted(x.name for x in p.iterdir())[:10]) or "nothing"
        raise DataError(
            f"{p}: no events file; expected events.parquet or events.csv (found: {listing})"
        )
    return found


def derive_entities(events: pa.Table, kind: str) -> pa.Table:
    """A videos or users table holding only the distinct ids seen in ``events``."""
    idc = "video_id" if kind == "videos" else "user_id"
    ids = pc.unique(events.column(idc)).sort()
    schema = SCHEMAS[kind]
    arrays = [ids if f.name == idc else pa.nulls(len(ids), f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def from_tables(
    tables: dict[str, pa.Table | None],
    files: dict[str, str] | None = None,
    *,
    repair: bool = False,
    csv: dict[str, bool] | None = None,
) -> Dataset:
    """Validate raw tables and assemble a :class:`Dataset` (deriving missing entity tables).

    String user and video ids are mapped to int64 codes first (``Dataset.id_maps``; see
    :mod:`mlsd.data.ids`); problems name the original ids."""
    if tables.get("events") is None:
        given = ", ".join(k for k, t in tables.items() if t is not None) or "none"
        raise DataError(f"no events table (tables given: {given}); a dataset needs events")
    parquet = [k for k, f in (files or {}).items() if not is_csv(f)]
    mapped, maps = map_string_ids(tables, typed=parquet)
    conformed, report = validate(mapped, files, repair=repair, csv=csv, id_maps=maps)
    ev = conformed["events"]
    return Dataset(
        events=ev,
        videos=conformed["videos"] if "videos" in conformed else derive_entities(ev, "videos"),
        users=conformed["users"] if "users" in conformed else derive_entities(ev, "users"),
        creators=conformed.get("creators"),
        files=dict(files or {}),
        report=report,
        id_maps=maps,
    )


def load_dataset(
    path: str | Path,
    *,
    videos: str | Path | None = None,
    users: str | Path | None = None,
    creators: str | Path | None = None,
    repair: bool = False,
) -> Dataset:
    """Load and validate a dataset in the mlsd schema (a directory, or an events file).

    Explicit ``videos``/``users``/``creators`` paths override files found in the directory.
    Raises :class:`DataError` / :class:`DataValidationError` on bad input (see ``validate``).
    """
    found = find_files(path)
    for kind, extra in (("videos", videos), ("users", users), ("creators", creators)):
        if extra is not None:
            found[kind] = Path(extra)
    raw = {k: read_table(f) for k, f in found.items()}
    files = {k: str(f) for k, f in found.items()}
    ds = from_tables(raw, files, repair=repair, csv={k: is_csv(f) for k, f in found.items()})
    del raw
    release_memory()  # validation's temporaries, which Arrow's pool would otherwise keep
    if Path(path).is_dir() and (Path(path) / "manifest.json").exists():
        ds.meta = read_manifest(path)
    return ds


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The ``manifest.json`` of a dataset directory; :class:`DataError` naming the file when
    it is missing or not a JSON object."""
    mf = Path(directory) / "manifest.json"
    if not mf.is_file():
        raise DataError(f"{mf}: not found; expected a dataset directory (mlsd simulate writes one)")
    try:
        meta = json.loads(mf.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{mf}: not valid JSON ({e}); expected a dataset manifest") from e
    if not isinstance(meta, dict):
        raise DataError(f"{mf}: a JSON {type(meta).__name__}; expected a dataset manifest object")
    return meta
