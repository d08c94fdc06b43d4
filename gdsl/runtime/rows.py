"""Row-parallel kernel calls: the chains (rows) of one call cut into contiguous parts, one thread each.

Every energy kernel treats the rows of its arrays independently (each chain has its own random
stream, drawn before the call), and releases the GIL, so parts run at once on the machine's
cores. The streams are drawn for all rows before the cut, so a chain's draws do not depend on
which part it is in; only BLAS's rounding can (products over fewer rows may add in another
order), so results are reproducible for a given thread count. `threads` defaults to
$GDSL_THREADS, else every core; a part has at least MIN_ROWS rows (fewer is not worth a thread).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

MIN_ROWS = 32


def default_threads() -> int:
    value = os.environ.get("GDSL_THREADS", "")
    if value.strip().isdigit() and int(value) >= 1:
        return int(value)
    return os.cpu_count() or 1


def spans(n: int, threads: int, min_rows: int = MIN_ROWS) -> list[tuple[int, int]]:
    """Contiguous [a, b) row ranges, as equal as can be, at most `threads`, each of min_rows or more."""
    parts = max(1, min(threads, n // min_rows))
    bounds = [n * k // parts for k in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def cut(value, a: int, b: int):
    """Rows a:b of an array, or of every array of a per-group dict (views: kernels write through them)."""
    if isinstance(value, dict):
        return {k: cut(v, a, b) for k, v in value.items()}
    return value[a:b]


def call_by_rows(call, n: int, threads: int, rowwise: dict, shared: dict) -> list:
    """call(**rows a:b of `rowwise`, **shared) for each part; the results in order of the parts."""
    return in_parts(lambda a, b: call(**{k: cut(v, a, b) for k, v in rowwise.items()}, **shared), n, threads)


def in_parts(run, n: int, threads: int, min_rows: int = MIN_ROWS) -> list:
    """run(a, b) for each part [a, b) of the n rows (spans), one thread each; the results in
    order of the parts.

    While the parts run, BLAS keeps to one thread of its own: with its threads on top of ours
    the cores are oversubscribed (2 parts with 2 BLAS threads each ran a 784 x 500 sweep 1.8x
    slower than one part; with one BLAS thread each, 1.7x faster)."""
    return run_parts(run, spans(n, threads, min_rows))


def run_parts(run, parts: list) -> list:
    """run(*part) for each part, one thread each (BLAS held to one thread meanwhile, as in_parts
    says); a single part runs here. The results in order of the parts."""
    if len(parts) == 1:
        return [run(*parts[0])]
    with _one_blas_thread(), ThreadPoolExecutor(max_workers=len(parts)) as pool:
        futures = [pool.submit(run, *part) for part in parts]
        return [f.result() for f in futures]


_CONTROLLERS = {}


def one_blas_thread_if(condition: bool):
    """_one_blas_thread() when `condition`, else a context that changes nothing."""
    import contextlib

    return _one_blas_thread() if condition else contextlib.nullcontext()


def _one_blas_thread():
    """A context in which the BLAS libraries loaded in this process use one thread (threadpoolctl).

    The controller lists the libraries loaded when it is made, so it is made again once scipy's
    BLAS has been loaded (numba's np.dot calls it through scipy.linalg.cython_blas): one made before
    limited numpy's BLAS only, and the kernels' products kept two threads each."""
    import sys

    from threadpoolctl import ThreadpoolController

    key = "scipy.linalg.cython_blas" in sys.modules
    if key not in _CONTROLLERS:
        _CONTROLLERS[key] = ThreadpoolController()
    return _CONTROLLERS[key].limit(limits=1, user_api="blas")
