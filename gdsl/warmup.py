"""`gdsl warmup`: compile a model's kernels ahead of use, so a later process compiles nothing.

numba compiles a kernel on its first call and writes it to its on-disk cache beside the
module (in gdsl's cache directory); a later process loads it from there. Warming up runs each
kind of work once on two rows at the model's default sizes: the kernels are the same at any
size (sizes are arguments), so the real run finds them all in the cache. For images and CI
machines: run it once after installing, with the same GDSL_CACHE_DIR as the real runs.
"""
from __future__ import annotations

import time
import warnings

import numpy as np

WORK = ("sample", "mean-field", "free-energy", "fit", "ais", "log-prob")


def warm_up(path, dtype: str | None = None, only=WORK, report=print) -> list[tuple[str, str, float]]:
    """Run each kind of work in `only` once on `path`'s model; return (work, outcome, seconds) per kind.

    An outcome is "compiled" or why the work does not apply to this model (a ValueError's text)."""
    from . import load

    m = load(path, seed=0, dtype=dtype)
    steps = {"sample": lambda: m.sample(2, steps=1),
             "mean-field": lambda: _mean_field(m),
             "free-energy": lambda: _free_energy(m),
             "fit": lambda: _fit(m),
             "ais": lambda: _ais(m),
             "log-prob": lambda: _log_prob(m)}
    done = []
    for work in only:
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # two rows give poor estimates: not the point here
                steps[work]()
            outcome = "compiled"
        except (ValueError, NotImplementedError, AttributeError) as e:
            outcome = f"does not apply: {str(e).splitlines()[0][:100]}"
        seconds = time.perf_counter() - start
        done.append((work, outcome, seconds))
        if report is not None:
            report(f"  {work:<12} {seconds:6.1f} s  {outcome}")
    return done


def _visible_rows(m) -> dict:
    drawn = m.sample(2, steps=1)
    return {g: drawn[g] for g in m.visible}


def _mean_field(m):
    m.mean_field(_visible_rows(m), max_iter=2)


def _free_energy(m):
    m.free_energy(_visible_rows(m))


def _fit(m):
    m.fit(_visible_rows(m), epochs=1, batch_size=2, progress=False)


def _ais(m):
    m.log_partition(method="ais", runs=2, betas=np.linspace(0.0, 1.0, 3), workers=1)


def _log_prob(m):
    # any log Z will do: what is compiled is the float64 free energy of the rows (or the directed
    # model's log-density); a log Z by enumeration can be out of reach at the default sizes
    if getattr(m, "ALL_GROUPS", ()):
        m.log_prob(_visible_rows(m))
    else:
        m.log_prob(_visible_rows(m), log_z=0.0)
