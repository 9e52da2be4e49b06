"""Events as they travel: request events -> log records -> Arrow tables the model applies.

A **log record** is one JSON object per event: the request's fields (``user_id``,
``video_id``, ``event_type`` and the optional ones), ``timestamp`` as integer Unix
milliseconds (UTC), ``received_ms`` (the service's clock when it accepted the event) and an
``event_id``: the client's own, else ``<Idempotency-Key>:<index in the batch>``, else one the
service draws (a retry of such an event cannot be recognised, so it may be stored twice).

Tables are built with the events schema's own types (``timestamp`` as ``timestamp[ms, UTC]``),
so nothing is guessed from the values: an event's time is the time its client sent.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from mlsd.data.schema import EVENTS, MAX_FUTURE, MIN_TIME

log = logging.getLogger("mlsd.serving")

Record = dict[str, Any]

#: The request fields a record carries besides the ones every record has.
OPTIONAL_FIELDS = ("watch_seconds", "request_id", "position", "surface", "device", "rating")
#: The columns of the tables :func:`records_table` builds (the events schema's, in its order).
TABLE_SCHEMA = EVENTS
MIN_MS = int(MIN_TIME.timestamp()) * 1000


def max_ms(now_ms: int) -> int:
    """The latest event time the data contract accepts at ``now_ms`` (now + MAX_FUTURE)."""
    return now_ms + int(MAX_FUTURE.total_seconds()) * 1000


def event_ids(n: int, given: Sequence[str | None], idempotency_key: str | None) -> list[str]:
    """One id per event of a batch of ``n``: the client's (``given[i]``), else
    ``<idempotency_key>:<i>``, else a random one."""
    out = []
    for i in range(n):
        g = given[i]
        if g is not None:
            out.append(g)
        elif idempotency_key is not None:
            out.append(f"{idempotency_key}:{i}")
        else:
            out.append(uuid.uuid4().hex)
    return out


def out_of_range(timestamps_ms: Sequence[int], now_ms: int) -> int | None:
    """Index of the first time outside the data contract's range ``[MIN_TIME, now +
    MAX_FUTURE]`` (what :func:`mlsd.data.schema.validate` refuses), else None."""
    hi = max_ms(now_ms)
    for i, t in enumerate(timestamps_ms):
        if not MIN_MS <= t <= hi:
            return i
    return None


def range_text(now_ms: int) -> str:
    """The accepted time range, in words (for error messages)."""
    hi = datetime.fromtimestamp(max_ms(now_ms) / 1000, UTC)
    return f"between {MIN_TIME.date()} and {hi.date()}"


def records_table(records: Iterable[Record]) -> tuple[pa.Table, int]:
    """(table, skipped): the records as an events table of :data:`TABLE_SCHEMA` types, and the
    number of records that do not fit it (logged, left out) so that one bad record never stops
    a worker from applying the others."""
    rows = list(records)
    try:
        return pa.Table.from_pylist(rows, schema=TABLE_SCHEMA), 0
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        pass
    good: list[Record] = []
    for r in rows:  # the slow path: find the bad ones
        try:
            pa.Table.from_pylist([r], schema=TABLE_SCHEMA)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as e:
            log.warning("event %s left out: it does not fit the events schema: %s", _id(r), e)
            continue
        good.append(r)
    return pa.Table.from_pylist(good, schema=TABLE_SCHEMA), len(rows) - len(good)


def _id(r: Any) -> str:
    return repr(r.get("event_id")) if isinstance(r, dict) else "(not an object)"
