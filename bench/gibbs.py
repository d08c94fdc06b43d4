"""Sampler speed, measured side by side with what it competes against.

    python bench/gibbs.py            # all three targets
    python bench/gibbs.py --quick    # fewer repetitions

1. One block-Gibbs sweep of the 784x500 RBM over 100 chains (float32) against
   the two matrix products a sweep needs (numpy/BLAS, same process): target <= 1.5x.
2. Site updates per second on a 256x256 Ising lattice: target >= 50 million per core.
3. Cold `gdsl compile` + first sample of models/rbm.gdl (< 10 s) and loading it
   again from the cache (< 1 s), each in a fresh process.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from common import median_time, set_blas_threads  # noqa: E402  (bench/ is on sys.path when run as a script)

set_blas_threads(sys.argv)

import numpy as np  # noqa: E402

import gdsl  # noqa: E402


def rbm_sweep(repeats: int) -> None:
    m = gdsl.load(ROOT / "models" / "rbm.gdl", seed=0)
    n, steps = 100, 20
    st = m.random_state(n)
    masks = m._masks({}, n)
    args = m.kernel_args(st)
    gibbs = m.KERNELS["gibbs"]
    mask_args = [masks[g] for g in m.group_names]
    rng = m._streams(n)
    gibbs(*args, *mask_args, True, True, rng, 1)  # compile

    sweep = median_time(lambda: gibbs(*args, *mask_args, True, True, rng, steps), repeats) / steps
    api = median_time(lambda: m.gibbs(st, steps=1), repeats)

    W = m.params["W"]
    V = st["v"]
    H = st["h"]

    def products():
        np.dot(V, W)
        np.dot(H, W.T)

    products()
    mm = median_time(lambda: [products() for _ in range(steps)], repeats) / steps
    print(f"RBM 784x500, 100 chains, float32: sweep {sweep * 1e3:.3f} ms (in-kernel median), "
          f"two matrix products {mm * 1e3:.3f} ms -> ratio {sweep / mm:.2f} (target <= 1.5)")
    print(f"  one sweep through the Python API m.gibbs(state, 1): {api * 1e3:.3f} ms "
          f"(ratio {api / mm:.2f}, includes input validation and copies)")


def lattice(repeats: int) -> None:
    m = gdsl.load(ROOT / "models" / "ising.gdl", n=256, m=256, seed=0)
    st = m.random_state(1)
    masks = m._masks({}, 1)
    gibbs = m.KERNELS["gibbs"]
    rng = m._streams(1)
    args = m.kernel_args(st)
    gibbs(*args, masks["s"], True, rng, 1)
    steps = 50
    t = median_time(lambda: gibbs(*args, masks["s"], True, rng, steps), repeats)
    rate = 256 * 256 * steps / t
    print(f"Ising 256x256, 1 chain: {rate / 1e6:.1f} million site updates/s on one core (target >= 50)")


def cold_and_warm() -> None:
    code = ("import time; t=time.perf_counter(); import gdsl; "
            "m = gdsl.load({path!r}, seed=0); s = m.sample(10, steps=1); "
            "print(f'{{time.perf_counter()-t:.3f}}')")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, GDSL_CACHE_DIR=cache)
        cmd = [sys.executable, "-c", code.format(path=str(ROOT / "models" / "rbm.gdl"))]
        cold = float(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout)
        warm = [float(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout)
                for _ in range(3)]
    print(f"models/rbm.gdl: cold compile + first sample {cold:.2f} s (target < 10); "
          f"from the cache {statistics.median(warm):.2f} s median of 3 (target < 1), fresh processes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", default="1", help="BLAS threads for both sides (default 1: per-core numbers)")
    args = ap.parse_args()
    repeats = 5 if args.quick else 21
    print(f"BLAS threads: {os.environ['OPENBLAS_NUM_THREADS']}; medians of {repeats} runs")
    rbm_sweep(repeats)
    lattice(repeats)
    cold_and_warm()


if __name__ == "__main__":
    main()
