"""The ranker's training rows: the candidates retrieval would have served at the label cut,
labelled by what each user did after it.

Labels are valid watches and likes at or after each user's cut. Impressions after the cut
without a play are added as shown-but-not-watched negatives (what the logging policy really
served), and so are rows of weight 0; for interactions-only logs the negatives are the
candidates not interacted with. With weights, a positive row's sample weight grows with them.
Every positive row is kept and negatives are sampled per user (seeded).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from mlsd.data.dataset import Dataset
from mlsd.data.labels import confidence, has_weights, valid_watch, weights, zero_weight
from mlsd.errors import DataError
from mlsd.features.signals import timestamps_ms
from mlsd.memory import release_memory
from mlsd.pipeline.config import StagesConfig
from mlsd.pipeline.data import events_of, ids, in_pairs, pair_set
from mlsd.pipeline.labels import LabelSplit
from mlsd.pipeline.retrieval import RetrievalStage
from mlsd.retrieval import PAD
from mlsd.retrieval.base import row_keys

__all__ = ["training_rows"]

BATCH = 2048  # users retrieved at once


def training_rows(
    ds: Dataset, split: LabelSplit, retrieval: RetrievalStage, cfg: StagesConfig
) -> tuple[pa.Table, np.ndarray]:
    """``(rows, retrieval_features)``: a table of ``user_id, video_id, timestamp`` (the user's
    cut), ``label_watch``, ``label_like`` (and, when the log has weights, ``weight_watch``:
    :func:`~mlsd.data.labels.confidence` of a positive's summed weights after the cut, 1 for
    a negative), and ``float32[n, r]`` retrieval features aligned with it. ``retrieval``
    must be fitted on the positives before the cut. Raises :class:`DataError` when no
    candidate was watched after the cut."""
    rng = np.random.default_rng(cfg.seed)
    users = split.label_users
    if cfg.max_label_users is not None and len(users) > cfg.max_label_users:
        users = np.sort(rng.choice(users, size=cfg.max_label_users, replace=False))
    ev = ds.events
    ts = timestamps_ms(ev.column("timestamp"))
    cut_u = split.cuts(users)
    # labels: valid watches (and likes) at or after each user's cut
    eu, evid = ids(ev, "user_id"), ids(ev, "video_id")
    upos = np.searchsorted(users, eu).clip(max=len(users) - 1)
    is_label_user = users[upos] == eu
    ev_after = is_label_user & (ts >= np.where(is_label_user, cut_u[upos], 0))
    if split.after_pairs is not None:  # no time order: the labelled pairs are "after"
        ev_after = is_label_user & in_pairs(split.after_pairs, eu, evid)
    watch = valid_watch(ev, ds.videos, cfg.label) & ev_after
    like = events_of(ev, "like") & ev_after
    impressed = events_of(ev, "impression") & ev_after
    weighted = has_weights(ev)
    if weighted:  # a weight-0 row is an exposure, not a positive: a shown-not-watched negative
        zero = zero_weight(ev)
        like &= ~zero
        impressed |= zero & ev_after
    watch_keys = pair_set(eu[watch], evid[watch])
    like_keys = pair_set(eu[like], evid[like])
    parts_u, parts_v, parts_f = [], [], []
    for lo in range(0, len(users), BATCH):
        ub = users[lo : lo + BATCH]
        cand = retrieval.retrieve(ub, cfg.candidates)
        ok = cand.items != PAD
        rr = np.broadcast_to(np.arange(len(ub))[:, None], cand.items.shape)[ok]
        parts_u.append(ub[rr])
        parts_v.append(cand.items[ok])
        parts_f.append(cand.features[ok])
    cu = np.concatenate(parts_u) if parts_u else np.zeros(0, np.int64)
    cv = np.concatenate(parts_v) if parts_v else np.zeros(0, np.int64)
    n_feat = len(retrieval.feature_names_)
    cf = np.concatenate(parts_f) if parts_f else np.zeros((0, n_feat), np.float32)
    # shown-but-not-watched after the cut: negatives the logging policy really served
    iu, iv = eu[impressed], evid[impressed]
    if len(iu):
        _, first = np.unique(row_keys(iu, iv, 0), return_index=True)
        iu, iv = iu[first], iv[first]
        fresh = ~in_pairs(np.sort(row_keys(cu, cv, 0)), iu, iv)
        iu, iv = iu[fresh], iv[fresh]
        if len(iu):
            cu, cv = np.concatenate([cu, iu]), np.concatenate([cv, iv])
            cf = np.concatenate([cf, retrieval.features_for_pairs(iu, iv)])
    y_watch = in_pairs(watch_keys, cu, cv)
    if weighted:  # a positive counts by its weights after the cut (summed), 1 for a negative
        keys = row_keys(eu[watch], evid[watch], 0)
        pair_w = np.bincount(np.searchsorted(watch_keys, keys), weights(ev)[watch])
        at = np.searchsorted(watch_keys, row_keys(cu, cv, 0)).clip(max=max(len(watch_keys) - 1, 0))
        w_pos = confidence(pair_w[at]) if len(pair_w) else np.ones(len(at), np.float32)
        w_watch = np.where(y_watch, w_pos, 1.0)
    y_like = in_pairs(like_keys, cu, cv)
    # keep every positive, sample negatives per user
    keep = y_watch | y_like
    neg = np.flatnonzero(~keep)
    if len(neg):
        pri = rng.random(len(neg))
        o = np.lexsort((pri, cu[neg]))
        nu = cu[neg][o]
        starts = np.flatnonzero(np.r_[True, nu[1:] != nu[:-1]])
        rank = np.arange(len(nu)) - np.repeat(starts, np.diff(np.r_[starts, len(nu)]))
        keep[neg[o][rank < cfg.negatives_per_user]] = True
    sel = np.flatnonzero(keep)
    cu, cv, cf = cu[sel], cv[sel], cf[sel]
    y_watch, y_like = y_watch[sel], y_like[sel]
    t_row = cut_u[np.searchsorted(users, cu)]
    rows = pa.table(
        {
            "user_id": pa.array(cu, pa.int64()),
            "video_id": pa.array(cv, pa.int64()),
            "timestamp": pa.array(t_row).cast(pa.timestamp("ms", "UTC")),
            "label_watch": pa.array(y_watch),
            "label_like": pa.array(y_like),
        }
    )
    if weighted:
        rows = rows.append_column("weight_watch", pa.array(w_watch[sel], pa.float32()))
    if y_watch.sum() == 0:
        raise DataError(
            "ranker training: none of the candidates retrieval proposed at the cut was "
            "watched after it; expected some positives (give a longer log)"
        )
    release_memory()  # the event-level masks and the candidate lists
    return rows, cf
