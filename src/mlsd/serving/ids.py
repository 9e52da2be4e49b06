"""Ids at the HTTP edge: a request's ``user_id``/``video_id`` (an integer, or a string for a
model trained on string ids) to the int64 id the model works on, and back for the answer.

A model trained on string ids carries their maps (``model.id_maps``: ``user_id`` and
``video_id`` -> :class:`~mlsd.data.ids.IdMap`); a model of integer ids has none. Resolving an
id is then:

- string ids: a string, or an integer taken as its decimal text, is looked up in the map (a
  dict lookup); an unknown user gets the map's deterministic code for unknown ids (a cold
  user, the same code in every worker); answers carry the ids as strings;
- integer ids: an integer is itself; a string is refused with a 422 naming the field (in a
  path, where everything is text, a canonical integer in range is taken as that integer).

Event log records keep the ids as the request gave them (resolved to the model's kind of id,
never to codes, which belong to one model): :func:`encode_records` maps them when a worker
applies them to its model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import orjson

from mlsd.data.ids import IdMap, is_canonical_int
from mlsd.serving.schemas import MAX_ID

__all__ = ["Id", "IdRefused", "encode_records", "id_maps", "names", "resolve", "show"]

#: An id as a request gives it and as an answer carries it.
Id = int | str


class IdRefused(Exception):
    """A request id the model cannot take (a string for a model of integer ids, an id out of
    range): a 422 whose body names the field, as the app's validation errors do."""

    def __init__(self, loc: tuple[str | int, ...], msg: str, kind: str) -> None:
        super().__init__(msg)
        self.loc, self.msg, self.kind = loc, msg, kind

    def detail(self) -> list[dict[str, object]]:
        return [{"loc": list(self.loc), "msg": self.msg, "type": self.kind}]

    def body(self) -> bytes:
        return orjson.dumps({"error": "invalid request", "detail": self.detail()})


def id_maps(model: object) -> Mapping[str, IdMap]:
    """The model's id maps (none for a model of integer ids, or one without the attribute)."""
    return getattr(model, "id_maps", None) or {}


def resolve(
    maps: Mapping[str, IdMap],
    column: str,
    value: Id,
    loc: tuple[str | int, ...],
    *,
    path: bool = False,
) -> tuple[int, Id]:
    """``(code, answer id)`` of a request's ``value`` for ``column`` (``user_id`` or
    ``video_id``): the int64 the model knows it by, and the id as answers carry it (a string
    for a model of string ids, else the integer). ``path``: the value comes from a URL path
    (text). Raises :class:`IdRefused` naming ``loc``."""
    m = maps.get(column)
    if m is not None:
        text = value if type(value) is str else str(value)
        try:
            return m.code_of(text), text
        except UnicodeEncodeError:  # a lone surrogate ("\ud800") is no UTF-8 text
            raise IdRefused(loc, "Input should be valid UTF-8 text", "string_unicode") from None
    if type(value) is int:
        return value, value
    if path and type(value) is str and is_canonical_int(value) and 0 <= int(value) <= MAX_ID:
        return int(value), int(value)
    if path and type(value) is str and is_canonical_int(value):
        raise IdRefused(loc, f"Input should be between 0 and {MAX_ID}", "int_range")
    raise IdRefused(
        loc, "Input should be a valid integer (this model's ids are integers)", "int_type"
    )


def names(maps: Mapping[str, IdMap], column: str) -> list[str] | None:
    """The original ids of ``column`` indexed by code (None for integer ids): what answers
    carry instead of the codes."""
    m = maps.get(column)
    return m.as_list if m is not None else None


def show(names_: list[str] | None, code: int) -> Id:
    """The answer id of ``code``: its original id when the model has ``names_``, else itself."""
    if names_ is not None and 0 <= code < len(names_):
        return names_[code]
    return int(code)


def encode_records(
    maps: Mapping[str, IdMap], records: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Log records (ids as the requests gave them) with their ids mapped to the model's codes;
    ``records`` themselves when the model has no maps. A value that cannot be mapped is left
    as it is (the events table then leaves its record out, logged)."""
    if not maps:
        return records
    out = []
    for r in records:
        r = dict(r)
        for column, m in maps.items():
            v = r.get(column)
            if isinstance(v, str | int) and not isinstance(v, bool):
                with contextlib.suppress(UnicodeEncodeError):
                    r[column] = m.code_of(v)
        out.append(r)
    return out
