"""The two-tower's training loop, apart from the source that owns the model.

:func:`train_epochs` runs in-batch-softmax training over positives sorted by (user, time);
:func:`history_bounds`/:func:`history_rows` give each example the user's positives strictly
before it (no leakage); :func:`reproducible` makes torch seeded and deterministic for a block.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mlsd.retrieval._encode import age_buckets, hash_ids
from mlsd.retrieval.two_tower_net import TwoTowerNet, in_batch_softmax_loss

__all__ = [
    "TrainInputs",
    "history_bounds",
    "history_rows",
    "inference_threads",
    "reproducible",
    "train_epochs",
]


@contextmanager
def reproducible(seed: int, num_threads: int | None) -> Iterator[None]:
    """Seeded, deterministic torch for the block; global settings are restored after."""
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(prev_det)
            torch.set_num_threads(prev_threads)


@contextmanager
def inference_threads(num_threads: int | None) -> Iterator[None]:
    """Torch's thread count for an inference block (restored after). Inference draws no
    random numbers (dropout off in eval mode), so no RNG fork: it would add its cost to every
    request."""
    prev = torch.get_num_threads()
    if num_threads is None or num_threads == prev:
        yield
        return
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def history_bounds(u: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted by (user, time): the first row of each row's user and of its
    (user, time) tie group. The history of row ``r`` is ``[user_start[r], tie_start[r])``: the
    same user's positives *strictly before* ``t[r]`` (equal timestamps excluded too)."""
    n = len(u)
    new_user = np.r_[True, u[1:] != u[:-1]]
    new_tie = new_user | np.r_[True, t[1:] != t[:-1]]
    user_start = np.maximum.accumulate(np.where(new_user, np.arange(n), 0))
    tie_start = np.maximum.accumulate(np.where(new_tie, np.arange(n), 0))
    return user_start, tie_start


def history_rows(
    user_start: np.ndarray, tie_start: np.ndarray, rows: np.ndarray, history_len: int
) -> np.ndarray:
    """``int64[len(rows), history_len]``: row indices of each row's most recent earlier
    positives (most recent first), -1 where the history is shorter."""
    idx = tie_start[rows][:, None] - np.arange(1, history_len + 1)[None, :]
    return np.where(idx >= user_start[rows][:, None], idx, -1)


@dataclass(frozen=True)
class TrainInputs:
    """Training examples, one per positive, sorted by (user, time): ``u`` user ids, ``v``
    1-based catalog codes of the videos, ``t`` times (ms), ``pop`` popularity buckets as of
    each example's time, ``log_q`` the logQ correction per example (zeros when off), and the
    per-video inputs ``topic``, ``creator``, ``duration``, ``upload_ms`` indexed by code
    (index 0: unknown), plus ``user_features`` (``int64[n, f]`` attribute codes per example)."""

    u: np.ndarray
    v: np.ndarray
    t: np.ndarray
    pop: np.ndarray
    log_q: np.ndarray
    topic: np.ndarray
    creator: np.ndarray
    duration: np.ndarray
    upload_ms: np.ndarray
    user_features: np.ndarray


def train_epochs(
    net: TwoTowerNet,
    x: TrainInputs,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    temperature: float,
    history_len: int,
    n_user_buckets: int,
    seed: int,
    progress: Any,
    rows: np.ndarray | None = None,
) -> tuple[list[float], list[float]]:
    """Train ``net`` in place for ``epochs`` over the examples ``rows`` (default all; histories
    use every row) with Adam (dense weights) and SparseAdam (embedding tables), in batches of
    ``batch_size`` drawn in an order seeded by ``seed``. Returns (mean loss per epoch, seconds
    per epoch). ``progress``: True for a Rich bar per epoch, a ``rich.progress.Progress`` to add
    the epochs' tasks to, or False."""
    u, v, t = x.u, x.v, x.t
    n = len(u)
    rows = np.arange(n) if rows is None else np.asarray(rows, np.int64)
    user_start, tie_start = history_bounds(u, t)
    bucket = hash_ids(u, n_user_buckets)
    feats = x.user_features
    age = age_buckets(x.upload_ms[v], t)
    sparse = [p for m in net.modules() if isinstance(m, torch.nn.Embedding) and m.sparse
              for p in m.parameters()]  # fmt: skip
    sparse_ids = {id(p) for p in sparse}
    dense = [p for p in net.parameters() if id(p) not in sparse_ids]
    opt_dense = torch.optim.Adam(dense, lr=lr)
    opt_sparse = torch.optim.SparseAdam(sparse, lr=lr)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x77]))
    bs = max(1, min(batch_size, len(rows)))
    # drop the ragged last batch: every step has bs in-batch negatives
    n_steps = len(rows) // bs
    losses: list[float] = []
    seconds: list[float] = []
    bar, own = _progress(progress)
    with bar if own else nullcontext():
        for epoch in range(epochs):
            t0 = time.perf_counter()
            task = (
                bar.add_task(f"two-tower epoch {epoch + 1}/{epochs}", total=n_steps)
                if bar is not None
                else None
            )
            perm = rows[rng.permutation(len(rows))]
            total = 0.0
            net.train()
            for s in range(n_steps):
                r = perm[s * bs : (s + 1) * bs]
                idx = history_rows(user_start, tie_start, r, history_len)
                hv = np.where(idx >= 0, v[np.maximum(idx, 0)], 0)
                uvec = net.user_tower(
                    torch.from_numpy(bucket[r]),
                    torch.from_numpy(feats[r]),
                    torch.from_numpy(hv),
                    torch.from_numpy(x.topic[hv]),
                    torch.from_numpy(x.creator[hv]),
                )
                vr = v[r]
                vvec = net.video_tower(
                    torch.from_numpy(vr),
                    torch.from_numpy(x.topic[vr]),
                    torch.from_numpy(x.creator[vr]),
                    torch.from_numpy(x.duration[vr]),
                    torch.from_numpy(age[r]),
                    torch.from_numpy(x.pop[r]),
                )
                loss = in_batch_softmax_loss(
                    uvec, vvec, torch.from_numpy(vr), torch.from_numpy(x.log_q[r]), temperature
                )
                opt_dense.zero_grad(set_to_none=True)
                opt_sparse.zero_grad(set_to_none=True)
                loss.backward()
                opt_dense.step()
                opt_sparse.step()
                total += float(loss.detach())
                if task is not None:
                    bar.advance(task)
            losses.append(total / max(n_steps, 1))
            seconds.append(time.perf_counter() - t0)
    return losses, seconds


def _progress(progress: Any) -> tuple[Any, bool]:
    """(a Progress or None, whether we created it and must start/stop it)."""
    if progress is True:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        return (
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(),
            ),
            True,
        )
    if progress is False or progress is None:
        return None, False
    return progress, False
