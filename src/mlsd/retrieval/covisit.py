"""Item-to-item co-visitation: videos validly watched close together by the same users.

Fit: for every user, their positives in time order; each pair of positives at most
``max_gap`` positions and ``window_hours`` apart counts once in both directions. The pair
weight is ``c_ij / (n_i ** a * n_j ** a)`` with ``n`` the videos' positive counts and ``a`` =
``popularity_exponent`` (0: raw co-counts, which favour popular neighbours; 0.5: cosine
similarity of the user-incidence vectors, as in Linden et al., "Amazon.com recommendations:
item-to-item collaborative filtering", IEEE Internet Computing 2003). Each video keeps its
``n_neighbors`` heaviest neighbours.

Request: the user's last ``history_len`` watches are seeds; the ``i``-th most recent weighs
``recency_decay ** i``; a candidate's score is the sum over seeds of seed weight times pair
weight. Everything is vectorised (sorts and bincounts, no per-pair Python).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mlsd.errors import ConfigError, DataError
from mlsd.retrieval._data import Catalog
from mlsd.retrieval.base import PAD, NotFittedError, as_user_ids, check_k, exclude_and_take
from mlsd.retrieval.fitting import FitData, SourceBase
from mlsd.retrieval.history import History

__all__ = ["CoVisitationSource"]

HOUR_MS = 3_600_000
#: pair occurrences counted at once (see _pair_counts): a few int64 each in temporaries
_RANGE_PAIRS = 1 << 24
_FORMAT = 1


@dataclass(kw_only=True, eq=False)
class CoVisitationSource(SourceBase):
    """Candidates co-watched with the user's recent history (see the module docstring).

    Learned state: ``catalog_``; the neighbour lists in CSR form, ``indptr_``
    (``int64[n_videos + 1]``), ``neighbors_`` (``int32`` catalog positions) and ``weights_``
    (``float32``), heaviest first per video; ``history_``;
    ``unknown_history_ids_`` (running count of history ids outside the catalog, ignored).
    """

    max_gap: int = 50
    window_hours: float = 24.0 * 28
    n_neighbors: int = 100
    popularity_exponent: float = 0.0
    history_len: int = 50
    recency_decay: float = 0.99
    name: str = "covisit"
    exclude_seen: bool = True

    def _check_params(self) -> None:
        if self.max_gap < 1 or self.n_neighbors < 1 or self.history_len < 1:
            raise ConfigError(
                f"max_gap={self.max_gap}, n_neighbors={self.n_neighbors}, "
                f"history_len={self.history_len}: expected each >= 1"
            )
        if not 0 < self.recency_decay <= 1:
            raise ConfigError(f"recency_decay={self.recency_decay!r}: expected a value in (0, 1]")

    def _fit(self, d: FitData, **options: Any) -> None:
        """Count co-visits in the positives (see :meth:`SourceBase.fit`)."""
        pos, catalog = d.positives, d.catalog
        idx = catalog.index(pos.video_ids)
        ok = idx >= 0
        u, v, t = pos.user_ids[ok], idx[ok], pos.times_ms[ok]  # sorted by (user, time)
        n = len(catalog)
        pop = np.bincount(v, minlength=n).astype(np.float64)
        # Pairs come a range of source videos at a time, sorted: each range's heaviest
        # neighbours are chosen before the next range is counted (bounded memory).
        pieces, n_pairs = [], 0
        window = self.window_hours * HOUR_MS
        for keys, counts in _pair_counts(u, v, t, n, self.max_gap, window, _RANGE_PAIRS):
            pieces.append(self._heaviest(keys, counts, n, pop))
            n_pairs += len(keys)
        frm = np.concatenate([p[0] for p in pieces]) if pieces else np.zeros(0, np.int32)
        nb = np.concatenate([p[1] for p in pieces]) if pieces else np.zeros(0, np.int32)
        wt = np.concatenate([p[2] for p in pieces]) if pieces else np.zeros(0, np.float32)
        del pieces
        # CSR rows (source video -> neighbours, heaviest first): memory is proportional to the
        # pairs kept, not to n_videos * n_neighbors (1M videos x 100 would be 1.2 GB dense).
        indptr = np.r_[0, np.cumsum(np.bincount(frm, minlength=n))].astype(np.int64)
        del frm
        self.catalog_, self.indptr_, self.neighbors_, self.weights_ = catalog, indptr, nb, wt
        self.n_pairs_ = n_pairs
        self.history_ = d.history
        self.unknown_history_ids_ = 0

    def _heaviest(
        self, keys: np.ndarray, counts: np.ndarray, n: int, pop: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Source, neighbour (int32) and weight (float32) of the ``n_neighbors`` heaviest pairs
        of each source video among ``keys`` (``i * n + j``, sorted), heaviest first."""
        frm, to = (keys // n).astype(np.int32), (keys % n).astype(np.int32)
        a = self.popularity_exponent
        w = counts / (np.maximum(pop[frm], 1.0) ** a * np.maximum(pop[to], 1.0) ** a)
        # A stable sort by (source, -weight) keeps the neighbour order among equal weights
        # (keys come sorted by neighbour within a source): (source, -weight, neighbour).
        order = np.lexsort((-w, frm))
        frm, to, w = frm[order], to[order], w[order]
        starts = np.searchsorted(frm, frm)  # first position of each row's source
        keep = (np.arange(len(frm)) - starts) < self.n_neighbors
        return frm[keep], to[keep], w[keep].astype(np.float32)

    # -- persistence: the neighbour lists as .npy, parameters as JSON -------------------------
    def params(self) -> dict[str, Any]:
        """The constructor arguments."""
        return {
            "max_gap": self.max_gap,
            "window_hours": self.window_hours,
            "n_neighbors": self.n_neighbors,
            "popularity_exponent": self.popularity_exponent,
            "history_len": self.history_len,
            "recency_decay": self.recency_decay,
            "name": self.name,
            "exclude_seen": self.exclude_seen,
        }

    def save(self, directory: str | Path) -> None:
        """Write the fitted neighbour lists (counting pairs over a large log takes minutes;
        reading them back, a second)."""
        if not hasattr(self, "neighbors_"):
            raise NotFittedError("CoVisitationSource is not fitted; call fit() first")
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for name in ("indptr_", "neighbors_", "weights_"):
            np.save(d / f"{name.rstrip('_')}.npy", getattr(self, name), allow_pickle=False)
        np.save(d / "video_ids.npy", self.catalog_.video_ids, allow_pickle=False)
        meta = {"format": _FORMAT, "params": self.params(), "n_pairs": self.n_pairs_}
        (d / "covisit.json").write_text(json.dumps(meta, indent=2) + "\n")

    def load_state(
        self, directory: str | Path, *, videos: pa.Table, history: History
    ) -> CoVisitationSource:
        """Read the neighbour lists written by :meth:`save` into this (configured) source;
        :class:`DataError` if they are unreadable, inconsistent, or were fitted with other
        parameters or another catalog. ``history`` is the state to serve from."""
        d = Path(directory)
        try:
            meta = json.loads((d / "covisit.json").read_text())
            arrays = {n: np.load(d / f"{n}.npy", allow_pickle=False)
                      for n in ("indptr", "neighbors", "weights", "video_ids")}  # fmt: skip
        except (OSError, ValueError) as e:
            raise DataError(f"{d}: cannot load the co-visitation lists ({e})") from e
        if meta.get("format") != _FORMAT:
            raise DataError(f"{d / 'covisit.json'}: format {meta.get('format')!r}; "
                            f"expected {_FORMAT}")  # fmt: skip
        if meta.get("params") != self.params():
            raise DataError(f"{d / 'covisit.json'}: fitted with {meta.get('params')}; this "
                            f"configuration is {self.params()}")  # fmt: skip
        catalog = Catalog.from_videos(videos)
        indptr, nb, wt = arrays["indptr"], arrays["neighbors"], arrays["weights"]
        n = len(catalog)
        if (
            not np.array_equal(arrays["video_ids"], catalog.video_ids)
            or indptr.shape != (n + 1,)
            or int(indptr[-1]) != len(nb)
            or len(wt) != len(nb)
            or bool(np.any(np.diff(indptr) < 0))
            or (len(nb) and (int(nb.min()) < 0 or int(nb.max()) >= n))
        ):
            raise DataError(f"{d}: neighbour lists do not match the bundle's video catalog")
        self.catalog_, self.indptr_ = catalog, indptr.astype(np.int64)
        self.neighbors_, self.weights_ = nb.astype(np.int32), wt.astype(np.float32)
        self.n_pairs_ = int(meta.get("n_pairs", len(nb)))
        self.history_ = history
        self.unknown_history_ids_ = 0
        return self

    def candidates(self, user_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """See :class:`~mlsd.retrieval.base.CandidateSource`. Users without history (or whose
        seeds have no neighbours) get padding: pair this source with a fallback."""
        if not hasattr(self, "neighbors_"):
            raise NotFittedError("CoVisitationSource is not fitted; call fit() first")
        k = check_k(k)
        users = as_user_ids(user_ids)
        out_i = np.full((len(users), k), PAD, np.int64)
        out_s = np.full((len(users), k), -np.inf, np.float32)
        for lo in range(0, len(users), 512):
            ub = users[lo : lo + 512]
            seen = self._seen(ub)
            extra = 0 if seen is None else seen.shape[1]
            items, scores = self._score(ub, k + extra)
            out_i[lo : lo + 512], out_s[lo : lo + 512] = exclude_and_take(items, scores, seen, k)
        return out_i, out_s

    def _score(self, users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        seeds, _ = self.history_.recent(users, self.history_len)
        sidx = self.catalog_.index(seeds)
        self.unknown_history_ids_ += int(((sidx < 0) & (seeds != PAD)).sum())
        n, h = seeds.shape
        rw = self.recency_decay ** np.arange(h, dtype=np.float64)
        ok = sidx >= 0
        seed_row = np.broadcast_to(np.arange(n)[:, None], (n, h))[ok]
        seed_w = np.broadcast_to(rw[None, :], (n, h))[ok]
        seed = sidx[ok]
        # Gather every seed's CSR slice at once: repeat each seed by its neighbour count.
        lo, cnt = self.indptr_[seed], self.indptr_[seed + 1] - self.indptr_[seed]
        rep = np.repeat(np.arange(len(seed)), cnt)
        within = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        at = lo[rep] + within
        r, c = seed_row[rep], self.neighbors_[at].astype(np.int64)
        ww = seed_w[rep] * self.weights_[at]
        nc = len(self.catalog_)
        keys, inv = np.unique(r * nc + c, return_inverse=True)
        sums = np.bincount(inv, weights=ww)
        kr, kc = keys // nc, keys % nc
        order = np.lexsort((kc, -sums, kr))
        kr, kc, sums = kr[order], kc[order], sums[order]
        starts = np.searchsorted(kr, np.arange(n))
        rank = np.arange(len(kr)) - starts[kr]
        keep = rank < k
        items = np.full((n, k), PAD, np.int64)
        scores = np.full((n, k), -np.inf, np.float32)
        items[kr[keep], rank[keep]] = self.catalog_.video_ids[kc[keep]]
        scores[kr[keep], rank[keep]] = sums[keep]
        return items, scores


def _pair_counts(
    u: np.ndarray,
    v: np.ndarray,
    t: np.ndarray,
    n: int,
    max_gap: int,
    window: float,
    max_pairs: int,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The distinct directed co-visit pairs and how often each occurs, from positives sorted by
    (user, time) (catalog positions ``v``, times ``t`` in ms): yields ``(keys, counts)`` with
    keys ``i * n + j`` sorted, for consecutive ranges of source videos ``i`` holding about
    ``max_pairs`` pair occurrences each (more only where one video has more).

    Only one range's pairs are ever materialised (a few int64 per occurrence, for about
    ``max_pairs`` of them) plus the positions of the co-visits (one int32 per undirected
    occurrence), so memory is bounded however many pairs a large log has."""
    lags: list[tuple[int, np.ndarray]] = []
    per_source = np.zeros(n, np.int64)
    for lag in range(1, max_gap + 1):
        same = (u[lag:] == u[:-lag]) & (t[lag:] - t[:-lag] <= window)
        same &= v[lag:] != v[:-lag]
        at = np.flatnonzero(same).astype(np.int32 if len(v) < 2**31 else np.int64)
        if len(at):
            lags.append((lag, at))
            per_source += np.bincount(v[at], minlength=n)
            per_source += np.bincount(v[at + lag], minlength=n)
    if not lags:
        return
    cum = np.cumsum(per_source)
    # Range ends: the first source video whose cumulative count reaches each multiple.
    ends = np.unique(np.searchsorted(cum, np.arange(max_pairs, cum[-1], max_pairs), "left") + 1)
    for lo, hi in zip(np.r_[0, ends], np.r_[ends, n], strict=True):
        if cum[hi - 1] - (cum[lo - 1] if lo else 0) == 0:
            continue
        parts = []
        for lag, at in lags:
            a, b = v[at], v[at + lag]
            fwd = (a >= lo) & (a < hi)
            bwd = (b >= lo) & (b < hi)
            parts += [a[fwd].astype(np.int64) * n + b[fwd], b[bwd].astype(np.int64) * n + a[bwd]]
        keys, counts = np.unique(np.concatenate(parts), return_counts=True)
        del parts
        yield keys, counts
