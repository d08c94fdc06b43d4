"""The numpy side of the NADE log-likelihood benchmark: hand-vectorised numpy NADE
(tests/directed_reference.nade_logp_numpy) on 10,000 binarized-MNIST rows, 784x500 model.

    python bench/nade_numpy.py [--threads N] [--repeats 5]

Prints the median of `repeats` runs in seconds for float64 and float32, with the default
update (rank-1 update only on rows with x_i = 1) and with the dense rank-1 update.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from common import median_time, set_blas_threads  # noqa: E402

set_blas_threads(sys.argv)   # before numpy; a no-op for variables already set by an importer

import numpy as np  # noqa: E402

from directed_reference import nade_logp_numpy  # noqa: E402,F401  (re-exported)

DATA = ROOT.parent / "shared" / "data" / "binarized_mnist.npz"
N_ROWS, NH = 10_000, 500


def nade_params(d: int = 784, nh: int = NH, seed: int = 0) -> dict:
    """A random NADE: W, V ~ normal(0, 0.01) (as in models/nade.gdl), zero biases."""
    rng = np.random.default_rng(seed)
    return {"W": rng.normal(0.0, 0.01, (nh, d)), "V": rng.normal(0.0, 0.01, (d, nh)),
            "b": np.zeros(d), "c": np.zeros(nh)}


def load_rows(n: int = N_ROWS) -> np.ndarray:
    """The first n rows of the binarized-MNIST test split, uint8 0/1 [n, 784]."""
    return np.load(DATA)["test"][:n]


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    repeats = int(argv[argv.index("--repeats") + 1]) if "--repeats" in argv else 5
    x, params = load_rows(), nade_params()
    threads = set_blas_threads(argv)
    print(f"numpy NADE 784x{NH}, {len(x)} rows, BLAS threads {threads}, median of {repeats}")
    for dtype in (np.float64, np.float32):
        xd = x.astype(dtype)
        for skip in (True, False):
            ll = nade_logp_numpy(params, xd, dtype=dtype, skip_zeros=skip)
            t = median_time(lambda: nade_logp_numpy(params, xd, dtype=dtype, skip_zeros=skip), repeats)
            update = "sparse rank-1" if skip else "dense rank-1 "
            print(f"  {np.dtype(dtype).name:8s} {update}: {t:7.3f} s   (mean log p = {ll.mean():.4f})")


if __name__ == "__main__":
    main()
