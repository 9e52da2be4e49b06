"""Fingerprints of training data and code, recorded in model bundle manifests.

``fingerprint_table`` hashes Arrow tables canonically (independent of chunking, slicing and
dictionary encoding); ``fingerprint_files`` hashes files by name, size and content;
``code_version`` is ``mlsd.__version__`` plus the git revision of a checkout.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlsd._version import __version__
from mlsd.errors import DataError

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fingerprint_files(paths: Iterable[str | Path]) -> str:
    """``sha256:<hex>`` over the names, sizes and contents of files (directories recursively).

    Names are taken relative to each given path (a file contributes its base name), so the
    fingerprint does not depend on where the data lies, only on what it is.
    """
    entries: list[tuple[str, Path]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            entries += [
                (f"{p.name}/{f.relative_to(p).as_posix()}", f)
                for f in sorted(p.rglob("*"))
                if f.is_file()
            ]
        elif p.is_file():
            entries.append((p.name, p))
        else:
            raise DataError(f"{p}: no such file or directory (fingerprinting the training data)")
    h = hashlib.sha256(b"mlsd-files-v1\n")
    for name, f in sorted(entries):
        h.update(f"{name}\0{f.stat().st_size}\0{sha256_file(f)}\n".encode())
    return "sha256:" + h.hexdigest()


def _hash_array(h: Any, arr: pa.Array) -> None:
    n = len(arr)
    null = np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    h.update(np.packbits(null).tobytes())
    t = arr.type
    if pa.types.is_boolean(t):
        h.update(np.packbits(pc.fill_null(arr, False).to_numpy(zero_copy_only=False)).tobytes())
    elif pa.types.is_primitive(t):  # fixed width: hash the values, zeroed under nulls
        width = t.bit_width // 8
        buf = arr.buffers()[1]
        vals = np.frombuffer(buf, dtype=np.uint8)[
            arr.offset * width : (arr.offset + n) * width
        ].reshape(n, width)
        if null.any():
            vals = vals.copy()
            vals[null] = 0
        h.update(vals.tobytes())
    elif (
        pa.types.is_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_string(t)
        or (pa.types.is_large_binary(t))
    ):
        filled = pc.fill_null(
            arr, "" if pa.types.is_string(t) or pa.types.is_large_string(t) else b""
        )
        h.update(pc.binary_length(filled).to_numpy(zero_copy_only=False).astype("<i8").tobytes())
        off_dtype = (
            np.int64 if pa.types.is_large_string(t) or pa.types.is_large_binary(t) else (np.int32)
        )
        offsets = np.frombuffer(filled.buffers()[1], dtype=off_dtype)[
            filled.offset : filled.offset + n + 1
        ]
        data = filled.buffers()[2]
        if n and data is not None:
            h.update(memoryview(data)[int(offsets[0]) : int(offsets[-1])])
    else:  # nested and rare types: slow but canonical
        h.update(json.dumps(arr.to_pylist(), default=str, sort_keys=True).encode())


def fingerprint_table(table: pa.Table | Mapping[str, pa.Table]) -> str:
    """``sha256:<hex>`` of an Arrow table's schema and values (or of several named tables).

    Canonical: independent of chunking, slicing offsets and dictionary encoding of the same
    values; null slots hash the same whatever bytes lie under them.
    """
    tables = {"": table} if isinstance(table, pa.Table) else dict(table)
    h = hashlib.sha256(b"mlsd-table-v1\n")
    for name in sorted(tables):
        t = tables[name]
        h.update(f"table {name}\0{t.num_rows}\n".encode())
        for field, col in zip(t.schema, t.columns, strict=True):
            typ = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
            h.update(f"column {field.name}\0{typ}\n".encode())
            if pa.types.is_dictionary(field.type):
                col = pa.chunked_array([c.dictionary_decode() for c in col.chunks], type=typ)
            _hash_array(h, col.combine_chunks())  # one array: chunking must not matter
    return "sha256:" + h.hexdigest()


def fingerprint_arrays(parts: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of named values: numpy arrays (dtype, shape and bytes), ``bytes``,
    strings and JSON-serialisable values (serialised with sorted keys; other objects by
    ``str``). Names are hashed with the values, in sorted order, so the digest does not depend
    on the mapping's order."""
    h = hashlib.sha256(b"mlsd-arrays-v1\n")
    for name in sorted(parts):
        v = parts[name]
        if isinstance(v, np.ndarray):
            a = np.ascontiguousarray(v)
            h.update(f"array {name}\0{a.dtype.str}\0{a.shape}\n".encode())
            h.update(a.data)  # C-contiguous: hashed in place, no copy
        elif isinstance(v, bytes | bytearray):
            h.update(f"bytes {name}\0{len(v)}\n".encode())
            h.update(v)
        else:
            text = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
            h.update(f"value {name}\0{len(text)}\n{text}".encode())
    return "sha256:" + h.hexdigest()


def code_version() -> str:
    """``mlsd.__version__``, plus ``+g<git rev>`` (and ``.dirty``) when run from a checkout."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=here,
            timeout=5,
        ).stdout.strip()
        if not rev:
            return __version__
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
            capture_output=True,
            text=True,
            check=False,
            cwd=here.parent,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{rev}" + (".dirty" if dirty else "")
