"""The ``weight`` column of a bring-your-own log: validated (no negative weight), weight 0 is no
positive, and positives carry their weight to the models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mlsd.cli import app
from mlsd.config import LabelConfig
from mlsd.data.labels import confidence, label_events, positives, valid_watch
from mlsd.data.loaders import load
from mlsd.errors import DataValidationError

LOG = (
    "user_id,item_id,timestamp,weight\n"
    "1,10,1704067200,3\n"  # a count of 3
    "1,11,1704067201,0\n"  # seen, not a positive
    "2,10,1704067202,\n"  # no weight: 1
    "2,12,1704067203,0.5\n"
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_negative_weight_is_refused_naming_file_column_row_line_and_value(tmp_path: Path) -> None:
    f = _write(tmp_path / "log.csv", LOG.replace("1,11,1704067201,0", "1,11,1704067201,-2"))
    with pytest.raises(DataValidationError) as e:
        load(f)
    (p,) = e.value.problems
    assert (p.file, p.column, p.row, p.line, p.check) == (str(f), "weight", 1, 3, "negative weight")
    assert "-2" in p.found and ">= 0" in p.expected
    r = CliRunner().invoke(app, ["data", "validate", str(f)])
    out = " ".join(r.output.split())
    assert r.exit_code == 2 and "Traceback" not in out
    assert "log.csv" in out and "'weight'" in out and "line 3" in out and "-2" in out


def test_negative_weight_can_be_repaired_away(tmp_path: Path) -> None:
    f = _write(tmp_path / "log.csv", LOG.replace("1,11,1704067201,0", "1,11,1704067201,-2"))
    ds = load(f, repair=True)
    assert ds.report is not None and ds.report.dropped == {"events: negative weight": 1}
    assert ds.events.column("video_id").to_pylist() == [10, 10, 12]


def test_weight_zero_rows_are_not_positives(tmp_path: Path) -> None:
    ds = load(_write(tmp_path / "log.csv", LOG))
    cfg = LabelConfig()
    assert valid_watch(ds.events, ds.videos, cfg).tolist() == [True, False, True, True]
    assert label_events(ds.events, ds.videos, cfg).column("label_watch").to_pylist() == [
        True, False, True, True,
    ]  # fmt: skip
    pos = positives(ds.events, ds.videos, cfg)
    assert list(zip(pos["user_id"].to_pylist(), pos["video_id"].to_pylist(), strict=True)) == [
        (1, 10), (2, 10), (2, 12),
    ]  # fmt: skip
    # the weight rides along: null reads as 1
    assert pos.column("weight").to_pylist() == [3.0, 1.0, 0.5]


def test_weight_zero_likes_are_not_positives() -> None:
    import pyarrow as pa

    ev = pa.table(
        {
            "user_id": [1, 1],
            "video_id": [5, 6],
            "timestamp": pa.array([1, 2], pa.timestamp("ms", "UTC")),
            "event_type": ["like", "like"],
            "weight": pa.array([0.0, None], pa.float32()),
        }
    )
    assert positives(ev, None, LabelConfig())["video_id"].to_pylist() == [6]


def test_positives_without_weights_keep_their_columns(tmp_path: Path) -> None:
    f = _write(tmp_path / "log.csv", "user_id,item_id,timestamp\n1,10,1704067200\n")
    ds = load(f)
    assert positives(ds.events, ds.videos, LabelConfig()).column_names == [
        "user_id", "video_id", "timestamp",
    ]  # fmt: skip


def test_confidence_is_log2_one_plus_weight() -> None:
    # Hu, Koren & Volinsky 2008: confidence grows with the log of the count; a plain
    # positive (weight 1) counts 1, so logs without weights train as before
    assert confidence(np.array([1.0, 3.0, 7.0, 0.5])).tolist() == pytest.approx(
        [1.0, 2.0, 3.0, np.log2(1.5)]
    )
