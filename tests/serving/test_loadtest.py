"""The open-loop load generator: it keeps its schedule when the server falls behind (and so
charges the queueing to latency), counts errors, and runs end to end against ``mlsd serve``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mlsd.cli import app
from mlsd.errors import ConfigError
from mlsd.serving.loadgen import drive
from mlsd.serving.loadtest import GOAL, USER_CLASSES, run_sweep, user_mix, verdict


async def _slow_server(service_s: float, status: int = 200) -> tuple[asyncio.Server, int]:
    """One request at a time, ``service_s`` each: capacity 1 / service_s per second."""
    lock = asyncio.Lock()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                n = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(n)
                async with lock:
                    await asyncio.sleep(service_s)
                body = b'{"degraded":false}'
                writer.write(
                    b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # client gone, or the loop is shutting down with requests still queued
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _requests(port: int, n: int) -> list[bytes]:
    body = b'{"user_id":1}'
    req = b"POST / HTTP/1.1\r\nHost: x:%d\r\nContent-Length: %d\r\n\r\n%s" % (port, len(body), body)
    return [req] * n


def test_open_loop_charges_queueing_to_latency() -> None:
    """Offered 100 rps to a server that does 50 rps: a closed-loop client would slow down and
    report ~20 ms; the open-loop one keeps sending and sees the queue grow to ~0.5 s."""

    async def go() -> tuple[np.ndarray, float, float]:
        server, port = await _slow_server(0.02)
        async with server:
            run = await drive("127.0.0.1", port, _requests(port, 50), rate=100, timeout_s=5)
        return run.latency_s, run.elapsed_s, run.max_lag_s

    lat, elapsed, lag = asyncio.run(go())
    assert np.isfinite(lat).all()
    assert lat[:3].max() < 0.1  # no queue yet
    assert lat[-5:].min() > 0.35  # 50 requests need 1 s of service; the last was due at 0.49 s
    assert elapsed > 0.9 and lag < 0.05  # the schedule itself was kept


def test_errors_and_timeouts_are_counted() -> None:
    async def go() -> tuple[dict[str, int], int]:
        server, port = await _slow_server(0.001, status=503)
        async with server:
            run = await drive("127.0.0.1", port, _requests(port, 10), rate=200)
        slow, sport = await _slow_server(0.2)
        async with slow:
            run2 = await drive("127.0.0.1", sport, _requests(sport, 4), rate=200, timeout_s=0.1)
        return {**run.errors, **run2.errors}, int((run.status == 503).sum())

    errors, n503 = asyncio.run(go())
    assert errors["http 503"] == 10 and n503 == 10
    assert errors["timeout"] >= 3


def test_user_mix(tiny_dataset: Path) -> None:
    mix = user_mix(data=tiny_dataset)
    assert len(mix.ids["heavy"]) < len(mix.ids["light"])
    assert mix.ids["new"].min() > max(mix.ids["heavy"].max(), mix.ids["light"].max())
    cls, users = mix.sample(1000, np.random.default_rng(0))
    share = np.bincount(cls, minlength=3) / 1000
    assert abs(share[USER_CLASSES.index("new")] - 0.2) < 0.05
    assert np.isin(users[cls == 0], mix.ids["heavy"]).all()
    assert user_mix(n_users=50).ids["light"].max() == 49


@pytest.mark.server
def test_benchmark_end_to_end(
    stub_bundle: Path, server_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in server_env.items():
        monkeypatch.setenv(k, v)
    (res,) = run_sweep(stub_bundle, rates=[50], duration_s=1, warmup_s=0.2, k=5)
    assert res["requests"] == 50 and res["ok"] == 50 and res["errors"] == 0
    lat = res["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert res["model"]["kind"] == "stub" and res["load"]["open_loop"] is True
    assert res["meets_goal"] is False  # 1 s at 50 rps is not the goal's load

    out = tmp_path / "serving.json"
    r = CliRunner().invoke(
        app,
        ["bench", "serve", "--model", str(stub_bundle), "--rate", "40", "--duration", "0.5",
         "--warmup", "0", "--out", str(out)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "serving" and doc["requests"] == 20 and doc["machine"]["cpus"] >= 1


@pytest.mark.server
def test_sweep_measures_each_rate_against_one_server(
    stub_bundle: Path, server_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in server_env.items():
        monkeypatch.setenv(k, v)
    logs: list[str] = []
    runs = run_sweep(stub_bundle, rates=[20, 60], duration_s=0.5, warmup_s=0, k=5,
                     log=logs.append)  # fmt: skip
    assert [r["load"]["rate_rps"] for r in runs] == [20, 60]
    assert [r["requests"] for r in runs] == [10, 30]
    assert all(r["errors"] == 0 and r["model"]["kind"] == "stub" for r in runs)
    assert sum("server ready" in m for m in logs) == 1  # one server for both rates
    with pytest.raises(ConfigError, match="rates"):
        run_sweep(stub_bundle, rates=[])


def test_verdict_is_met_or_missed_only_at_the_goals_rate() -> None:
    def res(rate: float, meets: bool) -> dict[str, object]:
        return {"load": {"rate_rps": rate}, "goal": GOAL, "meets_goal": meets}

    assert verdict(res(GOAL["rate"], True)) == "met"
    assert verdict(res(GOAL["rate"], False)) == "missed"
    assert verdict(res(GOAL["rate"] / 2, True)) == "below the goal's rate"
