"""The mean-covariance RBM on real-valued data: training, test log-likelihood by AIS, speed.

    python bench/mcrbm.py                        # scikit-learn's digits, as bench/ssrbm.py
    python bench/mcrbm.py --epochs 200 --nf 64 --nc 32 --nm 64

The same data and split as bench/ssrbm.py (51 varying pixels of the 8x8 digits, standardised;
1,400 train / 397 test). PCD-1 with momentum; then log Z by AIS (100 runs, the standard
schedule, base fitted to the training data; v is summed out analytically along the way, with
the log determinant of its precision) and the exact free energy of each test image (hc and hm
summed out). Independent Gaussians per pixel and a Gaussian-Bernoulli RBM with as many
mean units (models/grbm.gdl, sigma 1) trained the same way are printed for scale.

Speed: one Gibbs sweep over 100 chains (the per-chain precision matrix and its Cholesky
factor included), median of 5.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import gdsl  # noqa: E402
from ssrbm import digits  # noqa: E402


def train_and_score(m, train, test, args) -> tuple:
    """Test log-likelihood with forward AIS (a lower bound on average) and with reverse AIS from
    the training data (an upper bound on average), log Z, its sd, training seconds."""
    t = time.perf_counter()
    m.fit({"v": train}, method="pcd", lr=args.lr, epochs=args.epochs, batch_size=50, momentum=0.5, progress=False)
    seconds = time.perf_counter() - t
    est = m.log_partition(method="ais", runs=100, data={"v": train})
    rev = m.log_partition(method="reverse-ais", runs=100, data={"v": train})
    free = -m.free_energy({"v": test})
    return float(np.mean(free) - est.log_z), float(np.mean(free) - rev.log_z), est.log_z, est.sd, seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--nf", type=int, default=64)
    ap.add_argument("--nc", type=int, default=64)
    ap.add_argument("--nm", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.005)
    args = ap.parse_args()
    train, test = digits()
    nv = train.shape[1]
    m = gdsl.load(ROOT / "models" / "mcrbm.gdl", nv=nv, nf=args.nf, nc=args.nc, nm=args.nm, seed=0)
    ll, rll, log_z, sd, seconds = train_and_score(m, train, test, args)
    g = gdsl.load(ROOT / "models" / "grbm.gdl", nv=nv, nh=args.nm, sigma=1.0, seed=0)
    gll, grll, glog_z, gsd, gseconds = train_and_score(g, train, test, args)
    mu, var = train.mean(0), train.var(0)
    gauss = float(np.mean(-0.5 * (((test - mu) ** 2) / var + np.log(2 * np.pi * var)).sum(1)))
    st = m.random_state(100)
    m.gibbs(st, steps=1)
    sweeps = []
    for _ in range(5):
        t = time.perf_counter()
        st = m.gibbs(st, steps=1)
        sweeps.append(time.perf_counter() - t)
    print(f"digits ({nv} varying pixels, standardised), PCD-1 lr {args.lr}, momentum 0.5, {args.epochs} epochs, "
          "batch 50")
    print("| model | train time | log Z (AIS) | test log p(v) | with reverse-AIS log Z |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| mcRBM {nv}-{args.nf} factors-{args.nc} cov-{args.nm} mean | {seconds:.0f} s | {log_z:.2f} +- {sd:.2f} "
          f"| {ll:.2f} | {rll:.2f} |")
    print(f"| GRBM {nv}-{args.nm} (sigma 1) | {gseconds:.0f} s | {glog_z:.2f} +- {gsd:.2f} | {gll:.2f} | {grll:.2f} |")
    print(f"| independent Gaussians | - | - | {gauss:.2f} | - |")
    print(f"one mcRBM Gibbs sweep, 100 chains: {statistics.median(sweeps) * 1e3:.1f} ms (median of 5)")


if __name__ == "__main__":
    main()
