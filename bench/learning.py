"""Learning speed: gdsl's `fit` against scikit-learn's BernoulliRBM, same process, same data.

    python bench/learning.py            # both targets (a few minutes on one core)
    python bench/learning.py --quick    # fewer epochs and repetitions

1. PCD-1 on the 784x500 RBM (models/rbm.gdl), batch 100, float32, the 50,000 training
   images of ../shared/data/binarized_mnist.npz (read from disk, never downloaded):
   seconds per epoch for gdsl and for BernoulliRBM (target: gdsl >= 2x faster), and
   gdsl's epoch against the matrix products an epoch needs (target: <= 1.3x), i.e. for
   each minibatch the five products of BernoulliRBM._fit, timed with numpy on float32
   arrays of the same shapes and layouts:
       h_pos = sigmoid(v_pos W + c)            (B x nv)(nv x nh)   _mean_hiddens(v_pos)
       v_neg ~ sigmoid(h_chain W^T + b)        (B x nh)(nh x nv)   _sample_visibles(h_samples_)
       h_neg = sigmoid(v_neg W + c)            (B x nv)(nv x nh)   _mean_hiddens(v_neg)
       v_pos^T h_pos                           (nv x B)(B x nh)    weight gradient, data
       h_neg^T v_neg                           (nh x B)(B x nv)    weight gradient, model
   (the next persistent hidden sample is drawn from h_neg: no sixth product).
2. The digits RBM (64 visible, 64 hidden, batch 10) on sklearn's load_digits, binarised
   as data > 7 (grey levels 0..16): seconds per epoch, gdsl vs BernoulliRBM (target >= 5x).

Both learners are checked to learn: the pseudo-log-likelihood (one random bit flipped per
image, the same flips for both, computed here in numpy from each one's W, b, c, like
BernoulliRBM.score_samples) and the reconstruction error, before and after the same number
of epochs, so the speeds compared are those of working code.

How the two updates match (sklearn/neural_network/_rbm.py, BernoulliRBM._fit):
    h_pos = E[h | v_pos]                                  (means, not samples)
    v_neg ~ P(v | h_samples_)                             (persistent hidden samples)
    h_neg = E[h | v_neg]
    W += lr / B * (v_pos^T h_pos - v_neg^T h_neg)           (B = rows of the minibatch)
    c += lr / B * (sum h_pos - sum h_neg);  b += lr / B * (sum v_pos - sum v_neg)
    h_samples_ ~ Bernoulli(h_neg)
  gdsl's fit(method="pcd", k=1, chains=batch_size (the default), lr=learning_rate,
  momentum=0, weight_decay=0) runs, per minibatch, inside the compiled train_epoch:
    positive phase: mean_field with the data clamped -> h_pos = E[h | v_pos] (h factorises:
        one exact pass); energy_grad(alpha = 1/nb) adds -(1/nb) v_pos^T h_pos to g_W;
    negative phase: gibbs(k=1) on the persistent chains, block v then block h:
        v_neg ~ P(v | h_chain), h_chain ~ P(h | v_neg);
    Rao-Blackwellised statistics: h replaced by E[h | v_neg] = h_neg; energy_grad
        (alpha = -1/chains) adds +(1/chains) v_neg^T h_neg to g_W;
    step: v = momentum v - lr (g + decay W) = -lr g;  W += v.
  So with chains = batch_size = B, W += lr/B (v_pos^T h_pos - v_neg^T h_neg): the kernel
  already divides the summed statistics by the batch size, so lr is passed unchanged.
  Same for the biases; both draw W ~ N(0, 0.01) with zero biases.
  Remaining differences (none changes the cost of an update):
  - gdsl visits the minibatches in a fresh random order each epoch (BernoulliRBM: the
    same consecutive slices every epoch);
  - gdsl's persistent chains start from random bits (BernoulliRBM: h_samples_ = 0);
  - the next persistent h: BernoulliRBM draws it from h_neg (the same conditional)
    instead of in a separate Gibbs half-step; the distribution is the same;
  - random numbers: xoroshiro128+ per chain (gdsl) vs RandomState.uniform (float64);
  - on a last, short minibatch (digits: 1797 = 179 x 10 + 7) BernoulliRBM divides the
    model term of its 10 chains by 7, gdsl by 10 (MNIST: 50,000 = 500 x 100, no short batch).

Timing. gdsl: a warm-up fit on a tiny subset (a throwaway model) first, so the compile of
train_epoch (or its load from numba's cache) is excluded; then one fit(epochs=E) whose
per-epoch times are taken from its callback (each one includes fit's per-epoch Python work:
the shuffle, RNG streams, parameter copy and finiteness check; the first one also fit's
one-off input checks, which the median leaves out). BernoulliRBM: `fit` with
n_iter=1, not `partial_fit`: partial_fit(X) makes ONE update with all of X as a single
minibatch and converts X to float64, so an epoch through it would be one Python call and
one float64 validation per minibatch, which is neither float32 nor BernoulliRBM's own
training loop. fit(n_iter=1) runs exactly fit's loop over minibatches in float32; its
one-off setup (input validation, weight initialisation) is timed with fit(n_iter=0) and
subtracted, which favours sklearn slightly. Medians throughout; BLAS threads pinned by
--threads (default 1) before numpy is imported, the same for both sides.
For digits the two sides alternate (side_by_side): each gdsl epoch is followed, inside fit's
callback and outside gdsl's time, by one BernoulliRBM epoch and its setup. This machine's
speed drifts by 10-30% over seconds; with one side's 50 epochs in a block and then the
other's, the same code measured anywhere from 4.0x to 6.3x. MNIST epochs take seconds and
are timed in blocks.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "binarized_mnist.npz"
sys.path.insert(0, str(ROOT))


from common import median_time, set_blas_threads  # noqa: E402  (bench/ is on sys.path when run as a script)

set_blas_threads(sys.argv)

import numpy as np  # noqa: E402

import gdsl  # noqa: E402

try:
    from sklearn.neural_network import BernoulliRBM
except ImportError:  # pragma: no cover
    sys.exit("scikit-learn is needed: pip install scikit-learn (or pip install -e .[bench])")


# ---------------------------------------------------------------- one evaluator for both learners
def _free_energy(W, b, c, v):
    return -v @ b - np.logaddexp(0.0, v @ W + c).sum(axis=1)


def quality(W, b, c, X, seed=0) -> tuple[float, float]:
    """(mean pseudo-log-likelihood, reconstruction error) of W (nv x nh), b, c on binary X, in float64.

    PLL: nv * log sigmoid(F(x with one random bit flipped) - F(x)), as BernoulliRBM.score_samples
    and gdsl's pseudo_log_likelihood; the flipped bits depend only on `seed`, so both learners
    are scored on the same corruptions. Reconstruction: mean (E[v | E[h | x]] - x)^2."""
    W, b, c = (np.asarray(a, dtype=np.float64) for a in (W, b, c))
    v = np.asarray(X, dtype=np.float64)
    rng = np.random.default_rng(seed)
    j = rng.integers(0, v.shape[1], size=len(v))
    flipped = v.copy()
    rows = np.arange(len(v))
    flipped[rows, j] = 1.0 - flipped[rows, j]
    pll = -v.shape[1] * np.logaddexp(0.0, -(_free_energy(W, b, c, flipped) - _free_energy(W, b, c, v)))
    ph = 1.0 / (1.0 + np.exp(-(v @ W + c)))
    pv = 1.0 / (1.0 + np.exp(-(ph @ W.T + b)))
    return float(pll.mean()), float(np.mean((pv - v) ** 2))


def gdsl_params(m):
    return m.params["W"], m.params["b"], m.params["c"]


def sklearn_params(r):
    return r.components_.T, r.intercept_visible_, r.intercept_hidden_


def _fmt_quality(q) -> str:
    return f"pseudo-log-likelihood {q[0]:8.2f}, reconstruction error {q[1]:.4f}"


# ---------------------------------------------------------------- the two learners
def gdsl_epochs(X, nv, nh, lr, batch, epochs, seed=0):
    """Per-epoch seconds of one continuous PCD-1 fit (compile excluded) and the trained model."""
    path = ROOT / "models" / "rbm.gdl"
    warm = gdsl.load(path, nv=nv, nh=nh, seed=seed + 1)
    t = time.perf_counter()
    warm.fit({"v": X[:2 * batch]}, method="pcd", k=1, lr=lr, epochs=1, batch_size=batch,
             progress=False, monitor=None)
    compile_s = time.perf_counter() - t

    m = gdsl.load(path, nv=nv, nh=nh, seed=seed)
    before = quality(*gdsl_params(m), X_eval(X))
    stamps = []
    t0 = time.perf_counter()
    m.fit({"v": X}, method="pcd", k=1, lr=lr, epochs=epochs, batch_size=batch, momentum=0.0, weight_decay=0.0,
          progress=False, monitor=None, callback=lambda model, record: stamps.append(time.perf_counter()))
    times = np.diff([t0] + stamps)
    return times, m, before, compile_s


def sklearn_epochs(X, nh, lr, batch, epochs, reps, seed=0):
    """Per-epoch seconds of BernoulliRBM.fit(n_iter=1) minus its setup (fit with n_iter=0), and a model
    trained for `epochs` epochs in one fit (whose mean epoch time is a cross-check)."""
    def timed(n_iter):
        r = BernoulliRBM(n_components=nh, learning_rate=lr, batch_size=batch, n_iter=n_iter, random_state=seed)
        t = time.perf_counter()
        r.fit(X)
        return time.perf_counter() - t

    timed(0)
    setup = statistics.median(timed(0) for _ in range(max(3, reps)))
    one = [timed(1) for _ in range(reps)]
    r = BernoulliRBM(n_components=nh, learning_rate=lr, batch_size=batch, n_iter=epochs, random_state=seed)
    t = time.perf_counter()
    r.fit(X)
    whole = time.perf_counter() - t
    return np.array(one) - setup, setup, (whole - setup) / epochs, r


def side_by_side(X, nv, nh, lr, batch, epochs, seed=0):
    """gdsl's epochs and BernoulliRBM's, alternating: after each gdsl epoch (inside fit's
    callback, outside the gdsl time) one BernoulliRBM fit(n_iter=1) and one fit(n_iter=0) for
    its setup. This machine is shared: its speed drifts by 10-30% over seconds, and blocks of
    one side's epochs after the other's let that drift decide the ratio. Alternating, a slow
    spell slows both. Each side also starts every epoch with the other's data in the caches.
    Returns gdsl's epoch seconds, sklearn's (setup subtracted), sklearn's setup, the model."""
    def timed(n_iter):
        r = BernoulliRBM(n_components=nh, learning_rate=lr, batch_size=batch, n_iter=n_iter, random_state=seed)
        t = time.perf_counter()
        r.fit(X)
        return time.perf_counter() - t

    warm = gdsl.load(ROOT / "models" / "rbm.gdl", nv=nv, nh=nh, seed=seed + 1)
    warm.fit({"v": X[:2 * batch]}, method="pcd", k=1, lr=lr, epochs=1, batch_size=batch, progress=False,
             monitor=None)
    timed(0), timed(1)
    m = gdsl.load(ROOT / "models" / "rbm.gdl", nv=nv, nh=nh, seed=seed)
    g, one, setup = [], [], []
    resumed = [time.perf_counter()]

    def after_epoch(model, record):
        g.append(time.perf_counter() - resumed[-1])
        one.append(timed(1))
        setup.append(timed(0))
        resumed.append(time.perf_counter())

    m.fit({"v": X}, method="pcd", k=1, lr=lr, epochs=epochs, batch_size=batch, momentum=0.0, weight_decay=0.0,
          progress=False, monitor=None, callback=after_epoch)
    s_setup = statistics.median(setup)
    return np.array(g), np.array(one) - s_setup, s_setup, m


def X_eval(X):
    return X[:5000]


# ---------------------------------------------------------------- the products an update needs
def sklearn_products(X, nh, batch, reps, seed=0) -> float:
    """Seconds per epoch of the five float32 products of BernoulliRBM._fit, same shapes and layouts."""
    rng = np.random.default_rng(seed)
    nv = X.shape[1]
    components = np.asfortranarray(rng.normal(0, 0.01, (nh, nv)).astype(np.float32))  # as BernoulliRBM's
    intercept_hidden = np.zeros(nh, np.float32)
    h_samples = (rng.random((batch, nh)) < 0.5).astype(np.float32)
    slices = [slice(s, min(s + batch, len(X))) for s in range(0, len(X), batch)]

    def epoch():
        for sl in slices:
            v_pos = X[sl]
            h_pos = np.dot(v_pos, components.T)
            v_neg = np.dot(h_samples, components)
            h_neg = np.dot(v_neg, components.T)
            np.dot(v_pos.T, h_pos)
            np.dot(h_neg.T, v_neg)
        return intercept_hidden

    epoch()
    return median_time(epoch, reps)


# ---------------------------------------------------------------- the two benchmarks
def mnist(quick: bool) -> None:
    if not DATA.exists():
        print(f"MNIST: {DATA} not found; skipped (nothing is downloaded)")
        return
    X = np.load(DATA)["train"].astype(np.float32)
    nv, nh, batch, lr = X.shape[1], 500, 100, 0.05
    epochs = 3 if quick else 5
    reps = 2 if quick else 3
    print(f"\n1. binarized MNIST, {len(X)} images, RBM {nv}x{nh}, PCD-1, batch {batch}, lr {lr}, float32")

    g_times, m, g_before, compile_s = gdsl_epochs(X, nv, nh, lr, batch, epochs)
    g = float(np.median(g_times))
    print(f"  gdsl   fit: {g:.3f} s/epoch (median of {len(g_times)} epochs: "
          f"{', '.join(f'{t:.3f}' for t in g_times)}; warm-up fit incl. compile/cache load {compile_s:.2f} s, excluded)")

    s_times, s_setup, s_whole, r = sklearn_epochs(X, nh, lr, batch, epochs, reps)
    s = float(np.median(s_times))
    print(f"  sklearn BernoulliRBM.fit(n_iter=1): {s:.3f} s/epoch (median of {reps}, fit setup {s_setup:.3f} s "
          f"subtracted); fit(n_iter={epochs}) mean {s_whole:.3f} s/epoch")

    p = sklearn_products(X, nh, batch, reps)
    print(f"  the 5 matrix products per minibatch (numpy float32): {p:.3f} s/epoch (median of {reps})")
    print(f"  -> sklearn / gdsl = {s / g:.2f}x (target >= 2: {'met' if s / g >= 2 else 'MISSED'}); "
          f"gdsl / products = {g / p:.2f} (target <= 1.3: {'met' if g / p <= 1.3 else 'MISSED'}); "
          f"sklearn / products = {s / p:.2f}")

    ev = X_eval(X)
    print(f"  learning check on {len(ev)} training images after {epochs} epochs each:")
    print(f"    at initialisation  {_fmt_quality(g_before)}  (gdsl's draw; both use W ~ N(0, 0.01))")
    print(f"    gdsl               {_fmt_quality(quality(*gdsl_params(m), ev))}")
    print(f"    sklearn            {_fmt_quality(quality(*sklearn_params(r), ev))}")
    valid = np.load(DATA)["valid"].astype(np.float32)
    print(f"    held-out (valid, {len(valid)}): gdsl {quality(*gdsl_params(m), valid)[0]:.2f}, "
          f"sklearn {quality(*sklearn_params(r), valid)[0]:.2f} pseudo-log-likelihood")


def digits(quick: bool) -> None:
    from sklearn.datasets import load_digits

    X = (load_digits().data > 7).astype(np.float32)
    nv, nh, batch, lr = X.shape[1], 64, 10, 0.06
    epochs = 20 if quick else 50
    print(f"\n2. sklearn digits, {len(X)} images binarised (> 7 of 16), RBM {nv}x{nh}, PCD-1, batch {batch}, "
          f"lr {lr}, float32")
    g_before = quality(*gdsl_params(gdsl.load(ROOT / "models" / "rbm.gdl", nv=nv, nh=nh, seed=0)), X_eval(X))
    g_times, s_times, s_setup, m = side_by_side(X, nv, nh, lr, batch, epochs)
    g, s = float(np.median(g_times)), float(np.median(s_times))
    print(f"  gdsl   fit: {g * 1e3:.3f} ms/epoch (median of {len(g_times)} epochs, each followed by one of "
          f"sklearn's; warm-up fit excluded)")
    print(f"  sklearn BernoulliRBM.fit(n_iter=1): {s * 1e3:.3f} ms/epoch (median of {len(s_times)}, between gdsl's "
          f"epochs; fit setup {s_setup * 1e3:.3f} ms subtracted)")
    pairs = s_times / g_times
    print(f"  -> sklearn / gdsl = {s / g:.2f}x (target >= 5: {'met' if s / g >= 5 else 'MISSED'}); per pair of "
          f"neighbouring epochs: median {np.median(pairs):.2f}x, 10th-90th percentile "
          f"{np.percentile(pairs, 10):.2f}-{np.percentile(pairs, 90):.2f}x")
    # the same in blocks (all of one side's epochs, then the other's): each side in its steady state
    b_times, m2, _, _ = gdsl_epochs(X, nv, nh, lr, batch, epochs)
    bs_times, _, s_whole, r = sklearn_epochs(X, nh, lr, batch, epochs, reps=epochs)
    bg, bs = float(np.median(b_times)), float(np.median(bs_times))
    print(f"  in blocks instead: gdsl {bg * 1e3:.3f} ms/epoch, sklearn {bs * 1e3:.3f} ms/epoch -> {bs / bg:.2f}x "
          f"(drifts with the machine: 4.0x-6.3x over a day; the target is judged on the alternating figure)")
    print(f"  sklearn fit(n_iter={epochs}) in one call, for comparison: mean {s_whole * 1e3:.3f} ms/epoch")
    print(f"  learning check on all {len(X)} images after {epochs} epochs each:")
    print(f"    at initialisation  {_fmt_quality(g_before)}  (gdsl's draw; both use W ~ N(0, 0.01))")
    print(f"    gdsl               {_fmt_quality(quality(*gdsl_params(m), X))}")
    print(f"    sklearn            {_fmt_quality(quality(*sklearn_params(r), X))}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", default="1", help="BLAS threads for both sides (default 1: per-core numbers)")
    ap.add_argument("--only", choices=("mnist", "digits"), help="run one of the two benchmarks")
    args = ap.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"BLAS threads: {os.environ['OPENBLAS_NUM_THREADS']}; {os.cpu_count()} cores; "
          f"load average at start {load:.2f}")
    if args.only in (None, "digits"):
        digits(args.quick)
    if args.only in (None, "mnist"):
        mnist(args.quick)
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
