"""A readers-writer lock: requests read the model's state concurrently, updates write it alone.

The service runs model calls on a few threads. Serving a request only reads (indexes, the
online store, histories) and spends much of its time in C code that releases the GIL (FAISS,
LightGBM, NumPy), so two requests can overlap; applying new events mutates that state and must
run alone. A plain lock would serialise every request.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["ReadWriteLock"]


class ReadWriteLock:
    """Many readers at once, or one writer.

    - Writer preference: once a writer waits, new readers wait behind it, so a steady stream
      of requests cannot starve an update.
    - Re-entrant: a thread that holds the lock (read or write) may take ``read`` again, and a
      writer may take ``write`` again (the pipeline's batch path calls its own locked
      methods). Upgrading a read to a write is not supported: it raises ``RuntimeError``
      instead of deadlocking.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer: int | None = None
        self._writers_waiting = 0
        self._local = threading.local()

    def _depth(self) -> int:
        return int(getattr(self._local, "depth", 0))

    @contextmanager
    def read(self) -> Iterator[None]:
        depth = self._depth()
        if depth or self._writer == threading.get_ident():  # already inside: no new wait
            self._local.depth = depth + 1
            try:
                yield
            finally:
                self._local.depth = depth
            return
        with self._cond:
            while self._writer is not None or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        self._local.depth = 1
        try:
            yield
        finally:
            self._local.depth = 0
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        me = threading.get_ident()
        if self._writer == me:  # re-entrant write
            yield
            return
        if self._depth():
            raise RuntimeError("ReadWriteLock: cannot upgrade a read lock to a write lock")
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer is not None or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = me
        try:
            yield
        finally:
            with self._cond:
                self._writer = None
                self._cond.notify_all()
