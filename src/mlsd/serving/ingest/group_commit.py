"""Group commit: one durable append for every request that queued during the previous one.

Request handlers :meth:`GroupCommit.submit` their records and await the returned future
(``asyncio.wrap_future``); one writer thread takes everything queued, calls
``backend.append`` once (one write + one fsync, or one Redis script call) and resolves each
future with its batch's :class:`AppendResult`, or every future of that commit with the
exception. Batching comes from requests arriving while an fsync is in progress, so there is no
artificial delay (``linger_ms`` adds one, for backends whose commit is cheap but not free).

Back-pressure: events pending (queued or being committed) are bounded by
``max_pending_events``; a submit over it raises :class:`Overloaded` at once, so a slow disk or
Redis sheds load (a 503 with ``Retry-After``) instead of queueing without bound.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future

from mlsd.serving.ingest.log import AppendResult, EventLogBackend, Record, check_batches

__all__ = ["GroupCommit", "Overloaded"]


class Overloaded(Exception):
    """Too many events are waiting for a commit; retry after ``retry_after_s`` seconds.

    Not an :class:`~mlsd.errors.MlsdError`: it is flow control (a 503), not a user error.
    """

    def __init__(self, pending: int, limit: int, retry_after_s: float) -> None:
        self.pending = pending
        self.limit = limit
        self.retry_after_s = retry_after_s
        super().__init__(
            f"{pending} events are waiting for the event log (limit {limit}); "
            f"retry after {retry_after_s:.3f} s"
        )


_Item = tuple[Sequence[Record], "Future[AppendResult]"]


class GroupCommit:
    """A writer thread that commits queued batches to ``backend`` together.

    Does not own ``backend``: :meth:`close` stops the thread, the caller closes the backend.
    Metrics (read without a lock; each is one int or float): ``pending_events`` (queued or
    being committed), ``commits`` (successful ``append`` calls), ``failed_commits``,
    ``committed_events`` (events acknowledged: stored or duplicates), ``last_commit_s``
    (duration of the last ``append`` call, seconds).
    """

    def __init__(
        self,
        backend: EventLogBackend,
        *,
        max_pending_events: int = 20_000,
        linger_ms: float = 0.0,
    ) -> None:
        if max_pending_events < 1:
            raise ValueError(f"max_pending_events {max_pending_events}; expected >= 1")
        if linger_ms < 0:
            raise ValueError(f"linger_ms {linger_ms}; expected >= 0")
        self.backend = backend
        self.max_pending_events = max_pending_events
        self.linger_ms = linger_ms
        self.pending_events = 0
        self.commits = 0
        self.failed_commits = 0
        self.committed_events = 0
        self.last_commit_s = 0.0
        self._last_commit_events = 0
        self._queue: list[_Item] = []
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="mlsd-group-commit", daemon=True)
        self._thread.start()

    def submit(self, records: Sequence[Record]) -> Future[AppendResult]:
        """Queue one request's records; the future resolves once they are durable.

        Never blocks on I/O. Raises :class:`Overloaded` when the pending events would exceed
        ``max_pending_events`` (a batch larger than that is always refused),
        :class:`~mlsd.errors.DataError` for a record without a non-empty str ``event_id``
        (nothing queued), ``RuntimeError`` after :meth:`close`. The future's exception is the
        backend's (e.g. ``LogUnavailable``) when its commit failed.
        """
        check_batches([records])
        n = len(records)
        fut: Future[AppendResult] = Future()
        with self._cond:
            if self._closing:
                raise RuntimeError("GroupCommit is closed: no more submits")
            if self.pending_events + n > self.max_pending_events:
                raise Overloaded(self.pending_events, self.max_pending_events, self._retry_after())
            self.pending_events += n
            self._queue.append((records, fut))
            self._cond.notify()
        return fut

    def _retry_after(self) -> float:
        """How long the pending events take to commit at the last commit's rate (seconds)."""
        per_event = self.last_commit_s / max(1, self._last_commit_events)
        return max(0.01, min(10.0, self.pending_events * per_event, self.last_commit_s * 4))

    def _take(self) -> list[_Item] | None:
        """The queued items (None: closing and drained), after ``linger_ms`` if set."""
        with self._cond:
            while not self._queue and not self._closing:
                self._cond.wait()
            if not self._queue:
                return None
            if self.linger_ms > 0 and not self._closing:
                deadline = time.monotonic() + self.linger_ms / 1000
                while (left := deadline - time.monotonic()) > 0 and not self._closing:
                    self._cond.wait(left)
            items, self._queue = self._queue, []
            return items

    def _run(self) -> None:
        while (taken := self._take()) is not None:
            # a future cancelled by its caller (client gone) is not written: it was never acked;
            # the others can no longer be cancelled, so resolving them below cannot fail
            items = [(r, f) for r, f in taken if f.set_running_or_notify_cancel()]
            dropped = sum(len(r) for r, f in taken) - sum(len(r) for r, _ in items)
            if not items:
                with self._cond:
                    self.pending_events -= dropped
                continue
            t0 = time.perf_counter()
            try:
                results = self.backend.append([r for r, _ in items])
                if len(results) != len(items):
                    raise RuntimeError(
                        f"{self.backend.description}: append returned {len(results)} results "
                        f"for {len(items)} batches"
                    )
            except BaseException as e:  # every future of this commit fails; the thread lives on
                self._finish(time.perf_counter() - t0, items, dropped, ok=False)
                for _, f in items:
                    f.set_exception(e)
                if not isinstance(e, Exception):
                    raise
                continue
            self._finish(time.perf_counter() - t0, items, dropped, ok=True)
            for (_, f), res in zip(items, results, strict=True):
                f.set_result(res)

    def _finish(self, took: float, items: list[_Item], dropped: int, *, ok: bool) -> None:
        n = sum(len(r) for r, _ in items)
        with self._cond:
            # before resolving: a caller that resubmits at once sees the room it freed
            self.pending_events -= n + dropped
            self.last_commit_s = took
            if ok:
                self.commits += 1
                self.committed_events += n
                self._last_commit_events = n
            else:
                self.failed_commits += 1

    def close(self, timeout_s: float = 5) -> None:
        """Commit what is queued, then stop the writer thread (waits up to ``timeout_s``).

        Later submits raise ``RuntimeError``. Futures still unresolved after the timeout (a
        backend that hangs) fail with ``RuntimeError``. Idempotent; does not close the backend.
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            with self._cond:
                items, self._queue = self._queue, []
            for _, f in items:
                if f.set_running_or_notify_cancel():
                    f.set_exception(RuntimeError("GroupCommit closed before this commit ran"))
