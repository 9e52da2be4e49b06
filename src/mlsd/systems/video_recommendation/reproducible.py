"""One thread per native thread pool, in this process and in pool workers, so that a seeded
run gives the same numbers however many cores the machine has and whatever else it runs.

The numeric libraries under the models each keep a thread pool: BLAS (OpenBLAS under numpy,
scipy and FAISS: EASE's Cholesky solve, the dense score products of EASE and ALS), OpenMP
(FAISS's k-means and search, torch's intra-op pool) and torch's own count. By default each
sizes its pool from the visible cores, and a parallel reduction sums its partial results in an
order that can follow the number of threads, so the last bits of a float, and through ties and
tuned hyperparameters a metric, could change with the machine. With one thread each the order
is fixed; the demo gets its parallelism from processes instead (this one and the pool
workers), and one thread per process also keeps two or three processes from oversubscribing
the cores.

LightGBM and the two-tower model take their thread counts as hyperparameters (the pipeline
sets 1); this module pins what no hyperparameter reaches.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager

from mlsd.errors import ConfigError

__all__ = ["NATIVE_THREADS", "pin_worker_threads", "pinned_threads"]

#: Threads per native pool in the demo's processes.
NATIVE_THREADS = 1

# Loaded before pinning: threadpoolctl limits only the libraries already in the process.
_NATIVE_MODULES = ("numpy", "scipy.linalg", "torch", "faiss", "lightgbm", "implicit.cpu.als")
# Read by OpenBLAS, MKL and OpenMP runtimes when they load; OpenMP also sizes the pools of
# threads started later from OMP_NUM_THREADS (its per-thread setting is copied from it).
_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _load_native_libraries() -> None:
    for name in _NATIVE_MODULES:
        importlib.import_module(name)


@contextmanager
def pinned_threads(n: int = NATIVE_THREADS) -> Iterator[None]:
    """Run a block with every BLAS and OpenMP pool of this process (threadpoolctl), torch's
    intra-op pool and FAISS's OpenMP limited to ``n`` threads (n >= 1); the previous settings
    are restored after. OpenMP's count is per thread: this pins the calling thread, the one
    that trains and evaluates."""
    if n < 1:
        raise ConfigError(f"threads n={n}: expected an integer >= 1")
    _load_native_libraries()
    import faiss
    import torch
    from threadpoolctl import threadpool_limits

    torch_prev, faiss_prev = torch.get_num_threads(), faiss.omp_get_max_threads()
    with threadpool_limits(limits=n):
        torch.set_num_threads(n)
        faiss.omp_set_num_threads(n)
        try:
            yield
        finally:
            faiss.omp_set_num_threads(faiss_prev)
            torch.set_num_threads(torch_prev)


def pin_worker_threads(n: int = NATIVE_THREADS) -> None:
    """Pool initializer (``multiprocessing.Pool(initializer=pin_worker_threads)``): the same
    limits as :func:`pinned_threads` for the whole life of a worker process, plus the
    environment variables, for runtimes loaded or threads started later in it."""
    if n < 1:
        raise ConfigError(f"threads n={n}: expected an integer >= 1")
    for var in _THREAD_ENV:
        os.environ[var] = str(n)
    _load_native_libraries()
    import faiss
    import torch
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)  # not restored: the worker ends with the pool
    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)
