"""Saving a trained two-stage pipeline and restoring it, in formats that cannot execute code
on load (Parquet, JSON, LightGBM text, torch state dicts read with ``weights_only``, ``.npy``).

Layout of the directory (a model bundle's ``artifacts/``)::

    recommender.json    format, version, config, fitted metadata, data fingerprints
    data/*.parquet      the training log, from which the cheap sources, the history and the
                        online features are rebuilt deterministically on load
    data/ids.<column>.parquet
                        the id map of a column whose ids were strings (``user_id``,
                        ``video_id``; :class:`~mlsd.data.ids.IdMap`), absent for integer ids
    <source name>/      the state of each source that is saved rather than refitted
                        (:class:`~mlsd.retrieval.base.PersistentSource`: two-tower, ALS,
                        co-visitation)
    ranker/             the ranker: ranker.json (its kind, calibrators) and LightGBM text or
                        a torch state dict (model.pt)

Format 2 records the version (a fingerprint of the content, :mod:`.version`) and which sources
were saved. Format 1 (mlsd before the stages redesign) is still read: its version did not
identify its content, so a new one is computed from the loaded content.
"""

from __future__ import annotations

import copy
import gc
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mlsd.data.dataset import Dataset
from mlsd.data.ids import ID_SPACES, IdMap
from mlsd.data.labels import positives as label_positives
from mlsd.errors import DataError
from mlsd.pipeline.data import ids
from mlsd.pipeline.two_stage import Stats, TwoStage
from mlsd.pipeline.version import data_fingerprints
from mlsd.ranking.factory import load_ranker
from mlsd.retrieval import History
from mlsd.retrieval.protocols import CandidateSource, PersistentSource

__all__ = ["FORMAT", "META", "read_meta", "restore", "save"]

FORMAT = 2
READABLE = (1, 2)
META = "recommender.json"
TABLES = ("events", "videos", "users")


def save(p: TwoStage, directory: str | Path) -> None:
    """Write fitted ``p`` into ``directory`` (see the module docstring)."""
    d = Path(directory)
    (d / "data").mkdir(parents=True, exist_ok=True)
    for name, table in p.dataset_.tables().items():
        pq.write_table(table, d / "data" / f"{name}.parquet", compression="zstd")
    for column, m in p.dataset_.id_maps.items():
        pq.write_table(m.to_table(), d / "data" / f"ids.{column}.parquet", compression="zstd")
    saved = []
    for src in p.sources_:
        if isinstance(src, PersistentSource):
            src.save(d / src.name)
            saved.append(src.name)
    p.ranker_.save(d / "ranker")
    meta = {
        "format": FORMAT,
        "version": p.version,
        "config": p.get_params(),
        "now_ms": p.now_ms_,
        "feature_names": p.ranking.feature_names_,
        "retrieval_feature_names": p.retrieval.feature_names_,
        "source_names": list(p.source_names_),
        "saved_sources": saved,
        "data_fingerprints": p.data_fingerprints_,
        "stats": {
            "trained_at": p.stats.trained_at,
            "seconds": p.stats.seconds,
            "counts": p.stats.counts,
        },
    }
    (d / META).write_text(json.dumps(meta, indent=2) + "\n")


def read_meta(directory: str | Path) -> dict[str, Any]:
    """The metadata of a saved pipeline; :class:`DataError` naming the file and what to do
    when it is unreadable or of a format this mlsd cannot read."""
    path = Path(directory) / META
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read the model metadata ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") not in READABLE:
        got = meta.get("format") if isinstance(meta, dict) else None
        raise DataError(
            f"{path}: model format {got!r}; this mlsd reads formats "
            f"{', '.join(map(str, READABLE))}: retrain the model with this mlsd (`mlsd train`)"
        )
    return meta


def restore(p: TwoStage, directory: str | Path, meta: dict[str, Any]) -> None:
    """Load into ``p`` (constructed with the saved config, unfitted) the state saved in
    ``directory`` with metadata ``meta``; raises :class:`DataError` naming what is wrong."""
    d = Path(directory)
    tables = {}
    for name in TABLES:
        path = d / "data" / f"{name}.parquet"
        try:
            tables[name] = pq.read_table(path)
        except (OSError, pa.ArrowInvalid) as e:
            raise DataError(f"{path}: cannot read ({e})") from e
    ds = Dataset(**tables, id_maps=_read_id_maps(d / "data"))
    p.dataset_ = ds
    p.now_ms_ = int(meta["now_ms"])
    pos = label_positives(ds.events, ds.videos, p.config.label, include_likes=True)
    history = History.from_positives(pos, max_len=None, known_video_ids=ids(ds.videos, "video_id"))
    if meta["format"] >= 2:
        saved = set(meta["saved_sources"])
    else:  # format 1 saved the two-tower and ALS, and co-visitation once it could
        saved = {s.name for s in p.retrieval.prototypes if (d / s.name).is_dir()}
    sources: list[CandidateSource] = []
    for proto in p.retrieval.prototypes:
        s = copy.deepcopy(proto)
        if s.name in saved and isinstance(s, PersistentSource):
            s.load_state(d / s.name, videos=ds.videos, history=history)
        else:  # cheap to refit, deterministically
            s.fit(pos, videos=ds.videos, users=ds.users, now_ms=p.now_ms_, history=history)
        sources.append(s)
    if [s.name for s in sources] != meta["source_names"]:
        raise DataError(
            f"{d}: sources {meta['source_names']} do not match this code's "
            f"{[s.name for s in sources]}"
        )
    scored = [n[: -len("_score")] for n in meta["retrieval_feature_names"] if n.endswith("_score")]
    p.retrieval.restore(sources, history, scored=scored)
    if p.retrieval.feature_names_ != list(meta["retrieval_feature_names"]):
        raise DataError(
            f"{d / META}: retrieval features {meta['retrieval_feature_names']}; this code "
            f"computes {p.retrieval.feature_names_}"
        )
    p.ranking.feature_names_ = list(meta["feature_names"])
    p.ranking.use_time_features(p.config.time_features != "off")
    try:
        p.ranking.ranker_ = load_ranker(d / "ranker")  # the kind its ranker.json names
    except Exception as e:
        raise DataError(f"{d / 'ranker'}: cannot load the ranker ({type(e).__name__}: {e})") from e
    st = meta.get("stats", {})
    p.stats = Stats(
        st.get("trained_at", ""), dict(st.get("seconds", {})), dict(st.get("counts", {}))
    )
    p.init_serving(ds)
    if meta["format"] >= 2:
        p.data_fingerprints_ = dict(meta["data_fingerprints"])
        p.version = str(meta["version"])
    else:  # the old version hashed the config, the last time and the row count: not content
        p.data_fingerprints_ = data_fingerprints(ds)
        p.version = p.content_version()
    p.mark_populated()  # init_serving wrote every record before the version was known
    # Loading leaves its intermediates in reference cycles that only a full collection frees
    # (several GB on the `large` bundle), held until Python's next generation-2 pass otherwise.
    gc.collect()


def _read_id_maps(data: Path) -> dict[str, IdMap]:
    """The id maps saved beside the training log (none in a model of integer ids, or one
    saved before string ids were accepted)."""
    maps = {}
    for column in ID_SPACES:
        path = data / f"ids.{column}.parquet"
        if not path.exists():
            continue
        try:
            maps[column] = IdMap.from_table(pq.read_table(path))
        except (OSError, pa.ArrowInvalid, ValueError, TypeError) as e:
            raise DataError(f"{path}: cannot read the id map ({e})") from e
    return maps
