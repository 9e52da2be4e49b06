"""Where model calls run, and with how many kernel threads."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from mlsd.serving.model_calls import ModelCalls

_PROBE = """
import json, faiss, numpy, threadpoolctl
from mlsd.serving.model_calls import single_threaded_kernels
single_threaded_kernels()
blas = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
print(json.dumps({"blas": blas, "faiss": faiss.omp_get_max_threads()}))
"""


def test_single_threaded_kernels_limits_blas_for_the_process_and_openmp_here() -> None:
    # a serving process must not leave NumPy's OpenBLAS with a second thread: it spins after
    # every small product (measured: over half a core per worker under the mixed load).
    # In a child, since the BLAS limit is process-wide.
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["blas"] and set(got["blas"]) == {1}
    assert got["faiss"] == 1


def test_model_calls_run_in_place_or_on_the_pool() -> None:
    import threading

    here = threading.get_ident()

    async def go(calls: ModelCalls) -> int:
        return await calls(threading.get_ident)

    assert asyncio.run(go(ModelCalls(0))) == here
    assert asyncio.run(go(ModelCalls(1))) != here
    with pytest.raises(ValueError, match="model_threads -1"):
        ModelCalls(-1)
