"""Fixtures of the feature-store tests: simulated datasets, hand-built logs, throwaway Redis.

Redis: tests that need it carry ``@pytest.mark.redis`` and use :func:`redis_server`, which
starts ``redis-server`` on a free loopback port (no persistence) and stops it at the end of the
session. Without the binary the tests are skipped locally, but fail when ``CI`` is set: CI must
exercise real Redis (``.ci/run`` installs Debian's ``redis-server``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from mlsd.config import SimulationConfig
from mlsd.data.dataset import Dataset, from_tables
from mlsd.data.simulate import simulate
from mlsd.features.memory_store import MemoryStore
from mlsd.features.store import OnlineStore

T0 = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday, 00:00 UTC
T0_MS = int(T0.timestamp() * 1000)
HOUR = 3_600_000


@pytest.fixture(scope="session")
def tiny() -> Dataset:
    return simulate(SimulationConfig.for_scale("tiny", seed=0))


@pytest.fixture(scope="session")
def small() -> Dataset:
    return simulate(SimulationConfig.for_scale("small", seed=0))


def make_dataset(
    events: list[dict[str, object]], videos: list[dict[str, object]] | None = None
) -> Dataset:
    """A validated dataset from event dicts (``ts`` in ms since T0_MS's epoch, absolute)."""
    ev = {
        k: [e.get(k) for e in events]
        for k in ("user_id", "video_id", "event_type", "watch_seconds", "device", "surface")
    }
    ev["timestamp"] = [datetime.fromtimestamp(int(e["ts"]) / 1000, UTC) for e in events]  # type: ignore[call-overload]
    vids = videos or [
        {
            "video_id": v,
            "creator_id": 100 + v % 3,
            "duration_s": 120.0,
            "topic": ["a", "b", "c"][v % 3],
            "upload_time": T0,
            "is_explicit": False,
        }
        for v in sorted({int(e["video_id"]) for e in events})  # type: ignore[call-overload]
    ]
    vt = {
        k: [v.get(k) for v in vids]
        for k in ("video_id", "creator_id", "duration_s", "topic", "upload_time", "is_explicit")
    }
    events_t = pa.table({**ev, "watch_seconds": pa.array(ev["watch_seconds"], pa.float32())})
    return from_tables({"events": events_t, "videos": pa.table(vt)})


# --- Redis -------------------------------------------------------------------------------------


@dataclass
class RedisServer:
    host: str
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis() -> RedisServer:
    exe = shutil.which("redis-server")
    if exe is None:
        msg = "redis-server not found on PATH (Debian: apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(f"{msg}; CI must run the redis tests (.ci/run installs it)")
        pytest.skip(f"{msg}; set CI=1 to turn this skip into a failure")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = RedisServer("127.0.0.1", port, proc)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"redis-server exited with status {proc.returncode} on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return server
        except OSError:
            time.sleep(0.02)
    server.stop()
    pytest.fail(f"redis-server did not answer PING on port {port} within 10 s")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture
def redis_store(redis_server: RedisServer) -> Iterator[OnlineStore]:
    from mlsd.features.redis_store import RedisStore

    store = RedisStore(redis_server.url, namespace=f"test-{uuid.uuid4().hex[:8]}")
    yield store
    store.clear()
    store.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest) -> OnlineStore:
    """Every OnlineStore implementation: the same contract tests run on each."""
    if request.param == "memory":
        return MemoryStore()
    return request.getfixturevalue("redis_store")  # type: ignore[no-any-return]
