"""The file backend of the event log: JSON lines, one ``write`` + one ``fsync`` per commit.

Several processes (pre-forked workers, a supervisor) share one file. An append takes an
exclusive ``flock``; under it, it first indexes the event ids other processes appended since
this process last looked (so two processes appending the same id store it once), then writes
the new records with one ``os.write`` loop, releases the lock and calls ``fsync`` before
returning: an acknowledged record survives ``kill -9`` of any process and, on a disk that
honours fsync, a power cut.

A process that dies mid-write leaves a fragment without a final newline. It was never
acknowledged. Opening the log cuts such a torn tail; an append that finds one (its writer
died while this process had the log open) first writes a newline, so the fragment becomes a
line of its own that readers skip and count as corrupt instead of gluing it to the next record.
Readers return complete lines only (up to the last newline); a corrupt line anywhere is skipped,
counted in :attr:`ReadResult.corrupt` and logged with its byte offset, never fatal.

Positions are decimal byte offsets (as str) of line starts. Dedup remembers the
``dedup_window`` most recent event ids (read from the end of the file on open): a retry of an
event older than that window may be stored twice. Lines without an ``event_id`` (logs written
before ids existed) read back as they are and are never deduplicated.

Another process's records can be read between its write and its fsync; only an OS crash or
power cut can then lose them, which also loses every reader's memory.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import orjson

from mlsd.errors import DataError
from mlsd.serving.ingest.log import (
    AppendResult,
    LogUnavailable,
    Position,
    ReadResult,
    Record,
    check_batches,
)

__all__ = ["FileEventLog", "iter_records", "read_file"]

log = logging.getLogger(__name__)

_CHUNK = 1 << 18  # bytes per pread: a few thousand records


def _parse_offset(after: Position | None) -> int:
    if after is None:
        return 0
    if not isinstance(after, str) or not after.isdigit():
        raise DataError(f"file log position {after!r}; expected a decimal byte offset (str)")
    return int(after)


def _read_fd(fd: int, name: str, start: int, limit: int) -> ReadResult:
    """Up to ``limit`` complete records from byte ``start`` of ``fd`` (pread: no seek state)."""
    records: list[Record] = []
    corrupt = 0
    pos = start  # the byte offset of buf[0]
    buf = b""
    while len(records) < limit:
        chunk = os.pread(fd, _CHUNK, pos + len(buf))
        if not chunk:
            break  # EOF: what is left in buf is an incomplete (torn or in-flight) record
        buf += chunk
        i = 0
        while len(records) < limit:
            nl = buf.find(b"\n", i)
            if nl < 0:
                break
            line = buf[i:nl]
            if line.strip():
                try:
                    rec = orjson.loads(line)
                except orjson.JSONDecodeError:
                    rec = None
                if isinstance(rec, dict):
                    records.append(rec)
                else:
                    corrupt += 1
                    log.warning(
                        "%s: corrupt record at byte %d skipped (%d bytes: %r)",
                        name,
                        pos + i,
                        len(line),
                        line[:60],
                    )
            i = nl + 1
        pos += i
        buf = buf[i:]
    return ReadResult(records, str(pos), corrupt)


def read_file(path: str | Path, after: Position | None = None, limit: int = 10_000) -> ReadResult:
    """Read a log file without opening it for writing (no tail repair, no lock).

    Same contract as :meth:`FileEventLog.read`; a missing file reads as empty. Raises
    :class:`~mlsd.errors.DataError` for a malformed ``after``, :class:`LogUnavailable` if the
    file cannot be read.
    """
    p = Path(path)
    start = _parse_offset(after)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return ReadResult([], str(start), 0)
    except OSError as e:
        raise LogUnavailable(f"file {p}: cannot open for reading: {e}") from e
    try:
        return _read_fd(fd, f"file {p}", start, limit)
    except OSError as e:
        raise LogUnavailable(f"file {p}: read failed: {e}") from e
    finally:
        os.close(fd)


def iter_records(path: str | Path) -> Iterator[Record]:
    """Every complete record of a log file, in order (corrupt lines skipped and logged)."""
    pos: Position | None = None
    while True:
        res = read_file(path, pos, 10_000)
        yield from res.records
        if res.next == (pos or "0"):
            return
        pos = res.next


def _event_id(line: bytes) -> str | None:
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None  # corrupt: readers report it
    eid = rec.get("event_id") if isinstance(rec, dict) else None
    return eid if isinstance(eid, str) and eid else None


class FileEventLog:
    """The :class:`~mlsd.serving.ingest.log.EventLogBackend` on a JSON-lines file.

    ``path`` is created (with its parents) if missing. ``dedup_window``: how many recent event
    ids each process keeps in memory (0: only duplicates within one call are dropped).
    Thread-safe; share one instance per process.
    Raises :class:`LogUnavailable` if the file cannot be opened, locked or indexed.
    """

    def __init__(self, path: str | Path, *, dedup_window: int = 1_000_000) -> None:
        if dedup_window < 0:
            raise DataError(f"dedup_window {dedup_window}; expected >= 0")
        self.path = Path(path)
        self.description = f"file {self.path}"
        self.dedup_window = dedup_window
        self._lock = threading.Lock()  # one append at a time in this process
        # the remembered ids: a dict to look up, a deque to forget the oldest (an OrderedDict
        # would take twice the dict's memory, and the window may hold a million ids)
        self._ids: dict[str, None] = {}
        self._order: deque[str] = deque()
        self._known = 0  # end of the last complete line this process has indexed
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(
                self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
            )
        except OSError as e:
            raise LogUnavailable(f"{self.description}: cannot open: {e}") from e
        try:
            with self._flocked():
                self._repair_tail()
                self._known = os.fstat(self._fd).st_size
            # outside the lock: the lines before _known are complete and never change (a repair
            # only cuts bytes after the last newline), and others need not wait for our scan
            self._index_tail(self._known)
        except OSError as e:
            os.close(self._fd)
            raise LogUnavailable(f"{self.description}: cannot open: {e}") from e

    def __repr__(self) -> str:
        return f"FileEventLog({str(self.path)!r})"

    # --- the shared file ----------------------------------------------------------------------

    @contextmanager
    def _flocked(self) -> Iterator[None]:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _line_end(self, size: int) -> int:
        """The offset just after the last newline before ``size`` (0 if there is none)."""
        pos = size
        while pos > 0:
            start = max(0, pos - _CHUNK)
            i = os.pread(self._fd, pos - start, start).rfind(b"\n")
            if i >= 0:
                return start + i + 1
            pos = start
        return 0

    def _repair_tail(self) -> None:
        """Cut a torn last line (its writer died mid-append; it was never acknowledged).

        Called under the flock: no live process is writing, so the fragment is not in flight.
        """
        size = os.fstat(self._fd).st_size
        if size == 0 or os.pread(self._fd, 1, size - 1) == b"\n":
            return
        cut = self._line_end(size)
        os.ftruncate(self._fd, cut)
        log.warning(
            "%s: cut a torn last record at byte %d (%d bytes; its writer died mid-append)",
            self.description,
            cut,
            size - cut,
        )

    def _remember(self, eid: str) -> None:
        if eid in self._ids:
            return
        self._ids[eid] = None
        self._order.append(eid)
        if len(self._order) > self.dedup_window:
            del self._ids[self._order.popleft()]

    def _forget(self, eids: list[str]) -> None:
        """Undo :meth:`_remember` of ``eids`` (the newest ids; an append that failed)."""
        for eid in reversed(eids):
            if self._order and self._order[-1] == eid:
                self._order.pop()
                del self._ids[eid]

    def _index_tail(self, end: int) -> None:
        """Remember the last ``dedup_window`` event ids before byte ``end`` (a line end),
        reading backwards so that opening a long log costs the window, not the file."""
        self._ids.clear()
        self._order.clear()
        newest_first: list[str] = []
        pos, carry = end, b""
        while pos > 0 and len(newest_first) < self.dedup_window:
            start = max(0, pos - _CHUNK)
            lines = (os.pread(self._fd, pos - start, start) + carry).split(b"\n")
            # the first piece may continue a line that begins in the chunk before this one
            carry = lines.pop(0) if start > 0 else b""
            for line in reversed(lines):
                eid = _event_id(line) if line else None
                if eid is not None:
                    newest_first.append(eid)
            pos = start
        for eid in reversed(newest_first[: self.dedup_window]):
            self._remember(eid)

    def _catch_up(self) -> int:
        """Index the complete lines others appended since ``_known``; returns the file size."""
        size = os.fstat(self._fd).st_size
        if size < self._known:  # truncated or replaced behind our back: start over
            log.warning("%s: the file shrank under this process; re-indexing", self.description)
            self._known = self._line_end(size)
            self._index_tail(self._known)
            return size
        buf = b""
        while self._known + len(buf) < size:
            offset = self._known + len(buf)
            chunk = os.pread(self._fd, min(_CHUNK, size - offset), offset)
            if not chunk:
                break
            buf += chunk
            cut = buf.rfind(b"\n") + 1
            if cut:
                if self.dedup_window:
                    for line in buf[:cut].split(b"\n"):
                        eid = _event_id(line) if line else None
                        if eid is not None:
                            self._remember(eid)
                self._known += cut
                buf = buf[cut:]
        return size

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    # --- the contract -------------------------------------------------------------------------

    def append(self, batches: Sequence[Sequence[Record]]) -> list[AppendResult]:
        """See :meth:`EventLogBackend.append`: one write and one fsync for all ``batches``.

        Raises :class:`~mlsd.errors.DataError` (nothing written) for a record without a
        non-empty str ``event_id`` or that orjson cannot serialise.
        """
        check_batches(batches)
        try:
            lines = [[orjson.dumps(r) for r in batch] for batch in batches]
        except TypeError as e:  # orjson.JSONEncodeError
            raise DataError(f"{self.description}: a record is not JSON-serialisable: {e}") from e
        with self._lock:
            if self._fd < 0:
                raise LogUnavailable(f"{self.description}: the log is closed")
            new_ids: list[str] = []
            start = self._known
            try:
                self._catch_up()  # most of what others wrote, before making them wait
                with self._flocked():
                    size = self._catch_up()
                    start = self._known
                    parts: list[bytes] = []
                    pos = size
                    if size > self._known:  # a fragment: its writer died mid-append
                        log.warning(
                            "%s: terminating a torn record at byte %d (%d bytes; its writer "
                            "died mid-append)",
                            self.description,
                            self._known,
                            size - self._known,
                        )
                        parts.append(b"\n")
                        pos += 1
                    results = []
                    in_call: set[str] = set()
                    for batch, blines in zip(batches, lines, strict=True):
                        stored = 0
                        for r, line in zip(batch, blines, strict=True):
                            eid = r["event_id"]
                            if eid in in_call or eid in self._ids:
                                continue
                            in_call.add(eid)
                            new_ids.append(eid)
                            parts += (line, b"\n")
                            pos += len(line) + 1
                            stored += 1
                        results.append(AppendResult(stored, len(batch) - stored, str(pos)))
                    if self.dedup_window:
                        for eid in new_ids:
                            self._remember(eid)
                    self._write_all(b"".join(parts))
                    self._known = pos
                # outside the flock: the next process's write need not wait for our fsync;
                # always, even if nothing was new: a duplicate may be another process's record
                # that its writer has not fsync'd yet
                os.fsync(self._fd)
            except OSError as e:
                # forget this call's ids and re-read from before it: what did reach the file
                # is indexed again by the next catch-up, a torn rest is terminated
                self._forget(new_ids)
                self._known = min(self._known, start)
                raise LogUnavailable(f"{self.description}: append failed: {e}") from e
        return results

    def read(self, after: Position | None, limit: int) -> ReadResult:
        """See :meth:`EventLogBackend.read`. ``after``: a byte offset returned by this log
        (a malformed one raises :class:`~mlsd.errors.DataError`); ``limit`` < 1 reads nothing."""
        start = _parse_offset(after)
        if self._fd < 0:
            raise LogUnavailable(f"{self.description}: the log is closed")
        try:
            return _read_fd(self._fd, self.description, start, limit)
        except OSError as e:
            raise LogUnavailable(f"{self.description}: read failed: {e}") from e

    def end(self) -> Position:
        """The byte offset just after the last complete line now."""
        try:
            return str(self._line_end(os.fstat(self._fd).st_size))
        except OSError as e:
            raise LogUnavailable(f"{self.description}: {e}") from e

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> FileEventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
