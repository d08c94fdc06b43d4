"""Learning speed: gdsl's `fit` against scikit-learn's BernoulliRBM, same process, same data.

    python bench/learning.py            # both targets (a few minutes on one core)
    python bench/learning.py --quick    # fewer epochs and repetitions
    python bench/learning.py --only torch [--rounds 3]   # 3. alone (needs torch: the bench extra)

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

3. Side by side with PyTorch (CPU): PCD-1 on the first 10,000 training images, 784x500, batch
   100, lr 0.05, float32, the same update as gdsl's (below) written in PyTorch in
   bench/torch_rbm.py (its docstring lists the operations). Each run is a fresh process (this
   script with the hidden --child gdsl, or bench/torch_rbm.py) whose thread variables
   (OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS, and GDSL_THREADS for gdsl's m.threads;
   torch.set_num_threads in the PyTorch process) are set before it starts, at 1 thread and
   at all cores; each run trains 5 epochs and reports their median; runs alternate between the sides (gdsl then PyTorch at each thread count, the order
   reversed every other round). Printed: the table (threads, gdsl, PyTorch, ratio), the
   dense-product floor at each thread count (sklearn_products, numpy), the learning check of
   both (the same `quality` evaluator on the held-out images), and the targets of issue 24 as
   PASS/FAIL lines: gdsl >= 2x faster than PyTorch at equal threads, >= 1.6x from the second
   core, and the epoch within 1.5x of the dense-product floor at all cores. The ratios are
   medians of per-round ratios (neighbouring runs), the figure to trust on a busy machine.

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



def BernoulliRBM(**kwargs):
    """sklearn's BernoulliRBM, imported on first use (the PyTorch comparison's gdsl process
    imports neither scikit-learn nor scipy's extras)."""
    try:
        from sklearn.neural_network import BernoulliRBM as cls
    except ImportError:  # pragma: no cover
        sys.exit("scikit-learn is needed: pip install scikit-learn (or pip install -e .[bench])")
    return cls(**kwargs)


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


# ---------------------------------------------------------------- side by side with PyTorch, one process per run
TORCH_WORKER = ROOT / "bench" / "torch_rbm.py"
VS_IMAGES, VS_NH, VS_BATCH, VS_LR, VS_EPOCHS = 10_000, 500, 100, 0.05, 5


def gdsl_child(args) -> None:
    """The gdsl side of versus_torch: `learning.py --child gdsl --threads N ...` in a process of its
    own, started with the thread variables already set. Prints one JSON line: its epoch times
    (gdsl_epochs: warm-up fit excluded, times from fit's callback) and the dense-product floor
    at the same thread count (sklearn_products: the 5 float32 products per minibatch, numpy)."""
    import json

    X = np.load(DATA)["train"][:args.n].astype(np.float32)
    times, m, _, warm = gdsl_epochs(X, X.shape[1], VS_NH, VS_LR, VS_BATCH, args.epochs, seed=args.seed)
    np.savez(args.out, **dict(zip("Wbc", gdsl_params(m))))
    floor = sklearn_products(X, VS_NH, VS_BATCH, reps=3)
    print(json.dumps({"side": "gdsl", "times": [float(t) for t in times], "floor": floor, "warmup": warm,
                      "dtype": str(m.params["W"].dtype)}))


def versus_torch(quick: bool, rounds: int | None, thread_counts: list[int]) -> None:
    """PCD-1 on 10,000 MNIST images, 784x500, batch 100, lr 0.05, float32: gdsl's fit against the
    same update written in PyTorch (bench/torch_rbm.py), each run a fresh process with its thread
    count set before start, runs alternating between the sides, at each thread count."""
    import tempfile

    from common import all_cores, alternate, have_module, load_average, run_child, verdict, versus_table

    if not DATA.exists():
        print(f"\n3. PyTorch: {DATA} not found; skipped (nothing is downloaded)")
        return
    if not have_module("torch"):
        print("\n3. PyTorch: torch is not installed; skipped (pip install -e '.[bench]')")
        return
    rounds = rounds or (1 if quick else 3)
    thread_counts = thread_counts or sorted({1, all_cores()})
    print(f"\n3. side by side with PyTorch (CPU): binarized MNIST, first {VS_IMAGES} training images, RBM "
          f"784x{VS_NH}, PCD-1, batch {VS_BATCH}, lr {VS_LR}, float32, {VS_EPOCHS} epochs per run, median per "
          f"run; {rounds} round(s) of runs alternating between the sides, threads {thread_counts}; "
          f"load average at start {load_average()}")
    tmp = tempfile.TemporaryDirectory()
    counter = iter(range(10 ** 6))

    def run(side, n):
        out = str(Path(tmp.name) / f"{side}-{n}-{next(counter)}.npz")
        if side == "gdsl":
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "gdsl", "--threads", str(n),
                   "--n", str(VS_IMAGES), "--epochs", str(VS_EPOCHS), "--out", out]
        else:
            cmd = [sys.executable, str(TORCH_WORKER), "pcd", "--threads", str(n), "--data", str(DATA),
                   "--n", str(VS_IMAGES), "--epochs", str(VS_EPOCHS), "--nh", str(VS_NH), "--batch", str(VS_BATCH),
                   "--lr", str(VS_LR), "--out", out]
        res = run_child(cmd, n)
        with np.load(out) as f:
            res["params"] = (f["W"], f["b"], f["c"])
        print(f"    {side:5s} threads {n}: epochs {', '.join(f'{t:.3f}' for t in res['times'])} s -> median "
              f"{statistics.median(res['times']):.3f} s (load average {load_average()})", flush=True)
        return res

    results = alternate(["gdsl", "torch"], thread_counts, rounds, run)
    medians = {k: [statistics.median(r["times"]) for r in v] for k, v in results.items()}
    print(f"  seconds per epoch (each run: median of its {VS_EPOCHS} epochs; table: median over runs)")
    summary = versus_table(medians, thread_counts, "s", 1.0)
    floors = {n: statistics.median(r["floor"] for r in results["gdsl", n]) for n in thread_counts}
    for n in thread_counts:
        print(f"  threads {n}: dense-product floor (numpy float32, the 5 products per minibatch) {floors[n]:.3f} s; "
              f"gdsl / floor {summary[n][0] / floors[n]:.2f}, PyTorch / floor {summary[n][1] / floors[n]:.2f}")

    # both sides must have learned: the same evaluator (quality, float64) on the same images
    X = np.load(DATA)["train"][:VS_IMAGES]
    valid = np.load(DATA)["valid"]
    rng = np.random.default_rng(0)
    init = (rng.normal(0, 0.01, (784, VS_NH)), np.zeros(784), np.zeros(VS_NH))
    q0 = quality(*init, valid)
    print(f"  learning check after {VS_EPOCHS} epochs (last run of each side; pseudo-log-likelihood and "
          f"reconstruction error on the 10,000 held-out 'valid' images):")
    print(f"    at initialisation (W ~ N(0, 0.01))  {_fmt_quality(q0)}")
    learned = {}
    for n in thread_counts:
        for side in ("gdsl", "torch"):
            q = learned[side, n] = quality(*results[side, n][-1]["params"], valid)
            print(f"    {side:5s} threads {n}  {_fmt_quality(q)}  (on the training images: "
                  f"{quality(*results[side, n][-1]['params'], X[:5000])[0]:.2f})")
    gain = min(q[0] - q0[0] for q in learned.values())
    spread = max(q[0] for q in learned.values()) - min(q[0] for q in learned.values())
    verdict(gain > 100 and spread < 0.1 * gain,
            f"both sides learn: held-out pseudo-log-likelihood up by at least {gain:.1f} nats from "
            f"initialisation on every run shown, and within {spread:.2f} nats of each other (needs > 100 and < 10%)")
    lo, hi = min(thread_counts), max(thread_counts)
    for n in thread_counts:
        verdict(summary[n][2] >= 2.0, f"gdsl >= 2x faster than PyTorch at {n} thread(s): {summary[n][2]:.2f}x, "
                                      f"median of per-round ratios {', '.join(f'{p:.2f}' for p in summary[n][3])}")
    if hi > lo:
        per_round = [a / b for a, b in zip(medians["gdsl", lo], medians["gdsl", hi])]
        scale = statistics.median(per_round)
        torch_scale = statistics.median(a / b for a, b in zip(medians["torch", lo], medians["torch", hi]))
        verdict(scale >= 1.6, f"the second core gives gdsl >= 1.6x: {lo} -> {hi} threads {scale:.2f}x, median "
                              f"of per-round ratios {', '.join(f'{p:.2f}' for p in per_round)} "
                              f"(PyTorch {torch_scale:.2f}x)")
        verdict(summary[hi][0] / floors[hi] <= 1.5,
                f"gdsl's epoch within 1.5x of its dense-product floor at {hi} threads: {summary[hi][0] / floors[hi]:.2f}x")
    print(f"  load average at end of the comparison {load_average()}")
    tmp.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", default="1", help="BLAS threads for both sides (default 1: per-core numbers)")
    ap.add_argument("--only", choices=("mnist", "digits", "torch"), help="run one of the benchmarks")
    ap.add_argument("--rounds", type=int, default=None,
                    help="PyTorch comparison: rounds of alternating runs (default 3, --quick 1)")
    ap.add_argument("--vs-threads", default=None,
                    help="PyTorch comparison: thread counts, comma-separated (default: 1 and all cores)")
    ap.add_argument("--child", choices=("gdsl",), help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=VS_IMAGES, help=argparse.SUPPRESS)
    ap.add_argument("--epochs", type=int, default=VS_EPOCHS, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        gdsl_child(args)
        return
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"BLAS threads: {os.environ['OPENBLAS_NUM_THREADS']}; {os.cpu_count()} cores; "
          f"load average at start {load:.2f}")
    if args.only in (None, "digits"):
        digits(args.quick)
    if args.only in (None, "mnist"):
        mnist(args.quick)
    if args.only in (None, "torch"):
        versus_torch(args.quick, args.rounds,
                     [int(t) for t in args.vs_threads.split(",")] if args.vs_threads else [])
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
