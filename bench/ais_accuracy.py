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
The models, data and training are tests/test_ais.py's (imported, so the two cannot drift);
the tests assert these comparisons with tolerances, this prints the figures.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common import set_blas_threads

set_blas_threads(sys.argv)

import numpy as np  # noqa: E402  (after the BLAS thread setting)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the models and data of tests/test_ais.py, not copies

from small_data import digits_4x4  # noqa: E402
from test_ais import CASES, MNIST, fit_case, fit_mnist_784x20  # noqa: E402


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
    digits = digits_4x4()
    for case in CASES:
        m, data, exact = fit_case(*case, digits)
        compare(case[0], m, data, exact, np.linspace(0, 1, 3001))


def mnist_784x20() -> None:
    if not MNIST.exists():
        print(f"(no {MNIST}: the 784 x 20 RBM is skipped)")
        return
    x = np.load(MNIST)["train"][:10000].astype(np.float32)
    m, exact = fit_mnist_784x20(x)
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
