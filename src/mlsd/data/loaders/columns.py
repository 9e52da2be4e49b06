"""Column maps: reading an interactions file whose columns have other names than mlsd's.

A map says, for some of the roles in :data:`ROLES` (``user_id``, ``item_id``, ``timestamp``,
``weight``, ``rating``), which column of the file holds it: ``{"user_id": "customer",
"item_id": "product", "timestamp": "ts", "weight": "count"}`` reads a log of
``customer,product,ts,count`` without renaming it. :func:`apply_column_map` renames the mapped
columns to their roles and returns how each role is spelled in the file, so that every problem
found later names the user's column (:class:`~mlsd.data.loaders.assemble.RawTables`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa

from mlsd.data.loaders.assemble import missing_column, raise_if
from mlsd.errors import ConfigError

__all__ = ["ROLES", "apply_column_map", "check_column_map", "mapped_names"]

#: The roles a column map may name, and the schema column each becomes.
ROLES: dict[str, str] = {
    "user_id": "user_id",
    "item_id": "video_id",
    "timestamp": "timestamp",
    "weight": "weight",
    "rating": "rating",
}
# Columns a mapped role makes irrelevant: a file's own 'item_id' or 'video_id' is not read
# when another column was named the item column.
_SAME_ROLE = {"item_id": ("item_id", "video_id")}


def check_column_map(columns: Mapping[str, str] | None) -> dict[str, str]:
    """The map without the roles that keep their own name; a :class:`ConfigError` for an
    unknown role, an empty name, or one column named for two roles."""
    out: dict[str, str] = {}
    for role, name in (columns or {}).items():
        if role not in ROLES:
            raise ConfigError(f"column map: unknown role {role!r}; expected one of {list(ROLES)}")
        if not name:
            raise ConfigError(f"column map: empty column name for {role!r}")
        if name != role:
            out[role] = name
    names = list((columns or {}).values())
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"column map: column {twice[0]!r} is named for more than one role")
    return out


def mapped_names(columns: list[str], column_map: Mapping[str, str] | None) -> list[str]:
    """``columns`` of a file as the roles they play under ``column_map`` (for telling the
    format of a file whose columns have other names)."""
    back = {name: role for role, name in check_column_map(column_map).items()}
    hidden = {c for role in back.values() for c in _SAME_ROLE.get(role, (role,))}
    return [back.get(c, c) for c in columns if c in back or c not in hidden]


def apply_column_map(
    raw: pa.Table, column_map: Mapping[str, str] | None, path: Path, header: int | None
) -> tuple[pa.Table, dict[str, str]]:
    """``raw`` with each mapped column renamed to its role, and ``{schema column: the column
    as spelled in the file}`` for the mapped ones. Columns of the file that carry a mapped
    role's own name are left out (the map says which column to read). Raises
    :class:`DataValidationError` naming every mapped column the file lacks (``header``: the
    line of the header, None for Parquet) and :class:`ConfigError` for a bad map."""
    cmap = check_column_map(column_map)
    if not cmap:
        return raw, {}
    cols = raw.column_names
    raise_if(
        [
            missing_column(
                path, name, cols, f"a '{name}' column in the header (given for {role})", header
            )
            for role, name in cmap.items()
            if name not in cols
        ]
    )
    mapped = set(cmap.values())
    hidden = {c for role in cmap for c in _SAME_ROLE.get(role, (role,))} - mapped
    back = {name: role for role, name in cmap.items()}
    keep = [c for c in cols if c not in hidden]
    table = raw.select(keep).rename_columns([back.get(c, c) for c in keep])
    return table, {ROLES[role]: name for role, name in cmap.items()}
