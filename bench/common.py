"""Shared by the benchmark scripts. Imported before numpy: BLAS threads are fixed at load time."""
from __future__ import annotations

import os
import statistics
import time


def set_blas_threads(argv) -> str:
    """Pin BLAS (and numba) threads from `--threads N` (default 1) before numpy is imported,
    so both sides of a ratio run with the same setting."""
    threads = argv[argv.index("--threads") + 1] if "--threads" in argv else "1"
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(var, threads)
    return os.environ["OPENBLAS_NUM_THREADS"]


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)
