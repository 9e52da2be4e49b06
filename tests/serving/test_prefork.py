"""The pre-fork supervisor: a SIGHUP's load runs off the accept loop, workers that die during it
are forked again from the old model, a load that fails keeps the workers, each worker knows its
slot, and /metrics sums every worker's values.

The supervisor tests run :mod:`tests.serving.prefork_helper` (the real supervisor, a fake model
whose reload sleeps, and a tiny HTTP responder) in a subprocess; the metrics test runs a real
``mlsd serve --workers 2``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from prometheus_client import values
from prometheus_client.multiprocess import mark_process_dead

from mlsd.pipeline import ServingStatus
from mlsd.serving import prefork
from mlsd.serving.metrics import MULTIPROC_ENV, ServingMetrics, multiprocess_dir
from mlsd.serving.process import ServerProcess, free_port
from tests.serving.stub_model import StubModel

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not prefork.available(), reason="needs fork")


def get(port: int, timeout_s: float = 2.0) -> dict[str, Any]:
    """One request on a new connection; the responder's JSON answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data
    out: dict[str, Any] = json.loads(body)
    return out


def wait_for(cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


class Helper:
    """The helper supervisor in a subprocess (see :mod:`tests.serving.prefork_helper`)."""

    def __init__(self, tmp: Path, workers: int, load_s: float) -> None:
        self.state = tmp / "state"
        self.state.mkdir()
        (self.state / "load_s").write_text(str(load_s))
        self.port = free_port()
        self.log = tmp / "helper.log"
        tmpdir = tmp / "tmp"  # where the supervisor creates its metrics directory
        tmpdir.mkdir()
        path = os.environ.get("PYTHONPATH", "")
        env = {**os.environ, "TMPDIR": str(tmpdir), "PYTHONPATH": f"{ROOT}{os.pathsep}{path}"}
        args = [str(self.port), str(self.state), str(workers)]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.serving.prefork_helper", *args],
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                cwd=ROOT,
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "ready" once forked (EOF if it died)
        assert line.strip() == b"ready", self.log.read_text()

    def get(self) -> dict[str, Any]:
        return get(self.port)

    def sighup(self) -> None:
        os.kill(self.proc.pid, signal.SIGHUP)

    def workers(self) -> set[int]:
        return {p.pid for p in psutil.Process(self.proc.pid).children()}

    def loads(self) -> list[tuple[str, int]]:
        """(start or end, load number) in the order they happened."""
        path = self.state / "loads"
        lines = path.read_text().split("\n") if path.exists() else []
        return [(w, int(n)) for w, n, _ in (line.split() for line in lines if line)]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


@pytest.fixture
def helper(tmp_path: Path) -> Iterator[Callable[..., Helper]]:
    started: list[Helper] = []

    def start(workers: int = 2, load_s: float = 1.5) -> Helper:
        h = Helper(tmp_path, workers, load_s)
        started.append(h)
        return h

    yield start
    for h in started:
        h.stop()


class Probe:
    """A new connection every ``every_s`` on a thread: each one's (latency, answer or error)."""

    def __init__(self, port: int, every_s: float = 0.05) -> None:
        self.port, self.every_s = port, every_s
        self.results: list[tuple[float, dict[str, Any] | None, str | None]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.is_set():
            t0 = time.monotonic()
            try:
                answer, error = get(self.port), None
            except (OSError, AssertionError, ValueError) as e:
                answer, error = None, repr(e)
            self.results.append((time.monotonic() - t0, answer, error))
            self._done.wait(self.every_s)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(5)

    def versions(self) -> list[str]:
        return [a["version"] for _, a, _ in self.results if a is not None]


def test_reload_keeps_accepting_while_the_new_model_loads(helper: Callable[..., Helper]) -> None:
    """During a SIGHUP's 1.5 s load every new connection is answered at once (by the old
    workers); a second SIGHUP during the load loads again once the first is in place."""
    h = helper(workers=2, load_s=1.5)
    first = [h.get() for _ in range(4)]
    assert {a["version"] for a in first} == {"v1"}
    # each worker knows its slot and its own pid
    assert sorted({a["slot"] for a in first}) == ["0", "1"]
    assert all(a["env_pid"] == str(a["pid"]) for a in first)
    with Probe(h.port) as probe:
        time.sleep(0.2)
        h.sighup()
        time.sleep(0.4)
        h.sighup()  # during the first load
        wait_for(lambda: "v3" in probe.versions())
        time.sleep(0.3)
    errors = [e for _, _, e in probe.results if e is not None]
    assert not errors
    worst = max(latency for latency, _, _ in probe.results)
    assert worst < 0.5, f"a connection waited {worst:.2f} s during the reload"
    assert len(probe.results) >= 30  # it kept probing through both loads
    versions = probe.versions()
    assert "v1" in versions and "v2" in versions
    # one load at a time, each put in place before the next started
    assert h.loads() == [
        ("start", 1),
        ("end", 1),
        ("start", 2),
        ("end", 2),
        ("start", 3),
        ("end", 3),
    ]
    # the old workers are gone: every worker serves v3
    assert {h.get()["version"] for _ in range(4)} == {"v3"}


def test_a_worker_that_dies_during_a_load_is_forked_again_from_the_old_model(
    helper: Callable[..., Helper],
) -> None:
    """A worker killed during a SIGHUP's load is replaced at once, serving the old model; a
    load that fails leaves the workers serving; the metrics directory goes with the
    supervisor."""
    h = helper(workers=2, load_s=2.0)
    before = h.workers()
    h.sighup()
    time.sleep(0.2)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(h.workers()) == 2 and victim not in h.workers(), timeout_s=1.5)
    answers = [h.get() for _ in range(4)]
    assert ("end", 2) not in h.loads(), "the load finished already: the test proves nothing"
    (replacement,) = h.workers() - before
    assert replacement in {a["pid"] for a in answers}
    assert {a["version"] for a in answers} == {"v1"}
    # then the load finishes and replaces both
    wait_for(lambda: {h.get()["version"] for _ in range(4)} == {"v2"})
    wait_for(lambda: len(h.workers()) == 2)
    # a load that fails: the same workers keep serving the same model
    serving = h.workers()
    (h.state / "fail").touch()
    h.sighup()
    wait_for(lambda: ("end", 3) in h.loads())
    time.sleep(0.3)
    answers = [h.get() for _ in range(4)]
    assert {a["version"] for a in answers} == {"v2"} and h.workers() == serving
    metrics_dir = Path(answers[0]["metrics_dir"])
    assert metrics_dir.is_dir() and metrics_dir.name.startswith("mlsd-metrics-")
    assert h.stop() == 0
    assert "reload failed" in h.log.read_text()
    assert not metrics_dir.exists()


def test_worker_slot_needs_the_workers_own_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(prefork.WORKER_SLOT_ENV, "1")
    monkeypatch.setenv(prefork.WORKER_PID_ENV, str(os.getpid()))
    assert prefork.worker_slot() == 1
    monkeypatch.setenv(prefork.WORKER_PID_ENV, str(os.getpid() + 1))  # inherited by a child
    assert prefork.worker_slot() is None
    monkeypatch.delenv(prefork.WORKER_SLOT_ENV)
    assert prefork.worker_slot() is None


def _sample(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert m is not None, f"{name} not in\n{text}"
    return float(m.group(1))


def test_multiprocess_metrics_combine_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes' metrics (told apart by prometheus-client's process identifier) read
    as one: counts summed, each gauge combined by its mode, a dead process's gauges dropped
    and its counts kept."""
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    assert multiprocess_dir() is None  # the variable alone does not switch the values
    made: list[ServingMetrics] = []
    for pid, n, hits, ready in ((1, 3, 5, 1), (2, 2, 4, 0)):
        # one process's metrics, made and used while its value class is the current one
        # (labelled children are made at first use, with the value class of that moment)
        monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue(lambda p=pid: p))
        assert multiprocess_dir() == str(tmp_path)
        m = ServingMetrics()
        m.serving(StubModel("stub-v1"))
        m.watch_cache(functools.partial(ServingStatus, cache_hits=hits, cache_misses=1))
        m.online_ready.set(ready)
        for _ in range(n):
            m.request_latency.labels("/v1/recommendations").observe(0.004)
        made.append(m)
    a = made[0]
    text = a.exposition().decode()
    count = 'mlsd_request_latency_seconds_count{endpoint="/v1/recommendations"}'
    assert _sample(text, count) == 5
    assert _sample(text, 'mlsd_model_loaded{version="stub-v1"}') == 1  # livemax, not 2
    assert _sample(text, 'mlsd_candidate_cache_requests{result="hit"}') == 9
    assert _sample(text, "mlsd_online_state_ready") == 0  # one is not ready
    mark_process_dead(2, str(tmp_path))
    text = a.exposition().decode()
    assert _sample(text, count) == 5  # its requests still count
    assert _sample(text, "mlsd_online_state_ready") == 1
    assert _sample(text, 'mlsd_candidate_cache_requests{result="hit"}') == 5
    values.close_all_multiprocess_files()


@pytest.mark.server
def test_metrics_are_summed_over_forked_workers(
    tmp_path: Path, stub_bundle: Path, server_env: dict[str, str]
) -> None:
    """Requests spread over two forked workers: one /metrics scrape counts them all, also
    after the worker that served half of them was killed and forked again."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {**server_env, "TMPDIR": str(tmpdir)}
    server = ServerProcess(stub_bundle, workers=2, env=env, log_path=tmp_path / "s.log")
    count = 'mlsd_request_latency_seconds_count{endpoint="/v1/recommendations"}'
    close = {"Connection": "close"}  # a new connection each: round robin over the workers
    with server as s, httpx.Client(base_url=s.url, timeout=10, headers=close) as c:
        assert s.proc is not None
        workers = psutil.Process(s.proc.pid).children()
        for _ in range(10):
            assert c.post("/v1/recommendations", json={"user_id": 1}).status_code == 200
        text = c.get("/metrics").text
        assert _sample(text, count) == 10
        assert _sample(text, 'mlsd_model_loaded{version="stub-v1"}') == 1
        # unlabelled metrics are written at creation (labelled ones at first use)
        assert "mlsd_online_state_ready" in text and "mlsd_event_commit_seconds_count" in text
        (metrics_dir,) = tmpdir.glob("mlsd-metrics-*")
        for w in workers:  # both served some
            assert (metrics_dir / f"histogram_{w.pid}.db").exists()
        workers[0].kill()
        workers[0].wait(5)
        sup = psutil.Process(s.proc.pid)
        wait_for(lambda: len(sup.children()) == 2)
        text = c.get("/metrics").text
        assert _sample(text, count) == 10
        assert not (metrics_dir / f"gauge_livemax_{workers[0].pid}.db").exists()
        assert _sample(text, 'mlsd_model_loaded{version="stub-v1"}') == 1
    assert server.proc is not None and server.proc.returncode == 0
    assert not metrics_dir.exists()
