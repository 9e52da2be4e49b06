"""Per-user holdout on a day-precision log: positives tied with a user's cut time."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from mlsd.data.dataset import from_tables
from mlsd.evaluation import per_user_holdout

DAY_S = 86_400


def _log() -> pa.Table:
    # user 1: five reviews on one day (the split can only order them by position);
    # user 2: one review a day, so its cut falls between days
    rows = [(1, v, 1_700_000_000) for v in range(1, 6)]
    rows += [(2, v, 1_700_000_000 + i * DAY_S) for i, v in enumerate(range(3, 8))]
    u, v, t = zip(*rows, strict=True)
    return pa.table(
        {
            "user_id": pa.array(u, pa.int64()),
            "video_id": pa.array(v, pa.int64()),
            "timestamp": pa.array([x * 1000 for x in t], pa.timestamp("ms", tz="UTC")),
            "event_type": ["play"] * len(u),
        }
    )


def test_tied_training_positives_keep_their_raw_events() -> None:
    ds = from_tables({"events": _log()})
    h = per_user_holdout(ds, test_share=0.2)
    ev = h.train.events
    assert ev is not None
    ev_pairs = set(
        zip(ev.column("user_id").to_pylist(), ev.column("video_id").to_pylist(), strict=True)
    )
    train_pairs = set(zip(h.train.user_ids.tolist(), h.train.item_ids.tolist(), strict=True))
    # the raw events a model is given are exactly its training positives here (every event
    # is a positive): the tied ones included, the test ones not
    assert ev_pairs == train_pairs
    assert len([p for p in train_pairs if p[0] == 1]) == 4
    truth_users = np.asarray(h.test.user_ids)
    assert set(truth_users.tolist()) == {1, 2}
