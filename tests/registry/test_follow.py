"""Serving a registry alias: the follower's link, its polling, and a real ``mlsd serve
--model models:/NAME@champion`` that swaps on promote and rolls back at once."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from mlsd.errors import RegistryError
from mlsd.registry import Registry, VersionInfo
from mlsd.registry.follow import AliasFollower
from mlsd.serving.process import ServerProcess
from tests.serving.stub_model import KIND, KIND_TARGET


def _served(link: Path) -> str:
    return json.loads((link / "manifest.json").read_text())["model_version"]


def test_the_link_follows_the_alias(
    registry: Registry, make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    for v in ("stub-a", "stub-b"):
        registry.register(make_bundle(v), "m")
    registry.promote("m", 1)
    f = AliasFollower(registry, "models:/m@champion", link=tmp_path / "serve" / "bundle")
    link = f.resolve()
    assert link.is_symlink() and _served(link) == "stub-a"
    assert f.poll() is False
    registry.promote("m", 2)
    assert f.poll() is True and _served(link) == "stub-b"
    assert f.current is not None and f.current.version == 2
    assert [p.name for p in link.parent.iterdir()] == ["bundle"]  # no temporary links left


def test_a_failing_registry_keeps_the_model_and_polling_goes_on(
    registry: Registry, make_bundle: Callable[..., Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    for v in ("stub-a", "stub-b"):
        registry.register(make_bundle(v), "m")
    registry.promote("m", 1)
    f = AliasFollower(registry, "models:/m@champion", link=tmp_path / "l", interval_s=0.05)
    f.resolve()
    real = registry.resolve
    calls = {"n": 0}

    def flaky(ref: object) -> VersionInfo:
        calls["n"] += 1
        if calls["n"] <= 3:
            raise RegistryError("registry sqlite:///x: unreachable")
        return real(ref)  # type: ignore[arg-type]

    monkeypatch.setattr(registry, "resolve", flaky)
    moved: list[int] = []
    registry.promote("m", 2)
    f.start(lambda v: moved.append(v.version))
    deadline = time.monotonic() + 10
    while not moved and time.monotonic() < deadline:
        time.sleep(0.02)
    f.stop()
    assert calls["n"] > 3 and moved == [2]
    assert _served(f.link) == "stub-b"


def test_a_fixed_version_is_not_polled(
    registry: Registry, make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    registry.register(make_bundle("stub-a"), "m")
    f = AliasFollower(registry, "models:/m/1", link=tmp_path / "l", interval_s=0.01)
    f.resolve()
    f.start(lambda v: None)
    assert f._thread is None


def _version(url: str) -> str | None:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).json()["model_version"]
    except httpx.HTTPError:
        return None


@pytest.mark.server
def test_serve_swaps_on_promote_and_rolls_back_from_memory(
    registry: Registry, make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    for v in ("stub-a", "stub-b"):
        registry.register(make_bundle(v), "m")
    registry.promote("m", 1)
    root = Path(__file__).resolve().parents[2]
    env = {"MLSD_REGISTRY_URI": registry.uri, "MLSD_BUNDLE_KINDS": f"{KIND}={KIND_TARGET}",
           "PYTHONPATH": os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH"))
                                         if p)}  # fmt: skip
    server = ServerProcess("models:/m@champion", env=env, log_path=tmp_path / "serve.log",
                           extra_args=["--follow-interval", "0.2"])  # fmt: skip
    with server:
        assert _version(server.url) == "stub-a"
        registry.promote("m", 2)
        deadline = time.monotonic() + 30
        while _version(server.url) != "stub-b" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _version(server.url) == "stub-b"
        registry.rollback("m")
        t0 = time.monotonic()
        while _version(server.url) != "stub-a" and time.monotonic() - t0 < 30:
            time.sleep(0.1)
        assert _version(server.url) == "stub-a"
    log = (tmp_path / "serve.log").read_text()
    assert "the model served before is still in memory" in log
    assert "v1 -> v2" in log and "v2 -> v1" in log


def test_serve_refuses_an_unknown_alias(
    registry: Registry, make_bundle: Callable[..., Path]
) -> None:
    from typer.testing import CliRunner

    from mlsd.cli import app

    registry.register(make_bundle("stub-a"), "m")
    res = CliRunner().invoke(app, ["serve", "--model", "models:/m@champion",
                                   "--registry-uri", registry.uri])  # fmt: skip
    assert res.exit_code == 2 and "no alias 'champion'" in res.output
