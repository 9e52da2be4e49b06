"""``mlsd serve``: bad bundles exit 2; the real server (uvicorn in a child process) keeps every
acknowledged event through ``kill -9``, restarts on the same log, serves a real Recommender
bundle, and runs several workers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from mlsd.cli import app
from mlsd.serving.app import API_KEY_HEADER
from mlsd.serving.eventlog import read_events
from mlsd.serving.process import ServerProcess

KEY = "secret-key"


def _gauge(text: str, name: str) -> float:
    line = next(x for x in text.splitlines() if x.startswith(name + " "))
    return float(line.rsplit(" ", 1)[1])


def _invoke(*args: str | Path) -> tuple[int, str]:
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in r.output
    return r.exit_code, " ".join(r.output.split())


def test_serve_bad_model_dir_exits_2(tmp_path: Path, stub_bundle: Path) -> None:
    code, out = _invoke("serve", "--model", tmp_path / "missing")
    assert code == 2 and "model bundle not found" in out
    (tmp_path / "empty").mkdir()
    code, out = _invoke("serve", "--model", tmp_path / "empty")
    assert code == 2 and "manifest.json: missing" in out
    (stub_bundle / "artifacts" / "meta.json").write_text("{}")
    code, out = _invoke("serve", "--model", stub_bundle)
    assert code == 2 and "meta.json" in out and "size" in out
    code, out = _invoke("serve", "--model", stub_bundle, "--online-store", "mongo://x")
    assert code == 2 and "--online-store" in out


@pytest.mark.server
def test_acknowledged_events_survive_kill_9_of_the_server(
    tmp_path: Path, stub_bundle: Path, server_env: dict[str, str]
) -> None:
    log = tmp_path / "events.jsonl"
    acked: list[int] = []
    stop = threading.Event()

    def post_forever(url: str) -> None:
        seq = 0
        with httpx.Client(base_url=url, headers={API_KEY_HEADER: KEY}, timeout=5) as c:
            while not stop.is_set():
                batch = [
                    {"user_id": seq + i, "video_id": 1, "event_type": "play"} for i in range(3)
                ]
                try:
                    r = c.post("/v1/events", json={"events": batch})
                except httpx.HTTPError:
                    return  # the server died under us: this batch was never acknowledged
                assert r.status_code == 200, r.text
                acked.extend(e["user_id"] for e in batch)
                seq += 3

    server = ServerProcess(
        stub_bundle, api_key=KEY, event_log=log, env=server_env, log_path=tmp_path / "s.log"
    )
    with server:
        poster = threading.Thread(target=post_forever, args=(server.url,))
        poster.start()
        deadline = time.monotonic() + 20
        while len(acked) < 150 and time.monotonic() < deadline and poster.is_alive():
            time.sleep(0.02)
        server.kill()  # SIGKILL, mid-stream: no shutdown handler runs
        stop.set()
        poster.join(10)
    assert len(acked) >= 150, server.log_tail()
    logged = [r["user_id"] for r in read_events(log)]
    missing = set(acked) - set(logged)
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"

    # a restarted server starts fine on the same log and appends after the old records
    with ServerProcess(stub_bundle, api_key=KEY, event_log=log, env=server_env) as again:
        r = httpx.post(
            f"{again.url}/v1/events",
            json={"events": [{"user_id": 10**9, "video_id": 2, "event_type": "like"}]},
            headers={API_KEY_HEADER: KEY},
        )
        assert r.status_code == 200, r.text
    after = [r["user_id"] for r in read_events(log)]
    assert after[: len(logged)] == logged and after[-1] == 10**9


@pytest.mark.server
def test_real_recommender_bundle_is_served(real_bundle: Path, tmp_path: Path) -> None:
    with (
        ServerProcess(real_bundle, api_key=KEY, log_path=tmp_path / "s.log") as s,
        httpx.Client(base_url=s.url, timeout=10, headers={API_KEY_HEADER: KEY}) as c,
    ):
        known = c.post("/v1/recommendations", json={"user_id": 3, "k": 10})
        assert known.status_code == 200, known.text
        body = known.json()
        assert len(body["items"]) == 10 and body["model_version"].startswith("rec-")
        new = c.post("/v1/recommendations", json={"user_id": 10**12, "k": 5}).json()
        assert new["cold_start"] is True and len(new["items"]) == 5
        vid = body["items"][0]["video_id"]
        sim = c.get(f"/v1/videos/{vid}/similar", params={"k": 5})
        assert sim.status_code == 200 and sim.json()["items"], sim.text
        r = c.post("/admin/reload", json={"model_dir": str(real_bundle)})
        assert r.status_code == 200, r.text
        metrics = c.get("/metrics").text
        assert "mlsd_request_latency_seconds" in metrics
        # the reloaded model's ranker was compiled as well (mlsd.serving.server.prepare)
        assert "mlsd_ranker_compiled 1.0" in metrics
        # and its candidates retrieved ahead: a known user with a history reads them
        hist = c.get("/metrics").text
        before = _gauge(hist, 'mlsd_candidate_cache_requests{result="hit"}')
        assert c.post("/v1/recommendations", json={"user_id": 3, "k": 5}).status_code == 200
        assert c.post("/v1/recommendations", json={"user_id": 10**12}).status_code == 200
        after = c.get("/metrics").text
        assert _gauge(after, 'mlsd_candidate_cache_requests{result="hit"}') == before + 1
        assert _gauge(after, 'mlsd_candidate_cache_requests{result="miss"}') >= 1  # the new user


@pytest.mark.server
def test_several_workers(stub_bundle: Path, server_env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    server = ServerProcess(
        stub_bundle, workers=2, api_key=KEY, event_log=log, env=server_env,
        log_path=tmp_path / "s.log",
    )  # fmt: skip
    with server as s, httpx.Client(base_url=s.url, timeout=10, headers={API_KEY_HEADER: KEY}) as c:
        for i in range(20):
            ev = {"user_id": i, "video_id": 1, "event_type": "play"}
            assert c.post("/v1/events", json={"events": [ev]}).status_code == 200
        assert c.post("/v1/recommendations", json={"user_id": 1}).status_code == 200
        r = c.post("/admin/reload", json={"model_dir": str(stub_bundle)})
        assert r.status_code == 409 and "SIGHUP" in r.text
    assert sorted(r["user_id"] for r in read_events(log)) == list(range(20))


@pytest.mark.server
def test_preforked_workers_restart_and_reload_on_sighup(
    tmp_path: Path, stub_kind: str, server_env: dict[str, str]
) -> None:
    """Several workers are forked from one loaded model: a killed worker is forked again,
    SIGHUP loads the bundle the --model symlink now names and replaces the workers, and a
    bundle that does not load leaves them serving."""
    import os
    import signal

    import psutil

    from mlsd.serving.bundle import save_bundle
    from tests.serving.stub_model import StubModel

    def bundle(version: str) -> Path:
        return save_bundle(
            StubModel(version), tmp_path / version, config={"dim": 16},
            data_fingerprint="sha256:" + "0" * 64, metrics={},
        )  # fmt: skip

    v1, v2 = bundle("stub-v1"), bundle("stub-v2")
    current = tmp_path / "current"
    current.symlink_to(v1)

    def point_at(target: Path) -> None:
        tmp = tmp_path / "current.tmp"
        tmp.symlink_to(target)
        os.replace(tmp, current)  # atomic retarget

    def versions(c: httpx.Client, n: int = 20) -> set[str]:
        out = set()
        for _ in range(n):
            # a new connection each time, retried once if reset: a worker that stops closes
            # the connections handed to it but not yet taken, as a crash would
            for attempt in range(2):
                try:
                    r = c.post(
                        "/v1/recommendations", json={"user_id": 1},
                        headers={"Connection": "close"},
                    )  # fmt: skip
                    break
                except (httpx.ReadError, httpx.RemoteProtocolError, httpx.ConnectError):
                    if attempt:
                        raise
            assert r.status_code == 200, r.text
            out.add(r.json()["model_version"])
        return out

    def wait_for(cond: Callable[[], bool], timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not cond():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.1)

    server = ServerProcess(current, workers=2, env=server_env, log_path=tmp_path / "s.log")
    with server as s, httpx.Client(base_url=s.url, timeout=10) as c:
        assert s.proc is not None
        sup = psutil.Process(s.proc.pid)
        workers = sup.children()
        assert len(workers) == 2
        assert versions(c) == {"stub-v1"}
        # a worker that dies is forked again; the other serves meanwhile
        workers[0].kill()
        wait_for(lambda: len(sup.children()) == 2 and workers[0].pid not in {
            p.pid for p in sup.children()
        })  # fmt: skip
        assert versions(c) == {"stub-v1"}
        # SIGHUP: the bundle --model names now is loaded and replaces every worker
        point_at(v2)
        os.kill(s.proc.pid, signal.SIGHUP)
        wait_for(lambda: versions(c, 10) == {"stub-v2"})
        wait_for(lambda: len(sup.children()) == 2)  # the last old worker reaped
        # a bundle that does not load: the workers keep serving the old one
        broken = tmp_path / "broken"
        broken.mkdir()
        point_at(broken)
        before = {p.pid for p in sup.children()}
        os.kill(s.proc.pid, signal.SIGHUP)
        time.sleep(2.0)
        assert versions(c) == {"stub-v2"} and {p.pid for p in sup.children()} == before
    assert server.proc is not None and server.proc.returncode == 0
    assert "reload failed" in server.log_path.read_text()


@pytest.mark.server
def test_workers_get_connections_in_turn(
    stub_bundle: Path, server_env: dict[str, str], tmp_path: Path
) -> None:
    """The supervisor hands connections to the workers in turn: eight keep-alive connections
    are split 4/4 (the kernel's SO_REUSEPORT hash splits eight 4/4 only 27% of the time), and
    every one of them is served."""
    import socket

    import psutil

    server = ServerProcess(stub_bundle, workers=2, env=server_env, log_path=tmp_path / "s.log")
    with server as s:
        assert s.proc is not None
        workers = psutil.Process(s.proc.pid).children()
        assert len(workers) == 2
        body = b'{"user_id":1,"k":3}'
        request = (
            b"POST /v1/recommendations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        conns = [socket.create_connection((s.host, s.port), timeout=10) for _ in range(8)]
        try:
            for c in conns:
                c.sendall(request)
                assert c.recv(65536).startswith(b"HTTP/1.1 200")

            def established(p: psutil.Process) -> int:
                return sum(
                    1 for x in p.net_connections("tcp")
                    if x.status == psutil.CONN_ESTABLISHED and x.laddr.port == s.port
                )  # fmt: skip

            assert sorted(established(w) for w in workers) == [4, 4]
            assert established(psutil.Process(s.proc.pid)) == 0  # the supervisor kept none
        finally:
            for c in conns:
                c.close()
