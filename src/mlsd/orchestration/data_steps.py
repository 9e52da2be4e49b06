"""The data steps of a retraining run: ``collect`` (what the run reads, the service's event log
snapshotted) and ``validate`` (the data contract on every new source; bad rows quarantined and
counted; too many stop the run; the rest merged with the base into one dataset)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlsd.data.dataset import Dataset, find_files, from_tables, is_csv, load_dataset, read_table
from mlsd.data.schema import EVENTS
from mlsd.errors import DataError, DataValidationError
from mlsd.orchestration.run import Run, RunStopped, write_json
from mlsd.serving.eventlog import events_table

__all__ = ["collect", "validate"]


def collect(run: Run) -> dict[str, Any]:
    """Name the sources: the base dataset (``cfg.base``, else the champion's training data),
    each new dataset, and a snapshot of the service's event log as Parquet (the log keeps
    growing while the run goes on; the run reads the snapshot)."""
    cfg = run.cfg
    # the champion's whole dataset when its registration kept one (a retrained champion was
    # fitted without the holdout, which its bundle's data therefore lacks), else its bundle's
    base = (
        cfg.base
        or run.registry.dataset_path(run.champion)
        or run.champion_bundle() / "artifacts" / "data"
    )
    if not base.exists():
        raise RunStopped(f"collect: base data {base} not found; pass --base")
    sources: list[dict[str, Any]] = []
    for p in cfg.new:
        files = find_files(p)  # DataError naming the path when it holds no events
        sources.append({"name": str(p), "files": {k: str(f) for k, f in files.items()}})
    if cfg.event_log is not None:
        if not cfg.event_log.is_file():
            raise RunStopped(f"collect: event log {cfg.event_log} not found")
        raw = events_table(cfg.event_log)
        keep = [c for c in EVENTS.names if c in raw.column_names]
        snap = run.path("collected/event_log.parquet")
        snap.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(raw.select(keep) if raw.num_columns else raw, snap)
        sources.append({"name": str(cfg.event_log), "files": {"events": str(snap)}})
    if not sources:
        raise RunStopped("collect: no new data (give --new DATASET and/or --event-log LOG)")
    rows = {
        s["name"]: pq.ParquetFile(s["files"]["events"]).metadata.num_rows
        if not is_csv(s["files"]["events"])
        else None
        for s in sources
    }
    run.say(
        f"collect: base {base}; new: " + ", ".join(f"{k} ({v} events)" for k, v in rows.items())
    )
    return {"base": str(base), "sources": sources, "events": rows}


def _problems(tables: dict[str, pa.Table], files: dict[str, str]) -> list[dict[str, Any]]:
    try:
        from_tables(dict(tables), files, csv={k: is_csv(f) for k, f in files.items()})
    except DataValidationError as e:
        return [
            {
                "file": p.file,
                "column": p.column,
                "row": p.row,
                "problem": f"found {p.found}; expected {p.expected}",
                "count": p.count,
            }
            for p in e.problems
        ]
    return []


def validate(run: Run) -> dict[str, Any]:
    """Each new source against the data contract: rows that fail are quarantined (counted per
    reason, with the problems' file, column and first row, in ``quarantine.json``) and left out;
    a source with more than ``max_bad_share`` bad rows stops the run. The rest is merged with
    the base into the dataset ``validated/``."""
    cfg, collected = run.cfg, run.results["collect"]
    base = load_dataset(collected["base"])
    parts: list[tuple[Dataset, set[str]]] = []
    report: list[dict[str, Any]] = []
    stop: list[str] = []
    for src in collected["sources"]:
        files = src["files"]
        tables = {k: read_table(f) for k, f in files.items()}
        n = tables["events"].num_rows
        ds = from_tables(
            dict(tables), files, repair=True, csv={k: is_csv(f) for k, f in files.items()}
        )
        dropped = dict(ds.report.dropped) if ds.report else {}
        bad = sum(v for k, v in dropped.items() if k.startswith("events"))
        entry = {
            "source": src["name"],
            "file": files["events"],
            "rows": n,
            "bad_rows": bad,
            "bad_share": bad / n if n else 0.0,
            "dropped": dropped,
            "problems": _problems(tables, files) if dropped else [],
        }
        report.append(entry)
        if n and bad / n > cfg.max_bad_share:
            cols = sorted({str(p["column"]) for p in entry["problems"]})
            stop.append(
                f"{files['events']}: {bad:,} of {n:,} rows fail the data contract "
                f"({bad / n:.1%} > {cfg.max_bad_share:.1%}; columns: {', '.join(cols) or '-'}; "
                + "; ".join(f"{k}: {v:,}" for k, v in dropped.items())
                + ")"
            )
        parts.append((ds, set(files)))  # the entity tables it had (others were derived)
    write_json(run.path("quarantine.json"), report)
    if stop:
        raise RunStopped("validate: " + " | ".join(stop), run.path("quarantine.json"))
    merged = _merge(base, parts)
    out = run.path("validated")
    if out.exists():
        shutil.rmtree(out)
    merged.write(out, manifest={"source": "mlsd retrain", "run": run.run_id})
    quarantined = sum(e["bad_rows"] for e in report)
    run.say(f"validate: {merged.events.num_rows:,} events; {quarantined:,} rows quarantined")
    return {"dataset": str(out), "events": merged.events.num_rows, "quarantined": quarantined}


def _union(tables: list[pa.Table | None], key: str) -> pa.Table | None:
    """Rows of every table, one per ``key``: the last table's row wins (newer sources come
    later: a continued catalog describes every video again)."""
    got = [t for t in tables if t is not None and t.num_rows]
    if not got:
        return None
    schema = got[0].schema
    t = pa.concat_tables([g.select(schema.names).cast(schema) for g in got])
    keys = t.column(key).to_numpy()
    # the last occurrence of each key: unique over the reversed keys
    _, first_rev = np.unique(keys[::-1], return_index=True)
    rows = np.sort(len(keys) - 1 - first_rev)
    return t.take(pa.array(rows))


def _merge(base: Dataset, given: list[tuple[Dataset, set[str]]]) -> Dataset:
    """Base and new sources as one dataset: every event (time-ordered); an entity table of a
    source counts only when the source had that file (derived ones hold nulls)."""
    parts = [d for d, _ in given]
    for ds in (base, *parts):
        if ds.id_maps:
            raise DataError(
                "retrain: string ids in a source; the retraining pipeline needs integer ids "
                "(map them once, as mlsd train does, and keep the map)"
            )
    events = pa.concat_tables([d.events.select(EVENTS.names).cast(EVENTS) for d in (base, *parts)])
    ts = pc.cast(events.column("timestamp"), pa.int64()).to_numpy()
    events = events.take(pa.array(np.argsort(ts, kind="stable")))

    def tables(kind: str) -> list[pa.Table | None]:
        return [getattr(base, kind), *(getattr(d, kind) for d, k in given if kind in k)]

    videos = _union(tables("videos"), "video_id")
    users = _union(tables("users"), "user_id")
    creators = _union(tables("creators"), "creator_id")
    assert videos is not None and users is not None
    # an event of a video or user no table describes (the service's log: a new upload):
    # derived rows, as for an interactions-only log
    videos = _with_missing(videos, events, "video_id")
    users = _with_missing(users, events, "user_id")
    return Dataset(events=events, videos=videos, users=users, creators=creators)


def _with_missing(table: pa.Table, events: pa.Table, key: str) -> pa.Table:
    from mlsd.data.dataset import derive_entities

    known = table.column(key)
    missing = events.filter(pc.invert(pc.is_in(events.column(key), value_set=known)))
    if missing.num_rows == 0:
        return table
    kind = "videos" if key == "video_id" else "users"
    extra = derive_entities(missing, kind).cast(table.schema)
    return pa.concat_tables([table, extra])


def dataset_path(run: Run) -> Path:
    return Path(run.results["validate"]["dataset"])
