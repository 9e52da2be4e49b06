"""The ranker against the best single source and their rank average, on whole candidate lists:
never serve an order worse than one a source gives by itself.

A two-stage pipeline should beat each of its sources: the ranker sees every source's rank of
every candidate. On some logs it does not (MovieLens 100k as positives only, see
docs/benchmarks.md). After the ranker is trained, this
check takes up to ``MAX_USERS`` of its validation users (none of whose rows it learned from),
retrieves their whole candidate lists at the label cut, and scores NDCG@20 against their label
positives (ideal DCG over all of them, retrieved or not) for the ranker's order and for each
source's own order of the same candidates (its rank feature), and for the rank average of the
ranker and the best source (:func:`~mlsd.pipeline.ndcg.mixed_scores`, ``ranker_weight``
0.5). The average is kept unless the ranker or the source alone beats it by ``MARGIN``: on
logs where neither is clearly better, averaging two comparable orders beats both (MovieLens
100k, docs/benchmarks.md), and a validation set of a few hundred users cannot tell a 1%
difference. The choice goes into the config (``order_by``, ``ranker_weight``); serving and
batch recommendation order candidates by it (the rules still apply).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from mlsd.pipeline.data import ids
from mlsd.pipeline.labels import LabelSplit
from mlsd.pipeline.ndcg import mixed_scores, ndcg_full, served_rows, source_scores
from mlsd.pipeline.training import training_rows

__all__ = ["MAX_USERS", "choose_order"]

MAX_USERS = 500
MARGIN = 1.01  # the ranker or the source alone must beat their average by 1% to be kept


def choose_order(p: Any, split: LabelSplit, say: Callable[[str], None]) -> str:
    """Compare the fitted ranker of ``p`` (a two-stage pipeline whose retrieval is still fitted
    at the label cut) with its sources on validation users (see the module docstring); write
    the winner into ``p.config.order_by`` and return it."""
    cfg = p.config
    if cfg.order_by != "auto":
        return str(cfg.order_by)
    users = np.intersect1d(getattr(p.ranking, "valid_users_", np.zeros(0, np.int64)),
                           split.label_users)  # fmt: skip
    if len(users) > MAX_USERS:
        users = np.sort(np.random.default_rng(cfg.seed + 2).choice(users, MAX_USERS, False))
    choice, weight = "ranker", 1.0
    if len(users) >= 20:
        sub = dataclasses.replace(split, label_users=users)
        all_rows = cfg.model_copy(update={"negatives_per_user": cfg.candidates + 1,
                                          "max_label_users": None})  # fmt: skip
        rows, rfeat = training_rows(p.dataset_, sub, p.retrieval, all_rows)
        x = p.ranking.training_matrix(p.dataset_, rows, rfeat)
        names = p.ranking.feature_names_ + p.retrieval.feature_names_
        served = served_rows(x, names)
        x, y, u = (
            x[served],
            rows.column("label_watch").to_numpy()[served],
            ids(rows, "user_id")[served],
        )
        au, av = ids(split.after, "user_id"), ids(split.after, "video_id")
        mine = np.isin(au, users)
        pairs = np.unique(np.c_[au[mine], av[mine]], axis=0)
        n_pos = dict(zip(*np.unique(pairs[:, 0], return_counts=True), strict=True))
        ranked = p.ranking.ranker_.score(x)
        got = {"ranker": ndcg_full(ranked, y, u, n_pos)}
        for s in p.retrieval.names_:
            got[s] = ndcg_full(source_scores(x, names, s), y, u, n_pos)
        src = max((s for s in got if s != "ranker"), key=lambda k: got[k])
        mixed = ndcg_full(mixed_scores(ranked, x, names, src, 0.5, u), y, u, n_pos)
        choice, weight = src, 0.5
        alone = max(("ranker", src), key=lambda k: got[k])
        if got[alone] > MARGIN * mixed:
            choice, weight = alone, (1.0 if alone == "ranker" else 0.0)
        top = sorted(got.items(), key=lambda kv: -kv[1])[:4]
        say(f"order: NDCG@20 of whole candidate lists on {len(users)} validation users: "
            + ", ".join(f"{k} {v:.4f}" for k, v in top)
            + f", ranker + {src} {mixed:.4f}; served by "
            + (f"ranker + {src}" if 0 < weight < 1 else choice))  # fmt: skip
    else:
        say(f"order: {len(users)} validation users (< 20), too few to compare: the ranker")
    p.config = cfg.model_copy(update={"order_by": choice, "ranker_weight": weight})
    return choice
