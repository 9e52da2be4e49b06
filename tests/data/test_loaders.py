"""Tests of ``mlsd.data.loaders``: format detection, MovieLens (real 100k and hand-written
1M/10M/CSV fixtures), bring-your-own interactions, located errors, the download and the CLI."""

from __future__ import annotations

import zipfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mlsd.cli import app
from mlsd.data.dataset import Dataset
from mlsd.data.loaders import (
    FORMATS,
    detect_format,
    download_movielens,
    load,
    movielens_variant,
)
from mlsd.data.schema import EVENTS, USERS, VIDEOS
from mlsd.errors import ConfigError, DataError, DataValidationError

ML100K = Path(__file__).resolve().parents[3] / "shared/data/ml-100k"
needs_ml100k = pytest.mark.skipif(
    not (ML100K / "u.data").is_file(), reason=f"MovieLens 100k not found at {ML100K}"
)
runner = CliRunner()


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def ms(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def assert_schemas(ds: Dataset) -> None:
    assert ds.events.schema == EVENTS
    assert ds.videos.schema == VIDEOS
    assert ds.users.schema == USERS


# --- MovieLens 100k, the real files ------------------------------------------------------


@pytest.fixture(scope="module")
def ml100k() -> Dataset:
    if not (ML100K / "u.data").is_file():
        pytest.skip(f"MovieLens 100k not found at {ML100K}")
    return load(ML100K)


@pytest.mark.realdata
def test_ml100k_counts_and_provenance(ml100k: Dataset) -> None:
    assert_schemas(ml100k)
    assert ml100k.events.num_rows == 100_000
    assert ml100k.users.num_rows == 943
    assert ml100k.videos.num_rows == 1_682
    assert ml100k.report is not None and ml100k.report.n_dropped == 0
    assert ml100k.meta == {"source": "movielens-100k", "path": str(ML100K)}
    assert ml100k.files["events"] == str(ML100K / "u.data")
    assert set(ml100k.events.column("event_type").to_pylist()) == {"rating"}
    assert ml100k.events.column("watch_seconds").null_count == 100_000


@pytest.mark.realdata
def test_ml100k_events_match_the_raw_file(ml100k: Dataset) -> None:
    raw = np.array(
        [line.split("\t") for line in (ML100K / "u.data").read_text().splitlines()], dtype=np.int64
    )
    ev = ml100k.events
    np.testing.assert_array_equal(ev.column("user_id").to_numpy(), raw[:, 0])
    np.testing.assert_array_equal(ev.column("video_id").to_numpy(), raw[:, 1])
    np.testing.assert_array_equal(ev.column("rating").to_numpy(), raw[:, 2].astype(np.float32))
    ts_ms = ev.column("timestamp").cast(pa.int64()).to_numpy()
    np.testing.assert_array_equal(ts_ms, raw[:, 3] * 1000)
    ratings = ev.column("rating").to_numpy()
    assert ratings.min() == 1 and ratings.max() == 5
    assert set(np.unique(ratings)) == {1, 2, 3, 4, 5}
    times = ev.column("timestamp").to_pylist()
    assert min(times).year == 1997 and max(times).year == 1998


@pytest.mark.realdata
def test_ml100k_items_and_users_match_the_raw_files(ml100k: Dataset) -> None:
    genres = [g.split("|")[0] for g in (ML100K / "u.genre").read_text().split("\n") if g]
    vids = {r["video_id"]: r for r in ml100k.videos.to_pylist()}
    lines = (ML100K / "u.item").read_text(encoding="latin-1").splitlines()
    for line in lines:
        f = line.split("|")
        want = [g for g, flag in zip(genres, f[5:], strict=True) if flag == "1" and g != "unknown"]
        got = vids[int(f[0])]
        assert got["title"] == f[1]
        assert got["topics"] == (want or None)
        assert got["topic"] == (want[0] if want else None)
    toy = vids[1]
    assert toy["title"] == "Toy Story (1995)"
    assert toy["topics"] == ["Animation", "Children's", "Comedy"]
    assert toy["topic"] == "Animation"
    assert toy["duration_s"] is None and toy["creator_id"] is None

    def bucket(age: int) -> str:
        for hi, label in ((12, "0-12"), (17, "13-17"), (24, "18-24"), (34, "25-34")):
            if age <= hi:
                return label
        return "35-44" if age <= 44 else "45-54" if age <= 54 else "55+"

    users = {r["user_id"]: r["age_bucket"] for r in ml100k.users.to_pylist()}
    raw_users = [u.split("|") for u in (ML100K / "u.user").read_text().splitlines()]
    assert users == {int(u[0]): bucket(int(u[1])) for u in raw_users}
    assert users[1] == "18-24"  # u.user line 1: 1|24|M|technician|85711


@pytest.mark.realdata
@needs_ml100k
def test_ml100k_detected_from_the_directory_or_its_ratings_file() -> None:
    assert detect_format(ML100K) == ("movielens", ML100K)
    assert detect_format(ML100K / "u.data") == ("movielens", ML100K)
    assert movielens_variant(ML100K) == "100k"


@pytest.mark.realdata
@needs_ml100k
def test_cli_validates_ml100k() -> None:
    res = runner.invoke(app, ["data", "validate", str(ML100K)])
    assert res.exit_code == 0, res.output
    assert "valid" in res.output
    assert "events: 100,000 rows" in res.output


# --- MovieLens 100k, hand-written (located errors in headerless files) ----------------------


def ml100k_tiny(d: Path, data: str) -> Path:
    write(d / "u.data", data)
    write(d / "u.genre", "unknown|0\nAction|1\nComedy|2\n\n")
    write(d / "u.item", "1|A (1990)|01-Jan-1990||url|0|1|1\n2|B (1991)|||url|1|0|0\n", "latin-1")
    write(d / "u.user", "1|7|M|student|00000\n2|60|F|other|11111\n")
    return d


def test_ml100k_tiny_maps_unknown_genre_and_young_users(tmp_path: Path) -> None:
    d = ml100k_tiny(tmp_path / "ml", "1\t1\t5\t881250949\n2\t2\t1\t881250950\n")
    ds = load(d)
    assert ds.videos.to_pylist()[0]["topics"] == ["Action", "Comedy"]
    assert ds.videos.to_pylist()[1]["topics"] is None  # only "unknown"
    assert ds.users.column("age_bucket").to_pylist() == ["0-12", "55+"]
    assert ds.events.column("timestamp").to_pylist() == [ms(881250949), ms(881250950)]


def test_ml100k_bad_item_id_is_located_by_its_line_and_column(tmp_path: Path) -> None:
    d = ml100k_tiny(tmp_path / "ml", "1\t1\t5\t881250949\n2\tabc\t1\t881250950\n")
    with pytest.raises(DataValidationError) as e:
        load(d)
    (p,) = e.value.problems
    assert (p.file, p.column, p.row, p.line) == (str(d / "u.data"), "item id", 1, 2)
    assert "'abc'" in str(e.value) and "line 2" in str(e.value)


def test_ml100k_rating_of_an_unknown_item_names_the_file_column(tmp_path: Path) -> None:
    d = ml100k_tiny(tmp_path / "ml", "1\t1\t5\t881250949\n2\t9\t1\t881250950\n")
    with pytest.raises(DataValidationError, match=r"u\.data, column 'item id', row 1 \(line 2\)"):
        load(d)
    ds = load(d, repair=True)
    assert ds.events.num_rows == 1
    assert ds.report is not None and ds.report.dropped == {"events: unknown video": 1}
    assert ds.report.problems[0].column == "item id"


def test_ml100k_bad_genre_flag_and_age_are_reported(tmp_path: Path) -> None:
    d = ml100k_tiny(tmp_path / "ml", "1\t1\t5\t881250949\n")
    write(d / "u.item", "1|A|||url|0|1|x\n")
    with pytest.raises(DataValidationError, match=r"u\.item, column 'Comedy', row 0 \(line 1\)"):
        load(d)
    d2 = ml100k_tiny(tmp_path / "ml2", "1\t1\t5\t881250949\n")
    write(d2 / "u.user", "1|7|M|student|0\n2|old|F|other|1\n")
    with pytest.raises(DataValidationError, match=r"u\.user, column 'age', row 1 \(line 2\)"):
        load(d2)


# --- MovieLens 1M / 10M: "::" files -------------------------------------------------------


def ml1m(d: Path) -> Path:
    write(d / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    write(
        d / "movies.dat",
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "661::Misérables, Les: Part 1 (1995)::Drama|Musical\n",
        "latin-1",
    )
    write(d / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    return d


def test_ml1m_fixture(tmp_path: Path) -> None:
    d = ml1m(tmp_path / "ml-1m")
    assert movielens_variant(d) == "1m"
    ds = load(d)
    assert_schemas(ds)
    assert ds.meta == {"source": "movielens-1m", "path": str(d)}
    ev = ds.events.to_pydict()
    assert ev["user_id"] == [1, 1, 2]
    assert ev["video_id"] == [1193, 661, 1193]
    assert ev["rating"] == [5.0, 3.0, 4.0]
    assert ev["timestamp"][0] == ms(978300760)
    assert ev["event_type"] == ["rating"] * 3
    vids = {r["video_id"]: r for r in ds.videos.to_pylist()}
    assert vids[661]["title"] == "Misérables, Les: Part 1 (1995)"  # latin-1 é, ":" in title
    assert vids[661]["topics"] == ["Drama", "Musical"]
    assert vids[661]["topic"] == "Drama"
    assert ds.users.to_pydict()["age_bucket"] == ["0-17", "56+"]


def test_ml1m_unknown_age_code_and_malformed_movie_line(tmp_path: Path) -> None:
    d = ml1m(tmp_path / "ml-1m")
    write(d / "users.dat", "1::F::1::10::48067\n2::M::30::16::70072\n")
    with pytest.raises(DataValidationError, match=r"users\.dat, column 'Age', row 1 \(line 2\)"):
        load(d)
    d = ml1m(tmp_path / "other")
    write(d / "movies.dat", "1193::Cuckoo (1975)::Drama\n661 Les Mis\n", "latin-1")
    with pytest.raises(DataValidationError, match=r"movies\.dat.*row 1 \(line 2\)"):
        load(d)


def test_ml1m_rating_of_an_unknown_user_names_userid(tmp_path: Path) -> None:
    d = ml1m(tmp_path / "ml-1m")
    write(d / "ratings.dat", "1::1193::5::978300760\n3::661::3::978302109\n")
    with pytest.raises(DataValidationError) as e:
        load(d)
    (p,) = e.value.problems
    assert (p.file, p.column, p.line) == (str(d / "ratings.dat"), "UserID", 2)
    assert "users.dat" in p.expected


def test_ml10m_fixture_without_users(tmp_path: Path) -> None:
    d = tmp_path / "ml-10M100K"
    write(
        d / "ratings.dat", "1::122::5::838985046\n1::185::4.5::838983525\n7::122::0.5::868246450\n"
    )
    write(
        d / "movies.dat",
        "122::Boomerang (1992)::Comedy|Romance\n185::Net, The (1995)::(no genres listed)\n",
    )
    write(d / "tags.dat", "15::4973::excellent!::1215184630\n")
    assert movielens_variant(d) == "10m"
    ds = load(d, fmt="movielens")
    assert_schemas(ds)
    assert ds.meta["source"] == "movielens-10m"
    assert ds.events.column("rating").to_pylist() == [5.0, 4.5, 0.5]
    assert ds.users.column("user_id").to_pylist() == [1, 7]  # derived from the ratings
    vids = {r["video_id"]: r for r in ds.videos.to_pylist()}
    assert vids[122]["topics"] == ["Comedy", "Romance"]
    assert vids[185]["topics"] is None and vids[185]["topic"] is None


# --- MovieLens 20M / 25M / latest: CSV ----------------------------------------------------


def ml_csv(d: Path) -> Path:
    write(
        d / "ratings.csv",
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n2,1,2.5,1445714835\n",
    )
    write(
        d / "movies.csv",
        "movieId,title,genres\n"
        "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
        '3,"American President, The (1995)",Comedy|Drama|Romance\n'
        "5,Unseen (2019),(no genres listed)\n",
    )
    return d


@pytest.mark.parametrize(("name", "source"), [("ml-latest-small", "movielens-latest-small"),
                                               ("ml-25m", "movielens-25m"),
                                               ("ratings", "movielens-csv")])  # fmt: skip
def test_ml_csv_fixture(tmp_path: Path, name: str, source: str) -> None:
    d = ml_csv(tmp_path / name)
    assert detect_format(d) == ("movielens", d)
    ds = load(d)
    assert_schemas(ds)
    assert ds.meta["source"] == source
    assert ds.events.column("rating").to_pylist() == [4.0, 4.5, 2.5]
    assert ds.events.column("timestamp").to_pylist()[2] == ms(1445714835)
    vids = {r["video_id"]: r for r in ds.videos.to_pylist()}
    assert vids[3]["title"] == "American President, The (1995)"
    assert vids[3]["topic"] == "Comedy"
    assert vids[1]["topics"] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    assert vids[5]["topics"] is None
    assert ds.users.num_rows == 2


def test_ml_csv_bad_rating_is_located_with_header_line(tmp_path: Path) -> None:
    d = ml_csv(tmp_path / "ml-25m")
    write(
        d / "ratings.csv",
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,good,964982704\n",
    )
    with pytest.raises(DataValidationError) as e:
        load(d)
    (p,) = e.value.problems
    assert (p.column, p.row, p.line) == ("rating", 1, 3)


def test_ml_csv_missing_column(tmp_path: Path) -> None:
    d = ml_csv(tmp_path / "ml-25m")
    write(d / "ratings.csv", "userId,itemId,rating,timestamp\n1,1,4.0,964982703\n")
    with pytest.raises(DataValidationError, match=r"ratings\.csv, column 'movieId', header"):
        load(d, fmt="movielens")


# --- interactions -------------------------------------------------------------------------


def test_interactions_csv_plays(tmp_path: Path) -> None:
    f = write(
        tmp_path / "log.csv",
        "user_id,item_id,timestamp,extra\n1,10,2024-01-01T00:00:00Z,x\n2,11,1704067260,y\n",
    )
    assert detect_format(f) == ("interactions", f)
    ds = load(f)
    assert_schemas(ds)
    assert ds.meta == {"source": "interactions", "path": str(f)}
    ev = ds.events.to_pydict()
    assert ev["event_type"] == ["play", "play"]
    assert ev["video_id"] == [10, 11]
    assert ev["watch_seconds"] == [None, None]
    assert ev["weight"] == [None, None]
    assert ev["timestamp"] == [ms(1704067200), ms(1704067260)]
    assert ds.videos.column("video_id").to_pylist() == [10, 11]
    assert ds.users.column("user_id").to_pylist() == [1, 2]


def test_interactions_csv_with_rating_and_weight(tmp_path: Path) -> None:
    f = write(
        tmp_path / "log.csv",
        "user_id,item_id,timestamp,rating,weight\n"
        "1,10,1704067200,4.5,2\n1,11,1704067201,,0.5\n2,10,1704067202,1,\n",
    )
    ev = load(f).events.to_pydict()
    assert ev["event_type"] == ["rating", "play", "rating"]  # no rating: an implicit event
    assert ev["rating"] == [4.5, None, 1.0]
    assert ev["weight"] == [2.0, 0.5, None]


def test_interactions_parquet_with_video_id(tmp_path: Path) -> None:
    f = tmp_path / "log.parquet"
    ts = pa.array([1_704_067_200_000, 1_704_067_260_000], pa.timestamp("ms"))
    pq.write_table(
        pa.table({"user_id": [5, 6], "video_id": [7, 8], "timestamp": ts, "weight": [1.0, 3.0]}),
        f,
    )
    assert detect_format(f) == ("interactions", f)
    ds = load(f, fmt="interactions")
    assert ds.events.column("video_id").to_pylist() == [7, 8]
    assert ds.events.column("weight").to_pylist() == [1.0, 3.0]
    assert ds.events.column("timestamp").to_pylist() == [ms(1704067200), ms(1704067260)]


def test_interactions_missing_item_id_names_file_and_column(tmp_path: Path) -> None:
    f = write(tmp_path / "mine.csv", "user_id,movie,timestamp\n1,10,1704067200\n")
    with pytest.raises(DataValidationError) as e:
        load(f, fmt="interactions")
    (p,) = e.value.problems
    assert p.column == "item_id" and p.check == "missing"
    assert str(f) in str(e.value) and "column 'item_id'" in str(e.value)
    assert "movie" in str(e.value)  # the columns that are there


def test_interactions_with_both_item_and_video_id_is_ambiguous(tmp_path: Path) -> None:
    f = write(tmp_path / "mine.csv", "user_id,item_id,video_id,timestamp\n1,10,10,1704067200\n")
    with pytest.raises(DataValidationError, match="both 'item_id' and 'video_id'"):
        load(f, fmt="interactions")


def test_interactions_bad_timestamp_names_column_and_row(tmp_path: Path) -> None:
    f = write(
        tmp_path / "mine.csv",
        "user_id,item_id,timestamp\n1,10,1704067200\n2,11,yesterday\n3,12,1704067300\n",
    )
    with pytest.raises(DataValidationError) as e:
        load(f)
    (p,) = e.value.problems
    assert (p.column, p.row, p.line) == ("timestamp", 1, 3)
    assert "column 'timestamp', row 1 (line 3)" in str(e.value) and "'yesterday'" in str(e.value)
    ds = load(f, repair=True)
    assert ds.events.column("user_id").to_pylist() == [1, 3]
    assert ds.report is not None and ds.report.n_dropped == 1


def test_interactions_bad_item_id_is_reported_as_item_id(tmp_path: Path) -> None:
    # (x10 would be a string id: see tests/data/test_string_ids.py)
    f = write(tmp_path / "mine.csv", "user_id,item_id,timestamp\n1,,1704067200\n")
    with pytest.raises(DataValidationError, match=r"column 'item_id', row 0 \(line 2\)"):
        load(f)


def test_interactions_with_a_videos_table(tmp_path: Path) -> None:
    f = write(tmp_path / "log.csv", "user_id,item_id,timestamp\n1,10,1704067200\n1,99,1704067201\n")
    v = write(tmp_path / "videos.csv", "video_id,duration_s,topic\n10,60,music\n")
    with pytest.raises(DataValidationError) as e:
        load(f, videos=v)
    (p,) = e.value.problems
    assert (p.file, p.column, p.row) == (str(f), "item_id", 1)
    assert str(v) in p.expected
    ds = load(f, videos=v, repair=True)
    assert ds.videos.column("duration_s").to_pylist() == [60.0]
    assert ds.files["videos"] == str(v)


# --- mlsd, detection and option errors ----------------------------------------------------


def test_mlsd_events_file_is_detected(tmp_path: Path) -> None:
    f = write(
        tmp_path / "events.csv",
        "user_id,video_id,timestamp,event_type,watch_seconds\n1,2,1704067200,play,12.5\n",
    )
    assert detect_format(f) == ("mlsd", f)
    assert detect_format(tmp_path) == ("mlsd", tmp_path)
    ds = load(tmp_path)
    assert ds.meta == {"source": "mlsd", "path": str(tmp_path)}
    assert ds.events.column("watch_seconds").to_pylist() == [12.5]


def test_detection_failures_name_the_path_and_what_was_looked_for(tmp_path: Path) -> None:
    write(tmp_path / "notes.txt", "hello\n")
    with pytest.raises(DataError, match=r"cannot tell the format.*u\.data.*notes\.txt") as e:
        load(tmp_path)
    assert str(tmp_path) in str(e.value)
    f = write(tmp_path / "other.csv", "a,b\n1,2\n")
    with pytest.raises(DataError, match=r"other\.csv: cannot tell the format.*'event_type'"):
        load(f)
    with pytest.raises(DataError, match="no such file"):
        load(tmp_path / "missing")
    with pytest.raises(DataError, match="not a MovieLens directory"):
        load(tmp_path, fmt="movielens")


def test_unknown_format_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'csv'; expected one of auto, mlsd, interactions"):
        load(tmp_path, fmt="csv")
    assert FORMATS == ("auto", "mlsd", "interactions", "movielens")


def test_cli_names_the_bad_column(tmp_path: Path) -> None:
    f = write(tmp_path / "mine.csv", "user_id,itemid,timestamp\n1,10,1704067200\n")
    res = runner.invoke(app, ["data", "validate", str(f), "--format", "interactions"])
    assert res.exit_code == 2
    assert "column 'item_id'" in res.output and "mine.csv" in res.output


# --- download ------------------------------------------------------------------------------


def serve_zip(srv: Path, name: str, members: dict[str, str]) -> str:
    """A zip ``srv/{name}.zip`` with ``members``; returns the ``file://`` base URL."""
    srv.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(srv / f"{name}.zip", "w") as zf:
        for arc, text in members.items():
            zf.writestr(arc, text)
    return srv.as_uri()


def test_download_unpacks_atomically_and_skips_when_present(tmp_path: Path) -> None:
    base = serve_zip(
        tmp_path / "srv",
        "ml-100k",
        {"ml-100k/u.data": "1\t1\t5\t881250949\n", "ml-100k/README": "readme"},
    )
    dest = tmp_path / "data"
    got = download_movielens("ml-100k", dest, base_url=base)
    assert got == dest / "ml-100k"
    assert sorted(x.name for x in dest.iterdir()) == ["ml-100k"]  # no temp files left
    assert load(got).events.num_rows == 1
    (tmp_path / "srv" / "ml-100k.zip").unlink()
    assert download_movielens("ml-100k", dest, base_url=base) == got  # no network needed


def test_download_renames_the_archive_folder(tmp_path: Path) -> None:
    base = serve_zip(tmp_path / "srv", "ml-10m", {"ml-10M100K/ratings.dat": "1::2::3.5::9e8\n"})
    got = download_movielens("ml-10m", tmp_path / "data", base_url=base)
    assert got == tmp_path / "data" / "ml-10m"
    assert movielens_variant(got) == "10m"


def test_download_failures(tmp_path: Path) -> None:
    dest = tmp_path / "data"
    srv = tmp_path / "srv"
    srv.mkdir()
    (srv / "ml-1m.zip").write_text("<html>Not Found</html>")
    with pytest.raises(DataError, match=r"ml-1m\.zip: not a zip archive"):
        download_movielens("ml-1m", dest, base_url=srv.as_uri())
    with pytest.raises(DataError, match="download failed"):
        download_movielens("ml-20m", dest, base_url=srv.as_uri())
    base = serve_zip(srv, "ml-25m", {"ml-25m/links.csv": "movieId\n"})
    with pytest.raises(DataError, match="no MovieLens ratings file"):
        download_movielens("ml-25m", dest, base_url=base)
    assert list(dest.iterdir()) == []  # nothing half-written
    with pytest.raises(ConfigError, match="unknown MovieLens name"):
        download_movielens("../etc", dest, base_url=base)
