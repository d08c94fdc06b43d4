"""AIS speed: log Z of the 784 x 500 RBM by AIS (100 runs, the standard ~14,500 temperatures)
with gdsl and with the same algorithm written in numpy, in one process (issue 24's target:
under 20 s on this machine's cores).

    python bench/ais_speed.py                  # gdsl: 3 full runs; numpy: 1/10 of the schedule, scaled
    python bench/ais_speed.py --threads 1      # one core for both sides
    python bench/ais_speed.py --numpy-share 1  # numpy over the whole schedule too (about a minute a run)

The RBM is trained first (2 epochs of PCD-1 on 10,000 binarised MNIST images) so that the
chains look like a trained model's (sparse visible states, peaked hidden fields): timings on
random weights would flatter the zero-skipping products. Both sides run the textbook algorithm
(Salakhutdinov & Murray 2008): a base model of independent visible units at the data's
smoothed log-odds, h summed out in the weights, and at each temperature the weight from the
free energies at both ends of the step, then h ~ p_k(h | v), v ~ p_k(v | h). gdsl splits its
runs over `--threads` threads; numpy runs them together, its products with `--threads` BLAS
threads, in float32 like gdsl's, and its softplus sums in float64 like gdsl's. Prints the
median time of the full schedule, the per-temperature cost, the ratio, and both estimates (they
must agree within their spread).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common import load_average, set_blas_threads

THREADS = int(set_blas_threads(sys.argv))

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "binarized_mnist.npz"
RUNS = 100


def trained_rbm(train: np.ndarray):
    import gdsl

    m = gdsl.load(ROOT / "models" / "rbm.gdl", nv=784, nh=500, seed=0, jit="numba")
    m.fit({"v": train}, method="pcd", epochs=2, lr=0.05, batch_size=100, progress=False)
    return m


def gdsl_ais(m, data, betas) -> tuple[float, float]:
    t = time.perf_counter()
    est = m.log_partition("ais", runs=RUNS, betas=betas, data=data, workers=THREADS)
    return time.perf_counter() - t, est.log_z


def numpy_ais(W, b, c, data_v, betas, seed=0) -> tuple[float, float]:
    """The same AIS in numpy: float32 products, float64 log-weights."""
    rng = np.random.default_rng(seed)
    p = (data_v.sum(0) + 1.0) / (len(data_v) + 2.0)
    bf = (np.log(p) - np.log1p(-p)).astype(np.float32)  # the base-rate model's visible biases
    log_z0 = float(np.sum(np.logaddexp(0.0, bf))) + W.shape[1] * np.log(2.0)
    t = time.perf_counter()
    v = (rng.random((RUNS, W.shape[0])) < 1.0 / (1.0 + np.exp(-bf))).astype(np.float32)
    logw = np.zeros(RUNS)

    def log_p_star(field, bias_term, e0, beta):  # -F*_beta(v), h summed out
        return beta * bias_term + (1.0 - beta) * e0 + np.logaddexp(0.0, beta * field).sum(1)

    for k in range(1, len(betas)):
        lo, hi = betas[k - 1], betas[k]
        field = (v @ W + c).astype(np.float64)
        bias_term = v.astype(np.float64) @ b.astype(np.float64)
        e0 = v.astype(np.float64) @ bf.astype(np.float64)
        logw += log_p_star(field, bias_term, e0, hi) - log_p_star(field, bias_term, e0, lo)
        h = (rng.random(field.shape) < 1.0 / (1.0 + np.exp(-hi * field))).astype(np.float32)
        fv = hi * (h @ W.T + b) + (1.0 - hi) * bf
        v = (rng.random(fv.shape, dtype=np.float32) < 1.0 / (1.0 + np.exp(-fv))).astype(np.float32)
    seconds = time.perf_counter() - t
    top = logw.max()
    return seconds, float(log_z0 + top + np.log(np.mean(np.exp(logw - top))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1, help="threads for both sides (read before numpy loads)")
    ap.add_argument("--repeats", type=int, default=3, help="full gdsl runs (the median is reported)")
    ap.add_argument("--numpy-share", type=float, default=0.1,
                    help="the share of the schedule numpy runs (its time is scaled up to the whole)")
    a = ap.parse_args()
    from gdsl.runtime.ais import standard_schedule

    print(f"threads {THREADS}; load average at start {load_average()}")
    d = np.load(DATA)
    train, valid = d["train"][:10_000], d["valid"][:2_000]
    m = trained_rbm(train)
    data = {"v": valid}
    betas = standard_schedule()
    m.log_partition("ais", runs=RUNS, betas=standard_schedule(50), data=data, workers=THREADS)  # load kernels
    times, estimates = [], []
    for _ in range(a.repeats):
        seconds, log_z = gdsl_ais(m, data, betas)
        times.append(seconds)
        estimates.append(log_z)
        print(f"  gdsl: {seconds:.2f} s, log Z = {log_z:.3f}")
    count = max(2, int(round(len(betas) * a.numpy_share)))
    part = betas if count >= len(betas) else standard_schedule(count)
    P = {k: np.asarray(v, np.float32) for k, v in m.params.items()}
    np_seconds, np_log_z = numpy_ais(P["W"], P["b"], P["c"], valid.astype(np.float32), part)
    np_full = np_seconds * (len(betas) - 1) / (len(part) - 1)
    ours = float(np.median(times))
    print(f"  numpy: {np_seconds:.2f} s for {len(part)} temperatures -> {np_full:.1f} s for {len(betas)}"
          + (f" (log Z = {np_log_z:.3f})" if len(part) == len(betas) else
             f" (log Z = {np_log_z:.3f} with the shorter schedule)"))
    print(f"\nAIS, RBM 784 x 500, {RUNS} runs, {len(betas)} temperatures, {THREADS} thread(s):")
    print(f"  gdsl  {ours:6.2f} s (median of {len(times)}; {ours / (len(betas) - 1) * 1e3:.3f} ms per temperature)")
    print(f"  numpy {np_full:6.2f} s ({np_full / (len(betas) - 1) * 1e3:.3f} ms per temperature)")
    print(f"  numpy / gdsl: {np_full / ours:.1f}x")
    print(f"  target (issue 24): under 20 s: {'PASS' if ours < 20 else 'FAIL'} ({ours:.2f} s)")
    print(f"  gdsl's estimates: {', '.join(f'{z:.3f}' for z in estimates)}; load average at end {load_average()}")


if __name__ == "__main__":
    main()
