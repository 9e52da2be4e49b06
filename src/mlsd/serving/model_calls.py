"""Where the service runs model calls: a small dedicated thread pool, or the event loop itself.

The model's numpy, LightGBM, FAISS and torch work releases the GIL, so with a pool two requests
overlap on two cores; with no pool (``threads=0``) a call runs on the event loop, which saves
the hop to a thread and back for a model that answers quickly. FastAPI's own thread pool (large,
shared with every sync handler and dependency) is not used for model calls either way.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

DEFAULT_MODEL_THREADS = 2
T = TypeVar("T")


def single_threaded_kernels() -> None:
    """One thread for FAISS, torch and OpenMP kernels (LightGBM's too) in the calling thread,
    and for BLAS in the whole process: OpenMP's thread count is per thread, so the service
    calls this in every thread that runs model code (model threads, the event tailer, the
    event loop with ``threads=0``); BLAS's is per process.

    Why: a request is one query, whose kernels are too small to split; parallelism comes from
    request threads and worker processes instead, and extra kernel threads only spin, taking
    CPU from the other requests. NumPy's OpenBLAS was the worst: its second thread busy-waits
    for work after each small product, over half a core per worker under a steady load.
    Only for serving processes: training wants every core.
    """
    import faiss
    import torch
    from threadpoolctl import threadpool_limits

    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    threadpool_limits(1, user_api="openmp")  # this thread (OpenMP counts are per thread)
    threadpool_limits(1, user_api="blas")  # the process


class ModelCalls:
    """Runs model calls on ``threads`` dedicated threads (each with single-threaded kernels),
    or, with ``threads=0``, directly on the calling event loop."""

    def __init__(self, threads: int) -> None:
        if threads < 0:
            raise ValueError(f"model_threads {threads}; expected >= 0")
        self.threads = threads
        self._pool = (
            ThreadPoolExecutor(threads, "mlsd-model", initializer=single_threaded_kernels)
            if threads
            else None
        )

    async def __call__(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``, awaited on the pool (or run in place without one)."""
        if self._pool is None:
            return fn(*args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, functools.partial(fn, *args, **kwargs)
        )
