"""The served slate as :class:`~mlsd.pipeline.types.ServedItem` objects, with explanations:
each item's calibrated probabilities and objective weights, its retrieval features, and the
rule actions that moved it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mlsd.pipeline.types import ServedItem
from mlsd.reranking import Catalog as RuleCatalog
from mlsd.reranking import Slate

__all__ = ["EXPLORATION_SOURCE", "served_items"]

EXPLORATION_SOURCE = "exploration"  # the source of an item no retrieval source proposed


def served_items(
    slate: Slate,
    catalog: RuleCatalog,
    names: tuple[Sequence[str], Sequence[str]],
    explain: bool,
    proba: Mapping[str, np.ndarray] | None,
    weights: Mapping[str, float],
    order: np.ndarray,
    known: np.ndarray,
    rfeat: np.ndarray,
    items: np.ndarray,
) -> list[ServedItem]:
    """The items of the final ``slate`` (dense catalog positions). ``names``: (source names,
    retrieval feature names). The explanation inputs describe the ranked list the rules
    started from: ``items`` the candidates, ``order`` their ranking, ``known`` which of the
    ranked ones are in the catalog, ``proba`` the ranker's probabilities (None: not ranked)
    with the objective ``weights``, ``rfeat`` the retrieval features (rows as ``items``)."""
    source_names, feature_names = names
    ids = catalog.item_ids
    pos_of: dict[int, int] = {}
    actions_by_item: dict[int, list[str]] = {}
    rf = None
    ranked_proba: dict[str, np.ndarray] = {}
    if explain:
        dense_sorted = catalog.index_of(items[order][known])
        pos_of = {int(d): i for i, d in enumerate(dense_sorted.tolist())}
        for a in slate.actions:
            actions_by_item.setdefault(a.item, []).append(f"{a.rule}: {a.action} ({a.reason})")
        if len(rfeat) == len(items):
            rf = rfeat[order][known]
        if proba is not None:
            ranked_proba = {o: q[order][known] for o, q in proba.items()}
    out = []
    for j in range(len(slate)):
        d = int(slate.items[j])
        src = int(slate.source[j])
        comp: dict[str, float] = {}
        i = pos_of.get(d) if explain else None
        if i is not None:
            for o, q in ranked_proba.items():
                comp[f"p_{o}"] = float(q[i])
                comp[f"weight_{o}"] = float(weights[o])
            if rf is not None:
                for n_, v in zip(feature_names, rf[i].tolist(), strict=True):
                    if v == v:  # not NaN
                        comp[n_] = float(v)
        sc = float(slate.scores[j])
        out.append(
            ServedItem(
                video_id=int(ids[d]),
                score=sc if sc == sc else 0.0,
                source=source_names[src] if 0 <= src < len(source_names) else EXPLORATION_SOURCE,
                exploration=bool(slate.exploration[j]),
                components=comp,
                actions=actions_by_item.get(d, []),
            )
        )
    return out
