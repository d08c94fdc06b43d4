"""The spike-and-slab RBM on real-valued data: training, test log-likelihood, and how much faster
the blocked Gibbs scheme mixes than the three-block one.

    python bench/ssrbm.py                  # scikit-learn's digits, 8x8, standardised per pixel
    python bench/ssrbm.py --epochs 200 --nh 100

Data: the 1,797 digits scaled to [0, 1], the pixels whose training standard deviation is
below 0.05 dropped (51 of 64 remain), then each centred and divided by (its standard deviation
+ 0.1); 1,400 images train, 397 test. The test log-likelihood uses log Z by AIS (100
runs, the standard schedule, base fitted to the training data) and the exact free energy of
each test image (h and s summed out together, pair by pair). For scale, the same numbers for
independent Gaussians per pixel (the training mean and variance) are printed.

Mixing: 500 chains from the trained model, started at test images; the integrated
autocorrelation time of the energy, per sweep, under the blocked scheme (`gibbs`) and under the
three-block sweep (`gibbs_tempered` at beta = 1, what AIS uses), after 100 sweeps of burn-in.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import gdsl  # noqa: E402


def digits():
    from sklearn.datasets import load_digits

    x = load_digits().data.astype(np.float32) / 16.0
    order = np.random.default_rng(0).permutation(len(x))
    x = x[order]
    x = x[:, x[:1400].std(0) > 0.05]  # pixels that are (nearly) constant have no density to model
    x = (x - x[:1400].mean(0)) / (x[:1400].std(0) + 0.1)
    return x[:1400], x[1400:]


def autocorrelation_time(series: np.ndarray, lags: int = 50) -> float:
    """1 + 2 sum of the autocorrelations of a (steps, chains) series, up to the first negative one."""
    x = series - series.mean(0)
    var = (x * x).mean()
    tau = 1.0
    for k in range(1, lags):
        r = (x[k:] * x[:-k]).mean() / var
        if r < 0:
            break
        tau += 2 * r
    return tau


def spike_series(m, start, sweeps, blocked: bool) -> np.ndarray:
    st = {g: np.array(v) for g, v in start.items()}
    n = len(st["v"])
    out = np.empty((sweeps, n))
    if blocked:
        for t in range(sweeps):
            st = m.gibbs(st, steps=1)
            out[t] = m.energy(st)
        return out
    masks = m._masks({}, n)
    rng = m._streams(n)
    bases = {g: (np.zeros(int(np.prod(m.shape(g))), m.dtype), np.zeros(int(np.prod(m.shape(g))), m.dtype))
             for g in m.group_names}
    st = {g: np.ascontiguousarray(v, m.dtype) for g, v in st.items()}
    for t in range(sweeps):
        m.call("gibbs_tempered", state=st, masks=masks, free={g: True for g in m.group_names}, bases=bases,
               beta=1.0, rng=rng)
        out[t] = m.energy(st)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--nh", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args()
    train, test = digits()
    m = gdsl.load(ROOT / "models" / "ssrbm.gdl", nv=train.shape[1], nh=args.nh, seed=0)
    t = time.perf_counter()
    m.fit({"v": train}, method="pcd", lr=args.lr, epochs=args.epochs, batch_size=50, momentum=0.5,
          progress=False)
    seconds = time.perf_counter() - t
    t = time.perf_counter()
    est = m.log_partition(method="ais", runs=100, data={"v": train})
    ais_seconds = time.perf_counter() - t
    ll = m.log_prob({"v": test}, log_z=est.log_z)
    mu, var = train.mean(0), train.var(0)
    gauss = -0.5 * (((test - mu) ** 2) / var + np.log(2 * np.pi * var)).sum(1)
    print(f"ssRBM {train.shape[1]}-{args.nh}, digits standardised, PCD-1 lr {args.lr}, {args.epochs} epochs, batch 50: "
          f"{seconds:.0f} s")
    print(f"  log Z (AIS, 100 runs) {est.log_z:.2f} +- {est.sd:.2f} ({ais_seconds:.0f} s)")
    print(f"  test log p(v): ssRBM {ll.mean():.2f} nats, independent Gaussians {gauss.mean():.2f} nats")
    start = m.sample(500, steps=1, clamp={"v": test[np.arange(500) % len(test)]})
    for blocked in (True, False):
        series = spike_series(m, start, 400, blocked)
        tau = autocorrelation_time(series[100:])
        print(f"  {'blocked (h with s summed out, then s)' if blocked else 'three blocks {v} | {h} | {s}'}: "
              f"autocorrelation time of the energy {tau:.1f} sweeps")


if __name__ == "__main__":
    main()
