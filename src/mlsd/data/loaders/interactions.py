"""Bring-your-own interactions: one Parquet or CSV file of ``user_id, item_id, timestamp``."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from mlsd.data.dataset import Dataset, is_csv, read_table
from mlsd.data.loaders.assemble import RawTables, missing_column, raise_if
from mlsd.errors import Problem


def load_interactions(
    path: str | Path,
    *,
    videos: str | Path | None = None,
    users: str | Path | None = None,
    repair: bool = False,
) -> Dataset:
    """Load a bring-your-own interactions file (Parquet or CSV) as a dataset.

    Columns: ``user_id``, ``item_id`` (or ``video_id``), ``timestamp`` (ISO-8601 or epoch
    s/ms/us/ns), optional ``weight`` and ``rating``; other columns are ignored. A row with a
    rating becomes a ``rating`` event; any other row a ``play`` event with unknown (null)
    ``watch_seconds``; ``weight`` is kept. Videos and users are derived from the ids unless
    ``videos``/``users`` files (mlsd schema) are given. Problems name the columns as spelled
    in the file; a missing required column is reported before anything is mapped.
    """
    p = Path(path)
    raw = read_table(p)
    cols = raw.column_names
    header = 1 if is_csv(p) else None
    problems = []
    for need, alt in (("user_id", None), ("item_id", "video_id"), ("timestamp", None)):
        if need not in cols and (alt is None or alt not in cols):
            spelled = f"an '{need}'" if need[0] in "aeiou" else f"a '{need}'"
            if alt is not None:
                spelled += f" (or '{alt}')"
            expected = f"{spelled} column in the header"
            problems.append(missing_column(p, need, cols, expected, header))
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
        "timestamp": raw.column("timestamp"),
    }
    if "rating" in cols:
        rated = pc.is_valid(raw.column("rating"))
        events["event_type"] = pc.if_else(rated, "rating", "play")
        events["rating"] = raw.column("rating")
    else:
        events["event_type"] = pa.repeat(pa.scalar("play"), raw.num_rows)
    if "weight" in cols:
        events["weight"] = raw.column("weight")
    out = RawTables()
    out.add("events", pa.table(events), p, {"video_id": item})
    meta = {"source": "interactions", "path": str(p)}
    return out.dataset(meta, videos=videos, users=users, repair=repair)
