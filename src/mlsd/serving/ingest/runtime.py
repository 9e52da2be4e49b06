"""One process's event path: admission, the durable append (group commit) and the tailer.

``POST /v1/events`` asks :class:`Ingestion` for admission, builds the log records and awaits
:meth:`Ingestion.append`, which resolves once the group commit that carried them is durable.
Applying them to the online state is the tailer's job (:mod:`.applier`), in every worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mlsd.pipeline.servable import Servable
from mlsd.serving.ingest.admission import Admission
from mlsd.serving.ingest.applier import Replayed, SnapshotStore, Tailer, replay
from mlsd.serving.ingest.group_commit import GroupCommit
from mlsd.serving.ingest.log import AppendResult, EventLogBackend, Position, Record
from mlsd.serving.service import ModelHolder

log = logging.getLogger("mlsd.serving")

DEFAULT_MAX_PENDING = 20_000  # events queued for the durable log before 503
DEFAULT_MAX_LAG_S = 2.0  # apply lag before writes are refused with 503


@dataclass(frozen=True)
class IngestOptions:
    """How one process ingests: ``max_event_rate`` events per second it admits (0: no
    limit); ``max_pending`` events waiting for the durable append and ``max_lag_s`` seconds
    of apply lag beyond which writes are refused with 503; ``snapshots``, ``snapshot_writer``
    and ``snapshot_every_s``: see :class:`~.applier.Tailer`; ``poll_s``: how often the tailer
    looks for other processes' appends."""

    max_event_rate: float = 0.0
    max_pending: int = DEFAULT_MAX_PENDING
    max_lag_s: float = DEFAULT_MAX_LAG_S
    snapshots: SnapshotStore | None = None
    snapshot_writer: bool = False
    snapshot_every_s: float = 600.0
    poll_s: float = 0.05


class Ingestion:
    """The event path of one process serving ``holder``'s model from log ``events``.

    ``position``: where the live model's online state is in the log (see
    :class:`~.applier.Replayed`); ``options``: see :class:`IngestOptions`. Call :meth:`start`
    in the process that serves (after any fork) and :meth:`close` at shutdown.
    """

    def __init__(
        self,
        events: EventLogBackend,
        holder: ModelHolder,
        *,
        position: Position | None,
        metrics: Any = None,
        options: IngestOptions | None = None,
    ) -> None:
        o = options or IngestOptions()
        self.events = events
        self.holder = holder
        self.metrics = metrics
        self.options = o
        self.snapshots = o.snapshots
        self.commit = GroupCommit(events, max_pending_events=o.max_pending)
        self.tailer = Tailer(
            events,
            holder,
            position,
            metrics=metrics,
            poll_s=o.poll_s,
            snapshots=o.snapshots,
            snapshot_writer=o.snapshot_writer,
            snapshot_every_s=o.snapshot_every_s,
        )
        self.admission = Admission(
            rate=o.max_event_rate,
            pending=lambda: self.commit.pending_events,
            max_pending=o.max_pending,
            lag_s=self.tailer.lag_s,
            max_lag_s=o.max_lag_s,
        )
        self._started = False

    def start(self) -> Ingestion:
        if not self._started:
            self.tailer.start()
            self._started = True
        return self

    def close(self) -> None:
        """Finish the pending appends, stop the tailer, close the log."""
        self.commit.close()
        self.tailer.stop()
        self.events.close()

    async def append(self, records: Sequence[Record]) -> AppendResult:
        """Durably append ``records`` (one batch); raises
        :class:`~.group_commit.Overloaded` at once when the queue is full and
        :class:`~.log.LogUnavailable` when the commit failed."""
        t0 = time.perf_counter()
        fut = self.commit.submit(records)
        result = await asyncio.wrap_future(fut)
        if self.metrics is not None:
            self.metrics.event_commit.observe(time.perf_counter() - t0)
        return result

    def problem(self) -> str | None:
        """Why this process is not ready to serve exact answers (None: it is)."""
        return self.tailer.problem()

    def adopt(self, model: Servable, say: Callable[[str], None] | None = None) -> Servable:
        """Replay the log into ``model`` (a newly loaded one) and serve it; returns the model
        it replaced (``/admin/reload``)."""
        replayed = replay(model, self.events, snapshots=self.snapshots, say=say)
        return self.tailer.replace(replayed)


__all__ = ["IngestOptions", "Ingestion", "Replayed"]
