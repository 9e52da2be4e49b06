"""Protocol (b) without time: the per-user random holdout of a log whose times order nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from mlsd.data.loaders import load
from mlsd.evaluation import MostPop, compare, random_holdout, validation_holdout


def _log(path: Path, n_users: int = 40, n_items: int = 12) -> Path:
    rng = np.random.default_rng(0)
    u = np.repeat(np.arange(1, n_users + 1), n_items - 2)
    v = np.concatenate([rng.choice(np.arange(1, n_items + 1), n_items - 2, replace=False)
                        for _ in range(n_users)])  # fmt: skip
    pacsv.write_csv(pa.table({"user_id": u, "item_id": v}), path)
    return path


def _pairs(u: np.ndarray, v: np.ndarray) -> set[tuple[int, int]]:
    return set(zip(u.tolist(), v.tolist(), strict=True))


def test_random_holdout_keeps_each_users_test_items_out_of_training(tmp_path: Path) -> None:
    ds = load(_log(tmp_path / "log.csv"))
    h = random_holdout(ds, test_share=0.2, seed=0)
    assert h.protocol == "per-user-random" and h.info["seed"] == 0
    assert len(h.test) == 40 and (h.test.train_counts == 8).all()  # 10 items: 2 to test
    train = _pairs(h.train.user_ids, h.train.item_ids)
    p = h.test.truth.indptr
    test = {(int(x), int(i)) for r, x in enumerate(h.test.user_ids)
            for i in h.test.truth.indices[p[r] : p[r + 1]]}  # fmt: skip
    assert len(test) == 80 and not train & test
    assert h.train.events is not None and h.train.events.num_rows == 320
    ev = h.train.events
    assert not _pairs(np.asarray(ev.column("user_id")), np.asarray(ev.column("video_id"))) & test
    again = random_holdout(ds, test_share=0.2, seed=0)
    assert np.array_equal(again.test.truth.indices, h.test.truth.indices)
    v = validation_holdout(h)  # the same split inside the training side, another draw
    assert v.protocol == "per-user-random" and len(v.train) == 240
    assert _pairs(v.train.user_ids, v.train.item_ids) < train
    r = compare({"MostPop": MostPop}, h, k=5)
    assert set(r.table()["MostPop"]) >= {"recall@5", "ndcg@5"}
