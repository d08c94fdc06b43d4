"""AIS accuracy: forward and reverse AIS against exact log Z, on models where log Z is exact.

    python bench/ais_accuracy.py            # about 30 s (a few minutes more the first time: numba compiles)
    python bench/ais_accuracy.py --quick    # the small models only

1. Every shipped undirected model small enough to enumerate (binary, Gaussian, DBM,
   general Boltzmann machine, softmax RBM, three-way, Ising), trained 10 PCD epochs on
   scikit-learn's digits averaged to 4x4 pixels (training first: with small random weights
   log Z is close to the base model's and any estimator looks right). AIS with 3,001
   linear temperatures and 100 runs from the base-rate model, forward and reverse (from
   data), against the exact log Z.
2. A 784 x 20 RBM trained 5 PCD epochs on 10,000 binarised MNIST images: exact log Z by
   summing the 2^20 hidden states, against AIS with the default (~14,500-temperature)
   schedule and 100 runs, forward and reverse.

Prints each estimate, its standard deviation (log domain), its error and the error in
standard deviations, so a reader can see whether the errors are the estimator's noise.
tests/test_ais.py asserts the same comparisons with tolerances; this prints the figures.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common import set_blas_threads

set_blas_threads(sys.argv)

import numpy as np  # noqa: E402  (after the BLAS thread setting)
from sklearn.datasets import load_digits  # noqa: E402

import gdsl  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
DATA = ROOT.parent / "shared" / "data" / "binarized_mnist.npz"

# model, sizes, the data it is fitted to (from the 4x4 digits), PCD learning rate
SMALL = [
    ("rbm", dict(nv=16, nh=8), lambda d: {"v": d["binary"]}, 0.05),
    ("grbm", dict(nv=16, nh=8), lambda d: {"v": d["real"]}, 0.02),
    ("dbm", dict(nv=16, n1=6, n2=4), lambda d: {"v": d["binary"]}, 0.05),
    ("bm", dict(nv=16, nh=4), lambda d: {"v": d["binary"]}, 0.05),
    ("softmax_rbm", dict(nv=16, nh=8, k=10), lambda d: {"v": d["binary"], "y": d["labels"]}, 0.05),
    ("threeway", dict(nx=8, ny=8, nh=4), lambda d: {"x": d["binary"][:, :8], "y": d["binary"][:, 8:]}, 0.05),
    ("ising", dict(n=4, m=4), lambda d: {"s": 2 * d["binary"].reshape(-1, 4, 4) - 1}, 0.01),
]


def digits_4x4() -> dict:
    digits = load_digits()
    small = digits.data.reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(-1, 16)
    return {
        "binary": (small > 7).astype(np.float32),
        "real": ((small - small.mean(0)) / (small.std(0) + 1e-3)).astype(np.float32),
        "labels": np.eye(10, dtype=np.float32)[digits.target],
    }


def compare(label: str, m, data, exact: float, betas) -> None:
    """One line per direction: estimate ± sd, error, error / sd, seconds."""
    for method in ("ais", "reverse-ais"):
        t = time.perf_counter()
        est = m.log_partition(method, runs=100, data=data, betas=betas)
        seconds = time.perf_counter() - t
        error = est.log_z - exact
        print(f"| {label} | {method} | {exact:.4f} | {est.log_z:.4f} ± {est.sd:.4f} | {error:+.4f} "
              f"| {error / est.sd:+.1f} | {seconds:.1f} |", flush=True)


def small_models() -> None:
    data = digits_4x4()
    for name, sizes, select, lr in SMALL:
        m = gdsl.load(MODELS / f"{name}.gdl", seed=0, **sizes)
        fitted = select(data)
        m.fit(fitted, method="pcd", lr=lr, epochs=10, batch_size=20, progress=False, monitor=None)
        compare(name, m, fitted, m.log_partition(), np.linspace(0, 1, 3001))


def mnist_784x20() -> None:
    if not DATA.exists():
        print(f"(no {DATA}: the 784 x 20 RBM is skipped)")
        return
    x = np.load(DATA)["train"][:10000].astype(np.float32)
    m = gdsl.load(MODELS / "rbm.gdl", nh=20, seed=0)
    m.fit({"v": x}, method="pcd", lr=0.05, epochs=5, batch_size=100, progress=False, monitor=None)
    exact = m.log_partition(max_states=2 ** 20)
    compare("rbm 784x20, MNIST", m, {"v": x}, exact, None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the small models only")
    ap.add_argument("--threads", default="1", help="BLAS threads (read before numpy loads)")
    args = ap.parse_args()
    print("| model | direction | exact log Z | AIS log Z ± sd | error | error / sd | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    small_models()
    if not args.quick:
        mnist_784x20()


if __name__ == "__main__":
    main()
