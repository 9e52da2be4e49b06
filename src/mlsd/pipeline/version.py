"""A trained pipeline's version: a fingerprint of its content, so that anything keyed by the
version (a saved candidate cache, a registry entry) can never be mistaken for another model's.

The digest covers the data it was trained on (every table, canonically hashed), the config,
the training time, each source's fitted state (weights, embeddings, neighbour lists, ranked
lists: :func:`mlsd.retrieval.base.source_fingerprint`) and the ranker (each booster's model
text and calibrator). Two models with the same version serve the same answers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from mlsd.data.dataset import Dataset
from mlsd.data.fingerprint import fingerprint_arrays, fingerprint_table
from mlsd.ranking.gbdt import Ranker
from mlsd.retrieval.protocols import CandidateSource, source_fingerprint

__all__ = ["VERSION_PREFIX", "content_version", "data_fingerprints"]

VERSION_PREFIX = "rec"


def data_fingerprints(ds: Dataset) -> dict[str, str]:
    """``table name -> sha256`` of each table of ``ds``, and ``ids.<column> -> sha256`` of
    each id map (a model of string ids: the ids as well as their codes identify its data)."""
    out = {name: fingerprint_table(table) for name, table in ds.tables().items()}
    for column, m in ds.id_maps.items():
        out[f"ids.{column}"] = fingerprint_table(m.to_table())
    return out


def content_version(
    *,
    config: Mapping[str, Any],
    data: Mapping[str, str],
    now_ms: int,
    sources: Sequence[CandidateSource],
    ranker: Ranker,
) -> str:
    """``rec-<YYYYMMDD of now_ms>-<12 hex digits>``: the fingerprint of a trained pipeline
    (see the module docstring). ``data``: :func:`data_fingerprints` of its training data."""
    digest = fingerprint_arrays(
        {
            "config": dict(config),
            "data": dict(data),
            "now_ms": int(now_ms),
            "sources": [[s.name, source_fingerprint(s)] for s in sources],
            "ranker": ranker.fingerprint(),
        }
    )
    day = time.strftime("%Y%m%d", time.gmtime(now_ms / 1000))
    return f"{VERSION_PREFIX}-{day}-{digest.split(':', 1)[1][:12]}"
