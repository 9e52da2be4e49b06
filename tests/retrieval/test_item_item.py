"""EASE and item-kNN as candidate sources: the baselines' lists, history at request time,
the catalog bound, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mlsd.data.dataset import Dataset
from mlsd.errors import DataError
from mlsd.evaluation import Interactions
from mlsd.evaluation.baselines import EASE, ItemKNN
from mlsd.retrieval import PAD, History
from mlsd.retrieval.evaluate import NextPeriod
from mlsd.retrieval.item_item import EASESource, ItemKNNSource


def _pairs(period: NextPeriod) -> pa.Table:
    return period.train_positives


@pytest.mark.parametrize(
    ("source", "baseline"),
    [
        (EASESource(l2=50.0), EASE(l2=50.0)),
        (ItemKNNSource(n_neighbors=50, shrink=5.0), ItemKNN(n_neighbors=50, shrink=5.0)),
    ],
    ids=["ease", "itemknn"],
)
def test_lists_are_the_baselines_lists(
    source: EASESource | ItemKNNSource,
    baseline: EASE | ItemKNN,
    tiny: Dataset,
    tiny_period: NextPeriod,
) -> None:
    pos = _pairs(tiny_period)
    history = History.from_positives(pos, max_len=None)
    source.fit(pos, videos=tiny.videos, history=history)
    baseline.fit(Interactions.from_table(pos))
    users = np.asarray(tiny_period.users)
    users = users[history.lengths(users) > 0][:60]  # the baselines serve others MostPop
    got, scores = source.candidates(users, 20)
    want = baseline.recommend(users, 20)
    # the same model; only ties may order differently
    same = np.mean(
        [len(set(a[a != PAD]) & set(b[b >= 0])) / 20 for a, b in zip(got, want, strict=True)]
    )
    assert same > 0.95
    assert np.isfinite(scores[got != PAD]).all()


def test_a_new_watch_changes_the_next_list(tiny: Dataset, tiny_period: NextPeriod) -> None:
    pos = _pairs(tiny_period)
    history = History.from_positives(pos, max_len=None)
    src = EASESource(l2=50.0).fit(pos, videos=tiny.videos, history=history)
    user = int(tiny_period.users[0])
    before, _ = src.candidates(np.array([user]), 20)
    newcomer = 10**9
    assert (src.candidates(np.array([newcomer]), 20)[0] == PAD).all()  # no history: nothing
    history.append(newcomer, before[0][:3].tolist(), [tiny_period.split_ms] * 3)
    after, _ = src.candidates(np.array([newcomer]), 20)
    assert (after != PAD).any()
    assert not set(after[0].tolist()) & set(before[0][:3].tolist())  # watched: excluded


def test_ease_stays_empty_above_its_item_bound(tiny: Dataset, tiny_period: NextPeriod) -> None:
    src = EASESource(max_items=10).fit(_pairs(tiny_period), videos=tiny.videos)
    assert src.skipped_ is not None and "max_items=10" in src.skipped_
    got, _ = src.candidates(np.asarray(tiny_period.users[:5]), 10)
    assert (got == PAD).all()


@pytest.mark.parametrize("cls", [EASESource, ItemKNNSource])
def test_saved_and_loaded_lists_are_equal(
    cls: type[EASESource] | type[ItemKNNSource], tmp_path: Path, tiny: Dataset,
    tiny_period: NextPeriod,
) -> None:  # fmt: skip
    pos = _pairs(tiny_period)
    history = History.from_positives(pos, max_len=None)
    src = cls().fit(pos, videos=tiny.videos, history=history)
    src.save(tmp_path / "s")
    back = cls().load_state(tmp_path / "s", videos=tiny.videos, history=history)
    users = np.asarray(tiny_period.users[:30])
    a, sa = src.candidates(users, 30)
    b, sb = back.candidates(users, 30)
    assert (a == b).all()
    np.testing.assert_allclose(sa, sb)
    other = cls(history_len=7)
    with pytest.raises(DataError, match="fitted with"):
        other.load_state(tmp_path / "s", videos=tiny.videos, history=history)
