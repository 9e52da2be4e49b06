"""Two-tower: reproducibility, no leakage, request-time history, save/load, loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mlsd.data.dataset import Dataset
from mlsd.retrieval import PAD, History, TwoTowerSource
from mlsd.retrieval.evaluate import NextPeriod
from mlsd.retrieval.two_tower import history_bounds, history_rows
from mlsd.retrieval.two_tower_net import in_batch_softmax_loss

from .conftest import FAST_TWO_TOWER


def _fit(tiny: Dataset, period: NextPeriod, seed: int) -> TwoTowerSource:
    return TwoTowerSource(seed=seed, **FAST_TWO_TOWER).fit(  # type: ignore[arg-type]
        period.train_positives, videos=tiny.videos, users=tiny.users, now_ms=period.split_ms
    )


def test_same_seed_gives_bit_identical_embeddings(tiny: Dataset, tiny_period: NextPeriod) -> None:
    torch.manual_seed(123)
    before = torch.rand(3)
    a = _fit(tiny, tiny_period, seed=7)
    b = _fit(tiny, tiny_period, seed=7)
    assert np.array_equal(a.video_embeddings_, b.video_embeddings_)
    users = tiny_period.users[:50]
    assert np.array_equal(a.user_embeddings(users), b.user_embeddings(users))
    assert a.loss_history_ == b.loss_history_
    c = _fit(tiny, tiny_period, seed=8)
    assert not np.array_equal(a.video_embeddings_, c.video_embeddings_)
    # Training leaves the caller's torch state alone: global RNG and determinism flag.
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), before)
    assert not torch.are_deterministic_algorithms_enabled()
    # Embeddings are unit vectors; the loss went down.
    assert np.allclose(np.linalg.norm(a.video_embeddings_, axis=1), 1.0, atol=1e-5)
    assert a.loss_history_[-1] < a.loss_history_[0]


def test_history_is_strictly_before_each_example() -> None:
    u = np.array([1, 1, 1, 1, 2, 2], dtype=np.int64)
    t = np.array([10, 20, 20, 30, 5, 6], dtype=np.int64)
    user_start, tie_start = history_bounds(u, t)
    rows = history_rows(user_start, tie_start, np.arange(6), 3)
    assert rows.tolist() == [
        [-1, -1, -1],
        [0, -1, -1],
        [0, -1, -1],  # the tie at t=20 is not history of its twin
        [2, 1, 0],
        [-1, -1, -1],  # another user's rows never leak in
        [4, -1, -1],
    ]
    for r, hist in enumerate(rows):
        for h in hist[hist >= 0]:
            assert u[h] == u[r] and t[h] < t[r]


def test_a_new_watch_changes_the_next_request(tiny: Dataset, tiny_period: NextPeriod) -> None:
    model = _fit(tiny, tiny_period, seed=0)
    user = int(tiny_period.users[0])
    before_ids, _ = model.candidates(np.array([user]), 20)
    before_emb = model.user_embeddings(np.array([user]))
    watched = int(before_ids[0, 5])
    model.history_.append(user, [watched], [tiny_period.split_ms + 1])
    after_ids, _ = model.candidates(np.array([user]), 20)
    assert not np.array_equal(model.user_embeddings(np.array([user])), before_emb)
    assert watched not in after_ids[0]  # and it is now excluded as already watched


def test_unknown_history_ids_are_ignored_and_counted(
    tiny: Dataset, tiny_period: NextPeriod
) -> None:
    model = _fit(tiny, tiny_period, seed=0)
    model.history_ = History()  # no catalog: the model itself must cope
    model.history_.append(5, [3, 4], [1, 2])
    ref = model.candidates(np.array([5]), 30)[0]
    model.history_.append(5, [987_654_321], [3])
    got = model.candidates(np.array([5]), 30)[0]
    assert model.unknown_history_ids_ >= 1
    assert np.array_equal(got, ref)


def test_save_load_round_trip(tiny: Dataset, tiny_period: NextPeriod, tmp_path: Path) -> None:
    model = _fit(tiny, tiny_period, seed=0)
    model.save(tmp_path / "tt")
    loaded = TwoTowerSource.load(tmp_path / "tt", history=model.history_)
    users = tiny_period.users[:30]
    assert np.array_equal(loaded.video_embeddings_, model.video_embeddings_)
    assert np.array_equal(loaded.user_embeddings(users), model.user_embeddings(users))
    assert np.array_equal(loaded.candidates(users, 40)[0], model.candidates(users, 40)[0])
    assert loaded.get_params() == model.get_params()


def test_new_uploads_are_not_candidates_before_they_exist(
    tiny: Dataset, tiny_period: NextPeriod
) -> None:
    model = _fit(tiny, tiny_period, seed=0)
    future = model.catalog_.video_ids[model.catalog_.upload_ms > tiny_period.split_ms]
    ids, _ = model.candidates(tiny_period.users[:50], 900)
    assert not np.isin(ids[ids != PAD], future).any()
    assert model.index_.ntotal_ == int((model.catalog_.upload_ms <= tiny_period.split_ms).sum())


def test_logq_correction_and_duplicate_masking() -> None:
    u = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), dim=-1)
    v = u.clone()
    codes = torch.tensor([1, 2, 1])  # rows 0 and 2 hold the same video
    zero = torch.zeros(3)
    base = in_batch_softmax_loss(u, v, codes, zero, 1.0)
    assert torch.isfinite(base)
    # Subtracting log q of a frequent video lowers its logit as a negative everywhere.
    popular_video_1 = torch.log(torch.tensor([0.5, 0.01, 0.5]))
    assert in_batch_softmax_loss(u, v, codes, popular_video_1, 1.0) != base
    # Row 0 must not treat row 2's identical video as a negative: masking it is the same as
    # dropping it from row 0's softmax.
    logits = u @ v.T
    manual = -torch.log_softmax(logits[0, :2], dim=0)[0]
    row_losses = torch.nn.functional.cross_entropy(
        (logits).masked_fill(torch.tensor([[0, 0, 1], [0, 0, 0], [1, 0, 0]], dtype=torch.bool),
                             float("-inf")),
        torch.arange(3), reduction="none",
    )  # fmt: skip
    assert torch.allclose(row_losses[0], manual)
    assert torch.allclose(base, row_losses.mean())


@pytest.mark.parametrize("bad", [{"batch_size": 1}, {"temperature": 0.0}, {"dim": 0}])
def test_bad_hyperparameters_fail_at_fit(
    bad: dict[str, float], tiny: Dataset, tiny_period: NextPeriod
) -> None:
    from mlsd.errors import ConfigError

    with pytest.raises(ConfigError):
        TwoTowerSource(**bad).fit(tiny_period.train_positives, videos=tiny.videos)  # type: ignore[arg-type]


def test_warm_start_trains_only_on_positives_after_the_previous_fit(
    tiny: Dataset, tiny_period: NextPeriod
) -> None:
    day = 86_400_000
    early = tiny_period.split_ms - 3 * day

    def fit(src: TwoTowerSource, now: int, warm: bool) -> TwoTowerSource:
        return src.fit(
            tiny_period.train_positives,
            videos=tiny.videos,
            users=tiny.users,
            now_ms=now,
            warm_start=warm,
        )

    a = fit(TwoTowerSource(seed=3, **FAST_TWO_TOWER), early, False)  # type: ignore[arg-type]
    net, before = a.net_, a.video_embeddings_.copy()
    # nothing newer than the previous fit: the network is not touched
    fit(a, early, True)
    assert a.net_ is net
    assert np.array_equal(a.video_embeddings_, before)
    # newer positives: the same network trains on them, reproducibly
    fit(a, tiny_period.split_ms, True)
    assert a.net_ is net and not np.array_equal(a.video_embeddings_, before)
    b = fit(TwoTowerSource(seed=3, **FAST_TWO_TOWER), early, False)  # type: ignore[arg-type]
    fit(b, tiny_period.split_ms, True)
    assert np.array_equal(a.video_embeddings_, b.video_embeddings_)
    # warm_start on an unfitted source is a plain fit
    c = fit(TwoTowerSource(seed=3, **FAST_TWO_TOWER), early, True)  # type: ignore[arg-type]
    assert np.array_equal(c.video_embeddings_, before)
    # a refresh makes refresh_epochs passes over the new positives, a fresh fit epochs
    for n in (1, 3):
        d = fit(TwoTowerSource(seed=3, **{**FAST_TWO_TOWER, "refresh_epochs": n}), early, False)  # type: ignore[arg-type]
        assert len(d.loss_history_) == d.epochs
        fit(d, tiny_period.split_ms, True)
        assert len(d.loss_history_) == n
