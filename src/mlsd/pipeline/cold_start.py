"""How users without history are ordered: by the ranker, or by popularity.

The ranker learns mostly from users with a history; for a new user most of its features are
empty, and on some logs it orders their (popular) candidates worse than plain popularity does
(measured in docs/benchmarks.md). So popularity is the default. ``cold_start="auto"``
decides at fit, on the ranker's own validation users who had no positive
before the label cut (new users at the cut): the ranker's order of their candidate rows against
the ``popular`` source's order (the MostPop baseline's), by NDCG@20 of their labels. With too
few such users (a per-user cut has none) it keeps popularity, which is MostPop by construction.
That comparison can mislead: its rows are the logged ones at the cut, not a new request's
candidates (on ``small`` it preferred the ranker, which then lost on the test users), so
``auto`` is an option, not the default.
The choice is written into the config (``cold_start``), so a saved model keeps it; serving and
batch recommendation then order a cold user's candidates by :func:`cold_scores`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mlsd.pipeline.data import ids
from mlsd.pipeline.labels import LabelSplit
from mlsd.pipeline.ndcg import ndcg_by_user, served_rows, source_scores

__all__ = ["MIN_USERS", "POPULAR", "cold_scores", "resolve_cold_start"]

MIN_USERS = 30  # new validation users needed to trust the comparison
POPULAR = "popular"


def cold_scores(features: np.ndarray, names: list[str]) -> np.ndarray:
    """``(n,)`` scores ordering rows by the popular source's rank (unranked rows last)."""
    return source_scores(features, names, POPULAR)


def resolve_cold_start(
    p: Any,
    split: LabelSplit,
    rows_users: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    names: list[str],
    say: Callable[[str], None],
) -> str:
    """Resolve ``p.config.cold_start == "auto"`` (see the module docstring) into ``p.config``;
    returns the choice. ``x``/``y``/``rows_users``: the ranker's rows, labels, users;
    ``names`` their columns."""
    cfg = p.config
    choice = cfg.cold_start
    if choice == "auto":
        choice = "popular"
        before = np.unique(ids(split.before, "user_id"))
        valid = getattr(p.ranking, "valid_users_", np.zeros(0, np.int64))
        new = np.setdiff1d(np.intersect1d(valid, split.label_users), before)
        rows = np.isin(rows_users, new) & served_rows(x, names)
        if f"rank_{POPULAR}" not in names:
            choice = "ranker"
        elif len(new) >= MIN_USERS:
            ranker = p.ranking.ranker_.score(x[rows])
            popular = cold_scores(x[rows], names)
            a, b = (ndcg_by_user(s, y[rows], rows_users[rows]) for s in (ranker, popular))
            choice = "ranker" if a > b else "popular"
            say(f"cold start: {len(new):,} new validation users, NDCG@20 ranker {a:.4f}, "
                f"popularity {b:.4f}: new users are ordered by {choice}")  # fmt: skip
        else:
            say(f"cold start: {len(new)} new validation users (< {MIN_USERS}): new users are "
                "ordered by popularity")  # fmt: skip
    p.config = cfg.model_copy(update={"cold_start": choice})
    return str(choice)
