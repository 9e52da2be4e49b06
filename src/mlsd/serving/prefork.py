"""Pre-fork workers: load the model once, then fork worker processes that share it.

Why: a request spends most of its time in Python (the GIL), so one process uses little more
than one core however many threads it has; several processes use them all. Loading the bundle
in each worker (uvicorn's ``--workers``, which spawns fresh interpreters) multiplies its memory
by the number of workers, which a large bundle cannot afford. Here the supervisor loads it
once and forks; the workers share its pages copy-on-write (the model is read-only while
serving; ``gc.freeze()`` first, so that the workers' garbage collector does not write to, and
so copy, every object's header). This is gunicorn's ``--preload`` design.

- The supervisor holds the listening socket, accepts connections and hands each to the next
  worker in turn (round robin), passing the descriptor over a Unix socket pair (SCM_RIGHTS);
  each worker runs its own uvicorn server, app, metrics and model threads on the connections
  it is handed (:class:`HandedServer`). Why not let every worker accept (one shared socket, or
  one ``SO_REUSEPORT`` socket each): keep-alive clients send all their requests over a few
  long-lived connections, so the load follows how *connections* are split. The kernel splits
  them by a hash (``SO_REUSEPORT``: eight connections over two workers are 6/2 or worse 29% of
  the time) or to whichever worker wakes first (a shared socket: a burst can all go to one),
  and the worker with more connections queues requests while the other idles. Round robin
  splits them exactly (4/4); a client that reuses its least recently used connection
  then spreads its requests evenly too. The supervisor's cost is an ``accept`` and a
  ``sendmsg`` per *connection*, not per request.
- A worker that dies is forked again from the loaded model (at most ``max_restarts`` times
  within a minute: a worker that keeps dying is a bug, and the supervisor then stops).
- SIGTERM or SIGINT: the supervisor stops accepting, the workers stop gracefully (in-flight
  requests finish), then the supervisor exits. SIGHUP: the supervisor loads the bundle at
  ``--model`` again (a symlink retargeted, say) on a thread of its own, while it goes on
  accepting and handing connections to the old workers (and forking the old model again for a
  worker that dies meanwhile); once loaded, it forks every new worker, so that all new
  connections go to the new version at once, and the old workers finish what they have. A bundle
  that does not load leaves the old workers serving. A SIGHUP during a load is remembered and
  loads again once the first is in place (one load at a time). A reload needs memory for both
  models while the old workers drain. A worker forked during a load is forked from a process
  with a second thread (the loader): should that thread hold a lock the worker needs at that
  instant (a C library's, or stderr's while it prints), that worker would hang; a hazard of
  every fork beside threads, accepted here so that a dead worker need not wait for the load.
- Metrics: each worker's metrics are written to a directory the supervisor creates, and a
  scrape of any worker sums all of them (see :mod:`.metrics`); the supervisor drops an exited
  worker's live gauges and removes the directory when it exits.
- Each worker finds its slot (0 to ``workers - 1``; a replacement takes the slot of the worker
  it replaces) in ``MLSD_WORKER_SLOT`` and its pid in ``MLSD_WORKER_PID`` (see
  :func:`worker_slot`): to run a periodic job in one worker only, say. During a reload an old
  and a new worker hold the same slot until the old one exits.
- Each worker keeps its own online state, brought up to date by tailing the one durable event
  log (:mod:`.ingest`): an event written through any worker reaches every worker's state.
- On Linux a worker gets SIGTERM if the supervisor dies (``PR_SET_PDEATHSIG``), and a worker
  whose supervisor is gone (its hand-off socket closed) stops too.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from prometheus_client.multiprocess import mark_process_dead

from mlsd.serving.metrics import enable_multiprocess

log = logging.getLogger("mlsd.serving")

WORKER_SLOT_ENV = "MLSD_WORKER_SLOT"
WORKER_PID_ENV = "MLSD_WORKER_PID"

_PR_SET_PDEATHSIG = 1


def available() -> bool:
    """Whether this platform can fork (not Windows)."""
    return hasattr(os, "fork")


def worker_slot() -> int | None:
    """This worker's slot (0 to ``workers - 1``); None outside a pre-forked worker, including
    in a process a worker started (it inherits the variables, not the pid)."""
    slot, pid = os.environ.get(WORKER_SLOT_ENV), os.environ.get(WORKER_PID_ENV)
    if slot is None or pid != str(os.getpid()):
        return None
    return int(slot)


BACKLOG = 2048


def bind(host: str, port: int) -> socket.socket:
    """The supervisor's listening socket on ``host:port`` (raises OSError when taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


def hand_off_pair() -> tuple[socket.socket, socket.socket]:
    """(supervisor's end, worker's end) of the Unix socket pair connections travel over;
    SOCK_SEQPACKET keeps one message per connection."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def hand(channel: socket.socket, conn: socket.socket) -> bool:
    """Pass ``conn``'s descriptor to the worker at the other end of ``channel``; False when
    that worker is gone or not taking any (its end closed, its queue full)."""
    try:
        socket.send_fds(channel, [b"c"], [conn.fileno()], socket.MSG_DONTWAIT)
    except OSError:
        return False
    return True


def taken(channel: socket.socket) -> list[socket.socket] | None:
    """The connections waiting on a worker's ``channel`` (non-blocking); None when the
    supervisor's end is closed (it stopped or died)."""
    out: list[socket.socket] = []
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(channel, 1, 1, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return out
        if not msg and not fds:
            return out or None  # the connections first; None at the next call
        for fd in fds:
            conn = socket.socket(fileno=fd)
            conn.setblocking(False)
            with contextlib.suppress(OSError):  # small responses go out at once
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            out.append(conn)


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class HandedServer(uvicorn.Server):
    """A uvicorn server of the connections handed to it over ``channel`` (see :func:`hand`)
    instead of a listening socket of its own. Graceful shutdown is uvicorn's (in-flight
    requests finish); connections still waiting in the channel when it stops are closed (their
    clients see a reset, as from a crashed worker). It stops by itself when the supervisor's
    end of the channel closes."""

    def __init__(self, config: uvicorn.Config, channel: socket.socket) -> None:
        super().__init__(config)
        self.channel = channel

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # no listener; started, lifespan run
        if not self.started:
            return
        loop = asyncio.get_running_loop()
        self.channel.setblocking(False)
        loop.add_reader(self.channel.fileno(), self._take, loop)

    def _protocol(self) -> asyncio.Protocol:
        return self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config, server_state=self.server_state, app_state=self.lifespan.state
        )

    def _take(self, loop: asyncio.AbstractEventLoop) -> None:
        conns = taken(self.channel)
        if conns is None:  # the supervisor is gone
            loop.remove_reader(self.channel.fileno())
            self.should_exit = True
            return
        for conn in conns:
            if self.should_exit:
                conn.close()
                continue
            task = loop.create_task(loop.connect_accepted_socket(self._protocol, conn))
            task.add_done_callback(_report_failed_connection)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self.channel.fileno())
        for conn in taken(self.channel) or []:
            conn.close()
        await super().shutdown(sockets)


def _report_failed_connection(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("a handed connection could not be served: %s", task.exception())


class Supervisor:
    """Forks ``workers`` processes that each call ``serve(model, channel)``, hands them the
    connections accepted on ``sock`` in turn, and exits with them.

    ``load()`` returns a loaded model: the caller loads the first (given to :meth:`run`), the
    supervisor calls it on each SIGHUP, on a thread of its own (so it must not touch the
    supervisor's state; an exception it raises is logged and the old model keeps serving).
    ``serve(model, channel)`` runs one worker's server on the connections arriving on
    ``channel`` (see :class:`HandedServer`) until it is told to stop (SIGTERM); it runs in the
    forked worker, with ``MLSD_WORKER_SLOT``, ``MLSD_WORKER_PID`` and multiprocess metrics
    already set.

    ``metrics_dir``: where the workers write their metrics (see
    :func:`~mlsd.serving.metrics.enable_multiprocess`); created if missing and emptied of a
    previous run's values at start. None: a fresh temporary directory, removed when
    :meth:`run` returns.
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
        metrics_dir: str | Path | None = None,
    ) -> None:
        self.load = load
        self.serve = serve
        self.sock = sock
        self.n = workers
        self.max_restarts = max_restarts
        self.stop_timeout_s = stop_timeout_s
        self.metrics_dir = Path(metrics_dir) if metrics_dir is not None else None
        self._own_metrics_dir = False
        self.children: dict[int, int] = {}  # pid -> worker slot
        self.channels: dict[int, socket.socket] = {}  # slot -> supervisor's end
        self.next_slot = 0
        self.restarts: list[float] = []
        self._stop = False
        self._reload = False
        self._loader: threading.Thread | None = None  # a SIGHUP's load in progress
        self._loaded: tuple[bool, Any] | None = None  # its (ok, model or exception)
        self.exit_code = 0

    def _fork(self, model: Any, slot: int) -> int:
        mine, theirs = hand_off_pair()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
                    signal.signal(sig, signal.SIG_DFL)
                _die_with_parent()
                # only the supervisor accepts, and a worker sees its own channel only: when
                # the supervisor exits, the port and every channel close with it
                for s in (self.sock, mine, *self.channels.values()):
                    s.close()
                os.environ[WORKER_SLOT_ENV] = str(slot)
                os.environ[WORKER_PID_ENV] = str(os.getpid())
                if self.metrics_dir is not None:  # before serve creates the app's metrics
                    enable_multiprocess(self.metrics_dir)
                self.serve(model, theirs)
            except BaseException:  # report, never return into the supervisor's code
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        theirs.close()
        old = self.channels.get(slot)
        self.channels[slot] = mine  # new connections go to the new worker from now on
        if old is not None:
            old.close()
        self.children[pid] = slot
        return pid

    def _accept(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for connections and hand each to the next worker."""
        try:
            ready, _, _ = select.select([self.sock], [], [], timeout_s)
        except (OSError, ValueError):  # the socket was closed by a stop
            time.sleep(timeout_s)
            return
        while ready:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # out of descriptors, say: the client retries
                log.warning("accept failed: %s", e)
                return
            slots = sorted(self.channels)
            for i in range(len(slots)):
                slot = slots[(self.next_slot + i) % len(slots)]
                if hand(self.channels[slot], conn):
                    self.next_slot = (self.next_slot + i + 1) % len(slots)
                    break
            conn.close()  # the worker holds its own descriptor now (or none took it)

    def _freeze(self) -> None:
        gc.collect()
        gc.freeze()  # workers' collections then skip the loaded model: no copy-on-write

    def run(self, model: Any, on_ready: Callable[[], None] | None = None) -> int:
        """Fork the workers and supervise them; returns the exit status."""
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        self.sock.setblocking(False)
        self._open_metrics_dir()
        try:
            return self._supervise(model, on_ready)
        finally:
            if self._own_metrics_dir and self.metrics_dir is not None:
                shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _supervise(self, model: Any, on_ready: Callable[[], None] | None) -> int:
        self._freeze()
        for slot in range(self.n):
            self._fork(model, slot)
        if on_ready is not None:
            on_ready()
        while self.children:
            if self._stop:
                self._stop_all()
                break
            model = self._reload_step(model)
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                self._accept(0.1)
                continue
            self._reaped(pid)
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
            self._fork(model, slot)  # the old model while a reload's load is in progress
        return self.exit_code

    def _open_metrics_dir(self) -> None:
        if self.metrics_dir is None:
            self.metrics_dir = Path(tempfile.mkdtemp(prefix="mlsd-metrics-"))
            self._own_metrics_dir = True
            return
        self.metrics_dir.mkdir(parents=True, exist_ok=True)
        for f in self.metrics_dir.glob("*.db"):  # a previous run's counts would add to ours
            f.unlink()

    def _reaped(self, pid: int) -> None:
        """Bookkeeping for a worker that has exited: its live gauges no longer count (its
        counters and histograms do: totals never go back)."""
        if self.metrics_dir is not None:
            with contextlib.suppress(OSError):
                mark_process_dead(pid, str(self.metrics_dir))

    def _on_stop(self, signum: int, frame: Any) -> None:
        self._stop = True

    def _on_reload(self, signum: int, frame: Any) -> None:
        self._reload = True

    def _reload_step(self, model: Any) -> Any:
        """The model to serve from now on: a finished load's (its workers forked, the old
        ones retired), else ``model``; starts a load when a SIGHUP asked for one and none is in
        progress."""
        loader = self._loader
        if loader is not None:
            if loader.is_alive():
                return model
            loader.join()  # no fork while another thread runs the load
            self._loader = None
            ok, loaded = self._loaded or (False, "the load stopped without a result")
            self._loaded = None
            if ok:
                model = self._replace(loaded)
            else:
                log.error("reload failed, the old model keeps serving: %s", loaded)
        if self._reload and not self._stop:
            self._reload = False
            self._loader = threading.Thread(target=self._load, name="mlsd-reload", daemon=True)
            self._loader.start()
        return model

    def _load(self) -> None:
        """The loader thread: ``load()``, its result or exception kept for the main loop."""
        try:
            model = self.load()
            gc.collect()  # here rather than in the main loop, which accepts meanwhile
            self._loaded = (True, model)
        except Exception as e:
            self._loaded = (False, e)

    def _replace(self, new: Any) -> Any:
        gc.freeze()  # the new model's objects too (collected by the loader thread)
        old = list(self.children.items())
        # every slot's new worker first, so that from this moment every new connection goes to
        # the new version (no connection alternates between versions); then the old workers
        # finish what they have and exit together
        for _, slot in old:
            self._fork(new, slot)
        self._terminate([pid for pid, _ in old])
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
                    self._reaped(pid)
            self._accept(0.05)  # the other workers keep taking connections meanwhile
        for pid in waiting:  # did not drain in time
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            self.children.pop(pid, None)
            self._reaped(pid)

    def _stop_all(self) -> None:
        self.sock.close()  # connections not accepted yet are refused, not left waiting
        self._terminate(list(self.children))
        for ch in self.channels.values():
            ch.close()
        self.channels.clear()
