"""The service's experiment routing (``mlsd.serving.experiment``) on real tiny models: config
validation with the file and field named, routing by the hash of (user, salt), every arm
sees every event, snapshots round-trip, a baseline arm, the exposure log, and the service's
events carrying the arm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from mlsd.errors import BundleError, ConfigError
from mlsd.pipeline import RequestCtx
from mlsd.serving.app import create_app
from mlsd.serving.assignment import assign
from mlsd.serving.bundle import load_bundle
from mlsd.serving.experiment import (
    ExperimentServable,
    ExposureLog,
    build_arms,
    load_config,
)
from mlsd.serving.ingest.memory_log import MemoryEventLog

pytestmark = pytest.mark.slow

CONFIG = """name: unit
salt: s
arms:
  - name: popular
    policy: most-popular
  - name: pipeline
  - name: quiet
    rerank: {exploration: {enabled: false}}
"""


@pytest.fixture(scope="module")
def experiment(real_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = tmp_path_factory.mktemp("exp")
    (d / "exp.yaml").write_text(CONFIG)
    cfg = load_config(d / "exp.yaml")
    arms = build_arms(cfg, real_bundle, lambda p: load_bundle(p))
    return ExperimentServable(cfg, arms, ExposureLog(d / "exposures.jsonl")), d


def test_a_bad_config_names_the_file_and_the_field(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    for text, msg in [
        ("name: x\narms: [{name: a}]\n", "arms"),
        ("name: x\narms: [{name: a}, {name: b}]\nsplit: [1]\n", "split"),
        ("name: x\narms: [{name: a}, {name: b}]\nmetrics: [clicks]\n", "clicks"),
        ("name: x\narms: [{name: a, colour: red}, {name: b}]\n", "colour"),
        ("- just\n- a list\n", "mapping"),
    ]:
        p.write_text(text)
        with pytest.raises(ConfigError, match=msg) as e:
            load_config(p)
        assert "bad.yaml" in str(e.value)
    with pytest.raises(ConfigError, match=r"nope\.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_unknown_policy_and_bad_overrides_are_refused(real_bundle: Path, tmp_path: Path) -> None:
    cases = [
        ("{name: b, policy: magic}", "magic"),
        ("{name: b, rerank: {exploration: {share: 7}}}", r"rerank\.exploration"),
    ]
    for arm, msg in cases:
        (tmp_path / "e.yaml").write_text(f"name: x\narms: [{{name: a}}, {arm}]\n")
        with pytest.raises(ConfigError, match=msg):
            build_arms(load_config(tmp_path / "e.yaml"), real_bundle, load_bundle)


def test_routing_follows_the_hash_and_every_arm_sees_every_event(experiment: Any) -> None:
    exp, d = experiment
    users = np.arange(1, 61)
    expect = assign(users, "s", [1, 1, 1])
    assert (exp.arm_of(users) == expect).all()
    ctx = RequestCtx(time_ms=int(exp.models[1].now_ms_))
    for u, a in zip(users.tolist(), expect.tolist(), strict=True):
        served = exp.serve(u, 5, ctx)
        assert served.arm == exp.arm_names[a] and served.experiment == "unit"
        assert served.model_version == exp.models[a].version
        if served.arm == "quiet":
            assert not any(it.exploration for it in served.items)
    lines = [json.loads(x) for x in (d / "exposures.jsonl").read_text().splitlines()]
    assert [x["user_id"] for x in lines[-60:]] == users.tolist()
    assert {x["arm"] for x in lines} == {"popular", "pipeline", "quiet"}
    # a valid watch reaches every arm's online state (the baseline never recommends it again)
    v = int(exp.serve(7, 1, ctx).items[0].video_id)
    t = pa.array([ctx.time_ms + 1000] * 2, pa.timestamp("ms"))
    events = pa.table({"user_id": [7, 7], "video_id": [v, v], "timestamp": t,
                       "event_type": ["impression", "play"],
                       "watch_seconds": pa.array([None, 3600.0], pa.float32())})  # fmt: skip
    before = [m.online_snapshot() for m in exp._distinct()]
    exp.apply_events(events)
    after = [m.online_snapshot() for m in exp._distinct()]
    assert all(a != b for a, b in zip(before, after, strict=True))
    assert v in exp.models[0].user_state(7)["watched_since_training"]
    # snapshots round-trip, and refuse another experiment's bytes
    blob = exp.online_snapshot()
    states = [m.user_state(7) for m in exp.models]
    exp.restore_online(blob)
    assert [m.user_state(7) for m in exp.models] == states
    with pytest.raises(BundleError):
        exp.restore_online(b"not a snapshot")


def test_the_service_names_the_arm_in_answers_and_stored_events(experiment: Any) -> None:
    exp, _ = experiment
    log = MemoryEventLog()
    app = create_app(exp, events=log, api_key="k")
    with TestClient(app) as client:
        r = client.post("/v1/recommendations", json={"user_id": 11, "k": 3})
        assert r.status_code == 200
        arm = exp.arm_names[int(assign(np.array([11]), "s", [1, 1, 1])[0])]
        assert r.json()["experiment"] == {"name": "unit", "arm": arm}
        video = r.json()["items"][0]["video_id"]
        w = client.post("/v1/events", headers={"X-API-Key": "k"},
                        json={"events": [{"user_id": 11, "video_id": video,
                                          "event_type": "impression"}]})  # fmt: skip
        assert w.status_code == 200, w.text
    assert log.records[-1]["experiment"] == "unit" and log.records[-1]["arm"] == arm
