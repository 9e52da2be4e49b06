"""Pre-fork workers: load the model once, then fork worker processes that share it.

Why: a request spends most of its time in Python (the GIL), so one process uses little more
than one core however many threads it has; several processes use them all. Loading the bundle
in each worker (uvicorn's ``--workers``, which spawns fresh interpreters) multiplies its memory:
~17 GB a worker for the ``large`` bundle, so two do not fit a 23.5 GB machine. Here the
supervisor loads it once and forks; the workers share its pages copy-on-write (the model is
read-only while serving; ``gc.freeze()`` first, so that the workers' garbage collector does not
write to, and so copy, every object's header). This is gunicorn's ``--preload`` design.

- The supervisor holds the port; every worker listens on it through a socket of its own
  (SO_REUSEPORT on Linux, see :func:`bind`; elsewhere one shared socket) and runs its own
  uvicorn server, app, metrics and model threads.
- A worker that dies is forked again from the loaded model (at most ``max_restarts`` times
  within a minute: a worker that keeps dying is a bug, and the supervisor then stops).
- SIGTERM or SIGINT: the workers stop gracefully (in-flight requests finish), then the
  supervisor exits. SIGHUP: the supervisor loads the bundle at ``--model`` again (a symlink
  retargeted, say) and replaces the workers one at a time; a bundle that does not load leaves
  the old workers serving. A reload needs memory for both models while the old workers drain.
- A worker that stops (a reload, a crash) drops the connections still queued, not yet
  accepted, on its own socket: their clients see a reset and retry, as behind any load
  balancer. In-flight requests are not affected by a reload.
- Each worker's online state is its own: with the embedded ``memory`` store an event sent to
  one worker is not seen by the others (use ``--online-store redis://...`` to share features).
- On Linux a worker gets SIGTERM if the supervisor dies (``PR_SET_PDEATHSIG``), so a killed
  supervisor does not leave workers holding the port.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

log = logging.getLogger("mlsd.serving")

_PR_SET_PDEATHSIG = 1


def available() -> bool:
    """Whether this platform can fork (not Windows)."""
    return hasattr(os, "fork")


BACKLOG = 2048


def reuse_port() -> bool:
    """Whether each worker can listen on its own socket of the port (Linux SO_REUSEPORT)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def bind(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """A socket bound to ``host:port``, listening unless ``listen=False``.

    With SO_REUSEPORT (Linux) the supervisor only binds (to hold the port and fail early when
    it is taken) and every worker binds and listens on a socket of its own: the kernel then
    spreads new connections evenly over the workers by a hash of their addresses. On one shared
    listening socket the worker that wakes first accepts a burst of keep-alive connections and
    keeps them, so one worker queues while another idles.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port():
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if listen:
        sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def worker_socket(shared: socket.socket) -> socket.socket:
    """The socket a worker accepts on: its own (SO_REUSEPORT) or the shared one."""
    if not reuse_port():
        return shared
    host, port = shared.getsockname()[:2]
    return bind(host, port)


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    """Forks ``workers`` processes that each call ``serve(model, sock)`` and exits with them.

    ``load()`` returns a loaded model (called once at start and again on SIGHUP);
    ``serve(model, sock)`` runs one worker's server until it is told to stop (SIGTERM).
    """

    def __init__(
        self,
        *,
        load: Callable[[], Any],
        serve: Callable[[Any, socket.socket], None],
        sock: socket.socket,
        workers: int,
        max_restarts: int = 5,
        stop_timeout_s: float = 15.0,
    ) -> None:
        self.load = load
        self.serve = serve
        self.sock = sock
        self.n = workers
        self.max_restarts = max_restarts
        self.stop_timeout_s = stop_timeout_s
        self.children: dict[int, int] = {}  # pid -> worker slot
        self.restarts: list[float] = []
        self._stop = False
        self._reload = False
        self.exit_code = 0

    def _fork(self, model: Any, slot: int) -> int:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
                    signal.signal(sig, signal.SIG_DFL)
                _die_with_parent()
                self.serve(model, worker_socket(self.sock))
            except BaseException:  # report, never return into the supervisor's code
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.children[pid] = slot
        return pid

    def _freeze(self) -> None:
        gc.collect()
        gc.freeze()  # workers' collections then skip the loaded model: no copy-on-write

    def run(self, model: Any, on_ready: Callable[[], None] | None = None) -> int:
        """Fork the workers and supervise them; returns the exit status."""
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        self._freeze()
        for slot in range(self.n):
            self._fork(model, slot)
        if on_ready is not None:
            on_ready()
        while self.children:
            if self._stop:
                self._stop_all()
                break
            if self._reload:
                self._reload = False
                model = self._replace(model)
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.1)
                continue
            if pid not in self.children or self._stop:
                continue
            slot = self.children.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            now = time.monotonic()
            self.restarts = [t for t in self.restarts if now - t < 60] + [now]
            if len(self.restarts) > self.max_restarts:
                log.error("worker %d keeps dying (status %d); stopping", pid, code)
                self.exit_code = 1
                self._stop_all()
                break
            log.warning("worker %d exited with status %d; forking another", pid, code)
            self._fork(model, slot)
        return self.exit_code

    def _on_stop(self, signum: int, frame: Any) -> None:
        self._stop = True

    def _on_reload(self, signum: int, frame: Any) -> None:
        self._reload = True

    def _replace(self, old: Any) -> Any:
        try:
            new = self.load()
        except Exception as e:  # the old workers keep serving
            log.error("reload failed, the old model keeps serving: %s", e)
            return old
        self._freeze()
        for pid, slot in list(self.children.items()):
            self._fork(new, slot)
            self._terminate([pid])
        log.warning("reloaded: %d workers replaced", self.n)
        return new

    def _terminate(self, pids: list[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        waiting = set(pids)
        while waiting and time.monotonic() < deadline:
            for pid in list(waiting):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid
                if done:
                    waiting.discard(pid)
                    self.children.pop(pid, None)
            time.sleep(0.05)
        for pid in waiting:  # did not drain in time
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            self.children.pop(pid, None)

    def _stop_all(self) -> None:
        self._terminate(list(self.children))
