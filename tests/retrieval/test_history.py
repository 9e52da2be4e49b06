"""History: the request-time state of every personalised source."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from mlsd.retrieval.base import PAD
from mlsd.retrieval.history import History


def _positives() -> pa.Table:
    return pa.table(
        {
            "user_id": [1, 1, 2, 1, 9],
            "video_id": [10, 11, 12, 13, 999],
            "timestamp": pa.array([3000, 1000, 5000, 2000, 1], pa.int64()).cast(
                pa.timestamp("ms", tz="UTC")
            ),
        }
    )


def test_recent_is_most_recent_first_and_padded() -> None:
    h = History.from_positives(_positives())
    items, times = h.recent(np.array([1, 2, 3]), 4)
    assert items.tolist() == [[10, 13, 11, PAD], [12, PAD, PAD, PAD], [PAD] * 4]
    assert times[0, :3].tolist() == [3000, 2000, 1000]
    assert h.lengths(np.array([1, 2, 3])).tolist() == [3, 1, 0]


def test_unknown_videos_are_ignored_and_counted() -> None:
    h = History.from_positives(_positives(), known_video_ids=[10, 11, 12, 13])
    assert h.n_unknown == 1 and 9 not in h
    assert h.append(1, [14, 10], [4000, 4001]) == 1
    assert h.n_unknown == 2
    assert h.recent(np.array([1]), 2)[0].tolist() == [[10, 10]]


def test_append_keeps_time_order_and_caps_length() -> None:
    h = History(max_len=3)
    h.append(5, [1, 2], [100, 300])
    h.append(5, [3], [200])  # arrives late
    h.append(5, [4], [400])
    items, _ = h.recent(np.array([5]))
    assert items.tolist() == [[4, 2, 3]]
    assert len(h) == 1 and h.users().tolist() == [5]
