"""Co-visitation on hand-made sequences."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from mlsd.retrieval import PAD, CoVisitationSource, History

H = 3_600_000


def _pos(rows: list[tuple[int, int, int]]) -> pa.Table:
    u, v, t = zip(*rows, strict=True)
    ts = pa.array(list(t), pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    return pa.table({"user_id": list(u), "video_id": list(v), "timestamp": ts})


POS = _pos(
    [
        *[(1, 10, 0), (1, 20, H), (2, 10, 0), (2, 20, H), (3, 10, 0), (3, 30, H)],
        *[(4, 10, 0), (4, 40, 100 * H)],  # too far apart: not a co-visit
    ]
)


def test_neighbours_by_co_count() -> None:
    src = CoVisitationSource(popularity_exponent=0.0, window_hours=24.0).fit(POS)
    hist = History()
    hist.append(9, [10], [0])
    src.history_ = hist
    ids, scores = src.candidates(np.array([9]), 4)
    assert ids[0].tolist() == [20, 30, PAD, PAD]
    assert scores[0, 0] == 2.0 and scores[0, 1] == 1.0
    # Symmetric: 20's neighbour is 10.
    hist.append(8, [20], [0])
    assert src.candidates(np.array([8]), 1)[0].tolist() == [[10]]


def test_users_without_history_get_padding_and_unknown_seeds_are_counted() -> None:
    src = CoVisitationSource().fit(POS)
    src.history_.append(77, [123_456], [5])
    ids, _ = src.candidates(np.array([77, 1000]), 3)
    assert (ids == PAD).all()
    assert src.history_.n_unknown == 1  # the default History knows the catalog
    src.history_ = History()  # one that does not: the source itself ignores and counts
    src.history_.append(77, [123_456], [5])
    assert (src.candidates(np.array([77]), 3)[0] == PAD).all()
    assert src.unknown_history_ids_ == 1


def test_saved_lists_load_back_and_bad_ones_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from mlsd.errors import DataError

    videos = pa.table({"video_id": [10, 20, 30, 40]})
    src = CoVisitationSource(window_hours=24.0).fit(POS, videos=videos)
    src.save(tmp_path / "c")
    hist = History()
    hist.append(9, [10], [0])
    back = CoVisitationSource(window_hours=24.0).load_state(
        tmp_path / "c", videos=videos, history=hist
    )
    src.history_ = hist
    for a, b in zip(back.candidates(np.array([9]), 3), src.candidates(np.array([9]), 3),
                    strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    with pytest.raises(DataError, match="fitted with"):  # another configuration
        CoVisitationSource(window_hours=48.0).load_state(
            tmp_path / "c", videos=videos, history=hist
        )
    with pytest.raises(DataError, match="catalog"):  # another catalog
        CoVisitationSource(window_hours=24.0).load_state(
            tmp_path / "c", videos=pa.table({"video_id": [10, 20, 30]}), history=hist
        )
    np.save(tmp_path / "c" / "neighbors.npy", np.array([7, 7, 7, 7], np.int32))
    with pytest.raises(DataError, match="catalog"):  # neighbours outside the catalog
        CoVisitationSource(window_hours=24.0).load_state(
            tmp_path / "c", videos=videos, history=hist
        )
