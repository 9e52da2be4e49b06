"""Ingestion in the real service (``mlsd serve`` child processes, a real tiny Recommender
bundle, two pre-forked workers): events are visible on every worker, survive ``kill -9`` and
reloads through replay, retries are stored once, and writes over the rate are shed at once."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow.parquet as pq
import pytest

from mlsd.serving.app import API_KEY_HEADER
from mlsd.serving.process import ServerProcess
from tests.features.conftest import start_redis
from tests.serving.ingest.conftest import Target, ids_in

KEY = "ingest-key"
WHEN = "2026-02-01T20:15:00Z"  # a fixed request time: slates are then deterministic

pytestmark = pytest.mark.server


def _videos(tiny_dataset: Path, n: int = 6) -> list[int]:
    return pq.read_table(tiny_dataset / "videos.parquet")["video_id"].to_pylist()[:n]


def _fresh(url: str, method: str, path: str, **kw: Any) -> httpx.Response:
    """One request on a new connection (the supervisor hands new connections out in turn,
    so consecutive calls alternate workers)."""
    with httpx.Client(base_url=url, timeout=5, headers={API_KEY_HEADER: KEY}) as c:
        return c.request(method, path, **kw)


def _plays(user: int, videos: list[int], key: str | None = None) -> dict[str, Any]:
    events = [
        {"user_id": user, "video_id": v, "event_type": "play", "watch_seconds": 600.0}
        for v in videos
    ]
    return {"json": {"events": events}, "headers": {"Idempotency-Key": key} if key else {}}


def _states(url: str, user: int, n: int = 4) -> dict[str, dict[str, Any]]:
    """The user's online state per worker pid, from ``n`` fresh connections."""
    out = {}
    for _ in range(n):
        r = _fresh(url, "GET", f"/admin/users/{user}")
        assert r.status_code == 200, r.text
        body = r.json()
        out[r.headers["x-served-by"]] = {k: body[k] for k in ("history", "seen", "features")}
    return out


def test_a_new_users_events_reach_both_workers_and_they_agree(
    tmp_path: Path, real_bundle: Path, tiny_dataset: Path
) -> None:
    user = 987_654_321
    with ServerProcess(real_bundle, workers=2, api_key=KEY, event_log=tmp_path / "ev.jsonl") as srv:
        r = _fresh(srv.url, "POST", "/v1/events", **_plays(user, _videos(tiny_dataset)))
        assert r.status_code == 200 and r.json() == {"accepted": 6, "stored": 6, "duplicates": 0}
        t0 = time.monotonic()
        warm: set[str] = set()
        while len(warm) < 2 and time.monotonic() - t0 < 5:
            body = {"user_id": user, "k": 10, "context": {"time": WHEN}}
            a = _fresh(srv.url, "POST", "/v1/recommendations", json=body)
            if not a.json()["cold_start"]:
                warm.add(a.headers["x-served-by"])
        assert len(warm) == 2 and time.monotonic() - t0 < 1.0
        slates, pids = set(), set()
        for _ in range(20):
            a = _fresh(srv.url, "POST", "/v1/recommendations", json=body)
            assert not a.json()["cold_start"]
            slates.add(tuple(i["video_id"] for i in a.json()["items"]))
            pids.add(a.headers["x-served-by"])
        assert len(pids) == 2 and len(slates) == 1
        states = _states(srv.url, user)
        assert len(states) == 2 and len({orjson.dumps(s) for s in states.values()}) == 1


def test_kill_9_then_restart_replays_the_log_and_retries_are_stored_once(
    tmp_path: Path, real_bundle: Path, tiny_dataset: Path, target: Target
) -> None:
    """The same on both event-log backends: a JSON-lines file and a Redis stream."""
    user, vids = 123_456_789, _videos(tiny_dataset)
    srv = ServerProcess(real_bundle, workers=2, api_key=KEY, event_log=target.target).start()
    try:
        for part, key in ((vids[:3], "k1"), (vids[3:], "k2")):
            assert (
                _fresh(srv.url, "POST", "/v1/events", **_plays(user, part, key)).status_code == 200
            )
        time.sleep(0.3)
        before = _states(srv.url, user)
        assert len({orjson.dumps(s) for s in before.values()}) == 1
        assert before[next(iter(before))]["history"]  # the plays are in it
    finally:
        srv.kill()
    with ServerProcess(real_bundle, workers=2, api_key=KEY, event_log=target.target) as again:
        after = _states(again.url, user)
        assert len(after) == 2
        expected = orjson.dumps(next(iter(before.values())))
        assert {orjson.dumps(s) for s in after.values()} == {expected}
        retry = _fresh(again.url, "POST", "/v1/events", **_plays(user, vids[:3], "k1"))
        assert retry.json() == {"accepted": 3, "stored": 0, "duplicates": 3}
    ids = ids_in(target.open())
    assert sorted(ids) == sorted([f"k1:{i}" for i in range(3)] + [f"k2:{i}" for i in range(3)])


@pytest.mark.redis
def test_an_online_store_that_comes_back_empty_is_repopulated_while_unready(
    tmp_path: Path, real_bundle: Path, tiny_dataset: Path
) -> None:
    redis_server = start_redis()
    user = 4_242_424
    try:
        with ServerProcess(
            real_bundle,
            workers=2,
            api_key=KEY,
            event_log=tmp_path / "ev.jsonl",
            online_store=redis_server.url,
        ) as srv:
            posted = _fresh(srv.url, "POST", "/v1/events", **_plays(user, _videos(tiny_dataset)))
            assert posted.status_code == 200
            time.sleep(0.3)
            probe = {"user_id": user, "k": 10, "context": {"time": WHEN}}
            before = _fresh(srv.url, "POST", "/v1/recommendations", json=probe).json()
            assert not before["degraded"] and not before["cold_start"]
            with socket.create_connection((redis_server.host, redis_server.port)) as r:
                r.sendall(b"FLUSHALL\r\n")
                assert r.recv(16).startswith(b"+OK")
            # (unready while it lasts: tests/serving/ingest/test_applier.py; on the tiny
            # bundle it lasts milliseconds) both workers repopulate and say how long it took
            # One worker's rewrite is enough (both apply the same log, and the marker it
            # writes back tells the other that the store is whole again); then both are ready.
            t0 = time.monotonic()
            while time.monotonic() - t0 < 20:
                if "online store repopulated" in srv.log_path.read_text():
                    break
                time.sleep(0.05)
            assert "online store repopulated" in srv.log_path.read_text()
            ready: set[str] = set()
            while time.monotonic() - t0 < 20 and len(ready) < 2:
                r = _fresh(srv.url, "GET", "/readyz")
                if r.status_code == 200:
                    ready.add(r.headers["x-served-by"])
            assert len(ready) == 2
            metrics = _fresh(srv.url, "GET", "/metrics").text
            assert "mlsd_online_store_repopulate_seconds" in metrics
            for _ in range(4):  # both workers, by chance of the accept race
                after = _fresh(srv.url, "POST", "/v1/recommendations", json=probe).json()
                assert after["items"] == before["items"] and not after["degraded"]
    finally:
        redis_server.stop()


def test_sighup_reload_replays_the_log_into_the_new_workers(
    tmp_path: Path, real_bundle: Path, tiny_dataset: Path
) -> None:
    user = 55_555
    with ServerProcess(real_bundle, workers=2, api_key=KEY, event_log=tmp_path / "ev.jsonl") as srv:
        assert (
            _fresh(srv.url, "POST", "/v1/events", **_plays(user, _videos(tiny_dataset))).status_code
            == 200
        )
        time.sleep(0.3)
        before = _states(srv.url, user)
        old_pids = set(before)
        assert srv.proc is not None
        os.kill(srv.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 30
        after: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            after = _states(srv.url, user)
            if not set(after) & old_pids:
                break
            time.sleep(0.2)
        assert after and not set(after) & old_pids  # new workers answer
        assert {orjson.dumps(s) for s in after.values()} == {
            orjson.dumps(s) for s in before.values()
        }


def test_writes_over_the_rate_are_refused_at_once_with_retry_after(
    tmp_path: Path, real_bundle: Path, tiny_dataset: Path
) -> None:
    vids = _videos(tiny_dataset)
    with (
        ServerProcess(
            real_bundle,
            api_key=KEY,
            event_log=tmp_path / "ev.jsonl",
            extra_args=["--max-event-rate", "20"],
        ) as srv,
        httpx.Client(base_url=srv.url, headers={API_KEY_HEADER: KEY}, timeout=5) as c,
    ):
        codes, slow = [], 0.0
        for i in range(40):
            t0 = time.perf_counter()
            r = c.post(
                "/v1/events", **{k: v for k, v in _plays(i, vids[:5]).items() if k == "json"}
            )
            codes.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1
                slow = max(slow, time.perf_counter() - t0)
        assert codes[:4] == [200] * 4 and 429 in codes  # 20 events/s: 4 batches of 5, then shed
        assert slow < 0.05
        assert sum(1 for c_ in codes if c_ == 200) <= 10
