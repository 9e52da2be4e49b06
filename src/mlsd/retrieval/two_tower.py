"""The two-tower candidate source: training, export of video embeddings, request-time users.

Training data: each positive (user, video, time) is one example; the user tower sees the
user's positives *strictly before* that time (the last ``history_len``, ties in time excluded
too), never the target itself or anything later: no leakage. Batches are drawn in an order fixed
by a numpy ``Generator`` seeded with ``seed``; weights are initialised under
``torch.manual_seed(seed)`` inside ``torch.random.fork_rng`` (the caller's RNG state is left
untouched) with ``torch.use_deterministic_algorithms(True)``, so on CPU the same seed, data and
thread count give bit-identical embeddings.

Serving: video embeddings are exported once per fit (freshness as of ``now_ms``; call
:meth:`TwoTowerSource.export` to refresh) into an :class:`~mlsd.retrieval.index.EmbeddingIndex`;
the user embedding is computed at request time from the :class:`History`, so a watch appended to
the history changes the very next request.

Files (``save``/``load``): ``model.pt`` (a ``state_dict``, loaded with ``weights_only=True``),
``model.json`` (hyperparameters, vocabularies, training log), ``arrays.npz`` (catalog and user
attributes, read with ``allow_pickle=False``) and ``index/`` (FAISS). Nothing is pickled.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from mlsd.data.fingerprint import fingerprint_arrays
from mlsd.errors import ConfigError, DataError
from mlsd.retrieval._data import Catalog
from mlsd.retrieval._encode import (
    USER_FEATURES,
    UserFeatures,
    age_buckets,
    creator_codes,
    duration_buckets,
    hash_ids,
    popularity_buckets,
    trailing_counts,
)
from mlsd.retrieval.base import (
    PAD,
    NotFittedError,
    as_user_ids,
    check_k,
    embedding_pair_scores,
    exclude_and_take,
)
from mlsd.retrieval.fitting import FitData, SourceBase
from mlsd.retrieval.history import History
from mlsd.retrieval.index import EmbeddingIndex, IndexKind
from mlsd.retrieval.two_tower_net import TwoTowerNet
from mlsd.retrieval.two_tower_train import (
    TrainInputs,
    history_bounds,
    history_rows,
    inference_threads,
    reproducible,
    train_epochs,
)

__all__ = ["TwoTowerSource", "history_bounds", "history_rows"]

_FORMAT = 1


class _Codes:
    """Per-video model inputs, index 0 = unknown (so ``ext[code]`` works for padding)."""

    def __init__(self, catalog: Catalog) -> None:
        creator, self.creator_ids = creator_codes(catalog)
        self.topic = np.r_[0, catalog.topic].astype(np.int64)
        self.creator = np.r_[0, creator].astype(np.int64)
        self.duration = np.r_[0, duration_buckets(catalog.duration_s)].astype(np.int64)
        self.upload_ms = np.r_[np.iinfo(np.int64).min, catalog.upload_ms].astype(np.int64)


@dataclass(kw_only=True, eq=False)
class TwoTowerSource(SourceBase):
    """Two-tower retrieval (see the module docstring); a :class:`CandidateSource`.

    Hyperparameters: embedding sizes (``dim`` output, ``id_dim``/``topic_dim``/``creator_dim``
    for the shared item tables, ``user_id_dim`` for the hashed user id, 0 to disable), MLP width
    ``hidden`` (0: linear towers), ``history_len`` watches pooled, ``popularity_window_days``
    of the video popularity feature, ``n_user_buckets`` hash buckets, softmax
    ``temperature``, ``logq_correction``, ``epochs``, ``refresh_epochs`` (of an incremental
    refresh, see :meth:`fit`), ``batch_size``, ``lr`` (Adam for dense
    weights, SparseAdam for embedding tables), ``seed``, ``num_threads`` (default 1: results do
    not depend on the machine's core count, and several processes sharing cores do not thrash;
    None keeps torch's setting), ``index_kind`` for the exported embeddings, ``name``,
    ``exclude_seen``.

    The defaults were chosen by next-week candidate recall on the ``small`` simulation:
    small id embeddings generalise better than large ones, and the logQ correction is needed.

    Learned state: ``net_``, ``catalog_``, ``user_features_``, ``log_q_`` (per catalog video),
    ``recent_counts_`` (positives per video in the window before ``now_ms_``),
    ``video_embeddings_`` (``float32[n_videos, dim]``, catalog order), ``index_``, ``now_ms_``,
    ``history_``, ``loss_history_`` (mean loss per epoch), ``epoch_seconds_``,
    ``n_unknown_positives_`` (training positives of videos outside the catalog, dropped) and
    ``unknown_history_ids_`` (running count of request-time history ids outside the catalog,
    ignored).
    """

    #: ``fit(..., warm_start=True)`` continues training the fitted network (see :meth:`fit`)
    supports_warm_start = True

    dim: int = 64
    id_dim: int = 8
    topic_dim: int = 32
    creator_dim: int = 32
    user_id_dim: int = 8
    hidden: int = 128
    history_len: int = 30
    popularity_window_days: float = 7.0
    n_user_buckets: int = 1 << 17
    temperature: float = 0.1
    logq_correction: bool = True
    epochs: int = 5
    refresh_epochs: int = 1
    batch_size: int = 512
    lr: float = 3e-3
    seed: int = 0
    num_threads: int | None = 1
    index_kind: IndexKind = "flat"
    name: str = "two_tower"
    exclude_seen: bool = True

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments, by name."""
        names = inspect.signature(type(self).__init__).parameters
        return {k: getattr(self, k) for k in names if k != "self"}

    def _check_params(self) -> None:
        if self.hidden < 0:
            raise ConfigError(f"hidden={self.hidden!r}: expected >= 0 (0: linear towers)")
        for k in ("dim", "id_dim", "topic_dim", "creator_dim", "history_len"):
            if getattr(self, k) < 1:
                raise ConfigError(f"{k}={getattr(self, k)!r}: expected a positive integer")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size={self.batch_size!r}: in-batch softmax needs >= 2")
        if min(self.epochs, self.refresh_epochs, self.user_id_dim) < 0 or self.n_user_buckets < 1:
            raise ConfigError(
                f"epochs={self.epochs}, refresh_epochs={self.refresh_epochs}, n_user_buckets="
                f"{self.n_user_buckets}, user_id_dim={self.user_id_dim}: expected >= 0, >= 0, "
                ">= 1, >= 0"
            )
        if self.popularity_window_days <= 0:
            raise ConfigError(
                f"popularity_window_days={self.popularity_window_days!r}: expected > 0"
            )
        if self.temperature <= 0 or self.lr <= 0:
            raise ConfigError(
                f"temperature={self.temperature}, lr={self.lr}: expected positive numbers"
            )

    # -- training ---------------------------------------------------------------------------
    def _fit(self, d: FitData, **options: Any) -> None:
        """Train on the positives up to ``now_ms``, then export video embeddings (the options
        of :meth:`SourceBase.fit` here).

        ``progress``: True for a Rich progress bar per epoch, or a ``rich.progress.Progress``
        to add the epochs' tasks to. ``warm_start``: when already fitted on the same catalog,
        keep the network and train it for ``refresh_epochs`` only on the positives newer than
        the previous fit's ``now_ms`` (the incremental refresh production two-towers get from
        the newest logs: one pass over them by default; histories still come from every
        positive); otherwise train from scratch for ``epochs``.
        Raises :class:`DataError` when there are fewer than two positives of known videos.
        """
        progress = options.pop("progress", False)
        warm_start = bool(options.pop("warm_start", False))
        if options:
            raise TypeError(f"TwoTowerSource.fit: unexpected options {sorted(options)}")
        pos, catalog, users_t = d.positives, d.catalog, d.users
        prev_now: int | None = None
        state: dict[str, Any] = vars(self)  # the previous fit's attributes, when fitted
        if warm_start and "net_" in state and len(state["catalog_"]) == len(catalog):
            prev_now = int(state["now_ms_"])
        self.catalog_ = catalog
        self.user_features_ = UserFeatures.from_users(users_t)
        self._codes = _Codes(catalog)
        self.now_ms_ = d.now_ms
        v = catalog.index(pos.video_ids) + 1
        known = v > 0
        self.n_unknown_positives_ = int((~known).sum())
        u, v, t = pos.user_ids[known], v[known], pos.times_ms[known]
        if len(u) < 2:
            raise DataError(
                f"two-tower: {len(u)} training positives of known videos; expected at least 2"
            )
        window = int(self.popularity_window_days * 86_400_000)
        # Popularity feature as of now (export) and, per example, as of its own time (training).
        self.recent_counts_ = trailing_counts(
            v, t, np.full(len(catalog), self.now_ms_ + 1), np.arange(1, len(catalog) + 1), window
        )
        pop = popularity_buckets(trailing_counts(v, t, t, v, window))
        counts = np.bincount(v, minlength=len(catalog) + 1).astype(np.float64)
        self.log_q_ = np.log(np.maximum(counts, 1.0) / counts.sum()).astype(np.float32)
        c = self._codes
        inputs = TrainInputs(
            u=u, v=v, t=t, pop=pop,
            log_q=self.log_q_[v] if self.logq_correction else np.zeros(len(u), np.float32),
            topic=c.topic, creator=c.creator, duration=c.duration, upload_ms=c.upload_ms,
            user_features=self.user_features_.lookup(u),
        )  # fmt: skip
        with reproducible(self.seed, self.num_threads):
            if prev_now is None:
                self.net_ = self._make_net()
            self.loss_history_, self.epoch_seconds_ = train_epochs(
                self.net_, inputs, batch_size=self.batch_size, lr=self.lr,
                epochs=self.epochs if prev_now is None else self.refresh_epochs,
                temperature=self.temperature, history_len=self.history_len,
                n_user_buckets=self.n_user_buckets, seed=self.seed, progress=progress,
                rows=None if prev_now is None else np.flatnonzero(t > prev_now),
            )  # fmt: skip
        self.history_ = d.history
        self.unknown_history_ids_ = 0
        self.export(self.now_ms_)

    def _make_net(self) -> TwoTowerNet:
        return TwoTowerNet(
            n_videos=len(self.catalog_),
            n_topics=len(self.catalog_.topic_names),
            n_creators=len(self._codes.creator_ids),
            n_user_buckets=self.n_user_buckets,
            user_cardinalities=self.user_features_.cardinalities(),
            dim=self.dim,
            id_dim=self.id_dim,
            topic_dim=self.topic_dim,
            creator_dim=self.creator_dim,
            user_id_dim=self.user_id_dim,
            hidden=self.hidden,
        )

    # -- serving ----------------------------------------------------------------------------
    def _check(self) -> None:
        if not hasattr(self, "net_"):
            raise NotFittedError("TwoTowerSource is not fitted; call fit() or load() first")

    @torch.no_grad()
    def video_embeddings(self, now_ms: int, batch: int = 65_536) -> np.ndarray:
        """``float32[n_videos, dim]`` for the whole catalog, freshness as of ``now_ms``."""
        self._check()
        c, net = self._codes, self.net_
        net.eval()
        n = len(self.catalog_)
        out = np.empty((n, self.dim), np.float32)
        with reproducible(self.seed, self.num_threads):
            for lo in range(0, n, batch):
                vv = np.arange(lo + 1, min(lo + batch, n) + 1, dtype=np.int64)
                out[lo : lo + len(vv)] = net.video_tower(
                    torch.from_numpy(vv),
                    torch.from_numpy(c.topic[vv]),
                    torch.from_numpy(c.creator[vv]),
                    torch.from_numpy(c.duration[vv]),
                    torch.from_numpy(age_buckets(c.upload_ms[vv], now_ms)),
                    torch.from_numpy(popularity_buckets(self.recent_counts_[vv - 1])),
                ).numpy()
        return out

    def export(self, now_ms: int | None = None, index: EmbeddingIndex | None = None) -> None:
        """Recompute video embeddings as of ``now_ms`` and rebuild the index over the videos
        uploaded by then (``index``: an unbuilt :class:`EmbeddingIndex` to use instead of
        ``index_kind`` with default settings). Freshness follows ``now_ms``; the popularity
        feature stays as counted at ``fit`` (refit to refresh it)."""
        self._check()
        now = self.now_ms_ if now_ms is None else int(now_ms)
        self.video_embeddings_ = self.video_embeddings(now)
        live = np.flatnonzero(self.catalog_.upload_ms <= now)
        self.index_ = (index or EmbeddingIndex(self.index_kind, seed=self.seed)).build(
            self.video_embeddings_[live], self.catalog_.video_ids[live]
        )
        self.now_ms_ = now

    @torch.no_grad()
    def user_embeddings(self, user_ids: np.ndarray) -> np.ndarray:
        """``float32[n, dim]`` from each user's *current* history (request time). History ids
        outside the catalog are ignored and counted in ``unknown_history_ids_``."""
        self._check()
        users = as_user_ids(user_ids)
        items, _ = self.history_.recent(users, self.history_len)
        hv = self.catalog_.index(items) + 1
        self.unknown_history_ids_ += int(((hv == 0) & (items != PAD)).sum())
        c, net = self._codes, self.net_
        if net.training:  # eval() walks every module: ~0.4 ms, a tenth of a request
            net.eval()
        with inference_threads(self.num_threads):
            out = net.user_tower(
                torch.from_numpy(hash_ids(users, self.n_user_buckets)),
                torch.from_numpy(self.user_features_.lookup(users)),
                torch.from_numpy(hv),
                torch.from_numpy(c.topic[hv]),
                torch.from_numpy(c.creator[hv]),
            )
        return np.asarray(out.numpy(), dtype=np.float32)

    def candidates(self, user_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """See :class:`~mlsd.retrieval.base.CandidateSource`; scores are cosine similarities."""
        ids, scores, _ = self.candidates_with_embeddings(user_ids, k)
        return ids, scores

    def candidates_with_embeddings(
        self, user_ids: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`candidates` plus the ``float32[n, dim]`` user embeddings it searched with."""
        self._check()
        k = check_k(k)
        users = as_user_ids(user_ids)
        seen = self._seen(users)
        extra = 0 if seen is None else seen.shape[1]
        ue = self.user_embeddings(users)
        ids, scores = self.index_.search(ue, k + extra)
        ids, scores = exclude_and_take(ids, scores, seen, k)
        return ids, scores, ue

    def score_lists(
        self, user_ids: np.ndarray, item_ids: np.ndarray, user_embeddings: np.ndarray | None = None
    ) -> np.ndarray:
        """Cosine similarity of each user to each of their items: ``int64[n]`` users and
        ``int64[n, c]`` video ids -> ``float32[n, c]`` (NaN for videos outside the catalog).
        ``user_embeddings``: the users' ``float32[n, dim]`` when already computed (e.g. by
        :meth:`candidates_with_embeddings`)."""
        self._check()
        ue = self.user_embeddings(user_ids) if user_embeddings is None else user_embeddings
        idx = self.catalog_.index(item_ids)
        ve = self.video_embeddings_[np.maximum(idx, 0)]  # (n, c, d)
        s = np.einsum("nd,ncd->nc", ue, ve).astype(np.float32)
        return np.where(idx >= 0, s, np.nan).astype(np.float32)

    def score_pairs(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """Cosine similarity of (user, video) pairs: ``int64[n]`` each -> ``float32[n]`` (NaN
        for videos outside the catalog); each distinct user's embedding is computed once."""
        self._check()
        return embedding_pair_scores(
            user_ids, item_ids, self.user_embeddings, self.video_embeddings_, self.catalog_.index
        )

    def user_buckets(self, user_ids: np.ndarray) -> tuple[int, np.ndarray]:
        """(number of buckets, ``int64[n]`` bucket of each user): how the user tower tells
        users apart besides their history and attributes (its hashed id; one bucket when the
        model has no user-id embedding)."""
        self._check()
        users = as_user_ids(user_ids)
        if self.net_.user_id is None:
            return 1, np.zeros(len(users), np.int64)
        return self.n_user_buckets, hash_ids(users, self.n_user_buckets)

    def has_user_attributes(self, user_ids: np.ndarray) -> np.ndarray:
        """``bool[n]``: whether the user tower knows any attribute of each user."""
        self._check()
        return np.asarray(self.user_features_.lookup(as_user_ids(user_ids)).any(axis=1))

    def similar_items(self, video_id: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` videos nearest ``video_id`` by embedding (cosine), itself excluded:
        (``int64[k]`` ids, ``float32[k]`` similarities), padded with PAD / -inf. KeyError for
        a video outside the catalog."""
        self._check()
        k = check_k(k)
        idx = int(self.catalog_.index(np.array([video_id], np.int64))[0])
        if idx < 0:
            raise KeyError(video_id)
        ids, scores = self.index_.search(self.video_embeddings_[idx : idx + 1], k + 1)
        keep = (ids[0] != PAD) & (ids[0] != video_id)
        out_i = np.full(k, PAD, np.int64)
        out_s = np.full(k, -np.inf, np.float32)
        got_i, got_s = ids[0][keep][:k], scores[0][keep][:k]
        out_i[: len(got_i)], out_s[: len(got_s)] = got_i, got_s
        return out_i, out_s

    def fingerprint(self) -> str:
        """A digest of the fitted model: hyperparameters, network weights, exported video
        embeddings and their catalog (see :func:`mlsd.retrieval.base.source_fingerprint`)."""
        self._check()
        parts: dict[str, Any] = {
            "params": self.get_params(),
            "now_ms": self.now_ms_,
            "video_ids": self.catalog_.video_ids,
            "video_embeddings": self.video_embeddings_,
            "user_ids": self.user_features_.user_ids,
            "user_codes": self.user_features_.codes,
        }
        for name, tensor in self.net_.state_dict().items():
            parts[f"net.{name}"] = tensor.detach().cpu().numpy()
        return fingerprint_arrays(parts)

    # -- persistence ------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the model (see the module docstring for the files); returns the directory."""
        self._check()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        torch.save(self.net_.state_dict(), d / "model.pt")
        cat, uf = self.catalog_, self.user_features_
        np.savez(
            d / "arrays.npz",
            video_ids=cat.video_ids,
            topic=cat.topic,
            creator_ids=cat.creator_ids,
            duration_s=cat.duration_s,
            upload_ms=cat.upload_ms,
            user_ids=uf.user_ids,
            user_codes=uf.codes,
            log_q=self.log_q_,
            recent_counts=self.recent_counts_,
            video_embeddings=self.video_embeddings_,
        )
        meta = {
            "format": _FORMAT,
            "params": self.get_params(),
            "topic_names": list(cat.topic_names),
            "user_vocab": uf.vocab,
            "now_ms": self.now_ms_,
            "loss_history": self.loss_history_,
            "epoch_seconds": self.epoch_seconds_,
            "n_unknown_positives": self.n_unknown_positives_,
        }
        (d / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
        self.index_.save(d / "index")
        return d

    @classmethod
    def load(cls, directory: str | Path, history: History | None = None) -> TwoTowerSource:
        """Read a model written by :meth:`save`. ``history`` is the request-time state to
        serve from (default: empty, every user is cold until events are appended)."""
        d = Path(directory)
        try:
            meta = json.loads((d / "model.json").read_text())
            arrays = np.load(d / "arrays.npz", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"{d}: not a readable two-tower model ({e})") from e
        if meta.get("format") != _FORMAT:
            raise DataError(f"{d / 'model.json'}: format {meta.get('format')!r}; expected 1")
        self = cls(**meta["params"])
        self.catalog_ = Catalog(
            arrays["video_ids"],
            arrays["topic"],
            tuple(meta["topic_names"]),
            arrays["creator_ids"],
            arrays["duration_s"],
            arrays["upload_ms"],
        )
        vocab = {f: list(meta["user_vocab"].get(f, [])) for f in USER_FEATURES}
        self.user_features_ = UserFeatures(arrays["user_ids"], arrays["user_codes"], vocab)
        self._codes = _Codes(self.catalog_)
        self.log_q_ = arrays["log_q"]
        self.recent_counts_ = arrays["recent_counts"]
        self.video_embeddings_ = arrays["video_embeddings"]
        self.now_ms_ = int(meta["now_ms"])
        self.loss_history_ = list(meta["loss_history"])
        self.epoch_seconds_ = list(meta["epoch_seconds"])
        self.n_unknown_positives_ = int(meta["n_unknown_positives"])
        self.net_ = self._make_net()
        state = torch.load(d / "model.pt", weights_only=True)
        self.net_.load_state_dict(state)
        self.net_.eval()
        self.index_ = EmbeddingIndex.load(d / "index")
        self.history_ = history if history is not None else History()
        self.unknown_history_ids_ = 0
        return self

    def load_state(
        self, directory: str | Path, *, videos: pa.Table, history: History
    ) -> TwoTowerSource:
        """:meth:`load` into this instance (the saved hyperparameters replace its own);
        ``videos`` is unused: the model carries its catalog."""
        vars(self).update(vars(type(self).load(directory, history=history)))
        return self
