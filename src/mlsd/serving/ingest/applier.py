"""The durable event log applied to a process's online state, off the request path.

Every worker process runs one :class:`Tailer`: a thread that reads the log after the position
its live model has applied, applies what it finds in chunks (so that a read request waits for
at most one chunk's write lock), and when caught up waits for the next poll: its own appends
are not applied at once either, so that applies come in batches (an apply has a fixed cost of
a few milliseconds, and requests wait for its write lock). All
workers read the same log in the same order, so they reach the same online state, whichever
worker accepted an event (an event is visible everywhere within the poll interval plus one
chunk).

:func:`replay` rebuilds the state after a start, a re-fork or a reload: the newest snapshot of
the model's online state (:class:`SnapshotStore`), if there is one, then the log after it.
One worker (slot 0) writes a snapshot every ``snapshot_every_s`` so that a replay stays short.

The tailer also watches the online store: a shared store (Redis) found without this model's
records (restarted empty, flushed) makes the process unready and is rewritten from the
process's own state (see :meth:`~mlsd.pipeline.Servable.repopulate_online_store`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlsd.pipeline.servable import Servable
from mlsd.serving.ids import encode_records, id_maps
from mlsd.serving.ingest.log import EventLogBackend, LogUnavailable, Position
from mlsd.serving.ingest.records import records_table
from mlsd.serving.model_calls import single_threaded_kernels
from mlsd.serving.service import ModelHolder

log = logging.getLogger("mlsd.serving")

SNAPSHOT_FORMAT = 1
REPLAY_CHUNK = 20_000  # events per apply while nothing is served yet
LIVE_CHUNK = 256  # events per apply while serving: bounds how long reads wait on the lock


def position_order(p: Position | None) -> tuple[int, ...]:
    """A sortable key of a log position (a file offset ``"123"`` or a stream id
    ``"1700000000000-3"``); None (the log's start) sorts first."""
    if p is None:
        return (-1,)
    return tuple(int(x) for x in p.split("-"))


@dataclass(frozen=True)
class Snapshot:
    """A model's online state (``blob``, see :meth:`~mlsd.pipeline.Servable.online_snapshot`)
    as of log ``position``."""

    version: str
    position: Position
    blob: bytes
    created_ms: int


class SnapshotStore:
    """The newest snapshot per model version, one file each in ``directory``: a JSON header
    line, then the blob. Written to a temporary file, fsync'd and renamed, so a crash leaves
    the previous snapshot; a file that does not read back is ignored (logged)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def path(self, version: str) -> Path:
        return self.directory / (re.sub(r"[^A-Za-z0-9._-]", "_", version) + ".snapshot")

    def save(self, version: str, position: Position, blob: bytes) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        head = {
            "format": SNAPSHOT_FORMAT,
            "version": version,
            "position": position,
            "created_ms": int(time.time() * 1000),
            "bytes": len(blob),
        }
        final = self.path(version)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(json.dumps(head).encode() + b"\n")
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself survives a crash
        finally:
            os.close(fd)
        return final

    def load(self, version: str) -> Snapshot | None:
        p = self.path(version)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            return None
        head_line, _, blob = data.partition(b"\n")
        try:
            head = json.loads(head_line)
            ok = (
                head["format"] == SNAPSHOT_FORMAT
                and head["version"] == version
                and head["bytes"] == len(blob)
            )
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            log.warning("snapshot %s is unreadable or incomplete; ignored", p)
            return None
        return Snapshot(version, str(head["position"]), blob, int(head["created_ms"]))


def apply_records(model: Servable, records: list[dict[str, Any]]) -> int:
    """Apply ``records`` to ``model`` in one call; if that call fails, one record at a time,
    leaving out (and logging) those that fail alone. Returns how many were left out.

    Why: a record that the model cannot apply would otherwise stop every worker at the same
    place in the log for good (they all read it); it is the same record everywhere, so
    leaving it out keeps the workers in agreement. Records keep ids as requests gave them;
    a model of string ids gets them mapped to its codes here (see :mod:`mlsd.serving.ids`)."""
    table, skipped = records_table(encode_records(id_maps(model), records))
    if not table.num_rows:
        return skipped
    try:
        model.apply_events(table)
        _observe(model, table)
        return skipped
    except Exception as e:
        log.warning("applying %d events failed (%s); applying them one by one", len(records), e)
    for i in range(table.num_rows):
        try:
            model.apply_events(table.slice(i, 1))
        except Exception as e:
            skipped += 1
            log.error("event %s left out: the model cannot apply it: %s", _event_id(table, i), e)
    _observe(model, table)
    return skipped


def _observe(model: Servable, table: Any) -> None:
    """Hand applied events to the drift monitor's online metrics (its ``events_tap`` on the
    live model, when it runs; see mlsd.serving.monitor); never fails the apply."""
    tap = getattr(model, "events_tap", None)
    if tap is not None:
        try:
            tap(table)
        except Exception as e:
            log.warning("the monitor's events tap failed: %s", e)


def _event_id(table: Any, i: int) -> str:
    row = table.slice(i, 1).to_pylist()[0]
    return f"of user {row.get('user_id')} on video {row.get('video_id')} at {row.get('timestamp')}"


@dataclass(frozen=True)
class Replayed:
    """A model whose online state includes the log up to ``position`` (None: nothing of it)."""

    model: Servable
    position: Position | None
    events: int = 0
    seconds: float = 0.0
    from_snapshot: bool = False


def replay(
    model: Servable,
    events: EventLogBackend,
    *,
    start: Position | None = None,
    snapshots: SnapshotStore | None = None,
    chunk: int = REPLAY_CHUNK,
    say: Callable[[str], None] | None = None,
) -> Replayed:
    """Bring ``model``'s online state (which includes the log up to ``start``) up to the end
    of ``events``: from the model version's snapshot when it is newer than ``start``, then the
    records after it. Raises :class:`~mlsd.serving.ingest.log.LogUnavailable` when the log
    cannot be read."""
    t0 = time.perf_counter()
    pos = start
    from_snapshot = False
    snap = snapshots.load(model.version) if snapshots is not None else None
    if snap is not None and position_order(snap.position) > position_order(start):
        model.restore_online(snap.blob)
        pos, from_snapshot = snap.position, True
    n = 0
    while True:
        res = events.read(pos, chunk)
        if not res.records:
            break
        apply_records(model, res.records)
        n += len(res.records)
        pos = res.next
    dt = time.perf_counter() - t0
    if say is not None and (n or from_snapshot):
        src = f"snapshot at {snap.position} + " if from_snapshot and snap is not None else ""
        say(f"replayed {src}{n:,} events of {events.description} in {dt:.1f} s")
    return Replayed(model, pos, n, dt, from_snapshot)


class Tailer:
    """Applies ``events`` to the live model of ``holder`` from ``position`` on, in a daemon
    thread (see the module docstring).

    ``metrics`` (a :class:`~mlsd.serving.metrics.ServingMetrics`, optional) receives the lag,
    readiness and repopulation figures. ``snapshots`` with ``snapshot_writer`` True: this
    process writes the periodic snapshot.
    """

    def __init__(
        self,
        events: EventLogBackend,
        holder: ModelHolder,
        position: Position | None,
        *,
        metrics: Any = None,
        poll_s: float = 0.05,
        chunk: int = LIVE_CHUNK,
        snapshots: SnapshotStore | None = None,
        snapshot_writer: bool = False,
        snapshot_every_s: float = 600.0,
        store_check_s: float = 0.05,
        ready_lag_s: float = 5.0,
    ) -> None:
        self.events = events
        self.holder = holder
        self.position = position
        self.metrics = metrics
        self.poll_s = poll_s
        self.chunk = chunk
        self.snapshots = snapshots
        self.snapshot_writer = snapshot_writer
        self.snapshot_every_s = snapshot_every_s
        self.store_check_s = store_check_s
        self.ready_lag_s = ready_lag_s
        self.applied = 0
        self.skipped = 0
        self.corrupt = 0
        self.store_problem: str | None = None
        self.log_problem: str | None = None
        self._oldest_unapplied_ms: int | None = None
        self._caught_up = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_snapshot = time.monotonic()
        self._applied_at_snapshot = 0

    # ----------------------------------------------------------------- queries --
    def lag_s(self) -> float:
        """Age in seconds of the oldest durable event this process has not applied (0 when
        caught up)."""
        t = self._oldest_unapplied_ms
        return 0.0 if t is None else max(0.0, time.time() - t / 1000)

    def problem(self) -> str | None:
        """Why this process is not ready (None: ready)."""
        if self.store_problem is not None:
            return self.store_problem
        if not self._caught_up.is_set():
            return "replaying the event log"
        lag = self.lag_s()
        if lag > self.ready_lag_s:
            return f"applying events {lag:.1f} s behind the log"
        return None

    def wait_caught_up(self, timeout_s: float = 5.0) -> bool:
        """Block until everything in the log when called has been applied (tests, tools);
        False on timeout."""
        end = position_order(self.events.end())
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                pos = self.position
            if position_order(pos) >= end or not self.events.read(pos, 1).records:
                return True
            time.sleep(0.005)
        return False

    # ----------------------------------------------------------------- control --
    def start(self) -> Tailer:
        self._thread = threading.Thread(target=self._run, name="mlsd-tailer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def replace(self, replayed: Replayed) -> Servable:
        """Serve ``replayed.model`` from now on, continuing the log from its position;
        returns the model it replaces."""
        with self._lock:
            old = self.holder.set(replayed.model)
            self.position = replayed.position
            return old

    # --------------------------------------------------------------------- loop --
    def _run(self) -> None:
        # OpenMP counts are per thread: without this, the retrievals of refresh_candidates ran
        # FAISS with a second OpenMP thread whose spin-waits took over half a core per worker
        single_threaded_kernels()
        self._resume_from_snapshot()
        next_check = 0.0
        while not self._stop.is_set():
            n = 0
            try:
                n = self._step()
                self.log_problem = None
            except LogUnavailable as e:
                if self.log_problem is None:
                    log.warning("event log unavailable, retrying: %s", e)
                self.log_problem = str(e)
                self._stop.wait(0.2)
            except Exception:  # a bug must not stop the thread: report and go on
                log.exception("applying events failed; retrying")
                self._stop.wait(0.5)
            now = time.monotonic()
            if now >= next_check:
                self._check_store()
                next_check = now + self.store_check_s
            self._refresh_candidates()
            self._maybe_snapshot(now)
            self._report()
            if n < self.chunk:
                self._wake.wait(self.poll_s)
                self._wake.clear()

    def _resume_from_snapshot(self) -> None:
        """A re-forked worker starts from the supervisor's position, which may be old: a newer
        snapshot of the same model saves replaying what lies between."""
        if self.snapshots is None:
            return
        model = self.holder.get()
        try:
            snap = self.snapshots.load(model.version)
            if snap is not None and position_order(snap.position) > position_order(self.position):
                with self._lock:
                    model.restore_online(snap.blob)
                    self.position = snap.position
        except Exception:
            log.exception("restoring the online state from its snapshot failed; replaying")

    def _step(self) -> int:
        with self._lock:
            model, pos = self.holder.get(), self.position
        res = self.events.read(pos, self.chunk)
        self.corrupt += res.corrupt
        if not res.records:
            self._oldest_unapplied_ms = None
            self._caught_up.set()
            return 0
        first = res.records[0].get("received_ms")
        self._oldest_unapplied_ms = int(first) if isinstance(first, int) else None
        with self._lock:
            if self.holder.get() is not model:  # swapped meanwhile: start over with the new one
                return 0
            skipped = apply_records(model, res.records)
            self.position = res.next

        self.applied += len(res.records)
        self.skipped += skipped
        if len(res.records) < self.chunk:
            self._oldest_unapplied_ms = None
            self._caught_up.set()
        return len(res.records)

    def _refresh_candidates(self) -> None:
        try:  # cached candidates served stale since the last round (the model's option)
            self.holder.get().refresh_candidates()
        except Exception:
            log.exception("retrieving stale cached candidates again failed")

    def _check_store(self) -> None:
        model = self.holder.get()
        try:
            problem = model.online_store_problem()
        except Exception:  # unreachable: requests degrade by themselves; look again later
            return
        if problem is None:
            self.store_problem = None
            return
        self.store_problem = f"{problem}; repopulating"
        self._report()
        log.warning("online store: %s; repopulating it from this process's state", problem)
        t0 = time.perf_counter()
        try:
            with self._lock:
                n = model.repopulate_online_store()
        except Exception as e:  # still down, say: the next check tries again
            log.warning("repopulating the online store failed: %s", e)
            return
        dt = time.perf_counter() - t0
        log.warning("online store repopulated: %d records in %.2f s", n, dt)
        self.store_problem = None
        if self.metrics is not None:
            self.metrics.repopulate_seconds.set(dt)

    def _maybe_snapshot(self, now: float) -> None:
        if self.snapshots is None or not self.snapshot_writer:
            return
        if now - self._last_snapshot < self.snapshot_every_s:
            return
        if self.applied == self._applied_at_snapshot:
            return
        self.snapshot_now()

    def snapshot_now(self) -> Snapshot | None:
        """Write the snapshot of the live model's state at the applied position now (from
        the tailer thread, or while it is stopped)."""
        if self.snapshots is None:
            return None
        with self._lock:
            model, pos = self.holder.get(), self.position
            blob = model.online_snapshot()
        self._last_snapshot = time.monotonic()
        self._applied_at_snapshot = self.applied
        if pos is None:
            return None
        self.snapshots.save(model.version, pos, blob)
        return Snapshot(model.version, pos, blob, int(time.time() * 1000))

    def _report(self) -> None:
        m = self.metrics
        if m is None:
            return
        m.event_apply_lag_seconds.set(self.lag_s())
        m.online_ready.set(0 if self.problem() is not None else 1)
