"""Tuning the merged list on the training log's own label cut: which share of the candidates
each source gets.

Fixed shares suit the log they were chosen on (the simulator's favour topic-popular), not a
user's log, where an item-to-item source may find most of what users watch next. After
retrieval is fitted on the positives before the internal cut (:mod:`.labels`), each source
proposes ``k`` candidates to a sample of the label users; the shares are then chosen greedily
(step by step, the next slots go to the source whose next candidates find the most label
positives not found yet per slot: the greedy rule for budgeted maximum coverage, Khuller, Moss
& Naor 1999). Every source keeps a floor share, so cold
start (popular sources) and fresh items keep a way in. Only the training log is read: the test
slice of an evaluation never is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlsd.pipeline.data import ids
from mlsd.pipeline.labels import LabelSplit
from mlsd.pipeline.retrieval import RetrievalStage
from mlsd.retrieval import PAD
from mlsd.retrieval.base import row_keys

__all__ = ["QuotaTuning", "tune_at_cut", "tune_quotas"]

FLOOR = 0.01  # share every source keeps


@dataclass
class QuotaTuning:
    """What :func:`tune_quotas` chose: ``quotas`` (source -> share, summing to 1),
    ``recall`` (label positives found by the tuned in-quota lists / all label positives of
    the sampled users) and ``recall_before`` (the same under the shares it started from),
    ``users`` sampled."""

    quotas: dict[str, float]
    recall: float
    recall_before: float
    users: int


def tune_quotas(
    retrieval: RetrievalStage,
    split: LabelSplit,
    k: int,
    *,
    seed: int = 0,
    max_users: int = 3000,
    say: Callable[[str], None] = lambda _m: None,
) -> QuotaTuning:
    """Shares of the ``k`` merged candidates per source of ``retrieval`` (fitted on
    ``split.before``), chosen to find the most of ``split.after`` (see the module docstring)
    for at most ``max_users`` label users (seeded sample)."""
    rng = np.random.default_rng(seed)
    users = split.label_users
    if len(users) > max_users:
        users = np.sort(rng.choice(users, size=max_users, replace=False))
    au, av = ids(split.after, "user_id"), ids(split.after, "video_id")
    mine = np.isin(au, users)
    row = np.searchsorted(users, au[mine])
    truth = np.unique(row_keys(row, av[mine], len(users)))
    names = retrieval.names_
    # rank[p, j]: where source j proposes truth pair p (k when it does not)
    rank = np.full((len(truth), len(names)), k, np.int64)
    for j, s in enumerate(retrieval.sources_):
        got, _ = s.candidates(users, k)
        r, c = np.nonzero(got != PAD)
        keys = row_keys(r, got[r, c], len(users))
        at = np.searchsorted(truth, keys).clip(max=max(len(truth) - 1, 0))
        hit = (truth[at] == keys) if len(truth) else np.zeros(len(keys), bool)
        np.minimum.at(rank[:, j], at[hit], c[hit])

    def found(slots: np.ndarray) -> int:
        return int((rank < slots[None, :]).any(axis=1).sum())

    before = retrieval.shares_ / retrieval.shares_.sum()
    slots = np.full(len(names), max(1, int(np.ceil(FLOOR * k))), np.int64)
    while slots.sum() < k:
        left = k - int(slots.sum())
        open_ = ~(rank < slots[None, :]).any(axis=1)  # label positives not found yet
        best = (0.0, -1, 0)  # (new positives per slot, source, slots to add)
        for j in range(len(names)):
            # extending source j to just past each of its next hits: the best rate wins
            r = np.sort(rank[open_, j])
            r = r[(r >= slots[j]) & (r < slots[j] + left)]
            if len(r) == 0:
                continue
            extra = r - slots[j] + 1
            rate = np.arange(1, len(r) + 1) / extra
            i = int(np.argmax(rate))
            if rate[i] > best[0]:
                best = (float(rate[i]), j, int(extra[i]))
        if best[1] < 0:  # nothing more to find: the rest in proportion to what is given
            slots = slots + np.floor(left * slots / slots.sum()).astype(np.int64)
            slots[int(np.argmax(slots))] += k - int(slots.sum())
            break
        slots[best[1]] += best[2]
    n_truth = max(len(truth), 1)
    start = np.floor(before * k).astype(np.int64)
    out = QuotaTuning(
        quotas={n: float(x) / k for n, x in zip(names, slots, strict=True)},
        recall=found(slots) / n_truth,
        recall_before=found(start) / n_truth,
        users=len(users),
    )
    say(
        f"tuned candidate shares on {out.users:,} label users: recall@{k} of their label "
        f"positives {out.recall_before:.3f} -> {out.recall:.3f}; "
        + ", ".join(f"{n} {q:.2f}" for n, q in out.quotas.items() if q > FLOOR)
    )
    return out


def tune_at_cut(p: Any, split: LabelSplit) -> None:
    """Tune what a two-stage pipeline ``p`` tunes at its label cut (the shares, when
    ``p.config.tune_quotas`` and none are set) and write it into ``p.config``."""
    cfg = p.config
    if not cfg.tune_quotas or cfg.quotas is not None:
        return
    t0 = time.perf_counter()
    tuned = tune_quotas(p.retrieval, split, cfg.candidates, seed=cfg.seed, say=p.say)
    p.retrieval.set_quotas(tuned.quotas)
    p.config = cfg.model_copy(update={"quotas": tuned.quotas})
    p.stats.seconds["tune_quotas"] = time.perf_counter() - t0
