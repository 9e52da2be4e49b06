"""String ids: users' and items' own ids (``u_277``, ``sku-000A``, UUIDs) mapped to the int64
ids the rest of mlsd works on.

The rule, applied at the loading boundary (:func:`map_string_ids`, called by
:func:`mlsd.data.dataset.from_tables`), per id space (``user_id``: the events' and the users
table's; ``video_id``: the events' and the catalog's):

- CSV id columns are read as text. When every value is a canonical integer (``0``, ``7``,
  ``-12``: no sign ``+``, no leading zeros, no blanks) and fits int64, the ids are integers, as
  they always were; otherwise they are string ids, so ``007`` and ``7`` are two users.
- Parquet: the column's type decides (an integer type: integers; a string type: string ids).
- When one table of an id space has string ids, the whole space has (an integer id of another
  table stands for its decimal text).

String ids get dense int64 codes ``0 .. n-1`` in the order of the sorted distinct values, kept
in an :class:`IdMap` on the dataset (``Dataset.id_maps``) and in the model bundle. A value the
map does not know (a new user) encodes to a deterministic code outside the dense range, the
same in every process without shared state: a 62-bit hash of its UTF-8 text with bit 62 set.
Integer ids have no map: their logs behave exactly as before.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "ID_SPACES",
    "UNKNOWN_BIT",
    "IdMap",
    "is_canonical_int",
    "map_string_ids",
    "unknown_code",
]

#: id column -> the tables that hold it (the tables of one id space share one map).
ID_SPACES: dict[str, tuple[str, ...]] = {
    "user_id": ("events", "users"),
    "video_id": ("events", "videos"),
}
#: Set in every code of a value the map does not know; dense codes stay below it.
UNKNOWN_BIT = 1 << 62
_LOW_BITS = UNKNOWN_BIT - 1
# A canonical integer: "0", or an optional '-' then a non-zero digit and at most 18 more
# digits (19-digit values are compared with the int64 bounds as well).
_CANONICAL = r"^(0|-?[1-9][0-9]{0,18})$"
_CANONICAL_RE = re.compile(_CANONICAL)
_INT64_MAX = 2**63 - 1


def unknown_code(value: str) -> int:
    """The code of a value no map knows: bit 62 set, the low 62 bits a hash of its UTF-8 text
    (blake2b), so every process and worker agrees without shared state."""
    h = hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest()
    return UNKNOWN_BIT | (int.from_bytes(h, "big") & _LOW_BITS)


def is_canonical_int(text: str) -> bool:
    """Whether ``text`` is an integer written canonically that fits int64 (``"7"``, ``"-3"``;
    not ``"007"``, ``"+7"``, ``" 7"``, ``"7.0"``)."""
    return _CANONICAL_RE.match(text) is not None and abs(int(text)) <= _INT64_MAX


def _plain(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if pa.types.is_large_string(arr.type) or pa.types.is_string_view(arr.type):
        arr = arr.cast(pa.string())
    return arr


def _as_text(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Values as strings (empty text is a missing value); non-text values by their str()."""
    arr = _plain(arr)
    if not pa.types.is_string(arr.type):
        arr = pc.cast(arr, pa.string())
    return pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)


class IdMap:
    """A bijection between string ids and dense int64 codes ``0 .. len - 1`` (see the module
    docstring). ``values[code]`` is the original id of ``code``.

    ``encode`` maps ids to codes (an unknown id to :func:`unknown_code`); ``decode`` maps dense
    codes back to the ids (a code outside the dense range raises ``KeyError``: a hash cannot
    be reversed). ``code_of``/``value_of`` do the same for one value, with a dict lookup (the
    serving path). Saved as a two-column table (``to_table``/``from_table``).
    """

    def __init__(self, values: pa.Array | Sequence[str]) -> None:
        arr = values if isinstance(values, pa.Array) else pa.array(list(values), pa.string())
        arr = _plain(arr)
        if not pa.types.is_string(arr.type):
            raise TypeError(f"IdMap values: expected strings, got {arr.type}")
        if arr.null_count:
            raise ValueError("IdMap values: a missing value cannot be an id")
        if len(pc.unique(arr)) != len(arr):
            raise ValueError("IdMap values: duplicated ids")
        self.values: pa.Array = arr
        self._list: list[str] | None = None
        self._index: dict[str, int] | None = None

    @classmethod
    def build(cls, columns: Iterable[pa.Array | pa.ChunkedArray]) -> IdMap:
        """The map of the distinct non-missing values of ``columns`` (as text), sorted."""
        parts = [pc.drop_null(_as_text(c)) for c in columns]
        both = pa.concat_arrays(parts) if parts else pa.array([], pa.string())
        return cls(pc.unique(both).sort())

    def __len__(self) -> int:
        return len(self.values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and self.values.equals(other.values)

    def __repr__(self) -> str:
        return f"IdMap({len(self):,} ids)"

    @property
    def as_list(self) -> list[str]:
        """The ids as a Python list, indexed by code (built once)."""
        if self._list is None:
            self._list = self.values.to_pylist()
        return self._list

    @property
    def index(self) -> dict[str, int]:
        """id -> code (built once, on first use)."""
        if self._index is None:
            self._index = {v: i for i, v in enumerate(self.as_list)}
        return self._index

    # -- one value (the serving path) ---------------------------------------------------------
    def prepare(self) -> None:
        """Build the lookup table now (a service does before its first request)."""
        _ = self.index

    def code_of(self, value: object) -> int:
        """The code of one id (its str() when not a string); unknown ids hash."""
        text = value if isinstance(value, str) else str(value)
        code = self.index.get(text)
        return unknown_code(text) if code is None else code

    def value_of(self, code: int) -> str:
        """The id of a dense code; ``KeyError`` for any other code."""
        if not 0 <= code < len(self.values):
            raise KeyError(f"code {code} is not in this id map ({len(self):,} ids)")
        return self.as_list[code]

    # -- arrays ---------------------------------------------------------------------------
    def encode_arrow(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """int64 codes of ``values`` (as text; missing values stay missing)."""
        text = _as_text(values)
        pos = pc.index_in(text, value_set=self.values)
        missing = pc.and_(pc.is_null(pos), pc.is_valid(text))
        codes = pc.cast(pos, pa.int64())
        if not pc.any(missing).as_py():
            return codes
        out = np.asarray(codes.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64).copy()
        rows = np.flatnonzero(np.asarray(missing.to_numpy(zero_copy_only=False), dtype=bool))
        unknown = text.take(pa.array(rows)).to_pylist()
        cache: dict[str, int] = {}
        for r, v in zip(rows.tolist(), unknown, strict=True):
            c = cache.get(v)
            if c is None:
                c = cache[v] = unknown_code(v)
            out[r] = c
        return pa.array(out, pa.int64(), mask=~np.asarray(pc.is_valid(text)))

    def encode(self, values: pa.Array | pa.ChunkedArray | Sequence[Any] | np.ndarray) -> np.ndarray:
        """``int64[n]`` codes of ``values`` (strings, or other values by their str());
        ``ValueError`` for a missing value."""
        if not isinstance(values, pa.Array | pa.ChunkedArray):
            values = pa.array([v if v is None or isinstance(v, str) else str(v) for v in values])
        codes = self.encode_arrow(values)
        if codes.null_count:
            raise ValueError("a missing id cannot be encoded")
        return np.asarray(codes.to_numpy(zero_copy_only=False), dtype=np.int64)

    def decode_arrow(self, codes: np.ndarray | pa.Array | Sequence[int]) -> pa.Array:
        """The ids (a string array) of dense ``codes``; ``KeyError`` for any other code."""
        c = np.asarray(codes, dtype=np.int64)
        bad = (c < 0) | (c >= len(self.values))
        if bad.any():
            raise KeyError(
                f"code {int(c[bad][0])} is not in this id map ({len(self):,} ids): "
                "an id the map did not know cannot be decoded"
            )
        return self.values.take(pa.array(c))

    def decode(self, codes: np.ndarray | pa.Array | Sequence[int]) -> list[str]:
        """The original ids (``str``) of dense ``codes``; ``KeyError`` for any other code."""
        return self.decode_arrow(codes).to_pylist()

    # -- persistence ----------------------------------------------------------------------
    def to_table(self) -> pa.Table:
        """``value`` (string) and ``code`` (int64): one row per id, in code order."""
        codes = pa.array(np.arange(len(self), dtype=np.int64))
        return pa.table({"value": self.values, "code": codes})

    @classmethod
    def from_table(cls, table: pa.Table) -> IdMap:
        """The map saved by :meth:`to_table`; ``ValueError`` when it is not one."""
        if "value" not in table.column_names or "code" not in table.column_names:
            raise ValueError(f"an id map has columns value and code; found {table.column_names}")
        codes = np.asarray(table.column("code").to_numpy(), dtype=np.int64)
        if not np.array_equal(codes, np.arange(len(codes))):
            raise ValueError("an id map's codes are 0 .. n-1 in order")
        return cls(_plain(table.column("value")))


def _id_kind(arr: pa.Array | pa.ChunkedArray, typed: bool) -> str:
    """``"int"`` (integer ids, or nothing to tell), ``"text-int"`` (text, every value a
    canonical integer), ``"str"`` (string ids) or ``"other"`` (left to validation).
    ``typed``: the column's type is the writer's (Parquet), so a string type means strings."""
    arr = _plain(arr)
    t = arr.type
    if pa.types.is_integer(t) or pa.types.is_null(t):
        return "int"
    if not pa.types.is_string(t):
        return "other"
    if typed:
        return "str"
    text = pc.drop_null(_as_text(arr))
    if len(text) == 0:
        return "int"
    canonical = pc.match_substring_regex(text, _CANONICAL)
    if not pc.all(canonical).as_py():
        return "str"
    # 19-digit values: the regex allows them; those beyond int64 are not integers
    long = pc.filter(text, pc.greater_equal(pc.utf8_length(text), 19))
    if any(abs(int(v)) > _INT64_MAX for v in long.to_pylist()):
        return "str"
    return "text-int"


def map_string_ids(
    tables: Mapping[str, pa.Table | None], typed: Collection[str] = ()
) -> tuple[dict[str, pa.Table | None], dict[str, IdMap]]:
    """``(tables, maps)``: the raw tables with the id columns of every string id space replaced
    by their int64 codes (missing values stay missing), and the map of each such space (keyed
    by the id column). Tables whose ids are integers are returned as they are, with no map.
    ``typed``: the kinds whose tables were read from Parquet (their column types decide);
    other tables' text columns are judged by their values (CSV)."""
    out = dict(tables)
    maps: dict[str, IdMap] = {}
    for column, kinds in ID_SPACES.items():
        cols = {
            k: t.column(column)
            for k in kinds
            if (t := tables.get(k)) is not None and column in t.column_names
        }
        if not any(_id_kind(c, k in typed) == "str" for k, c in cols.items()):
            continue
        m = maps[column] = IdMap.build(cols.values())
        for k, c in cols.items():
            t = out[k]
            assert t is not None
            i = t.column_names.index(column)
            out[k] = t.set_column(i, column, m.encode_arrow(c))
    return out, maps
