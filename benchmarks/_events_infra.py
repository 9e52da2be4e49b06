"""What the event-ingestion benchmark (``events.py``) runs against: ``mlsd serve`` with the
issue-16 options, a throwaway ``redis-server``, the users and videos to send, the event log
read back (file or Redis stream), and a second bundle for the SIGHUP scenario."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from mlsd.errors import MlsdError
from mlsd.serving.process import ServerProcess, free_port

API_KEY = "bench-events-key"
#: The Redis stream the service appends events to; each entry's field ``r`` is the JSON record.
STREAM = "mlsd:events"


def serve(
    model: str | Path,
    *,
    event_log: str | Path,
    online_store: str = "memory",
    workers: int = 2,
    max_event_rate: float | None = None,
    threads: int | None = None,
    port: int | None = None,
    log_path: str | Path | None = None,
    ready_timeout_s: float = 600.0,
) -> ServerProcess:
    """A (not yet started) ``mlsd serve`` with the benchmark's API key; ``max_event_rate`` adds
    ``--max-event-rate`` (left out when None, so the harness runs against a server without
    the option); ``threads`` adds ``--threads`` (model threads per worker)."""
    extra = [] if max_event_rate is None else ["--max-event-rate", f"{max_event_rate:g}"]
    if threads is not None:
        extra += ["--threads", str(threads)]
    return ServerProcess(
        model,
        port=port,
        workers=workers,
        api_key=API_KEY,
        event_log=event_log,
        online_store=online_store,
        ready_timeout_s=ready_timeout_s,
        log_path=log_path,
        extra_args=extra,
    )


def pid_of(server: ServerProcess) -> int:
    if server.proc is None:
        raise MlsdError("the server was not started")
    return server.proc.pid


# --- users and videos -------------------------------------------------------------------------


@dataclass
class Population:
    """Known users (from the training log), new users (ids above them) and known videos."""

    known_users: np.ndarray
    new_users: np.ndarray
    videos: np.ndarray
    source: str

    def readers(self, n: int, rng: np.random.Generator, new_share: float = 0.1) -> np.ndarray:
        """``n`` user ids for reads: ``new_share`` of them new, the rest known."""
        new = rng.random(n) < new_share
        out = rng.choice(self.known_users, size=n)
        out[new] = rng.choice(self.new_users, size=int(new.sum()))
        return out


def population(model: str | Path, data: str | Path | None = None) -> Population:
    """Users from ``data``'s events (a dataset directory or an events Parquet file; default:
    the training log a Recommender bundle carries) and videos from the bundle's catalog (else
    ``data``'s). Raises :class:`MlsdError` when either cannot be found."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    art = Path(model) / "artifacts" / "data"
    if data is None:
        data = art
    d = Path(data)
    events = d / "events.parquet" if d.is_dir() else d
    videos = art / "videos.parquet"
    if not videos.is_file():
        videos = events.parent / "videos.parquet"
    if not events.is_file() or not videos.is_file():
        raise MlsdError(f"need events and videos Parquet files: {events}, {videos}")
    users = pc.unique(pq.read_table(events, columns=["user_id"]).column("user_id"))
    known = np.sort(users.to_numpy(zero_copy_only=False).astype(np.int64))
    vids = pq.read_table(videos, columns=["video_id"]).column("video_id")
    top = int(known.max()) + 1 if len(known) else 0
    return Population(
        known,
        np.arange(top + 1_000_000, top + 1_100_000, dtype=np.int64),
        vids.to_numpy(zero_copy_only=False).astype(np.int64),
        f"users: {events}; videos: {videos}",
    )


# --- Redis --------------------------------------------------------------------------------------


def _ping(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisProcess:
    """A throwaway ``redis-server`` on loopback without persistence (``--save ''
    --appendonly no``): a restart on the same port comes back empty."""

    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    def start(self, timeout_s: float = 10.0) -> RedisProcess:
        exe = shutil.which("redis-server")
        if exe is None:
            raise MlsdError("redis-server not found on PATH (Debian: apt-get install redis-server)")
        cmd = [
            exe,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise MlsdError(f"redis-server exited ({self.proc.returncode}) on {self.port}")
            if _ping(self.port, self.host):
                return self
            time.sleep(0.02)
        self.kill()
        raise MlsdError(f"redis-server did not answer PING on port {self.port}")

    def kill(self) -> None:
        """SIGKILL (a crash: no shutdown save, even if persistence were on)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> RedisProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


def read_log(event_log: str | Path) -> list[dict[str, Any]]:
    """Every record of the event log: a JSON-lines file (an incomplete last line skipped) or
    ``redis://HOST:PORT/DB`` (stream :data:`STREAM`, each entry's field ``r``)."""
    s = str(event_log)
    if s.startswith("redis://"):
        import redis

        client = redis.Redis.from_url(s)
        try:
            return [json.loads(f[b"r"]) for _, f in _xrange(client)]
        finally:
            client.close()
    from mlsd.serving.eventlog import read_events

    return list(read_events(s))


def _xrange(client: Any, batch: int = 10_000) -> Iterator[tuple[bytes, dict[bytes, bytes]]]:
    last = b"-"
    while True:
        entries = client.xrange(STREAM, min=last, max="+", count=batch)
        if last != b"-":
            entries = entries[1:]  # XRANGE's min is inclusive
        if not entries:
            return
        yield from entries
        last = entries[-1][0]


def copy_log(event_log: str | Path, to: str | Path) -> None:
    """Copy the log for a reference server: a file to the path ``to``; a Redis stream to the
    stream of the database ``to`` names (same entry ids and fields; ``to`` emptied first)."""
    s = str(event_log)
    if not s.startswith("redis://"):
        shutil.copyfile(s, to)
        return
    import redis

    src, dst = redis.Redis.from_url(s), redis.Redis.from_url(str(to))
    try:
        dst.delete(STREAM)
        pipe = dst.pipeline(transaction=False)
        for entry_id, fields in _xrange(src):
            pipe.xadd(STREAM, cast(Any, fields), id=entry_id)
        pipe.execute()
    finally:
        src.close()
        dst.close()


# --- a second bundle ----------------------------------------------------------------------------


def relabel_bundle(src: str | Path, dst: str | Path, version: str) -> Path:
    """A copy of the Recommender bundle ``src`` at ``dst`` that reports ``version``: the
    version lives in ``artifacts/recommender.json`` (checksummed) and the manifest's
    ``model_version``, so both change and the manifest's size and sha256 of that artifact are
    recomputed; the models are the same bytes. Reuses ``dst`` when it already has ``version``.
    Raises :class:`MlsdError` when ``src`` has no ``recommender.json``."""
    s, d = Path(src), Path(dst)
    manifest_path = d / "manifest.json"
    if (
        manifest_path.is_file()
        and json.loads(manifest_path.read_text())["model_version"] == version
    ):
        return d
    meta = s / "artifacts" / "recommender.json"
    if not meta.is_file():
        raise MlsdError(f"{s}: no artifacts/recommender.json; not a Recommender bundle")
    tmp = d.with_name(d.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(s, tmp)
    os.chmod(tmp / "artifacts" / "recommender.json", 0o644)  # the source may be read-only
    os.chmod(tmp / "manifest.json", 0o644)
    doc = json.loads(meta.read_text())
    doc["version"] = version
    raw = (json.dumps(doc, indent=2) + "\n").encode()
    (tmp / "artifacts" / "recommender.json").write_bytes(raw)
    manifest = json.loads((tmp / "manifest.json").read_text())
    manifest["model_version"] = version
    for a in manifest["artifacts"]:
        if a["path"] == "recommender.json":
            a["size"], a["sha256"] = len(raw), hashlib.sha256(raw).hexdigest()
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(d, ignore_errors=True)
    tmp.rename(d)
    return d


def point(link: str | Path, target: str | Path) -> None:
    """Make ``link`` a symlink to ``target``, atomically (a new link renamed over the old)."""
    link = Path(link)
    tmp = link.with_name(link.name + ".new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(Path(target).resolve())
    os.replace(tmp, link)
