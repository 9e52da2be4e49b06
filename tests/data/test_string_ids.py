"""String ids at the loading boundary (:mod:`mlsd.data.ids`): logs with ids like ``u_277``,
``sku-000A`` or UUIDs load (mapped to dense int64 codes, kept in ``Dataset.id_maps``), ``007``
and ``7`` are two users, integer logs load exactly as before, and the id map round-trips.
(``mlsd.data.ids`` is imported where used, so that the rest of this file also runs, and
fails for the right reasons, on a tree without it.)"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mlsd.cli import app
from mlsd.data.dataset import load_dataset
from mlsd.data.loaders import load
from mlsd.errors import DataValidationError

UUID_A = str(uuid.UUID(int=0x1234_5678_9ABC_DEF0_1234_5678_9ABC_DEF0))
UUID_B = str(uuid.UUID(int=0xFEDC_BA98_7654_3210_FEDC_BA98_7654_3210))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _pairs(ds: object) -> list[tuple[str, str]]:
    """(user, item) of each event, decoded through the dataset's maps."""
    ev = ds.events  # type: ignore[attr-defined]
    maps = ds.id_maps  # type: ignore[attr-defined]
    users = maps["user_id"].decode(ev.column("user_id").to_numpy())
    items = maps["video_id"].decode(ev.column("video_id").to_numpy())
    return list(zip(users, items, strict=True))


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return write(
        tmp_path / "log.csv",
        "user_id,item_id,timestamp\n"
        f"u_277,sku-000A,1704067200\n"
        f"007,sku-000B,1704067201\n"
        f"7,sku-000A,1704067202\n"
        f"{UUID_A},{UUID_B},1704067203\n",
    )


# --- the id map ---------------------------------------------------------------------------


def test_id_map_round_trips_and_codes_are_dense() -> None:
    from mlsd.data.ids import IdMap

    m = IdMap.build([pa.array(["b", "a", None, "b"]), pa.array(["c", "a"])])
    assert m.as_list == ["a", "b", "c"] and len(m) == 3
    codes = m.encode(["c", "a", "b"])
    assert codes.dtype == np.int64 and codes.tolist() == [2, 0, 1]
    assert m.decode(codes) == ["c", "a", "b"]
    assert all(isinstance(v, str) for v in m.decode(codes))
    assert IdMap.from_table(m.to_table()) == m
    assert m.to_table().schema.field("value").type == pa.string()
    # one value at a time: the serving path
    assert m.code_of("b") == 1 and m.value_of(2) == "c"


def test_unknown_values_encode_deterministically_outside_the_dense_range() -> None:
    from mlsd.data.ids import UNKNOWN_BIT, IdMap, unknown_code

    m = IdMap(["u_1", "u_2"])
    codes = m.encode(["u_1", "nobody", "nobody", "else"])
    assert codes[0] == 0
    assert codes[1] == codes[2] == unknown_code("nobody") == m.code_of("nobody")
    assert codes[1] != codes[3]
    for c in codes[1:]:
        assert UNKNOWN_BIT <= c <= 2**63 - 1  # int64, never a dense code
    with pytest.raises(KeyError):
        m.decode([int(codes[1])])
    with pytest.raises(KeyError):
        m.value_of(2)
    # the same in another process (no per-process hash seed, no shared state)
    code = subprocess.run(
        [
            sys.executable,
            "-c",
            "from mlsd.data.ids import unknown_code; print(unknown_code('nobody'))",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    ).stdout.strip()
    assert int(code) == unknown_code("nobody")


def test_integers_are_encoded_by_their_text() -> None:
    from mlsd.data.ids import IdMap

    m = IdMap(["7", "007", "x"])
    assert m.encode([7]).tolist() == [m.code_of("7")]
    assert m.code_of("007") != m.code_of("7")


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("0", True), ("7", True), ("-12", True), ("9223372036854775807", True),
     ("007", False), ("+7", False), (" 7", False), ("7 ", False), ("7.0", False), ("-0", False),
     ("", False), ("9223372036854775808", False), ("u_277", False)],
)  # fmt: skip
def test_canonical_integers(text: str, canonical: bool) -> None:
    from mlsd.data.ids import is_canonical_int

    assert is_canonical_int(text) is canonical


# --- loading ---------------------------------------------------------------------------------


def test_a_csv_log_with_string_ids_loads(log: Path) -> None:
    ds = load(log)
    assert set(ds.id_maps) == {"user_id", "video_id"}
    assert ds.events.schema.field("user_id").type == pa.int64()
    assert _pairs(ds) == [
        ("u_277", "sku-000A"),
        ("007", "sku-000B"),
        ("7", "sku-000A"),
        (UUID_A, UUID_B),
    ]
    codes = ds.events.column("user_id").to_pylist()
    assert sorted(set(codes)) == [0, 1, 2, 3]  # dense


def test_007_and_7_are_two_users(log: Path) -> None:
    ds = load(log)
    users = ds.id_maps["user_id"]
    assert users.code_of("007") != users.code_of("7")
    assert ds.users.num_rows == 4


def test_007_and_7_stay_apart_in_a_log_of_digits_only(tmp_path: Path) -> None:
    # before string ids, the CSV reader made both the integer 7: one user, silently
    csv = write(
        tmp_path / "log.csv", "user_id,item_id,timestamp\n007,10,1704067200\n7,11,1704067201\n"
    )
    ds = load(csv)
    assert ds.users.num_rows == 2
    assert ds.id_maps["user_id"].decode(ds.events.column("user_id").to_numpy()) == ["007", "7"]
    assert set(ds.id_maps) == {"user_id"}  # the items are integers, as ever
    assert ds.events.column("video_id").to_pylist() == [10, 11]


def test_an_integer_log_loads_exactly_as_before(tmp_path: Path) -> None:
    csv = write(
        tmp_path / "log.csv", "user_id,item_id,timestamp\n3,10,1704067200\n-1,0,1704067201\n"
    )
    ds = load(csv)
    assert ds.id_maps == {}
    assert ds.events.column("user_id").to_pylist() == [3, -1]
    assert ds.events.column("video_id").to_pylist() == [10, 0]
    pq.write_table(
        pa.table({"user_id": [3, -1], "item_id": [10, 0], "timestamp": [1704067200, 1704067201]}),
        tmp_path / "log.parquet",
    )
    assert load(tmp_path / "log.parquet").events.equals(ds.events)


def test_parquet_column_type_decides(tmp_path: Path) -> None:
    ts = [1704067200, 1704067201]
    pq.write_table(
        pa.table({"user_id": ["7", "8"], "item_id": [1, 2], "timestamp": ts}),
        tmp_path / "s.parquet",
    )
    ds = load(tmp_path / "s.parquet")
    assert set(ds.id_maps) == {"user_id"}  # string type: string ids, even of digits
    assert ds.events.column("video_id").to_pylist() == [1, 2]


def test_side_files_share_the_map_and_their_own_items_get_codes(tmp_path: Path, log: Path) -> None:
    videos = write(
        tmp_path / "videos.csv",
        f"video_id,duration_s,topic\nsku-000A,60,music\nsku-000B,30,news\n{UUID_B},10,x\n"
        "sku-ONLY,20,news\n",
    )
    ds = load(log, videos=videos)
    m = ds.id_maps["video_id"]
    assert "sku-ONLY" in m.as_list
    got = dict(zip(m.decode(ds.videos.column("video_id").to_numpy()),
                   ds.videos.column("topic").to_pylist(), strict=True))  # fmt: skip
    assert got == {"sku-000A": "music", "sku-000B": "news", UUID_B: "x", "sku-ONLY": "news"}


def test_an_integer_side_file_joins_a_string_id_space(tmp_path: Path, log: Path) -> None:
    users = write(tmp_path / "users.csv", f"user_id,country\nu_277,US\n007,FR\n7,DE\n{UUID_A},NL\n")
    ds = load(log, users=users)
    m = ds.id_maps["user_id"]
    got = dict(zip(m.decode(ds.users.column("user_id").to_numpy()),
                   ds.users.column("country").to_pylist(), strict=True))  # fmt: skip
    assert got == {"u_277": "US", "007": "FR", "7": "DE", UUID_A: "NL"}


def test_problems_name_the_original_ids(tmp_path: Path, log: Path) -> None:
    videos = write(tmp_path / "videos.csv", "video_id,duration_s\nsku-000A,60\nsku-000A,60\n")
    with pytest.raises(DataValidationError) as e:
        load(log, videos=videos)
    text = str(e.value)
    assert "value 'sku-000A', already at row 0" in text  # duplicate id
    assert "column 'item_id', row 1 (line 3): value 'sku-000B'" in text  # unknown video


def test_a_mlsd_dataset_with_string_ids_writes_and_reads_back(tmp_path: Path, log: Path) -> None:
    ds = load(log)
    ds.write(tmp_path / "out")
    assert pq.read_table(tmp_path / "out" / "events.parquet").schema.field("user_id").type == (
        pa.string()
    )
    back = load_dataset(tmp_path / "out")
    assert _pairs(back) == _pairs(ds)


def test_a_mlsd_events_csv_with_string_ids_loads(tmp_path: Path) -> None:
    f = write(
        tmp_path / "events.csv",
        "user_id,video_id,timestamp,event_type,watch_seconds\n"
        "u_1,v-1,2024-01-01T00:00:00Z,play,40\nu_2,v-1,2024-01-01T00:00:01Z,play,41\n",
    )
    ds = load(f)
    assert _pairs(ds) == [("u_1", "v-1"), ("u_2", "v-1")]


def test_mlsd_data_validate_accepts_a_string_id_log(tmp_path: Path, log: Path) -> None:
    r = CliRunner().invoke(app, ["data", "validate", str(log)])
    assert r.exit_code == 0, r.output
    assert "valid" in r.output
    videos = write(tmp_path / "videos.csv", "video_id,duration_s\nsku-000A,60\n")
    r = CliRunner().invoke(app, ["data", "validate", str(log), "--videos", str(videos)])
    assert r.exit_code == 2
    assert "'sku-000B'" in " ".join(r.output.split())
