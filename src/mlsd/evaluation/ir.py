"""Ranked-retrieval metrics against graded judgements (qrels): nDCG@k, MRR@k, Recall@k and
MAP@k per query, averaged over the judged queries.

A run is query id -> document ids, best first. Gains are the judged relevance (linear gain,
as trec_eval's ``ndcg_cut``); the ideal ranking sorts the judged relevances. Queries without a
relevant document are left out of every mean (trec_eval's convention), and counted. A
document not judged counts as not relevant. MAP@k divides by the number of relevant
documents (not by k), as trec_eval's ``map_cut`` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["ir_metrics", "per_query"]


def per_query(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> dict[str, float]:
    """``ndcg``, ``mrr``, ``recall`` and ``ap`` at ``k`` of one query's ranking."""
    top = list(ranked[:k])
    gains = np.array([max(rels.get(d, 0), 0) for d in top], dtype=np.float64)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.sort(np.array([g for g in rels.values() if g > 0], np.float64))[::-1][:k]
    idcg = float(ideal @ disc[: len(ideal)])
    hit = gains > 0
    n_rel = int(sum(g > 0 for g in rels.values()))
    first = int(np.argmax(hit)) if hit.any() else -1
    precision = np.cumsum(hit) / np.arange(1, len(top) + 1) if len(top) else np.zeros(0)
    return {
        "ndcg": float(gains @ disc[: len(gains)]) / idcg if idcg > 0 else 0.0,
        "mrr": 1.0 / (first + 1) if first >= 0 else 0.0,
        "recall": float(hit.sum()) / n_rel if n_rel else 0.0,
        "ap": float(precision[hit].sum()) / n_rel if n_rel else 0.0,
    }


def ir_metrics(
    run: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    cuts: Mapping[str, int] | None = None,
) -> dict[str, float]:
    """Mean metrics over the queries of ``qrels`` with at least one relevant document (a
    query the run does not answer scores 0). ``cuts``: metric -> k (default nDCG@10, MRR@10,
    Recall@100, MAP@100). Returns ``{"ndcg@10": ..., ..., "queries": n}``."""
    cuts = dict(cuts or {"ndcg": 10, "mrr": 10, "recall": 100, "ap": 100})
    names = {"ndcg": "ndcg", "mrr": "mrr", "recall": "recall", "ap": "map"}
    sums = dict.fromkeys(cuts, 0.0)
    n = 0
    for q, rels in qrels.items():
        if not any(r > 0 for r in rels.values()):
            continue
        n += 1
        for m, k in cuts.items():
            sums[m] += per_query(run.get(q, []), rels, k)[m]
    out = {f"{names[m]}@{k}": (sums[m] / n if n else 0.0) for m, k in cuts.items()}
    out["queries"] = float(n)
    return out
