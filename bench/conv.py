"""Convolutional RBM sweep speed against the same convolutions done by scipy and numpy.

    python bench/conv.py                 # 5 repetitions, one thread
    python bench/conv.py --threads 2

models/conv_rbm.gdl at its MNIST size (28x28 images, 24 filters of 9x9, 2x2 pooling
blocks, so 20x20 detector positions per filter), 100 chains, float32. One block-Gibbs sweep
computes two convolutions per chain and filter: the detector fields (a "valid" correlation
of the image with each filter) and the visible field (a "full" convolution of each
detector map with its filter, summed over filters), then draws. The competitors compute
only those two convolutions, no draws, in the same process:

    scipy    scipy.signal.correlate2d / convolve2d per image and filter (direct sums)
    fft      scipy.signal.fftconvolve over the whole batch at once
    im2col   numpy: every 9x9 window as a row (sliding_window_view), then one BLAS product
             per direction

The issue's target: the sweep within 2x of the convolutions alone. Ratios are printed
against each competitor; the fastest is the one that counts.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import median_time, set_blas_threads  # noqa: E402

set_blas_threads(sys.argv)

import numpy as np  # noqa: E402
from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402
from scipy import signal  # noqa: E402

import gdsl  # noqa: E402

CHAINS = 100


def detector_maps(h: np.ndarray) -> np.ndarray:
    """(n, nk, np, np, 4) pooling blocks -> (n, nk, 2 np, 2 np) detector maps (4 = 2s + t)."""
    n, nk, npool = h.shape[:3]
    return h.reshape(n, nk, npool, npool, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, nk, 2 * npool, 2 * npool)


def scipy_direct(v, W, hmap):
    for i in range(len(v)):
        for k in range(len(W)):
            signal.correlate2d(v[i], W[k], mode="valid")
            signal.convolve2d(hmap[i, k], W[k], mode="full")


def scipy_fft(v, W, hmap):
    signal.fftconvolve(v[:, None], W[None, :, ::-1, ::-1], mode="valid", axes=(2, 3))
    signal.fftconvolve(hmap, W[None], mode="full", axes=(2, 3)).sum(1)


def numpy_im2col(v, W, hmap):
    nk, f = W.shape[0], W.shape[1]
    windows = sliding_window_view(v, (f, f), axis=(1, 2))  # (n, 20, 20, f, f)
    np.tensordot(windows, W, axes=([3, 4], [1, 2]))  # detector fields (n, 20, 20, nk)
    padded = np.pad(hmap, ((0, 0), (0, 0), (f - 1, f - 1), (f - 1, f - 1)))
    back = sliding_window_view(padded, (f, f), axis=(2, 3))  # (n, nk, 28, 28, f, f)
    np.tensordot(back, W[:, ::-1, ::-1], axes=([1, 4, 5], [0, 1, 2]))  # visible field (n, 28, 28)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", default="1")
    args = ap.parse_args()

    m = gdsl.load(ROOT / "models" / "conv_rbm.gdl", seed=0)
    m.params["W"] = np.random.default_rng(0).normal(0, 0.1, m.shape("W"))
    st = m.random_state(CHAINS)
    st = m.gibbs(st, steps=2)  # compiled, and a typical state
    sweep = median_time(lambda: m.gibbs(st, steps=1), args.repeats)
    ten = median_time(lambda: m.gibbs(st, steps=10), max(1, args.repeats // 2)) / 10

    v = np.ascontiguousarray(st["v"], np.float32)
    W = np.ascontiguousarray(m.params["W"], np.float32)
    hmap = np.ascontiguousarray(detector_maps(st["h"]), np.float32)
    print(f"conv RBM 28x28, 24 filters 9x9, 2x2 pooling, {CHAINS} chains, float32, "
          f"{args.threads} thread(s); medians of {args.repeats}")
    print(f"  gdsl sweep: {sweep * 1e3:.1f} ms (m.gibbs, 1 step); {ten * 1e3:.1f} ms per step over 10 steps")
    for name, fn in (("scipy", scipy_direct), ("fft", scipy_fft), ("im2col", numpy_im2col)):
        fn(v, W, hmap)
        t = median_time(lambda: fn(v, W, hmap), args.repeats)
        print(f"  {name:7s} the two convolutions: {t * 1e3:8.1f} ms -> gdsl sweep / {name} = {ten / t:.2f}")


if __name__ == "__main__":
    main()
