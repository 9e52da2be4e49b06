"""The readers-writer lock the Recommender serves under."""

from __future__ import annotations

import threading
import time

import pytest

from mlsd.concurrency import ReadWriteLock


def test_readers_overlap() -> None:
    lock = ReadWriteLock()
    inside, most = 0, 0
    guard = threading.Lock()
    barrier = threading.Barrier(3)

    def reader() -> None:
        nonlocal inside, most
        with lock.read():
            with guard:
                inside += 1
                most = max(most, inside)
            barrier.wait(timeout=5)  # all three hold the read lock at once, or this times out
            with guard:
                inside -= 1

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert most == 3


def test_a_writer_excludes_readers_and_a_waiting_writer_goes_before_new_readers() -> None:
    lock = ReadWriteLock()
    log: list[str] = []
    reading = threading.Event()
    release = threading.Event()

    def first_reader() -> None:
        with lock.read():
            reading.set()
            release.wait(5)
            log.append("reader 1 done")

    def writer() -> None:
        with lock.write():
            log.append("writer")

    def late_reader() -> None:
        with lock.read():
            log.append("reader 2")

    r1 = threading.Thread(target=first_reader)
    r1.start()
    reading.wait(5)
    w = threading.Thread(target=writer)
    w.start()
    time.sleep(0.05)  # the writer is now waiting on reader 1
    r2 = threading.Thread(target=late_reader)
    r2.start()
    time.sleep(0.05)
    assert log == []  # the writer waits for reader 1; reader 2 waits behind the writer
    release.set()
    for t in (r1, w, r2):
        t.join(5)
    assert log == ["reader 1 done", "writer", "reader 2"]


def test_reentrant_reads_and_writes_and_no_upgrade() -> None:
    lock = ReadWriteLock()
    with lock.write(), lock.read(), lock.write():
        pass
    with lock.read():
        with lock.read():
            pass
        with pytest.raises(RuntimeError, match="upgrade"), lock.write():
            pass
    done = threading.Event()

    def writer() -> None:  # everything above released the lock
        with lock.write():
            done.set()

    t = threading.Thread(target=writer)
    t.start()
    t.join(5)
    assert done.is_set()
