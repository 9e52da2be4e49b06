"""Beyond-accuracy metrics: catalog coverage, intra-list diversity, novelty, concentration.

All take ``recs`` (``int64[n_users, K]`` item ids padded with ``-1``, see :mod:`.metrics`) and
the catalog's side information aligned on ``item_ids`` (:class:`ItemInfo`). A recommended id
missing from ``item_ids`` is an upstream bug and raises :class:`DataError`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlsd.errors import DataError
from mlsd.evaluation.interactions import Interactions

__all__ = [
    "ItemInfo",
    "catalog_coverage",
    "creator_concentration",
    "gini",
    "intra_list_diversity",
    "novelty",
]

_BATCH = 4096  # users per block in the pairwise computations (bounds memory to ~b*K*K)


@dataclass(frozen=True, eq=False)
class ItemInfo:
    """The catalog and what the beyond-accuracy metrics need to know about its items.

    All arrays are aligned with ``item_ids`` (``int64[m]``, unique):

    - ``topics``: ``[m]`` topic labels (any comparable values; None/NaN/"" = unknown), for the
      same-topic similarity of :func:`intra_list_diversity`;
    - ``features``: ``float[m, d]`` item vectors for cosine similarity (used when no topics);
    - ``creator_ids``: ``int64[m]``, ``-1`` when unknown, for :func:`creator_concentration`;
    - ``user_counts``: ``int64[m]`` distinct training users per item, with ``n_users`` the
      number of training users, for :func:`novelty`.
    """

    item_ids: np.ndarray
    topics: np.ndarray | None = None
    features: np.ndarray | None = None
    creator_ids: np.ndarray | None = None
    user_counts: np.ndarray | None = None
    n_users: int | None = None

    def __post_init__(self) -> None:
        ids = np.asarray(self.item_ids, dtype=np.int64)
        if len(np.unique(ids)) != len(ids):
            raise DataError(f"item info: item_ids has duplicates ({len(ids):,} ids)")
        object.__setattr__(self, "item_ids", ids)
        for name in ("topics", "features", "creator_ids", "user_counts"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != len(ids):
                raise DataError(
                    f"item info: {name} has {len(arr):,} rows; expected {len(ids):,} (one per item)"
                )

    @classmethod
    def from_videos(
        cls, videos: pa.Table, train: Interactions | None = None, *, multi_topic: bool = False
    ) -> ItemInfo:
        """From a videos table (mlsd schema): ids, ``creator_id`` and, for diversity, the
        primary ``topic`` or, with ``multi_topic``, one-hot ``features`` of the ``topics`` lists
        (cosine diversity, e.g. MovieLens genres). Entirely null columns are left out;
        popularity comes from ``train`` when given."""
        ids = np.asarray(videos.column("video_id").to_numpy(zero_copy_only=False), np.int64)
        topics = features = creators = None
        names = videos.column_names
        if multi_topic and "topics" in names and videos.column("topics").null_count < len(ids):
            features = _one_hot(videos.column("topics").to_pylist())
        elif "topic" in names and videos.column("topic").null_count < len(ids):
            topics = np.asarray(videos.column("topic").to_pylist(), dtype=object)
        if "creator_id" in names and videos.column("creator_id").null_count < len(ids):
            col = pc.fill_null(videos.column("creator_id"), -1)
            creators = np.asarray(col.to_numpy(zero_copy_only=False), np.int64)
        info = cls(ids, topics, features, creators)
        return info.with_popularity(train) if train is not None else info

    def with_popularity(self, train: Interactions) -> ItemInfo:
        """A copy whose ``user_counts``/``n_users`` come from ``train``."""
        counts, n_users = _user_counts(train, self.item_ids)
        return ItemInfo(
            self.item_ids, self.topics, self.features, self.creator_ids, counts, n_users
        )


def _one_hot(lists: list[list[str] | None]) -> np.ndarray:
    vocab = sorted({t for row in lists for t in (row or [])})
    col = {t: j for j, t in enumerate(vocab)}
    out = np.zeros((len(lists), len(vocab)), np.float32)
    for i, row in enumerate(lists):
        for t in row or []:
            out[i, col[t]] = 1.0
    return out


def _user_counts(train: Interactions, ids: np.ndarray) -> tuple[np.ndarray, int]:
    pairs = np.unique(np.stack([train.item_ids, train.user_ids], axis=1), axis=0)
    items, counts = np.unique(pairs[:, 0], return_counts=True)
    rows = _rows(items, ids, strict=False)
    out = np.zeros(len(ids), np.int64)
    out[rows[rows >= 0]] = counts[rows >= 0]
    return out, len(np.unique(train.user_ids))


def _rows(recs: np.ndarray, item_ids: np.ndarray, strict: bool = True) -> np.ndarray:
    """Catalog row of each id in ``recs`` (same shape), ``-1`` for padding (and, unless
    ``strict``, for unknown ids; strict raises :class:`DataError` on the first unknown id)."""
    order = np.argsort(item_ids, kind="stable")
    sorted_ids = item_ids[order]
    flat = recs.ravel()
    if len(sorted_ids) == 0:
        pos = np.zeros(len(flat), np.int64)
        found = np.zeros(len(flat), bool)
    else:
        pos = np.searchsorted(sorted_ids, flat).clip(max=len(sorted_ids) - 1)
        found = sorted_ids[pos] == flat
    unknown = ~found & (flat != -1)
    if strict and unknown.any():
        raise DataError(
            f"recs: item {int(flat[unknown][0])} is not in the catalog ({int(unknown.sum()):,} "
            "recommended ids are not); expected ids listed in item_ids"
        )
    return np.where(found, order[pos] if len(order) else -1, -1).reshape(recs.shape)


def catalog_coverage(recs: np.ndarray, catalog_size: int) -> float:
    """Share of the catalog recommended to at least one user: ``|distinct ids in recs| /
    catalog_size`` (padding excluded), in [0, 1] when recs hold catalog items."""
    if catalog_size <= 0:
        raise DataError(f"catalog_size={catalog_size}: expected a positive number of items")
    r = np.asarray(recs)
    return float(len(np.unique(r[r != -1])) / catalog_size)


def intra_list_diversity(
    recs: np.ndarray,
    item_ids: np.ndarray,
    *,
    topics: np.ndarray | None = None,
    features: np.ndarray | None = None,
) -> np.ndarray:
    """Per list, ``1 - mean pairwise similarity`` of its items (Ziegler et al., WWW 2005):
    ``float64[n_users]``, NaN for lists with fewer than two items.

    With ``topics`` the similarity of two items is 1 if they share a (known) topic, else 0, so
    the value is the share of pairs from different topics, in [0, 1]. With ``features`` it is the
    cosine similarity (zero vectors count as similarity 0); the value is in [0, 2], and in
    [0, 1] for non-negative features such as one-hot genres.
    """
    if (topics is None) == (features is None):
        raise DataError("intra_list_diversity: give exactly one of topics or features")
    r = np.asarray(recs, dtype=np.int64)
    rows = _rows(r, np.asarray(item_ids, np.int64))
    n, k = rows.shape
    out = np.full(n, np.nan)
    if topics is not None:
        labels = np.asarray(topics, dtype=object)
        unknown = np.array([x is None or x == "" or x != x for x in labels], dtype=bool)
        codes = np.unique(labels[~unknown].astype(str), return_inverse=True)[1]
        topic_code = np.full(len(labels), -1, np.int64)
        topic_code[~unknown] = codes
    else:
        f = np.asarray(features, dtype=np.float64)
        norms = np.linalg.norm(f, axis=1, keepdims=True)
        unit = np.divide(f, norms, out=np.zeros_like(f), where=norms > 0)
    upper = np.triu(np.ones((k, k), bool), 1)
    for lo in range(0, n, _BATCH):
        b = rows[lo : lo + _BATCH]
        valid = b >= 0
        pair = valid[:, :, None] & valid[:, None, :] & upper
        if topics is not None:
            c = np.where(valid, topic_code[np.maximum(b, 0)], -1)
            sim = ((c[:, :, None] == c[:, None, :]) & (c[:, :, None] >= 0)).astype(np.float64)
        else:
            v = unit[np.maximum(b, 0)] * valid[:, :, None]
            sim = np.einsum("bkd,bld->bkl", v, v)
        n_pairs = pair.sum(axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_sim = (sim * pair).sum(axis=(1, 2)) / n_pairs
        out[lo : lo + _BATCH] = np.where(n_pairs > 0, 1.0 - mean_sim, np.nan)
    return out


def novelty(
    recs: np.ndarray, item_ids: np.ndarray, user_counts: np.ndarray, n_users: int
) -> np.ndarray:
    """Mean self-information of each list's items, in bits: ``float64[n_users]`` (NaN for empty
    lists). An item's self-information is ``-log2 p``, ``p`` its popularity share: the share of
    training users who interacted with it (Zhou et al., PNAS 2010), add-one smoothed,
    ``p = (count + 1) / (n_users + 1)``, so never-seen items stay finite (``log2(n_users + 1)``).
    Ids absent from ``item_ids`` count as never seen."""
    r = np.asarray(recs, dtype=np.int64)
    rows = _rows(r, np.asarray(item_ids, np.int64), strict=False)
    counts = np.asarray(user_counts, dtype=np.float64)
    c = np.where(rows >= 0, counts[np.maximum(rows, 0)] if len(counts) else 0.0, 0.0)
    bits = -np.log2((c + 1.0) / (n_users + 1.0))
    valid = r != -1
    n = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (bits * valid).sum(axis=1) / n, np.nan)


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0: all equal; ``(n - 1) / n``: all mass on one),
    ``G = sum_i (2i - n - 1) x_(i) / (n sum x)`` over ascending ``x_(i)``, ``i = 1..n``
    (Damgaard & Weiner, 2000). 0 when the sum is 0; NaN for no values."""
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if x.size == 0:
        return float("nan")
    if np.any(x < 0):
        raise DataError("gini: values must be non-negative (counts or exposures)")
    total = x.sum()
    if total == 0:
        return 0.0
    n = x.size
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * x).sum() / (n * total))


def creator_concentration(recs: np.ndarray, item_ids: np.ndarray, creator_ids: np.ndarray) -> float:
    """Gini of the recommendation slots each creator gets, over every known creator of the
    catalog (creators never recommended count with 0 slots). Slots of items whose creator is
    unknown (``-1``) are left out. 0 = exposure spread evenly; near 1 = a few creators get all."""
    r = np.asarray(recs, dtype=np.int64)
    rows = _rows(r, np.asarray(item_ids, np.int64))
    creators = np.asarray(creator_ids, dtype=np.int64)
    known = np.unique(creators[creators >= 0])
    slot_creators = creators[rows[rows >= 0]]
    slot_creators = slot_creators[slot_creators >= 0]
    counts = np.bincount(np.searchsorted(known, slot_creators), minlength=len(known))
    return gini(counts)
