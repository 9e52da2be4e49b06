"""Data quality flags the breakages a feature pipeline makes, one issue per column and check,
and nothing on a clean window."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd.errors import DataError
from mlsd.monitoring import data_quality

KINDS = {"watch_s": "num", "age_days": "num", "device": "cat", "score": "num"}


def _window(seed: int, n: int = 2000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    watch = rng.exponential(40, n)
    watch[rng.random(n) < 0.02] = np.nan  # 2% nulls already in the reference
    return {
        "watch_s": watch,
        "age_days": rng.uniform(0, 365, n),
        "device": rng.choice(
            np.array(["web", "ios", "android", None], dtype=object), n, p=[0.5, 0.3, 0.19, 0.01]
        ),
        "score": rng.normal(size=n),
    }


def test_a_clean_window_has_no_issue() -> None:
    assert data_quality(_window(0), _window(1), KINDS) == []


def test_each_breakage_is_flagged_on_its_column() -> None:
    ref, cur = _window(0), _window(1)
    rng = np.random.default_rng(2)
    n = len(cur["score"])
    cur["watch_s"] = np.where(rng.random(n) < 0.9, 0.0, cur["watch_s"])  # 90% zeros
    cur["device"] = np.where(rng.random(n) < 0.2, None, cur["device"])  # 20% nulls
    cur["age_days"] = cur["age_days"] * np.where(rng.random(n) < 0.05, 10, 1)  # days -> 10x
    cur["score"] = np.full(n, 0.25)  # a default filling in
    got = {(q.column, q.check): q for q in data_quality(ref, cur, KINDS)}
    assert set(got) == {
        ("watch_s", "zeros"),
        ("device", "nulls"),
        ("age_days", "out_of_range"),
        ("score", "constant"),
    }
    zeros = got["watch_s", "zeros"]
    assert zeros.value == pytest.approx(0.9, abs=0.03) and zeros.threshold == pytest.approx(0.5)
    nulls = got["device", "nulls"]
    assert nulls.value == pytest.approx(0.2, abs=0.03)
    assert nulls.threshold == pytest.approx(0.06, abs=0.01)  # the reference's ~1% + 5 points
    assert "nulls" in nulls.detail
    assert got["age_days", "out_of_range"].value > 0.01
    assert "0.25" in got["score", "constant"].detail


def test_null_thresholds() -> None:
    n = 1000
    ref = {"x": np.arange(n, dtype=float)}
    cur = np.arange(n, dtype=float)
    cur[:51] = np.nan  # 5.1% > 0% + 5 points
    (issue,) = data_quality(ref, {"x": cur}, {"x": "num"})
    assert issue.check == "nulls" and issue.threshold == pytest.approx(0.05)
    cur[50] = 50.0  # 5.0%: not above
    assert data_quality(ref, {"x": cur}, {"x": "num"}) == []
    ref_nulls = np.where(np.arange(n) < 300, np.nan, np.arange(n, dtype=float))  # 30% nulls
    cur = np.where(np.arange(n) < 340, np.nan, np.arange(n, dtype=float))  # 34%: within 5 pts
    assert data_quality({"x": ref_nulls}, {"x": cur}, {"x": "num"}) == []


def test_range_is_the_reference_range_widened_by_ten_percent() -> None:
    ref = {"x": np.linspace(0, 100, 1001)}
    inside = {"x": np.r_[np.linspace(-9.9, 109.9, 1000)]}
    assert data_quality(ref, inside, {"x": "num"}) == []
    outside = {"x": np.r_[np.linspace(0, 100, 980), [111.0] * 20]}  # 2% above 110
    (issue,) = data_quality(ref, outside, {"x": "num"})
    assert issue.check == "out_of_range" and issue.value == pytest.approx(0.02)
    infinite = {"x": np.r_[np.linspace(0, 100, 980), [np.inf] * 20]}
    assert [q.check for q in data_quality(ref, infinite, {"x": "num"})] == ["out_of_range"]


def test_missing_and_empty_columns_are_named() -> None:
    ref = {"x": np.ones(3)}
    with pytest.raises(DataError, match="current data: y"):
        data_quality(ref, ref, {"x": "num", "y": "cat"})
    with pytest.raises(DataError, match=r"'x'.*current sample has no rows"):
        data_quality(ref, {"x": np.array([])}, {"x": "num"})


def test_declared_bounds_replace_the_reference_range() -> None:
    rng = np.random.default_rng(0)
    ref = {"count": rng.integers(0, 10, 1000).astype(float), "rate": rng.uniform(0, 0.5, 1000)}
    # a counter that grew past anything in the reference is fine within its bounds; a rate
    # above 1 is broken whatever the reference held
    cur = {"count": rng.integers(50, 100, 1000).astype(float),
           "rate": np.r_[rng.uniform(0, 0.5, 900), np.full(100, 1.5)]}  # fmt: skip
    kinds = {"count": "num", "rate": "num"}
    unbounded = {(q.column, q.check) for q in data_quality(ref, cur, kinds)}
    assert ("count", "out_of_range") in unbounded
    got = data_quality(ref, cur, kinds, {"count": (0.0, float("inf")), "rate": (0.0, 1.0)})
    assert [(q.column, q.check) for q in got] == [("rate", "out_of_range")]


def test_a_column_null_by_design_may_move_but_not_double() -> None:
    rng = np.random.default_rng(1)
    ref = {"rank": np.where(rng.uniform(size=1000) < 0.4, np.nan, 1.0)}
    moved = {"rank": np.where(rng.uniform(size=1000) < 0.5, np.nan, 1.0)}
    assert data_quality(ref, moved, {"rank": "num"}) == []
    doubled = {"rank": np.where(rng.uniform(size=1000) < 0.9, np.nan, 1.0)}
    assert [q.check for q in data_quality(ref, doubled, {"rank": "num"})] == ["nulls"]


def test_nullable_columns_and_sparse_counters_are_not_breakages() -> None:
    rng = np.random.default_rng(2)
    ref = {"rank": np.where(rng.uniform(size=1000) < 0.1, np.nan, 1.0),
           "sparse": (rng.uniform(size=1000) < 0.1).astype(float)}  # fmt: skip
    cur = {"rank": np.where(rng.uniform(size=1000) < 0.6, np.nan, 1.0), "sparse": np.zeros(1000)}
    kinds = {"rank": "num", "sparse": "num"}
    assert [(q.column, q.check) for q in data_quality(ref, cur, kinds)] == [("rank", "nulls")]
    assert data_quality(ref, cur, kinds, nullable={"rank"}) == []
