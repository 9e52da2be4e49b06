"""What :meth:`~mlsd.features.stream.OnlineFeatures.request_features` does for one feature
list, resolved once: which stored entities to read, which columns of each read go straight to
the output, and which request-time features to compute from what."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlsd.errors import FeatureStoreError
from mlsd.features.registry import Feature, FeatureRegistry
from mlsd.features.store import EntityLayout

__all__ = ["RequestPlan"]


@dataclass
class RequestPlan:
    """``request_features``' work for one feature list: the stored entities to read (feature
    names per entity, in read order), per entity the columns of the read that go straight to
    the output and the inputs that request-time features need (``(name, column, width,
    vector)``; a vector may have width 0, e.g. topic shares without topics), and the
    request-time features in dependency order with their output column (None: an input
    only)."""

    width: int
    by_entity: dict[str, list[str]]
    entities: dict[str, tuple[np.ndarray, np.ndarray, list[tuple[str, int, int, bool]]]]
    request: list[tuple[Feature, int | None]]

    @classmethod
    def build(
        cls,
        registry: FeatureRegistry,
        layouts: dict[str, EntityLayout],
        features: Sequence[str] | None,
    ) -> RequestPlan:
        wanted = registry.resolve(features)
        feats = registry.with_inputs([f.name for f in wanted])
        out_col = {f.name: j for j, f in enumerate(wanted)}
        read_by_request = {i for f in feats if f.source == "request" for i in f.inputs}
        by_entity: dict[str, list[str]] = {}
        for f in feats:
            if f.stored and f.source != "request":
                by_entity.setdefault(f.entity, []).append(f.name)
        entities = {}
        for entity, names in by_entity.items():
            lay = layouts[entity]
            val_cols, out_cols, inputs = [], [], []
            j = 0
            for name in names:
                w = lay.widths[lay.features.index(name)]
                vector = registry[name].dtype == "vector"
                if name in out_col:
                    if vector:
                        raise FeatureStoreError(
                            f"feature {name!r} is a vector; it cannot be a matrix column"
                        )
                    val_cols.append(j)
                    out_cols.append(out_col[name])
                if name in read_by_request:
                    inputs.append((name, j, w, vector))
                j += w
            entities[entity] = (np.array(val_cols, np.int64), np.array(out_cols, np.int64), inputs)
        request = [(f, out_col.get(f.name)) for f in feats if f.source == "request"]
        return cls(len(wanted), by_entity, entities, request)
