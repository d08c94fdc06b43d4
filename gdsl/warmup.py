"""`gdsl warmup`: compile a model's kernels ahead of use, so a later process compiles nothing.

numba compiles a kernel on its first call and writes it to its on-disk cache beside the
module (in gdsl's cache directory); a later process loads it from there. Warming up runs each
kind of work once on two rows at the model's default sizes: the kernels are the same at any
size (sizes are arguments), so the real run finds them all in the cache. For images and CI
machines: run it once after installing, with the same GDSL_CACHE_DIR as the real runs.
"""
from __future__ import annotations

from .runtime.warming import WORK, warm_model


def warm_up(path, dtype: str | None = None, only=WORK, report=print) -> list[tuple[str, str, float]]:
    """Run each kind of work in `only` once on `path`'s model; return (work, outcome, seconds) per kind.

    An outcome is "compiled" or why the work does not apply to this model (a ValueError's text)."""
    from . import load

    return warm_model(load(path, seed=0, dtype=dtype, jit="numba"), only, report)
