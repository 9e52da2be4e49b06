"""The array contract of retrieval and the helpers every source shares (the protocols a source
implements are in :mod:`mlsd.retrieval.protocols`).

A source answers ``candidates(user_ids, k) -> (item_ids, scores)`` for a batch of users:
``user_ids`` is ``int64[n]``; ``item_ids`` is ``int64[n, k]`` (external video ids) and
``scores`` ``float32[n, k]``, each row sorted by descending score. Scores are comparable
within one source only. A row with fewer than ``k`` candidates is padded with item id
:data:`PAD` (-1) and score ``-inf``. No row holds the same video twice.

Sources read a user's recent watches from a :class:`~mlsd.retrieval.history.History` at request
time, never from the dataset, so a watch appended to the history changes the next request.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mlsd.errors import ConfigError, NotFittedError

__all__ = [
    "PAD",
    "NotFittedError",
    "as_user_ids",
    "check_k",
    "embedding_pair_scores",
    "exclude_and_take",
    "row_keys",
    "rowwise_isin",
    "top_k_rows",
]

PAD: int = -1  # item id of padding slots; their score is -inf


def check_k(k: int) -> int:
    """Validate a candidate count (a positive int)."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"k={k!r}: expected a positive integer number of candidates")
    return int(k)


def as_user_ids(user_ids: object) -> np.ndarray:
    """``user_ids`` as a 1-D int64 array (a scalar becomes a batch of one)."""
    arr = np.asarray(user_ids)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ConfigError(
            f"user_ids: got an array of shape {arr.shape} and dtype {arr.dtype}; "
            "expected a 1-D array of integer user ids"
        )
    return arr.astype(np.int64, copy=False)


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of the ``k`` largest entries of each row, best first.

    ``scores`` is ``float[n, m]``; entries equal to ``-inf`` count as absent. When ``m < k``
    the result is padded with index -1 and ``-inf``. Ties are broken by the lower column index,
    so the result is deterministic.
    """
    n, m = scores.shape
    kk = min(k, m)
    idx = np.full((n, k), -1, dtype=np.int64)
    val = np.full((n, k), -np.inf, dtype=np.float32)
    if kk == 0 or n == 0:
        return idx, val
    if kk < m:
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        # argpartition picks an arbitrary subset of the entries tied with the k-th value; in
        # rows where such a tie straddles the cut, take the lowest columns (a stable sort).
        kth = np.take_along_axis(scores, part, axis=1).min(axis=1)
        straddle = np.flatnonzero((scores >= kth[:, None]).sum(axis=1) > kk)
        if len(straddle):
            part[straddle] = np.argsort(-scores[straddle], axis=1, kind="stable")[:, :kk]
    else:
        part = np.broadcast_to(np.arange(m), (n, m)).copy()
    ps = np.take_along_axis(scores, part, axis=1)
    # Sort by (-score, column) so that ties resolve by column index.
    order = np.lexsort((part, -ps), axis=1)
    top = np.take_along_axis(part, order, axis=1)
    tv = np.take_along_axis(ps, order, axis=1)
    ok = np.isfinite(tv) | (tv > 0)
    idx[:, :kk] = np.where(ok, top, -1)
    val[:, :kk] = np.where(ok, tv, -np.inf)
    return idx, val


def row_keys(rows: np.ndarray, values: np.ndarray, n_rows: int) -> np.ndarray:
    """One int64 key per (row, value) pair, ordered by row then value.

    Fast path: ``rows << 41 | (value + 1)`` when ids lie in ``[-1, 2**40)`` and there are fewer
    than ``2**22`` rows (always true for mlsd's 1-based ids). Otherwise the values are
    factorised first (slower, but any int64 ids work without overflow).
    """
    v = np.asarray(values, dtype=np.int64)
    if n_rows < (1 << 22) and (v.size == 0 or (v.min() >= -1 and v.max() < (1 << 40))):
        return (np.asarray(rows, dtype=np.int64) << 41) | (v + 1)
    uniq, codes = np.unique(v, return_inverse=True)
    return np.asarray(rows, dtype=np.int64) * max(len(uniq), 1) + codes.reshape(v.shape)


def rowwise_isin(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``out[i, j] = a[i, j] in b[i]`` for ``a`` ``int[n, m]`` and ``b`` ``int[n, e]``.

    :data:`PAD` never matches. Vectorised: ``b``'s rows are sorted, turned into one globally
    sorted array of (row, value) keys (:func:`row_keys`) and ``a``'s keys are looked up with
    one ``searchsorted``.
    """
    n, m = a.shape
    if n == 0 or m == 0 or b.size == 0:
        return np.zeros(a.shape, dtype=bool)
    rows_a = np.broadcast_to(np.arange(n, dtype=np.int64)[:, None], a.shape)
    rows_b = np.broadcast_to(np.arange(n, dtype=np.int64)[:, None], b.shape)
    both = row_keys(
        np.concatenate([rows_a.ravel(), rows_b.ravel()]),
        np.concatenate([a.ravel(), b.ravel()]),
        n,
    )
    ka, kb = both[: a.size], np.sort(both[a.size :])
    pos = np.minimum(np.searchsorted(kb, ka), len(kb) - 1)
    return ((kb[pos] == ka) & (a.ravel() != PAD)).reshape(n, m)


def exclude_and_take(
    items: np.ndarray, scores: np.ndarray, exclude: np.ndarray | None, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Drop, per row, padding and the ids in ``exclude[row]``; keep the first ``k`` survivors.

    ``items``/``scores`` are ``[n, m]`` sorted best first; ``exclude`` is ``int64[n, e]`` padded
    with :data:`PAD` (or None). Returns ``[n, k]`` arrays padded with :data:`PAD` / ``-inf``.
    Vectorised (:func:`rowwise_isin`); survivors are compacted with a stable sort, so the
    relative order of kept items is preserved.
    """
    n = items.shape[0]
    if n == 1:  # one request: the same result with a handful of numpy calls
        return _exclude_and_take_row(items[0], scores[0], exclude, k)
    drop = items == PAD
    if exclude is not None and exclude.size and n:
        drop |= rowwise_isin(items, exclude)
    order = np.argsort(drop, axis=1, kind="stable")[:, :k]
    out_i = np.take_along_axis(items, order, axis=1)
    out_s = np.take_along_axis(scores, order, axis=1).astype(np.float32, copy=False)
    dropped = np.take_along_axis(drop, order, axis=1)
    out_i = np.where(dropped, PAD, out_i)
    out_s = np.where(dropped, -np.inf, out_s).astype(np.float32)
    if out_i.shape[1] < k:
        pad = k - out_i.shape[1]
        out_i = np.pad(out_i, ((0, 0), (0, pad)), constant_values=PAD)
        out_s = np.pad(out_s, ((0, 0), (0, pad)), constant_values=-np.inf)
    return out_i.astype(np.int64, copy=False), out_s


def _exclude_and_take_row(
    items: np.ndarray, scores: np.ndarray, exclude: np.ndarray | None, k: int
) -> tuple[np.ndarray, np.ndarray]:
    drop = items == PAD
    if exclude is not None and exclude.size:
        ex = exclude[0]
        ex = ex[ex != PAD]
        if len(ex):
            drop |= np.isin(items, ex)
    keep = np.flatnonzero(~drop)[:k]
    out_i = np.full((1, k), PAD, np.int64)
    out_s = np.full((1, k), -np.inf, np.float32)
    out_i[0, : len(keep)] = items[keep]
    out_s[0, : len(keep)] = scores[keep]
    return out_i, out_s


def embedding_pair_scores(
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    user_vectors: Callable[[np.ndarray], np.ndarray],
    item_vectors: np.ndarray,
    item_index: Callable[[np.ndarray], np.ndarray],
    *,
    nan_without_history: bool = False,
) -> np.ndarray:
    """Inner products of (user, item) pairs for an embedding model: ``int64[n]`` users and
    items -> ``float32[n]``. ``user_vectors`` maps distinct user ids to ``float32[u, d]``
    (called once, on the distinct users); ``item_index`` maps item ids to rows of
    ``item_vectors`` (-1: unknown item, scored NaN). ``nan_without_history``: a user whose
    vector is all zeros (a factor model's user without history) scores NaN too."""
    u = as_user_ids(user_ids)
    if len(u) == 0:
        return np.zeros(0, np.float32)
    uu, inv = np.unique(u, return_inverse=True)
    q = user_vectors(uu)[inv]
    idx = item_index(np.asarray(item_ids, np.int64))
    s = (q * item_vectors[np.maximum(idx, 0)]).sum(1)
    ok = idx >= 0
    if nan_without_history:
        ok &= np.any(q != 0, axis=1)
    return np.where(ok, s, np.nan).astype(np.float32)
