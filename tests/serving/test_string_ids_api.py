"""String ids end to end: a CSV log with ids like ``u_277``, ``sku-000A`` and UUIDs goes
through ``mlsd data validate``, ``mlsd train`` (a small log, fast settings), ``mlsd recommend``
and ``mlsd evaluate``, and through the HTTP API of the real app serving the real bundle
(``POST /v1/recommendations``, ``POST /v1/events``, ``GET /v1/videos/{video_id}/similar``,
``GET /admin/users/{user_id}``); the ids come back as they went in. A bundle of integer ids
still refuses a string with a 422 naming the field."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from typer.testing import CliRunner

from mlsd.cli import app
from mlsd.serving.app import API_KEY_HEADER, create_app
from mlsd.serving.bundle import load_bundle
from mlsd.serving.schemas import RecommendationResponse, SimilarResponse

runner = CliRunner()
KEY = "key"
CONFIG = (
    "two_tower:\n  epochs: 1\nranker:\n  n_estimators: 20\n  num_threads: 1\n"
    "candidates: 100\nnegatives_per_user: 30\n"
)
ITEMS = [f"sku-{i:04X}" for i in range(48)]
# users: prefixed, zero-padded beside its integer-looking twin, UUIDs
USERS = [f"u_{i}" for i in range(270, 300)] + ["007", "7"]
USERS += [str(uuid.UUID(int=(i + 1) * 0x9E3779B97F4A7C15_1234)) for i in range(6)]


def _log(path: Path) -> dict[str, list[str]]:
    """A CSV log ``user_id,item_id,timestamp,rating`` with taste groups (users like the items
    of their group; "007" and "7" are in different groups); returns each user's items."""
    rng = np.random.default_rng(0)
    rows, seen = [], {}
    t0 = 1_700_000_000
    for ui, u in enumerate(USERS):
        pool = [it for j, it in enumerate(ITEMS) if j % 4 == ui % 4]
        items = [str(x) for x in rng.choice(pool, 10, replace=False)]
        seen[u] = items
        for j, it in enumerate(items):
            rows.append(f"{u},{it},{t0 + 3600 * (j * 7 + ui % 5)},{int(rng.choice([3, 4, 5]))}")
    path.write_text("user_id,item_id,timestamp,rating\n" + "\n".join(rows) + "\n")
    return seen


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, list[str]]]:
    d = tmp_path_factory.mktemp("string-ids")
    seen = _log(d / "log.csv")
    (d / "config.yaml").write_text(CONFIG)
    r = runner.invoke(
        app,
        ["train", "--events", str(d / "log.csv"), "--config", str(d / "config.yaml"),
         "--out", str(d / "model")],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    return d, d / "model", seen


@pytest.fixture(scope="module")
def model(trained: tuple[Path, Path, Any]) -> Any:
    return load_bundle(trained[1])


@pytest.fixture(scope="module", params=[True, False], ids=["fast-path", "fastapi"])
def client(model: Any, request: pytest.FixtureRequest) -> TestClient:
    return TestClient(
        create_app(model, api_key=KEY, model_threads=0, fast_path=request.param),
        raise_server_exceptions=False,
    )


# --- the CLI ---------------------------------------------------------------------------------


def test_validate_accepts_the_log(trained: tuple[Path, Path, Any]) -> None:
    r = runner.invoke(app, ["data", "validate", str(trained[0] / "log.csv")])
    assert r.exit_code == 0, r.output


def test_the_bundle_keeps_the_id_maps(trained: tuple[Path, Path, Any], model: Any) -> None:
    files = {p.name for p in (trained[1] / "artifacts" / "data").iterdir()}
    assert {"ids.user_id.parquet", "ids.video_id.parquet"} <= files
    users = model.id_maps["user_id"]
    assert sorted(users.as_list) == sorted(USERS)
    assert users.code_of("007") != users.code_of("7")
    assert sorted(model.id_maps["video_id"].as_list) == sorted(ITEMS)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_recommend_writes_the_original_ids(trained: tuple[Path, Path, Any], suffix: str) -> None:
    d, bundle, seen = trained
    users = d / "users.csv"
    users.write_text("user_id\nu_277\n007\n7\nnobody\n")
    out = d / f"recs{suffix}"
    r = runner.invoke(app, ["recommend", "--model", str(bundle), "--users", str(users),
                            "--k", "5", "--out", str(out)])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "1 unknown users got cold-start" in " ".join(r.output.split())
    if suffix == ".parquet":
        t = pq.read_table(out)
        assert t.schema.field("user_id").type == pa.string()
        assert t.schema.field("item_id").type == pa.string()
    else:
        text = pacsv.ConvertOptions(column_types={"user_id": pa.string()})
        t = pacsv.read_csv(out, convert_options=text)
    assert t.column_names == ["user_id", "rank", "item_id", "score"]
    rows = t.to_pylist()
    assert [r["user_id"] for r in rows] == ["u_277"] * 5 + ["007"] * 5 + ["7"] * 5 + ["nobody"] * 5
    assert {r["item_id"] for r in rows} <= set(ITEMS)
    for u in ("u_277", "007", "7"):  # each user's own history is excluded, not the other's
        assert not {r["item_id"] for r in rows if r["user_id"] == u} & set(seen[u])


def test_recommend_refuses_a_string_for_an_integer_model(real_bundle: Path, tmp_path: Path) -> None:
    users = tmp_path / "users.csv"
    users.write_text("user_id\nu_1\n")
    r = runner.invoke(app, ["recommend", "--model", str(real_bundle), "--users", str(users),
                            "--out", str(tmp_path / "o.csv")])  # fmt: skip
    assert r.exit_code == 2
    assert "expected integer ids" in " ".join(r.output.split())


def test_evaluate_accepts_the_log(trained: tuple[Path, Path, Any]) -> None:
    d = trained[0]
    r = runner.invoke(
        app,
        ["evaluate", "--events", str(d / "log.csv"), "--config", str(d / "config.yaml"),
         "--protocol", "per-user-temporal", "--out", str(d / "eval")],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert (d / "eval" / "report.md").exists()


# --- the HTTP API ----------------------------------------------------------------------------


@pytest.mark.parametrize("user", ["u_277", "007", "7", USERS[-1]])
def test_recommendations_take_and_give_string_ids(client: TestClient, user: str) -> None:
    r = client.post("/v1/recommendations", json={"user_id": user, "k": 5})
    assert r.status_code == 200, r.text
    body = RecommendationResponse.model_validate(r.json())
    assert body.user_id == user and not body.cold_start
    assert len(body.items) == 5
    assert all(isinstance(i.video_id, str) and i.video_id in ITEMS for i in body.items)


def test_an_unknown_string_user_is_a_cold_user(client: TestClient) -> None:
    r = client.post("/v1/recommendations", json={"user_id": "somebody-new", "k": 3})
    assert r.status_code == 200, r.text
    assert r.json()["user_id"] == "somebody-new" and r.json()["cold_start"]


def test_007_and_7_are_two_users(client: TestClient, trained: tuple[Path, Path, Any]) -> None:
    seen = trained[2]
    got = {}
    for u in ("007", "7"):
        r = client.get(f"/admin/users/{u}", headers={API_KEY_HEADER: KEY})
        assert r.status_code == 200, r.text
        assert r.json()["user_id"] == u
        got[u] = set(r.json()["history"])
        assert got[u] and got[u] <= set(seen[u])
    assert not got["007"] & got["7"]


def test_similar_takes_a_string_video_id(client: TestClient) -> None:
    r = client.get("/v1/videos/sku-0004/similar", params={"k": 3})
    assert r.status_code == 200, r.text
    body = SimilarResponse.model_validate(r.json())
    assert body.video_id == "sku-0004"
    assert all(i.video_id in ITEMS for i in body.items)
    r = client.get("/v1/videos/sku-NOPE/similar")
    assert r.status_code == 404 and "sku-NOPE" in r.json()["error"]


def test_events_with_string_ids_reach_the_user(model: Any) -> None:
    client = TestClient(create_app(model, api_key=KEY, model_threads=0))
    user = f"new-{uuid.uuid4()}"
    events = [
        {"user_id": user, "video_id": v, "event_type": "play", "watch_seconds": 120.0}
        for v in ("sku-0001", "sku-0005")
    ]
    r = client.post("/v1/events", json={"events": events}, headers={API_KEY_HEADER: KEY})
    assert r.status_code == 200, r.text
    assert client.app.state.service.ingestion.tailer.wait_caught_up(5.0)  # type: ignore[attr-defined]
    r = client.get(f"/admin/users/{user}", headers={API_KEY_HEADER: KEY})
    assert r.status_code == 200, r.text
    assert set(r.json()["history"]) == {"sku-0001", "sku-0005"}
    r = client.post("/v1/recommendations", json={"user_id": user, "k": 4})
    assert r.status_code == 200 and not r.json()["cold_start"], r.text
    bad = {"events": [{"user_id": user, "video_id": "sku-NOPE", "event_type": "play"}]}
    r = client.post("/v1/events", json=bad, headers={API_KEY_HEADER: KEY})
    assert r.status_code == 422 and "'sku-NOPE'" in r.json()["error"]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_string_model_api_conforms_to_its_schema(
    model: Any, tmp_path: Path, mode: GenerationMode
) -> None:
    from mlsd.serving.ingest import FileEventLog

    api = create_app(model, api_key=KEY, events=FileEventLog(tmp_path / "events.jsonl"))
    config = schemathesis.Config.from_dict(
        {
            "auth": {"openapi": {"APIKeyHeader": {"api_key": KEY}}},
            "checks": {
                "positive_data_acceptance": {"enabled": False},
                "negative_data_rejection": {"expected-statuses": [400, 401, 403, 404, 413, 422]},
            },
        }
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", api, config=config)
    schema = schema.include(path_regex="^/(v1|admin/users)/")

    @given(case=schema.as_strategy(mode))
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        response = case.call_and_validate()
        assert response.status_code < 500, response.text

    run()


# --- a bundle of integer ids -----------------------------------------------------------------


@pytest.fixture(scope="module")
def int_client(real_bundle: Path) -> TestClient:
    return TestClient(create_app(load_bundle(real_bundle), api_key=KEY, model_threads=0))


def test_an_integer_model_answers_integers_as_before(int_client: TestClient) -> None:
    r = int_client.post("/v1/recommendations", json={"user_id": 1, "k": 3})
    assert r.status_code == 200, r.text
    assert r.json()["user_id"] == 1
    assert all(type(i["video_id"]) is int for i in r.json()["items"])


@pytest.mark.parametrize("value", ["u_277", "7"])
def test_an_integer_model_refuses_strings_naming_the_field(
    int_client: TestClient, value: str
) -> None:
    r = int_client.post("/v1/recommendations", json={"user_id": value})
    assert r.status_code == 422
    assert [d["loc"] for d in r.json()["detail"]] == [["body", "user_id"]]
    ev = {"events": [{"user_id": 1, "video_id": value, "event_type": "play"}]}
    r = int_client.post("/v1/events", json=ev, headers={API_KEY_HEADER: KEY})
    assert r.status_code == 422
    assert [d["loc"] for d in r.json()["detail"]] == [["body", "events", 0, "video_id"]]


def test_an_integer_model_refuses_a_string_video_in_the_path(int_client: TestClient) -> None:
    r = int_client.get("/v1/videos/sku-1/similar")
    assert r.status_code == 422
    assert [d["loc"] for d in r.json()["detail"]] == [["path", "video_id"]]
