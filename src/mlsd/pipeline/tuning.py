"""Tuning on the training log's own label cut: the regularisation of EASE (when its catalog
is small enough to refit a few times) and which share of the candidates each source gets.

EASE's best L2 depends on the log (MovieLens 100k wants about a third of what the
:func:`~mlsd.retrieval.item_item.auto_l2` rule gives, Amazon Beauty about the rule's value,
docs/benchmarks.md): :func:`tune_ease` refits it at the cut for a few multiples of the rule and
keeps the one whose top 20 best find the label positives (NDCG@20).

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

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlsd.pipeline.data import ids
from mlsd.pipeline.labels import LabelSplit, time_features
from mlsd.pipeline.ndcg import ideal_dcg
from mlsd.pipeline.retrieval import RetrievalStage
from mlsd.retrieval import PAD
from mlsd.retrieval.base import row_keys

__all__ = ["EASE_SCALES", "QuotaTuning", "tune_at_cut", "tune_ease", "tune_quotas"]

FLOOR = 0.01  # share every source keeps
EASE_SCALES = (0.25, 0.5, 1.0, 2.0)  # multiples of auto_l2 tried
EASE_TUNE_MAX_ITEMS = 5000  # above, one refit costs seconds to a minute: the rule is kept


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


def _label_ndcg(source: Any, users: np.ndarray, split: LabelSplit, k: int = 20) -> float:
    """Mean NDCG@``k`` (binary) of ``source``'s candidates for ``users`` (sorted) against
    their label positives in ``split.after`` (ideal DCG over min(k, their positives))."""
    au, av = ids(split.after, "user_id"), ids(split.after, "video_id")
    mine = np.isin(au, users)
    row = np.searchsorted(users, au[mine])
    truth, first = np.unique(row_keys(row, av[mine], len(users)), return_index=True)
    n_pos = np.bincount(row[first], minlength=len(users))
    got, _ = source.candidates(users, k)
    r, c = np.nonzero(got != PAD)
    hit = np.isin(row_keys(r, got[r, c], len(users)), truth)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = np.bincount(r[hit], disc[c[hit]], minlength=len(users))
    ideal = ideal_dcg(np.maximum(n_pos, 1), k)
    has = n_pos > 0
    return float((dcg / ideal)[has].mean()) if has.any() else 0.0


def tune_ease(p: Any, split: LabelSplit, *, max_users: int = 2000) -> float | None:
    """Refit ``p``'s EASE source (unless its ``l2`` is set, it was skipped, or it has more
    than ``EASE_TUNE_MAX_ITEMS`` items) at the cut for each of ``EASE_SCALES``, keep the
    scale whose candidates score the best NDCG@20 on at most ``max_users`` label users, and
    write it into the retrieval stage's prototype and ``p.config.ease``. Returns the scale
    chosen, or None when nothing was tuned."""
    from mlsd.retrieval.item_item import EASESource

    r = p.retrieval
    j = next((i for i, s in enumerate(r.sources_) if isinstance(s, EASESource)), None)
    if j is None:
        return None
    fitted: EASESource = r.sources_[j]
    if fitted.l2 is not None or fitted.skipped_ or len(fitted.active_) > EASE_TUNE_MAX_ITEMS:
        return None
    users = split.label_users
    if len(users) > max_users:
        rng = np.random.default_rng(p.config.seed + 3)
        users = np.sort(rng.choice(users, size=max_users, replace=False))
    got: dict[float, tuple[float, EASESource]] = {}
    for scale in EASE_SCALES:
        if scale == fitted.l2_scale:
            s = fitted
        else:
            s = copy.deepcopy(r.prototypes[j])
            s.l2_scale = scale
            s.fit(split.before, videos=p.dataset_.videos, users=p.dataset_.users,
                  now_ms=split.now_ms, history=r.history_)  # fmt: skip
        got[scale] = (_label_ndcg(s, users, split), s)
    best = max(got, key=lambda x: (got[x][0], x == fitted.l2_scale))
    p.say(f"tuned EASE L2 on {len(users):,} label users: NDCG@20 "
          + ", ".join(f"{x:g}x {v[0]:.4f}" for x, v in got.items())
          + f" of auto_l2; {best:g}x (l2 {got[best][1].l2_:.0f})")  # fmt: skip
    r.prototypes[j].l2_scale = best
    sources = list(r.sources_)
    sources[j] = got[best][1]
    r.restore(sources, r.history_)
    ease = getattr(p.config, "ease", None)
    if ease is not None and ease.name == fitted.name:
        p.config = p.config.model_copy(update={"ease": ease.model_copy(update={"l2_scale": best})})
    return best


def tune_at_cut(p: Any, split: LabelSplit) -> None:
    """Tune what a two-stage pipeline ``p`` tunes at its label cut (EASE's L2, see
    :func:`tune_ease`, then the shares, when ``p.config.tune_quotas`` and none are set) and
    write it into ``p.config``; first, whether the ranker uses the time features
    (:func:`~mlsd.pipeline.labels.time_features`, when ``time_features`` is ``auto``)."""
    cfg = p.config
    if cfg.time_features == "auto":
        p.config = cfg = cfg.model_copy(
            update={"time_features": time_features(split, cfg.label_days)}
        )
    p.ranking.use_time_features(cfg.time_features != "off")
    if cfg.tune_quotas:
        t0 = time.perf_counter()
        if tune_ease(p, split) is not None:
            p.stats.seconds["tune_ease"] = time.perf_counter() - t0
        cfg = p.config
    if not cfg.tune_quotas or cfg.quotas is not None:
        return
    t0 = time.perf_counter()
    tuned = tune_quotas(p.retrieval, split, cfg.candidates, seed=cfg.seed, say=p.say)
    p.retrieval.set_quotas(tuned.quotas)
    p.config = cfg.model_copy(update={"quotas": tuned.quotas})
    p.stats.seconds["tune_quotas"] = time.perf_counter() - t0
