"""Topic diversity by Maximal Marginal Relevance (Carbonell & Goldstein, SIGIR 1998).

The top K is chosen greedily: at each step the item maximising

    lambda * relevance(i) - (1 - lambda) * max_{j already chosen} similarity(i, j)

is appended. ``relevance`` is the ranker score min-max scaled to [0, 1] over the slate (so
``lambda`` means the same thing whatever the score's scale); similarity is 1 for two items of
the same known topic and 0 otherwise, or the cosine of item embeddings when a matrix is given.
``lambda = 1`` is pure relevance, ``lambda = 0`` pure novelty.
"""

from __future__ import annotations

import numpy as np

from mlsd.errors import ConfigError, DataError
from mlsd.reranking._checks import check_int, check_number
from mlsd.reranking.slate import RuleAction, RuleContext, Slate


def relevance(scores: np.ndarray) -> np.ndarray:
    """Scores min-max scaled to [0, 1] over their finite values; NaN and -inf map to 0,
    +inf to 1; constant scores map to 1."""
    finite = np.isfinite(scores)
    if not finite.any():
        return np.where(scores == np.inf, 1.0, 0.0)
    lo = float(scores[finite].min())
    hi = float(scores[finite].max())
    span = hi - lo
    rel = (np.where(finite, scores, lo) - lo) / span if span > 0 else np.ones(len(scores))
    rel[~finite] = 0.0
    rel[scores == np.inf] = 1.0
    return rel


def mmr_dense(gain: np.ndarray, emb: np.ndarray, w: float, k: int) -> tuple[list[int], list[float]]:
    """Greedy MMR with cosine similarity of unit-norm rows ``emb``: the ``k`` positions
    picked, in order, and each pick's max similarity to the earlier picks (0 for the first).

    ``gain`` is lambda x relevance, ``w`` = 1 - lambda. Ties go to the lower position.
    """
    n = len(gain)
    maxsim = np.zeros(n)  # max similarity to the picks so far (0 before the first pick)
    taken = np.zeros(n, bool)
    picks: list[int] = []
    sims: list[float] = []
    for step in range(k):
        mmr = gain - w * maxsim
        mmr[taken] = -np.inf
        j = int(np.argmax(mmr))
        picks.append(j)
        sims.append(float(maxsim[j]))
        taken[j] = True
        if step < k - 1:
            sim = emb @ emb[j]
            maxsim = sim if step == 0 else np.maximum(maxsim, sim)
    return picks, sims


def mmr_topics(
    gain: np.ndarray, topic: np.ndarray, w: float, k: int
) -> tuple[list[int], list[float]]:
    """:func:`mmr_dense` for similarity = "same known topic" (1 or 0), in O(n log n).

    With a 0/1 similarity, the best candidate at each step is either the most relevant item
    left (``a``) or the most relevant item left whose topic is not yet picked (``u``); both
    only move forward in relevance order, so one pass suffices. Same picks and tie-breaking
    as :func:`mmr_dense` with one-hot topic embeddings (checked by a property test).
    """
    order = np.argsort(-gain, kind="stable").tolist()
    g = gain.tolist()
    t = topic.tolist()
    taken = [False] * len(g)
    seen: set[int] = set()
    picks: list[int] = []
    sims: list[float] = []
    a = u = 0
    n = len(order)
    for _ in range(k):
        while taken[order[a]]:
            a += 1
        ia = order[a]
        if t[ia] < 0 or t[ia] not in seen:
            j, sim = ia, 0.0
        else:
            if u < a:
                u = a
            while u < n and (taken[order[u]] or (t[order[u]] >= 0 and t[order[u]] in seen)):
                u += 1
            j, sim = ia, 1.0
            if u < n:
                iu = order[u]
                va, vu = g[ia] - w, g[iu]
                if vu > va or (vu == va and iu < ia):
                    j, sim = iu, 0.0
        picks.append(j)
        sims.append(sim)
        taken[j] = True
        if t[j] >= 0:
            seen.add(t[j])
    return picks, sims


class TopicDiversity:
    """Re-order so that the top ``top_k`` (None: ``ctx.k``) covers more topics (MMR).

    The top K becomes the K items MMR picks from the whole slate, in pick order; the other
    items follow in their original order. Relevance comes from ``slate.scores``, not from the
    slate order, which only breaks ties (the earlier item wins), so a slate sorted by score
    and whose top K already has distinct topics comes out unchanged. Items of unknown topic
    (-1) are similar to nothing.

    ``embeddings`` (optional, ``(catalog.n, d)`` float, indexed by dense item index) replaces
    topic equality by cosine similarity. Every item whose position changes and that was or is
    in the top K is logged as ``moved``. Cost: O(top_k x len(slate)) vectorised
    (x d with embeddings).
    """

    def __init__(
        self,
        *,
        lambda_: float = 0.7,
        top_k: int | None = None,
        embeddings: np.ndarray | None = None,
        name: str = "topic_diversity",
    ) -> None:
        check_number("TopicDiversity.lambda_", lambda_, 0.0, 1.0)
        check_int("TopicDiversity.top_k", top_k, 1, allow_none=True)
        if embeddings is not None:
            embeddings = np.asarray(embeddings)
            if embeddings.ndim != 2 or embeddings.dtype.kind != "f":
                raise ConfigError(
                    "TopicDiversity.embeddings: expected a 2-D float array (items x dims), got "
                    f"shape {embeddings.shape} dtype {embeddings.dtype}"
                )
        self.lambda_ = float(lambda_)
        self.top_k = top_k
        self.embeddings = embeddings
        self.name = name

    def __repr__(self) -> str:
        emb = "" if self.embeddings is None else f", embeddings={self.embeddings.shape}"
        return f"TopicDiversity(lambda_={self.lambda_:g}, top_k={self.top_k}{emb})"

    def apply(self, slate: Slate, ctx: RuleContext) -> Slate:
        n = len(slate)
        k = min(self.top_k or ctx.k, n)
        if k == 0:
            return slate
        lam = self.lambda_
        gain = lam * relevance(slate.scores)
        items = slate.items
        topic = ctx.catalog.topic[items]
        emb = None
        if self.embeddings is not None:
            if len(self.embeddings) != ctx.catalog.n:
                raise DataError(
                    f"TopicDiversity.embeddings: {len(self.embeddings)} rows, but the catalog "
                    f"has {ctx.catalog.n} items; expected one row per item"
                )
            emb = np.asarray(self.embeddings[items], dtype=np.float64)
            norm = np.linalg.norm(emb, axis=1, keepdims=True)
            emb = emb / np.where(norm > 0, norm, 1.0)
        if emb is None:
            picks, sims = mmr_topics(gain, topic, 1.0 - lam, k)
        else:
            picks, sims = mmr_dense(gain, emb, 1.0 - lam, k)
        if picks == list(range(k)):
            return slate
        taken = np.zeros(n, bool)
        taken[picks] = True
        order = np.concatenate([np.array(picks, np.int64), np.flatnonzero(~taken)])
        if not ctx.explain:  # nothing dropped; moves logged for explanations only
            return slate.take(order)
        return slate.take(order, self._actions(slate, order, k, sims, topic, ctx))

    def _actions(
        self,
        slate: Slate,
        order: np.ndarray,
        k: int,
        sims: list[float],
        topic: np.ndarray,
        ctx: RuleContext,
    ) -> list[RuleAction]:
        what = f"topic diversity (MMR, lambda={self.lambda_:g})"
        names = ctx.catalog.topic_names
        moved = np.flatnonzero(
            (order != np.arange(len(order))) & ((order < k) | (np.arange(len(order)) < k))
        )
        actions = []
        for t in moved.tolist():
            q = int(order[t])
            if t < k:
                verb = "promoted" if t < q else "demoted"
                if self.embeddings is None:
                    tp = int(topic[q])
                    label = f"topic '{names[tp]}'" if tp >= 0 else "unknown topic"
                    seen = "already above" if sims[t] > 0 else f"new in the top {k}"
                    detail = f"{label} {seen}"
                else:
                    detail = f"max similarity {sims[t]:.2f} to the items above"
                reason = f"{verb} by {what}: {detail}"
            else:
                reason = f"demoted out of the top {k} by {what}: more diverse items took its place"
            actions.append(RuleAction(self.name, int(slate.items[q]), "moved", reason, q, t))
        return actions
