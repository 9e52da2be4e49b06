"""Fixtures of the event-log tests: every backend behind one fixture, and Redis servers with
an fsync'd AOF that a test can kill -9 and restart on the same directory and port.

Redis tests carry ``@pytest.mark.redis``; without ``redis-server`` they are skipped locally
and fail when ``CI`` is set (as in ``tests/features``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mlsd.serving.ingest import EventLogBackend, open_log


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class AofRedis:
    """A throwaway redis-server; ``aof``: ``appendonly yes`` + ``appendfsync always``."""

    exe: str
    dir: Path
    port: int = field(default_factory=free_port)
    aof: bool = True
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> AofRedis:
        aof = ["yes", "--appendfsync", "always"] if self.aof else ["no"]
        args = [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", *aof, "--dir", str(self.dir)]
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"redis-server exited with {self.proc.returncode} on {self.port}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):  # also: the AOF is loaded
                        return self
            except OSError:
                time.sleep(0.02)
        self.kill9()
        pytest.fail(f"redis-server did not answer PING on port {self.port} within 10 s")

    def kill9(self) -> None:
        """A crash: no shutdown, no final AOF rewrite or fsync."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    def restart(self) -> None:
        self.kill9()
        self.start()


def redis_exe() -> str:
    exe = shutil.which("redis-server")
    if exe is None:
        msg = "redis-server not found on PATH (Debian: apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(f"{msg}; CI must run the redis tests (.ci/run installs it)")
        pytest.skip(f"{msg}; set CI=1 to turn this skip into a failure")
    return exe


@pytest.fixture(scope="session")
def aof_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AofRedis]:
    """One shared server with an fsync'd AOF; tests use streams of their own."""
    server = AofRedis(redis_exe(), tmp_path_factory.mktemp("redis-aof")).start()
    yield server
    server.kill9()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[AofRedis]:
    """A server of this test alone (to kill, stall or restart)."""
    server = AofRedis(redis_exe(), tmp_path / "redis")
    server.dir.mkdir()
    yield server.start()
    if server.proc is not None and server.proc.poll() is None:
        server.proc.send_signal(signal.SIGCONT)  # in case the test stalled it
    server.kill9()


@dataclass
class Target:
    """One log storage (a file or a Redis stream): ``target`` is what :func:`open_log` takes
    (a child process can open it too); :meth:`open` opens another log object on it."""

    kind: str
    target: str
    opened: list[EventLogBackend] = field(default_factory=list)

    def open(self, **options: Any) -> EventLogBackend:
        log = open_log(self.target, **options)
        self.opened.append(log)
        return log


@pytest.fixture(params=["file", pytest.param("redis", marks=pytest.mark.redis)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    """Every backend: the contract tests run on each."""
    if request.param == "file":
        t = Target("file", str(tmp_path / "log" / "events.jsonl"))
    else:
        server: AofRedis = request.getfixturevalue("aof_redis")
        t = Target("redis", f"{server.url}?stream=test-{uuid.uuid4().hex[:10]}")
    yield t
    for log in t.opened:
        log.close()


def records(ids: list[str], **extra: Any) -> list[dict[str, Any]]:
    return [{"event_id": i, "user_id": n, **extra} for n, i in enumerate(ids)]


def ids_in(log: EventLogBackend) -> list[str]:
    """Every event id in the log, in order (read in steps, as a tailer does)."""
    out: list[str] = []
    pos = None
    while True:
        res = log.read(pos, 500)
        out += [r["event_id"] for r in res.records]
        if not res.records and not res.corrupt:
            return out
        pos = res.next


def child(code: str, *args: str) -> subprocess.Popen[str]:
    """A Python child process running ``code`` (stdin and stdout are text pipes)."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def wait_for(check: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s")
        time.sleep(0.01)
