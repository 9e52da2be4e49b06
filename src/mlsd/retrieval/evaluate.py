"""Offline evaluation of retrieval: candidate recall@K on the next period's valid watches.

Protocol (global temporal split, :func:`mlsd.data.split.global_temporal_split`):

1. The last ``test_days`` of the event log are the *next period*; everything before the split
   time is training data. Sources are fitted on the training events only, "as of" the split
   time (no video uploaded later is a candidate, no later event is counted).
2. A user's *future positives* are the videos they validly watched in the next period
   (:func:`mlsd.data.labels.positives` with ``include_likes=False``: the book's valid-watch
   rule), **excluding videos they already had a positive (valid watch or like) for in
   training**. The same videos are excluded from the candidates: every source is asked with a
   :class:`History` holding all training positives and ``exclude_seen``, so re-watches neither
   inflate nor deflate recall and every source fills its ``k`` slots with new videos.
3. ``recall@K(u) = |top-K candidates of u ∩ future(u)| / |future(u)|``, averaged over users with
   at least one future positive (users without training history included: cold start).
   Candidates are computed once, at the split time, from the training history.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from mlsd.config import LabelConfig
from mlsd.data.dataset import Dataset
from mlsd.data.labels import positives
from mlsd.data.split import global_temporal_split
from mlsd.errors import ConfigError, DataError
from mlsd.retrieval.base import PAD, rowwise_isin
from mlsd.retrieval.history import History, table_ms
from mlsd.retrieval.merge import MergedSource, allocate, merge_lists
from mlsd.retrieval.protocols import CandidateSource
from mlsd.retrieval.two_tower import TwoTowerSource

__all__ = [
    "NextPeriod",
    "RetrievalReport",
    "SourceRecall",
    "candidate_recall",
    "evaluate_retrieval",
    "next_period",
]

DAY_MS = 86_400_000


@dataclass(frozen=True)
class NextPeriod:
    """Training positives, and each evaluated user's future positives (already-seen removed).

    ``users`` is ``int64[u]`` (sorted); ``future`` is ``int64[u, f]`` padded with -1;
    ``n_future`` ``int64[u]``; ``cold`` ``bool[u]`` (no training positive at all).
    """

    split_ms: int
    train_positives: pa.Table
    users: np.ndarray
    future: np.ndarray
    n_future: np.ndarray
    cold: np.ndarray
    history: History


def next_period(
    dataset: Dataset, *, test_days: float = 7.0, label_cfg: LabelConfig | None = None
) -> NextPeriod:
    """Split ``dataset`` at ``end - test_days`` and build the evaluation targets."""
    cfg = label_cfg or LabelConfig()
    ms = table_ms(dataset.events)
    if len(ms) == 0:
        raise DataError("events: no rows; expected an event log to evaluate on")
    if test_days <= 0:
        raise ConfigError(f"test_days={test_days!r}: expected a positive number of days")
    end = int(ms.max()) + 1
    split_ms = end - int(test_days * DAY_MS)
    if split_ms <= int(ms.min()):
        raise ConfigError(
            f"test_days={test_days!r}: the log spans only "
            f"{(end - int(ms.min())) / DAY_MS:.1f} days; expected a shorter next period"
        )
    split = global_temporal_split(
        dataset.events, split_time=datetime.fromtimestamp(split_ms / 1000, tz=UTC)
    )
    train_pos = positives(split.train, dataset.videos, cfg)
    test_pos = positives(split.test, dataset.videos, cfg, include_likes=False)
    history = History.from_positives(train_pos, max_len=None)
    tu = np.asarray(test_pos.column("user_id").to_numpy(zero_copy_only=False), np.int64)
    tv = np.asarray(test_pos.column("video_id").to_numpy(zero_copy_only=False), np.int64)
    order = np.lexsort((tv, tu))
    tu, tv = tu[order], tv[order]
    users = np.unique(tu)
    counts = np.bincount(np.searchsorted(users, tu), minlength=len(users))
    width = int(counts.max(initial=0))
    future = np.full((len(users), width), PAD, np.int64)
    col = np.arange(len(tu)) - np.repeat(np.r_[0, np.cumsum(counts)[:-1]], counts)
    future[np.searchsorted(users, tu), col] = tv
    seen, _ = history.recent(users)
    future = np.where(rowwise_isin(future, seen), PAD, future)
    # Compact rows (kept ids first) and drop users left with nothing new.
    future = np.take_along_axis(future, np.argsort(future == PAD, axis=1, kind="stable"), 1)
    n_future = (future != PAD).sum(axis=1)
    keep = n_future > 0
    users, future, n_future = users[keep], future[keep], n_future[keep]
    future = future[:, : int(n_future.max(initial=0))]
    cold = history.lengths(users) == 0
    return NextPeriod(split_ms, train_pos, users, future, n_future, cold, history)


def candidate_recall(
    candidates: np.ndarray, future: np.ndarray, n_future: np.ndarray, cutoffs: Sequence[int]
) -> dict[int, np.ndarray]:
    """Per-user recall at each cutoff: ``|candidates[:, :K] ∩ future| / n_future``.

    ``candidates`` ``int64[u, k]`` (best first, -1 padded), ``future`` ``int64[u, f]`` (-1
    padded, no duplicates), ``n_future`` ``int64[u]`` (> 0). Returns cutoff -> ``float[u]``.
    """
    # Rows hold no duplicate ids (the CandidateSource contract), so hits are distinct videos.
    hit = rowwise_isin(candidates, future)
    cum = np.cumsum(hit, axis=1)
    out = {}
    for c in cutoffs:
        kk = min(c, candidates.shape[1])
        hits = cum[:, kk - 1] if kk > 0 else np.zeros(len(candidates))
        out[int(c)] = hits / n_future
    return out


@dataclass
class SourceRecall:
    """One row of the report: a source's mean recall per cutoff, overall and for cold users
    (users without training history; empty when there are none)."""

    name: str
    recall: dict[int, float]
    recall_cold: dict[int, float]
    filled: float  # mean share of the k slots holding a candidate (not padding)
    query_s: float  # seconds to compute every evaluated user's candidates
    merged_hit_share: float | None = None  # share of the merged list's hits tagged with it


@dataclass
class RetrievalReport:
    """What :func:`evaluate_retrieval` measured (``to_dict`` gives JSON-ready data)."""

    k: int
    cutoffs: list[int]
    split_time: str
    test_days: float
    n_users: int
    n_cold_users: int
    n_future: int
    n_train_positives: int
    fit_s: dict[str, float]
    sources: list[SourceRecall] = field(default_factory=list)
    merged: SourceRecall | None = None

    def recall(self, name: str, at: int | None = None) -> float:
        """Mean recall of the source (or ``merged``) at cutoff ``at`` (default ``k``)."""
        rows = [*self.sources, *([self.merged] if self.merged else [])]
        for r in rows:
            if r.name == name:
                return r.recall[self.k if at is None else at]
        raise ConfigError(f"no source {name!r} in the report; have {[r.name for r in rows]}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_retrieval(
    dataset: Dataset,
    *,
    sources: Sequence[CandidateSource] | None = None,
    quotas: Mapping[str, float] | None = None,
    k: int = 500,
    test_days: float = 7.0,
    cutoffs: Sequence[int] = (50, 100, 200, 500),
    label_cfg: LabelConfig | None = None,
    seed: int = 0,
    max_users: int | None = None,
    batch_size: int = 1024,
    log: Callable[[str], None] | None = None,
    progress: Any = None,
) -> RetrievalReport:
    """Fit ``sources`` (default :func:`mlsd.retrieval.default_sources`) on the training part
    of ``dataset`` and measure candidate recall@K per source and merged (see the module
    docstring for the protocol). ``quotas`` default to :func:`mlsd.retrieval.default_quotas`
    for the default names, an equal share otherwise. ``max_users`` evaluates a seeded random
    subset of users. ``progress`` (a ``rich.progress.Progress``) shows the two-tower's
    epochs. Sources must have the uniform ``fit(data, *, videos, users, now_ms, history)``
    signature.
    """
    from mlsd.retrieval.sources import default_quotas, default_sources

    cutoffs = sorted({int(c) for c in cutoffs if c <= k} | {k})
    period = next_period(dataset, test_days=test_days, label_cfg=label_cfg)
    if len(period.users) == 0:
        raise DataError("no user has a new valid watch in the next period; nothing to evaluate")
    users, future, n_future, cold = period.users, period.future, period.n_future, period.cold
    if max_users is not None and max_users < len(users):
        pick = np.sort(np.random.default_rng(seed).choice(len(users), max_users, replace=False))
        users, future, n_future, cold = users[pick], future[pick], n_future[pick], cold[pick]
    if sources is None:
        sources = default_sources(seed=seed)
    if quotas is None:
        # Default shares for the default source names; any other source gets an equal share.
        dq = default_quotas()
        quotas = {s.name: dq.get(s.name, 1.0 / len(sources)) for s in sources}
    say = log or (lambda _msg: None)
    fit_s: dict[str, float] = {}
    for s in sources:
        t0 = time.perf_counter()
        extra = {"progress": progress} if progress and isinstance(s, TwoTowerSource) else {}
        s.fit(
            period.train_positives,
            videos=dataset.videos,
            users=dataset.users,
            now_ms=period.split_ms,
            history=period.history,
            **extra,
        )
        fit_s[s.name] = time.perf_counter() - t0
        say(f"fitted {s.name} in {fit_s[s.name]:.1f} s")
    merged = MergedSource(sources, quotas, k=k)
    report = RetrievalReport(
        k=k,
        cutoffs=cutoffs,
        split_time=datetime.fromtimestamp(period.split_ms / 1000, tz=UTC).isoformat(),
        test_days=test_days,
        n_users=len(users),
        n_cold_users=int(cold.sum()),
        n_future=int(n_future.sum()),
        n_train_positives=period.train_positives.num_rows,
        fit_s=fit_s,
    )
    per_source: list[list[np.ndarray]] = [[] for _ in sources]
    merged_ids, merged_tags = [], []
    query_s = np.zeros(len(sources) + 1)
    for lo in range(0, len(users), batch_size):
        ub = users[lo : lo + batch_size]
        lists = []
        for i, s in enumerate(sources):
            t0 = time.perf_counter()
            ids, scores = s.candidates(ub, k)
            query_s[i] += time.perf_counter() - t0
            lists.append((ids, scores))
            per_source[i].append(ids)
        t0 = time.perf_counter()
        tagged = merge_lists(
            lists, allocate(merged.shares(), k), k, merged.rrf_k, merged.source_names
        )
        query_s[-1] += time.perf_counter() - t0
        merged_ids.append(tagged.item_ids)
        merged_tags.append(tagged.sources)

    def row(name: str, cands: np.ndarray, secs: float) -> SourceRecall:
        rec = candidate_recall(cands, future, n_future, cutoffs)
        return SourceRecall(
            name=name,
            recall={c: float(v.mean()) for c, v in rec.items()},
            recall_cold={c: float(v[cold].mean()) for c, v in rec.items()} if cold.any() else {},
            filled=float((cands != PAD).mean()),
            query_s=secs,
        )

    for i, s in enumerate(sources):
        report.sources.append(row(s.name, np.concatenate(per_source[i]), float(query_s[i])))
    m_ids, m_tags = np.concatenate(merged_ids), np.concatenate(merged_tags)
    report.merged = row(merged.name, m_ids, float(query_s.sum()))
    hit = rowwise_isin(m_ids, future) & (m_ids != PAD)
    n_hits = max(int(hit.sum()), 1)
    for code, r in enumerate(report.sources):
        r.merged_hit_share = float((hit & (m_tags == code)).sum() / n_hits)
    return report
