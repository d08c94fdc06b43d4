"""Running each kind of work once on two rows, so numba compiles (and caches) its kernels:
shared by `gdsl warmup` (gdsl/warmup.py) and the background compile of the numpy tier
(runtime/background.py)."""
from __future__ import annotations

import time
import warnings

import numpy as np

WORK = ("sample", "mean-field", "free-energy", "fit", "ais", "log-prob", "multispin")


def warm_model(m, only=WORK, report=print) -> list[tuple[str, str, float]]:
    """warm_up on a model instance (its numba kernels: built with jit="numba")."""
    drawn = {}

    def rows() -> dict:  # two rows of the visible groups, drawn once for every kind of work
        if not drawn:  # (a sequence model draws two sequences of three steps)
            s = m.sample(2, length=3, k=1) if getattr(m, "STEPS", ()) else m.sample(2, steps=1)
            drawn.update({g: s[g] for g in m.visible})
        return drawn

    steps = {"sample": rows,
             "mean-field": lambda: m.mean_field(rows(), max_iter=2),
             "free-energy": lambda: m.free_energy(rows()),
             "fit": lambda: m.fit(rows(), epochs=1, batch_size=2, progress=False),
             "ais": lambda: m.log_partition(method="ais", runs=2, betas=np.linspace(0.0, 1.0, 3), workers=1),
             "log-prob": lambda: _log_prob(m, rows()),
             "multispin": lambda: _multispin(m)}
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


def _multispin(m):
    if getattr(m, "MULTISPIN", None) is None:  # sequence and directed models have no such sampler
        raise ValueError(getattr(m, "MULTISPIN_REFUSED", "") or "no lattice of uniform couplings")
    m.sample(2, steps=1, multispin=True)


def _log_prob(m, rows):
    # any log Z will do: what is compiled is the float64 free energy of the rows (or the directed
    # model's log-density); a log Z by enumeration can be out of reach at the default sizes
    if getattr(m, "ALL_GROUPS", ()):
        m.log_prob(rows)
    else:
        m.log_prob(rows, log_z=0.0)
