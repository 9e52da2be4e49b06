"""``mlsd serve`` as a child process on a loopback port: for the load benchmark and for tests
that need the real server (uvicorn, sockets, signals), not an in-process test client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from mlsd.errors import MlsdError


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` right now (the OS picks it; a race with other binders is
    possible but unlikely on loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def http_get(host: str, port: int, path: str, timeout: float = 1.0) -> tuple[int, bytes]:
    """One blocking HTTP/1.1 GET with a fresh connection: (status, body)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


class ServerProcess:
    """Start ``mlsd serve`` in a child process and wait until ``/readyz`` answers 200.

    Use as a context manager; ``stop()`` sends SIGTERM (then SIGKILL), ``kill()`` sends SIGKILL
    at once (for crash tests). The child's stdout and stderr go to ``log_path``.
    ``extra_args`` are appended to the ``mlsd serve`` command line as given.
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        workers: int = 1,
        model_threads: int | None = None,
        api_key: str | None = None,
        event_log: str | Path | None = None,
        online_store: str = "memory",
        candidate_cache: bool = True,
        candidate_cache_dir: str | Path | None = None,
        env: dict[str, str] | None = None,
        ready_timeout_s: float = 60.0,
        log_path: str | Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.ready_timeout_s = ready_timeout_s
        cmd = [sys.executable, "-m", "mlsd.cli", "serve", "--model", str(model_dir)]
        cmd += ["--host", host, "--port", str(self.port), "--workers", str(workers)]
        cmd += ["--online-store", online_store, "--log-level", "warning"]
        if model_threads is not None:
            cmd += ["--threads", str(model_threads)]
        if event_log is not None:
            cmd += ["--event-log", str(event_log)]
        if not candidate_cache:
            cmd += ["--no-candidate-cache"]
        if candidate_cache_dir is not None:
            cmd += ["--candidate-cache-dir", str(candidate_cache_dir)]
        # options this class has no keyword for (e.g. --max-event-rate), passed verbatim
        cmd += [str(a) for a in extra_args]
        self.cmd = cmd
        self.env = {**os.environ, **(env or {})}
        self.env.pop("MLSD_API_KEY", None)
        if api_key is not None:
            self.env["MLSD_API_KEY"] = api_key  # not on the command line: ps shows argv
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix="mlsd-serve-", suffix=".log")
            os.close(fd)
            log_path = name
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServerProcess:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise MlsdError(
                    f"mlsd serve exited with status {self.proc.returncode} before it was ready:"
                    f"\n{self.log_tail()}"
                )
            try:
                if http_get(self.host, self.port, "/readyz", timeout=0.5)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise MlsdError(
            f"mlsd serve was not ready within {self.ready_timeout_s:.0f} s:\n{self.log_tail()}"
        )

    def log_tail(self, n: int = 20) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def kill(self) -> None:
        """SIGKILL the whole process group (uvicorn workers included), like a crash."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout_s: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
