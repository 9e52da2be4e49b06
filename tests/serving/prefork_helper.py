"""A pre-fork supervisor around a fake model and a tiny HTTP responder, for the supervisor's
tests (``python -m tests.serving.prefork_helper PORT STATE_DIR WORKERS``).

The n-th ``load()`` returns the model version ``v<n>``; a reload's load (n > 1) sleeps the
seconds in ``STATE_DIR/load_s`` first, and fails at once while ``STATE_DIR/fail`` exists. Each
load appends ``start <n> <t>`` and ``end <n> <t>`` (``time.time()``) to ``STATE_DIR/loads``.

A worker answers every request on a connection it is handed with one JSON line: its model
version, ``os.getpid()``, ``MLSD_WORKER_SLOT``, ``MLSD_WORKER_PID`` and
``PROMETHEUS_MULTIPROC_DIR``, then closes the connection. It answers the connections it was
handed before it exits (when the supervisor closes its channel), so a reload resets none.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mlsd.serving import prefork


@dataclass(frozen=True)
class FakeModel:
    version: str


def _answer(conn: socket.socket, model: FakeModel) -> None:
    conn.setblocking(True)
    conn.settimeout(2.0)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        body = json.dumps(
            {
                "version": model.version,
                "pid": os.getpid(),
                "slot": os.environ.get("MLSD_WORKER_SLOT"),
                "env_pid": os.environ.get("MLSD_WORKER_PID"),
                "metrics_dir": os.environ.get("PROMETHEUS_MULTIPROC_DIR"),
            }
        ).encode()
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        conn.sendall(head.encode() + body)
    except OSError:
        pass
    finally:
        conn.close()


def serve(model: FakeModel, channel: socket.socket) -> None:
    # a worker stops on SIGTERM or when the supervisor's end of the channel closes, after
    # answering what it was handed (a replacement takes the channel before the SIGTERM)
    stop = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))
    channel.setblocking(False)
    while True:
        select.select([channel], [], [], 0.05)
        conns = prefork.taken(channel)
        for conn in conns or []:
            _answer(conn, model)
        if conns is None or stop:
            return


def main(argv: list[str]) -> int:
    port, state, workers = int(argv[0]), Path(argv[1]), int(argv[2])
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    loads = [0]

    def note(what: str, n: int) -> None:
        with open(state / "loads", "a") as f:
            f.write(f"{what} {n} {time.time()}\n")

    def load() -> FakeModel:
        loads[0] += 1
        n = loads[0]
        note("start", n)
        try:
            if n > 1:
                if (state / "fail").exists():
                    raise RuntimeError("the bundle does not load")
                load_s = state / "load_s"
                time.sleep(float(load_s.read_text()) if load_s.exists() else 0.0)
            return FakeModel(f"v{n}")
        finally:
            note("end", n)

    sock = prefork.bind("127.0.0.1", port)
    sup = prefork.Supervisor(load=load, serve=serve, sock=sock, workers=workers, stop_timeout_s=2.0)
    model = load()
    code = sup.run(model, on_ready=lambda: print("ready", flush=True))
    sock.close()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
