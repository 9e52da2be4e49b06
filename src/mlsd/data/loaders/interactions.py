"""Bring-your-own interactions: one Parquet or CSV file of ``user_id, item_id[, timestamp]``.

A log without a ``timestamp`` column loads too: the schema needs a time in every row, so every
event gets the same placeholder, :data:`NO_TIMESTAMP` (not one per row: a row-order time would
invent an order the rest of the system would trust), and ``meta["timestamps"]`` is ``"none"``.
Whatever reads times treats a log whose times are all equal as having none
(:func:`mlsd.data.timing.has_time_order`): per-user random splits, time features constant.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from mlsd.data.dataset import TEXT_ID_COLUMNS, Dataset, is_csv, read_table
from mlsd.data.loaders.assemble import RawTables, missing_column, raise_if
from mlsd.data.loaders.columns import apply_column_map
from mlsd.errors import Problem

#: The one time given to every event of a log without timestamps: 1990-01-01, the earliest the
#: data contract accepts (:data:`mlsd.data.schema.MIN_TIME`), so it reads as what it is.
NO_TIMESTAMP = datetime(1990, 1, 1, tzinfo=UTC)


def load_interactions(
    path: str | Path,
    *,
    videos: str | Path | None = None,
    users: str | Path | None = None,
    repair: bool = False,
    columns: Mapping[str, str] | None = None,
) -> Dataset:
    """Load a bring-your-own interactions file (Parquet or CSV) as a dataset.

    Columns: ``user_id``, ``item_id`` (or ``video_id``), optional ``timestamp`` (ISO-8601 or
    epoch s/ms/us/ns; without it every event is at :data:`NO_TIMESTAMP` and
    ``meta["timestamps"]`` is ``"none"``), optional ``weight`` and ``rating``; other columns are
    ignored. A row with a rating becomes a ``rating`` event; any other row a ``play`` event with
    unknown (null) ``watch_seconds``; ``weight`` is kept. Videos and users are derived from the
    ids unless ``videos``/``users`` files (mlsd schema) are given. ``weight`` (>= 0) is a count
    or confidence: it scales how much a positive counts, and a row of weight 0 is no positive
    (:mod:`mlsd.data.labels`). ``columns`` maps roles (``user_id``, ``item_id``, ``timestamp``,
    ``weight``, ``rating``) to the file's own column names, e.g. ``{"user_id": "customer"}``
    (:mod:`mlsd.data.loaders.columns`). Problems name the columns as spelled in the file; a
    missing required column is reported before anything is mapped.
    """
    p = Path(path)
    # id columns as text (string ids, see mlsd.data.ids), under the file's own names too
    named = [n for r, n in (columns or {}).items() if r in ("user_id", "item_id")]
    raw = read_table(p, text_columns=(*TEXT_ID_COLUMNS, *(n for n in named if isinstance(n, str))))
    header = 1 if is_csv(p) else None
    present = raw.column_names
    raw, renamed = apply_column_map(raw, columns, p, header)
    cols = raw.column_names
    problems = []
    for need, alt in (("user_id", None), ("item_id", "video_id")):
        if need not in cols and (alt is None or alt not in cols):
            spelled = f"an '{need}'" if need[0] in "aeiou" else f"a '{need}'"
            if alt is not None:
                spelled += f" (or '{alt}')"
            expected = f"{spelled} column in the header"
            problems.append(missing_column(p, need, present, expected, header))
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
    raise_if(problems)
    item = "item_id" if "item_id" in cols else "video_id"
    events = {
        "user_id": raw.column("user_id"),
        "video_id": raw.column(item),
    }
    timed = "timestamp" in cols
    events["timestamp"] = (
        raw.column("timestamp") if timed else pa.repeat(pa.scalar(NO_TIMESTAMP), raw.num_rows)
    )
    if "rating" in cols:
        rated = pc.is_valid(raw.column("rating"))
        events["event_type"] = pc.if_else(rated, "rating", "play")
        events["rating"] = raw.column("rating")
    else:
        events["event_type"] = pa.repeat(pa.scalar("play"), raw.num_rows)
    if "weight" in cols:
        events["weight"] = raw.column("weight")
    out = RawTables()
    out.add("events", pa.table(events), p, {"video_id": item, **renamed})
    meta = {"source": "interactions", "path": str(p)}
    if not timed:
        meta["timestamps"] = "none"
    return out.dataset(meta, videos=videos, users=users, repair=repair)
