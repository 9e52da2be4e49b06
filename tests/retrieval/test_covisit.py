"""Co-visitation on hand-made sequences."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

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


def _reference_lists(
    u: np.ndarray, v: np.ndarray, t: np.ndarray, n: int, src: CoVisitationSource
) -> dict[int, list[tuple[int, float]]]:
    """Neighbour lists counted pair by pair in Python, from the module docstring's definition."""
    counts: dict[tuple[int, int], int] = {}
    for i in range(len(u)):
        for j in range(i + 1, min(i + src.max_gap, len(u) - 1) + 1):
            if u[j] != u[i] or t[j] - t[i] > src.window_hours * H or v[i] == v[j]:
                continue
            for pair in ((v[i], v[j]), (v[j], v[i])):
                counts[pair] = counts.get(pair, 0) + 1
    pop = np.bincount(v, minlength=n).astype(np.float64)
    a = src.popularity_exponent
    lists: dict[int, list[tuple[int, float]]] = {}
    for (i, j), c in counts.items():
        w = c / (max(pop[i], 1) ** a * max(pop[j], 1) ** a)
        lists.setdefault(int(i), []).append((int(j), w))
    top = src.n_neighbors
    return {i: sorted(nb, key=lambda x: (-x[1], x[0]))[:top] for i, nb in lists.items()}


@pytest.mark.parametrize("range_pairs", [10, 1 << 24])
def test_pair_counting_matches_a_pair_by_pair_reference(monkeypatch, range_pairs) -> None:  # type: ignore[no-untyped-def]
    from mlsd.retrieval import covisit

    rng = np.random.default_rng(3)
    n_rows, n = 3_000, 40
    u = np.sort(rng.integers(0, 60, n_rows))
    t = np.zeros(n_rows, np.int64)
    for user in np.unique(u):  # times increase within a user, some gaps beyond the window
        at = u == user
        t[at] = np.cumsum(rng.integers(0, 30, at.sum())) * H
    v = rng.integers(0, n, n_rows)
    src = CoVisitationSource(max_gap=5, window_hours=48.0, n_neighbors=7, popularity_exponent=0.5)
    ref = _reference_lists(u, v, t, n, src)
    # Counting a few source videos at a time gives the counts of counting everything at once.
    args = (u, v, t, n, src.max_gap, src.window_hours * H)
    whole = list(covisit._pair_counts(*args, max_pairs=1 << 40))
    pieces = list(covisit._pair_counts(*args, max_pairs=range_pairs))
    assert len(whole) == 1 and (len(pieces) > 5 if range_pairs == 10 else len(pieces) == 1)
    for i in (0, 1):
        assert np.array_equal(whole[0][i], np.concatenate([p[i] for p in pieces]))
    assert np.all(np.diff(whole[0][0]) > 0)
    # Fitted in ranges or at once, the neighbour lists are the reference's.
    monkeypatch.setattr(covisit, "_RANGE_PAIRS", range_pairs)
    videos = pa.table({"video_id": np.arange(n)})
    ts = pa.array(t, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    src.fit(pa.table({"user_id": u, "video_id": v, "timestamp": ts}), videos=videos)
    for i in range(n):
        lo, hi = src.indptr_[i], src.indptr_[i + 1]
        got = list(zip(src.neighbors_[lo:hi].tolist(), src.weights_[lo:hi].tolist(), strict=True))
        want = ref.get(i, [])
        assert [j for j, _ in got] == [j for j, _ in want], i
        assert np.allclose([w for _, w in got], [w for _, w in want], rtol=1e-6)
