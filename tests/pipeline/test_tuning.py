"""Candidate shares tuned on the label cut: the source that finds the label positives gets the
list; every source keeps its floor."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa

from mlsd.pipeline.labels import LabelSplit
from mlsd.pipeline.tuning import FLOOR, tune_quotas
from mlsd.retrieval import PAD

N_USERS, K = 40, 50


class _Fixed:
    """Proposes ``items(user)`` for every user."""

    def __init__(self, name: str, items: Any) -> None:
        self.name, self.items = name, items

    def candidates(self, users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        out = np.full((len(users), k), PAD, np.int64)
        for i, u in enumerate(users.tolist()):
            got = np.asarray(self.items(u), np.int64)[:k]
            out[i, : len(got)] = got
        return out, np.where(out == PAD, -np.inf, -np.arange(k, dtype=np.float32))


def _split() -> LabelSplit:
    # each user's label positives: items 1000 * u + 0..4 (after the cut)
    users = np.arange(1, N_USERS + 1, dtype=np.int64)
    u = np.repeat(users, 5)
    v = u * 1000 + np.tile(np.arange(5), N_USERS)
    after = pa.table(
        {"user_id": u, "video_id": v, "timestamp": pa.array(np.zeros(len(u), "int64"))}
    )
    return LabelSplit("per-user", 0, None, 0, after, after, users)


def _stage(sources: list[_Fixed]) -> Any:
    return SimpleNamespace(
        names_=tuple(s.name for s in sources),
        sources_=sources,
        shares_=np.full(len(sources), 1.0 / len(sources)),
    )


def test_the_source_that_finds_the_labels_gets_the_list() -> None:
    noise = _Fixed("popular", lambda u: np.arange(1, 200))  # never a label
    late = _Fixed("late", lambda u: np.r_[np.arange(1, 41), u * 1000 + np.arange(5)])  # rank 40+
    early = _Fixed("early", lambda u: np.r_[u * 1000 + np.arange(3), np.arange(1, 60)])  # 3 of 5
    got = tune_quotas(_stage([noise, late, early]), _split(), K)
    q = got.quotas
    assert abs(sum(q.values()) - 1) < 1e-6
    assert all(x >= FLOOR - 1e-9 for x in q.values())
    assert q["popular"] == min(q.values())  # finds nothing: only its floor (or the leftovers)
    # early finds 3 of 5 in its first slots, late the other 2 only past rank 40: late needs
    # most of the list, early a little
    assert q["late"] > q["early"] > q["popular"]
    assert got.recall == 1.0 and got.recall_before < 1.0


def test_nothing_to_find_keeps_every_source() -> None:
    a = _Fixed("a", lambda u: np.arange(1, 100))
    b = _Fixed("b", lambda u: np.arange(100, 200))
    got = tune_quotas(_stage([a, b]), _split(), K)
    assert got.recall == 0.0
    assert set(got.quotas) == {"a", "b"} and all(x > 0 for x in got.quotas.values())
    assert abs(sum(got.quotas.values()) - 1) < 1e-6
