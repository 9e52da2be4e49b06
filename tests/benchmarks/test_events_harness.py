"""The event-ingestion harness (``benchmarks/events.py``): requests, verifications, statistics,
the mixed driver with replies and retries (a fake server on a real socket that crashes and comes
back), Redis helpers on a real ``redis-server``, the relabelled bundle, the README table."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
FP = "sha256:" + "0" * 64
sys.path.insert(0, str(ROOT / "benchmarks"))

import _events_http as h  # noqa: E402
import _events_stats as st  # noqa: E402
from _events_infra import Population, RedisProcess, copy_log, read_log, relabel_bundle  # noqa: E402
from _events_kill9 import Acks, WritePlan, plan_writes, retry_after_s, write_retry  # noqa: E402
from _events_mixed import mixed_checks, summarize  # noqa: E402
from _render import Missing, Results  # noqa: E402
from _render_events import events as render_events  # noqa: E402

from mlsd.serving.loadgen import Reply, Stream, drive_streams  # noqa: E402


def _split(raw: bytes) -> tuple[list[str], dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    return lines, {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}, body


def _pop() -> Population:
    return Population(np.arange(1, 101), np.arange(10_000, 10_100), np.arange(500, 700), "test")


def test_events_request_carries_keys_ids_and_an_exact_body() -> None:
    evs = [
        h.Event(7, 501, "play", h.EVENTS_BASE_MS + 1, 95.5, h.event_id("run1", 3, 0)),
        h.Event(8, 502, "like", h.EVENTS_BASE_MS + 2),
    ]
    raw = h.events_request("127.0.0.1", 8000, evs, api_key="k", idempotency_key="run1-3")
    lines, headers, body = _split(raw)
    assert lines[0] == "POST /v1/events HTTP/1.1"
    assert headers["x-api-key"] == "k" and headers["idempotency-key"] == "run1-3"
    assert int(headers["content-length"]) == len(body)
    doc = json.loads(body)["events"]
    assert doc[0] == {"user_id": 7, "video_id": 501, "event_type": "play",
                      "timestamp": "2026-02-01T20:00:00.001Z", "watch_seconds": 95.5,
                      "event_id": "run1-3-0"}  # fmt: skip
    assert "event_id" not in doc[1] and "watch_seconds" not in doc[1]
    with pytest.raises(ValueError, match="at least one"):
        h.events_request("h", 1, [], api_key="k")
    with pytest.raises(ValueError, match="idempotency key"):
        h.events_request("h", 1, evs, api_key="k", idempotency_key="a b")
    with pytest.raises(ValueError, match="line breaks"):
        h.http_request("GET", "/", host="h", port=1, headers={"X": "a\r\nEvil: 1"})
    assert h.EVENT_ID.fullmatch(h.event_id("k9r0", 12, 3))
    for prefix in ("x" * 126, "bad/prefix"):
        pytest.raises(ValueError, h.event_id, prefix, 1, 1)  # noqa: RUF061


def test_batches_validate_against_the_service_schema() -> None:
    """What the harness sends, with event ids and without (``--legacy``), is what the
    service's EventBatch accepts, timestamps included."""
    from mlsd.serving.schemas import EventBatch

    evs = [h.Event(1, 2, "play", h.EVENTS_BASE_MS, 30.0), h.Event(1, 3, "impression", 5)]
    body = _split(h.events_request("h", 1, evs, api_key="k"))[2]
    batch = EventBatch.model_validate_json(body)
    assert batch.events[0].timestamp == datetime(2026, 2, 1, 20, 0, tzinfo=UTC)
    assert batch.events[1].timestamp == datetime(1970, 1, 1, 0, 0, 0, 5000, tzinfo=UTC)
    with_id = [h.Event(1, 2, "play", 5, event_id=h.event_id("k9r0", 1, 0))]
    body = _split(h.events_request("h", 1, with_id, api_key="k"))[2]
    assert EventBatch.model_validate_json(body).events[0].event_id == "k9r0-1-0"


def test_recommendation_request_and_reply_parsing() -> None:
    _, headers, body = _split(h.recommendation_request("h", 9, 42, k=5, close=True))
    assert json.loads(body) == {"user_id": 42, "k": 5, "context": {"time": h.CONTEXT_TIME}}
    assert headers["connection"] == "close"
    r = h.parse_reply(b"HTTP/1.1 200 OK\r\nX-Served-By: 12\r\nContent-Length: 2\r\n\r\n{}")
    assert r.status == 200 and h.served_by(r) == "12" and h.json_body(r) == {}
    with pytest.raises(ValueError, match="Content-Length"):
        h.parse_reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}")
    with pytest.raises(ValueError, match="incomplete"):
        h.parse_reply(b"HTTP/1.1 200 OK\r\n")


def _plan(n: int, batch: int, n_users: int, port: int = 1, seed: int = 1) -> WritePlan:
    rng = np.random.default_rng(seed)
    return plan_writes(_pop(), run_id="r0", n_requests=n, batch=batch, n_users=n_users, rng=rng,
                       host="127.0.0.1", port=port)  # fmt: skip


def test_plan_writes_is_unique_and_stable() -> None:
    a, b = _plan(30, 4, 8), _plan(30, 4, 8)
    assert a.raw == b.raw  # a retry after a restart sends the same bytes
    keys = [e.key for batch in a.events for e in batch]
    assert len(set(keys)) == 120 and len(set(a.keys)) == 30
    assert len(a.users) <= 8 and any(u >= 10_000 for u in a.users)  # some new users
    assert all(500 <= e.video_id < 700 for batch in a.events for e in batch)


def _reply(status: int, **headers: str) -> Reply:
    return Reply(status, {k.lower().replace("_", "-"): v for k, v in headers.items()}, b"", True)


def test_write_retry_policy() -> None:
    assert write_retry(_reply(200), 1) is None
    assert write_retry(_reply(422), 1) is None  # a wrong request is not sent again
    assert write_retry(_reply(429, Retry_After="1"), 1) == 1.0
    assert write_retry(_reply(503), 3) == pytest.approx(0.2)  # no header: backoff
    assert write_retry(None, 1) == pytest.approx(0.05) and write_retry(None, 20) == 2.0  # capped
    assert write_retry(_reply(500), 2) == pytest.approx(0.1)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = (now + timedelta(seconds=3)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert retry_after_s(later, now) == pytest.approx(3.0)
    assert retry_after_s("soon") is None and retry_after_s(None) is None


class FakeIngest:
    """``/v1/events`` deduplicating by Idempotency-Key, and a recommendations stand-in; answers
    name a worker (``X-Served-By``) alternating per connection. ``drop_first`` keys are stored,
    then their connection is cut before the answer; ``crash()`` drops all and comes back."""

    def __init__(self, drop_first: set[str]) -> None:
        self.log: list[dict[str, Any]] = []
        self.keys: set[str] = set()
        self.drop_first = set(drop_first)
        self.writers: set[asyncio.StreamWriter] = set()
        self.connections = self.port = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def crash(self, down_s: float) -> None:
        assert self.server is not None
        self.server.close()
        for w in list(self.writers):
            w.transport.abort()
        await self.server.wait_closed()
        await asyncio.sleep(down_s)
        await self.start()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        worker = str(1000 + self.connections % 2)
        self.writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines, headers, _ = _split(head)
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status, out = 200, b'{"items":[],"cold_start":true}'
                if lines[0].startswith("POST /v1/events"):
                    key, evs = headers["idempotency-key"], json.loads(body)["events"]
                    n, dup = len(evs), key in self.keys
                    self.log += [] if dup else evs
                    self.keys.add(key)
                    if key in self.drop_first:  # stored, then the answer is lost
                        self.drop_first.discard(key)
                        return writer.transport.abort()
                    out = json.dumps({"accepted": n, "stored": (1 - dup) * n,
                                      "duplicates": dup * n}).encode()  # fmt: skip
                writer.write(
                    b"HTTP/1.1 %d X\r\nX-Served-By: %s\r\nContent-Length: %d\r\n\r\n%s"
                    % (status, worker.encode(), len(out), out)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()


def test_streams_keep_their_own_rates_and_capture_replies() -> None:
    async def go() -> tuple[dict[str, Any], list[str | None], int]:
        fake = FakeIngest(set())
        await fake.start()
        seen: list[str | None] = []
        reads = [h.recommendation_request("127.0.0.1", fake.port, u, close=True) for u in range(10)]
        on_reply = lambda i, r: seen.append(h.served_by(r))  # noqa: E731
        fresh = Stream("fresh", reads, 50.0, fresh_connections=True, on_reply=on_reply)
        pooled = Stream("pooled", reads * 4, 200.0, start_s=0.02, max_connections=4)
        runs = await drive_streams("127.0.0.1", fake.port, [fresh, pooled])
        assert fake.server is not None
        fake.server.close()
        return runs, seen, fake.connections

    runs, seen, connections = asyncio.run(go())
    f, p = runs["fresh"], runs["pooled"]
    assert (f.status == 200).all() and (p.status == 200).all()
    assert np.allclose(f.due_s[:3], [0, 0.02, 0.04]) and np.allclose(p.due_s[:2], [0.02, 0.025])
    assert sorted(set(seen)) == ["1000", "1001"]  # fresh connections alternate the workers
    assert connections <= 10 + 4 and p.peak_connections <= 4
    assert np.isfinite(f.latency_s).all() and (f.attempts == 1).all()


def test_warm_connections_of_each_stream_reach_every_worker() -> None:
    # the fake server, like mlsd serve's supervisor, hands connections to its two workers in
    # turn: each stream's warm connections must be split between them, not one stream's all
    # to one worker (what opening the streams' connections concurrently did)
    async def go() -> dict[str, list[str | None]]:
        fake = FakeIngest(set())
        await fake.start()
        seen: dict[str, list[str | None]] = {"a": [], "b": []}
        streams = [
            Stream(
                name,
                [h.recommendation_request("127.0.0.1", fake.port, u) for u in range(40)],
                400.0,
                warm_connections=4,
                max_connections=4,
                on_reply=lambda i, r, name=name: seen[name].append(h.served_by(r)),
            )
            for name in ("a", "b")
        ]
        await drive_streams("127.0.0.1", fake.port, streams)
        assert fake.server is not None
        fake.server.close()
        return seen

    seen = asyncio.run(go())
    for name, workers in seen.items():
        assert len(workers) == 40, name
        assert 10 <= workers.count("1000") <= 30, (name, workers.count("1000"))


def test_writes_are_retried_across_a_crash_until_acknowledged() -> None:
    """The kill9 write path: requests whose answer was lost after they were stored, and those
    sent while the server is down, are retried with the same key; in the end every request is
    acknowledged, the log holds each event once, and the duplicates are reported."""
    plan_holder: dict[str, Any] = {}

    async def go() -> tuple[Any, Acks, FakeIngest]:
        fake = FakeIngest(drop_first={"r0-2", "r0-5"})
        await fake.start()
        plan = plan_holder["plan"] = _plan(40, 3, 6, port=fake.port, seed=0)
        t0 = time.perf_counter() + 0.02
        acks = Acks(len(plan.raw))
        stream = Stream("w", plan.raw, 100.0, timeout_s=0.5, on_reply=acks.on_reply(t0),
                        retry=write_retry, give_up_s=10.0)  # fmt: skip

        async def crash() -> None:
            await asyncio.sleep(max(0.0, t0 + 0.15 - time.perf_counter()))
            await fake.crash(0.3)

        drive = drive_streams("127.0.0.1", fake.port, [stream], start=t0)
        runs, _ = await asyncio.gather(drive, crash())
        assert fake.server is not None
        fake.server.close()
        return runs["w"], acks, fake

    run, acks, fake = asyncio.run(go())
    plan = plan_holder["plan"]
    assert acks.acked.all() and (run.status == 200).all()
    assert (run.attempts > 1).sum() >= 2  # the dropped answers, and those sent while down
    assert acks.duplicates.sum() >= 6  # r0-2 and r0-5 came back as duplicates
    assert sum(run.errors.values()) >= 2
    sent = [e.key for b in plan.events for e in b]
    check = st.verify_log([h.log_record_key(r) for r in fake.log], sent, sent)
    assert check["ok"] and check["records"] == 120
    late = run.due_s > 0.15
    assert np.nanmin(run.latency_s[late][:3]) > 0.1  # charged for the downtime from due time


def test_verify_log_finds_lost_duplicated_and_unknown_events() -> None:
    ok = st.verify_log(["a", "b"], sent=["a", "b", "c"], acked=["a", "b"])
    assert ok["ok"] and ok["unacked_stored"] == 0
    bad = st.verify_log(["a", "a", "x", "c"], sent=["a", "b", "c"], acked=["a", "b"])
    assert not bad["ok"]
    assert [bad[k] for k in ("missing", "duplicated", "unknown", "unacked_stored")] == [1] * 4
    assert bad["examples"]["missing"] == ["b"] and bad["examples"]["unknown"] == ["x"]


def test_compare_states_and_servers() -> None:
    s = {"history": [3, 2, 1], "seen": 3, "features": {"a": 1.0, "b": None, "c": 2}}
    assert st.compare_states(s, dict(s)) == []
    near = {**s, "features": {"a": 1.0 + 1e-12, "b": None, "c": 2.0}}
    assert st.compare_states(near, s) == []
    assert st.compare_states({**s, "features": {**s["features"], "a": 1.000001}}, s)
    assert st.compare_states({**s, "features": {**s["features"], "b": 0.0}}, s)
    assert st.compare_states({**s, "history": [2, 3, 1]}, s)
    assert st.compare_states({**s, "features": {"a": 1.0, "b": None}}, s)  # c missing
    assert st.compare_states({"status": 404}, s) == ["no state: {'status': 404}"]
    s = {"history": [1], "features": {"f": 0.5}}
    both = {7: {"11": s, "12": s}}
    assert st.compare_servers(both, both)["mismatches"] == 0
    assert st.compare_servers({7: {"11": s}}, both)["mismatches"] == 1  # one worker unseen
    other = {7: {"11": s, "12": {"history": [2], "features": {"f": 0.5}}}}
    res = st.compare_servers(other, both)
    assert res["mismatches"] == 1 and res["examples"][0]["worker"] == "12"


def test_version_switch() -> None:
    t = [0.1, 0.2, 5.5, 5.6, 5.7, 9.0]
    v = ["A", "A", "B", "A", "B", None]
    sw = st.version_switch(t, v, "A", "B")
    assert sw["first_new_s"] == 5.5 and sw["old_after_switch"] == 1 and sw["other"] == 0
    clean = st.version_switch(t, ["A", "A", "A", "B", "B", "B"], "A", "B")
    assert clean["old_after_switch"] == 0 and clean["first_new_s"] == 5.6
    assert st.version_switch([1.0], ["A"], "A", "B")["first_new_s"] is None


def test_readiness_and_visibility() -> None:
    good = [(0.0, 200), (5.0, 200), (5.1, 503), (5.2, 503), (7.0, 200), (7.1, 200)]
    r = st.readiness(good, restart_s=5.0)
    assert r["first_503_s"] == 5.1 and r["ready_s"] == 7.0 and r["repopulate_s"] == 2.0
    assert r["flaps"] == 0
    flap = [(5.1, 503), (5.2, 200), (5.3, 503), (6.0, 200)]
    assert st.readiness(flap, 5.0)["flaps"] == 1
    unnoticed = st.readiness([(5.1, 200), (6.0, 200)], 5.0)
    assert unnoticed["first_503_s"] is None and unnoticed["repopulate_s"] is None
    assert [s["status"] for s in st.segments(good)] == [200, 503, 200]
    cold = [True, True, False, True, False, False]
    obs = [(0.05 * (i + 1), "12"[i % 2], c) for i, c in enumerate(cold)]
    w = st.first_warm(obs, workers=2)
    assert w["visible_s"] == 0.3 and w["workers_warm"] == {"1": 0.15, "2": 0.3}
    assert st.first_warm(obs[:4], workers=2)["visible_s"] is None
    assert st.first_warm([*obs, (0.35, "1", True)])["regressions"] == 1
    a = {"cold_start": False, "items": [{"video_id": 1}, {"video_id": 2}]}
    assert st.same_answers([a, dict(a)])["ok"]
    b = {"cold_start": False, "items": [{"video_id": 2}, {"video_id": 1}]}
    assert not st.same_answers([a, b])["ok"] and not st.same_answers([a, None])["ok"]
    assert not st.same_answers([a, {**a, "cold_start": True}])["ok"]


def test_summaries_and_checks() -> None:
    from mlsd.serving.loadgen import StreamRun

    lat = np.array([0.005, 0.010, 0.030, np.nan, 0.040])
    status = np.array([200, 200, 429, 0, 503], np.int16)
    errors = {"timeout": 1, "http 429": 1, "http 503": 1}
    run = StreamRun("w", np.arange(5) / 10, lat, status, np.ones(5, np.int16), errors)
    s = summarize(run)
    assert s["status"] == {"none": 1, "200": 2, "429": 1, "503": 1}
    assert s["shed"] == 2 and s["shed_latency_ms"]["max"] == 40.0
    assert s["timeouts"] == 1 and s["connection_errors"] == 0
    assert s["latency_ms"]["max"] == 10.0
    reads = {"requests": 3, "status": {"200": 3}, "latency_ms": {"p99": 20.0}}
    c = mixed_checks(reads, s)
    assert c["read p99 ms"]["pass"] and c["read errors"]["pass"]
    assert c["shed writes answered within (max ms)"]["pass"]  # 40 ms <= 50 ms
    assert not c["write timeouts"]["pass"]
    slow = mixed_checks({**reads, "latency_ms": {"p99": 30.0}, "status": {"200": 2}}, s)
    assert not slow["read p99 ms"]["pass"] and not slow["read errors"]["pass"]
    assert not st.at_most(None, 1.0)["pass"] and st.latency_ms([])["p99"] is None
    assert st.count_reasons(["x", None, "x"]) == {"x": 2, "none given": 1}
    assert st.count_reasons(["waited 148 ms", "waited 31 ms"]) == {"waited # ms": 2}


def test_scenario_checks_fail_on_bad_figures() -> None:
    from _events_kill9 import kill9_checks
    from _events_outage import outage_checks
    from _events_sighup import sighup_checks
    from _events_visibility import visibility_checks

    log_ok = {"missing": 0, "duplicated": 0, "unknown": 0}
    run = {"requests": 10, "acked_requests": 10, "log": log_ok, "online_state": {"mismatches": 0}}
    assert st.all_pass(kill9_checks([run]))
    bad = kill9_checks([run, {**run, "acked_requests": 9, "log": {**log_ok, "duplicated": 2}}])
    failed = {k for k, c in bad.items() if not c["pass"]}
    assert failed == {"every request acknowledged (unacked)", "events in the log more than once"}
    assert not st.all_pass(kill9_checks([]))

    user = {"visible_s": 0.3, "cold_before": True, "confirm": {"ok": True, "workers": ["1", "2"]}}
    assert st.all_pass(visibility_checks([user, {**user, "visible_s": 0.9}]))
    slowest = "visible on every worker (slowest, s)"
    assert not visibility_checks([user, {**user, "visible_s": 1.2}])[slowest]["pass"]
    assert not visibility_checks([{**user, "visible_s": None}])[slowest]["pass"]
    one = visibility_checks([{**user, "confirm": {"ok": True, "workers": ["?"]}}])
    assert not one["confirmations that reached every worker"]["pass"]

    reads = {"requests": 5, "status": {"200": 5}}
    ready = {"first_503_s": 5.2, "flaps": 0, "repopulate_s": 1.5}
    assert st.all_pass(outage_checks(reads, ready, {"different": 0}))
    never = {**ready, "first_503_s": None, "repopulate_s": None}
    unnoticed = outage_checks(reads, never, {"different": 3})
    assert {k for k, c in unnoticed.items() if not c["pass"]} == {
        "/readyz 503 once the empty store is detected", "repopulate s (restart to /readyz 200)",
        "probe answers differing from a replay of the same log"}  # fmt: skip

    sw = {"old_after_switch": 0, "first_new_s": 5.3, "other": 0}
    assert st.all_pass(sighup_checks(sw, 0, 5.0))
    assert not st.all_pass(sighup_checks({**sw, "first_new_s": None}, 0, 5.0))
    assert not st.all_pass(sighup_checks(sw, 1, 5.0))


def test_main_writes_the_result_and_exits_by_the_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import events

    written: dict[str, Any] = {}

    def fake_write(name: str, doc: dict[str, Any]) -> Path:
        written[name] = doc
        return tmp_path / f"{name}.json"

    checks = {"a": st.equals(0, 0), "b": st.at_most(3.0, 1.0)}
    monkeypatch.setattr(events, "write_result", fake_write)
    monkeypatch.setattr(events, "run", lambda a: {"settings": {}, "checks": checks})
    assert events.main(["visibility", "--model", str(tmp_path)]) == 1
    doc = written["events_visibility"]
    assert doc["scenario"] == "visibility" and doc["checks"] == checks
    checks["b"] = st.at_most(0.5, 1.0)
    assert events.main(["sighup", "--model", str(tmp_path), "--name", "x"]) == 0
    assert events._pairs("1,50", "500,200") == [(1, 500.0), (50, 200.0)]
    with pytest.raises(SystemExit):
        events._pairs("1,50", "500")


@pytest.mark.redis
def test_redis_restarts_empty_and_the_stream_log_is_read_and_copied() -> None:
    import redis as redis_py

    from tests.features.conftest import start_redis

    start_redis().stop()  # skips (or fails under CI) without the binary, like the store tests
    with RedisProcess() as rp:
        c = redis_py.Redis(host=rp.host, port=rp.port)
        recs = [{"event_id": f"a-{i}-0", "user_id": i} for i in range(3)]
        for r in recs:
            c.xadd("mlsd:events", {"r": json.dumps(r)})
        assert read_log(rp.url(0)) == recs
        copy_log(rp.url(0), rp.url(1))
        assert read_log(rp.url(1)) == recs
        c.close()
        rp.kill()
        rp.start()  # same port, nothing kept
        assert read_log(rp.url(0)) == []


def test_read_log_of_a_file_written_by_the_service(tmp_path: Path) -> None:
    """A client's event id keys its record; one the server made up falls back to the content
    (user/video/time, the timestamp as epoch ms or ISO), the key of the event sent."""
    from mlsd.serving.eventlog import EventLog

    rec = {"user_id": 1, "video_id": 2, "event_type": "play", "timestamp": 5}
    with EventLog(tmp_path / "ev.jsonl") as log:
        log.append([[{**rec, "event_id": "a-1-0"}, {**rec, "timestamp": 6, "event_id": "k:1"}]])
    with open(tmp_path / "ev.jsonl", "ab") as f:
        f.write(b'{"user_id": 9')  # a torn last line is not a record
    records = read_log(tmp_path / "ev.jsonl")
    sent = {"a-1-0", "1/2/6"}
    assert [h.log_record_key(r, sent) for r in records] == ["a-1-0", "1/2/6"]
    assert [h.log_record_key(r) for r in records] == ["a-1-0", "k:1"]
    e = h.Event(7, 501, "play", h.EVENTS_BASE_MS + 42)
    rec = {"user_id": 7, "video_id": 501, "event_type": "play", "timestamp": e.timestamp_ms}
    assert h.log_record_key(rec) == e.key
    assert h.log_record_key({**rec, "timestamp": h.iso_ms(e.timestamp_ms)}) == e.key


def test_relabelled_bundle_verifies_and_reports_the_new_version(tmp_path: Path) -> None:
    from mlsd.serving.bundle import save_bundle, verify_bundle

    class Meta:
        version = "rec-a"

        def save(self, d: Path) -> None:
            (d / "recommender.json").write_text(json.dumps({"format": 2, "version": "rec-a"}))
            (d / "weights.bin").write_bytes(b"\x00" * 64)

    src = save_bundle(Meta(), tmp_path / "a", config={}, data_fingerprint=FP, metrics={},
                      kind="recommender")  # fmt: skip
    dst = relabel_bundle(src, tmp_path / "b", "rec-a-b")
    assert verify_bundle(dst)["model_version"] == "rec-a-b"
    assert json.loads((dst / "artifacts" / "recommender.json").read_text())["version"] == "rec-a-b"
    assert verify_bundle(src)["model_version"] == "rec-a"  # the source is untouched
    assert relabel_bundle(src, dst, "rec-a-b") == dst  # cached


def test_render_table(tmp_path: Path) -> None:
    with pytest.raises(Missing):
        render_events(Results(tmp_path))
    doc = {
        "measured_at": "2026-12-04T10:00:00+00:00", "git_rev": "abc1234",
        "machine": {"cpus": 2, "cpu_model": "cpu", "memory_gb": 8},
        "users": [{"visible_s": 0.4}, {"visible_s": 0.7}],
        "checks": {"visible on every worker (slowest, s)": st.at_most(0.7, 1.0),
                   "confirmations not all warm and identical": st.equals(1, 0)},
    }  # fmt: skip
    (tmp_path / "events_visibility.json").write_text(json.dumps(doc))
    out = render_events(Results(tmp_path))
    row = next(line for line in out.splitlines() if line.startswith("| `visibility`"))
    assert "0.70 s" in row and "**missed**: confirmations not all warm and identical" in row
    assert "| `kill9` | not run yet | - |" in out and "abc1234" in out


@pytest.mark.server
def test_mixed_scenario_against_a_real_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One short mixed configuration against ``mlsd serve --workers 2`` serving the stub
    model: every read and write answered, the accepted events counted from the answers."""
    from _events_mixed import run_mixed

    from mlsd.serving.bundle import KINDS_ENV, register_kind, save_bundle, unregister_kind
    from tests.serving.stub_model import KIND, KIND_TARGET, StubModel

    register_kind(KIND, StubModel, replace=True)
    try:
        bundle = save_bundle(StubModel("stub-v1"), tmp_path / "b", config={},
                             data_fingerprint=FP, metrics={})  # fmt: skip
    finally:
        unregister_kind(KIND)
    monkeypatch.setenv(KINDS_ENV, f"{KIND}={KIND_TARGET}")
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))  # the child imports the stub
    pop = Population(np.arange(0, 100), np.arange(5000, 5100), np.arange(1, 101), "stub")
    res = run_mixed(bundle, pop, configs=[(2, 20.0)], read_rate=20.0, duration_s=1.0,
                    warmup_s=0.0, log=lambda _: None)  # fmt: skip
    (c,) = res["configs"]
    assert c["reads"]["status"] == {"200": 20}, c["server_log_tail"]
    assert c["writes"]["status"] == {"200": 20}, c["server_log_tail"]
    assert c["writes"]["events_accepted"] == 40 and c["writes"]["timeouts"] == 0
    assert c["reads"]["latency_ms"]["p99"] is not None and c["cpu_seconds"]["wall"] >= 0.9
    assert set(res["checks"]) == {f"2x20: {k}" for k in c["checks"]}
