"""A denoising autoencoder's Markov chain (models/dae_binary.gdl, Bengio, Yao, Alain & Vincent
2013) and a generative stochastic network (models/gsn.gdl, Bengio et al. 2014) trained on
binarised MNIST, a grid of each one's chain samples, and the Parzen-window estimate of the
test log-likelihood from those samples (the protocol of Goodfellow et al. 2014, table 1, as
bench/gan.py uses it: gdsl.parzen_log_likelihood).

    python bench/dae.py                       # both models: 9 + 4 epochs, ~9 min on 2 busy cores
    python bench/dae.py --models dae          # only models/dae_binary.gdl
    python bench/dae.py --epochs 2            # the same number of epochs for each model
    python bench/dae.py --seconds 120         # instead: a training budget per model (whole epochs)
    python bench/dae.py --no-parzen           # train and draw the grids only

Each model is trained by fit(method="walkback") (walkbacks 2 for the DAE, 3 unrolled steps
for the GSN) with Adam on the 50,000 training images: 9 epochs of the DAE and 4 of the GSN
by default (each about 3.5 minutes here), or one epoch after another until `--seconds` is
used up. The chains: `--chains` chains started from uniform random bits, `--burn-in`
steps, then one sample per chain every step until `--samples` samples are collected (the
samples of one chain are consecutive, as in the GSN papers). The grid shows the last sample
of 50 chains (binary) and, below them, the mean of the reconstruction distribution p(x | x~)
at that step (`reconstruction_mean`). The Parzen estimate is printed for the binary samples and
for the means at the same steps (the GAN row of docs/results-directed.md scores the
generator's near-deterministic outputs, which are closer to the means). The samples are
binary; the published Parzen figures are on real-valued MNIST, ours on the binarised images:
the two are not comparable, only the protocol is (see docs/evaluation.md for what such
estimates are worth).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import load_binarised_mnist, set_blas_threads  # noqa: E402

set_blas_threads(sys.argv)

import numpy as np  # noqa: E402

import gdsl  # noqa: E402
from gdsl.plot import samples_grid  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "binarized_mnist.npz"
PUBLISHED = [("GSN (Bengio et al. 2014), as in Goodfellow et al. 2014, table 1", "214 ± 1.1"),
             ("Deep belief net, ibid.", "138 ± 2"), ("Stacked contractive autoencoder, ibid.", "121 ± 1.6"),
             ("Adversarial nets, ibid.", "225 ± 2")]
SETTINGS = {  # model file, method options, default epochs, grid path
    "dae": ("dae_binary", {"method": "walkback", "walkbacks": 2}, 9, ROOT / "docs" / "dae_samples.png"),
    "gsn": ("gsn", {"method": "walkback", "walkbacks": 3}, 4, ROOT / "docs" / "gsn_samples.png"),
}


def chain_samples(m, chains: int, burn_in: int, total: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(`total` chain samples x, and as many means of p(x | x~, h) at the same steps, the x~ and
    h each sample was drawn from): chains from random bits, one sample per chain and step."""
    init = (np.random.default_rng(seed).random((chains, 784)) < 0.5).astype(np.float64)
    s = m.sample(chains, steps=burn_in, init={"x": init})
    given = [m.DENOISER["corrupt"], *m.DENOISER["states"]]
    xs, means = [], []
    while sum(len(o) for o in xs) < total:
        s = m.sample(chains, steps=1, init={"x": s["x"]}) if not m.DENOISER["states"] else _step(m, s)
        xs.append(np.asarray(s["x"], np.float64))
        means.append(m.reconstruction_mean({g: s[g] for g in given}))
    return np.concatenate(xs)[:total], np.concatenate(means)[:total]


def _step(m, s):
    """One more step of a GSN's chains, the state carried along (sample() starts prev at zero)."""
    from gdsl.runtime.denoising import _carry, _corrupt, _reconstruct

    st = {g: np.ascontiguousarray(v, dtype=np.float64) for g, v in s.items()}
    n = len(st["x"])
    _corrupt(m, st, n)
    _reconstruct(m, st, n)
    _carry(m, st)
    return st


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["dae", "gsn"], choices=list(SETTINGS))
    ap.add_argument("--epochs", type=int, default=None, help="epochs of each model (default 9 DAE, 4 GSN)")
    ap.add_argument("--seconds", type=float, default=None, help="instead of epochs: a training budget per model")
    ap.add_argument("--nh", type=int, default=500)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--n-train", type=int, default=50000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chains", type=int, default=100)
    ap.add_argument("--burn-in", type=int, default=100)
    ap.add_argument("--samples", type=int, default=10000, help="samples for the Parzen estimate")
    ap.add_argument("--n-valid", type=int, default=10000, help="validation images the Parzen width is chosen on")
    ap.add_argument("--no-parzen", action="store_true")
    ap.add_argument("--threads", default=None, help="BLAS threads (read by common.set_blas_threads)")
    args = ap.parse_args(argv)

    def log(text: str) -> None:
        print(text, flush=True)

    train, valid, test = load_binarised_mnist(DATA, args.n_train, args.n_valid, log)
    rows = []
    for key in args.models:
        name, options, epochs, grid = SETTINGS[key]
        epochs = args.epochs if args.epochs is not None else epochs
        m = gdsl.load(ROOT / "models" / f"{name}.gdl", seed=args.seed, nh=args.nh)
        t = time.perf_counter()

        def report(model, record):
            log(f"  {name} epoch {record['epoch']:3d}  log p(x | x~) per step {record['train_objective']:.2f}  "
                f"({time.perf_counter() - t:.0f} s)")
            return args.seconds is None or time.perf_counter() - t < args.seconds

        history = m.fit({"x": train}, epochs=10_000 if args.seconds is not None else epochs,
                        batch_size=args.batch_size, lr=args.lr, callback=report, progress=False, **options)
        train_s = time.perf_counter() - t
        log(f"{name} 784-{args.nh}: {len(history)} epochs of {options}, Adam lr {args.lr:g}, batch "
            f"{args.batch_size}: {train_s:.0f} s ({train_s / max(1, len(history)):.0f} s an epoch)")
        t = time.perf_counter()
        samples, means = chain_samples(m, args.chains, args.burn_in, args.samples, args.seed + 1)
        samples_grid(np.concatenate([samples[-args.chains:][:50], means[-args.chains:][:50]]), path=grid, ncols=10,
                     title=f"models/{name}.gdl, {len(history)} epochs, step "
                           f"{args.burn_in + args.samples // args.chains} of 50 chains: x (top), "
                           f"E[x | x~] (bottom)")
        log(f"{len(samples)} chain samples ({args.chains} chains, burn-in {args.burn_in}): "
            f"{time.perf_counter() - t:.0f} s; grid of the last sample of 50 chains and their "
            f"reconstruction means: {grid}")
        if args.no_parzen:
            continue
        for what, points in (("binary chain samples", samples), ("reconstruction means", means)):
            t = time.perf_counter()
            est = gdsl.parzen_log_likelihood(points, test, validation=valid)
            log(f"Parzen window estimate on the {len(test)} test images from {len(points)} {what}, width chosen "
                f"on {len(valid)} validation images: {est} ({time.perf_counter() - t:.0f} s)")
            rows.append((f"gdsl models/{name}.gdl, binarised MNIST, {len(history)} epochs, {what}", est, train_s))
    if rows:
        log("")
        log("| model | Parzen log-likelihood (nats) | training time |")
        log("| --- | --- | --- |")
        for label, est, secs in rows:
            log(f"| {label} | {est.mean:.1f} ± {est.se:.1f} | {secs:.0f} s |")
        for label, figure in PUBLISHED:
            log(f"| {label} (real-valued MNIST) | {figure} | |")
        log("(different data: binarised vs real-valued images; not comparable, only the protocol is)")


if __name__ == "__main__":
    main()
