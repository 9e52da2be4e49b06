"""Give freed memory back to the operating system between the stages of a long job.

Arrow allocates through mimalloc, which keeps freed pages for reuse: after a large log is
loaded and validated, most of the process's resident memory can be such pages rather than live
tables (docs/benchmarks.md, "Training at scale"). glibc keeps freed small blocks of NumPy's
temporaries in its heap the same way. Neither is a leak, but both count in the peak resident
memory a training job is held to, and a later stage that allocates through the other
allocator cannot reuse them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable

import pyarrow as pa

__all__ = ["release_memory"]


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


def release_memory() -> None:
    """Return the pages Arrow's memory pool and the C heap hold free to the OS. Cheap (tens of
    milliseconds); never raises."""
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
