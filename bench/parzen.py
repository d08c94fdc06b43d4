"""Parzen-window log-likelihood estimates on binarised MNIST (docs/evaluation.md), the protocol of
Breuleux, Bengio & Vincent (2011) and of Goodfellow et al. (2014), table 1: an isotropic Gaussian
kernel density on 10,000 samples of a model, its width chosen on validation images among a
log-spaced grid, the mean log-density of the test images and its standard error.

    python bench/parzen.py                  # RBM 784-500, 5 PCD epochs; 2-3 minutes on 2 busy cores
    python bench/parzen.py --epochs 50      # a longer-trained RBM (about 1-3 s an epoch)
    python bench/parzen.py --params DIR/rbm-pcd.npz   # the RBM of a bench/mnist.py checkpoint instead
    python bench/parzen.py --models rbm,nade --nade-epochs 1   # NADE too (80-300 s an epoch, 100 s to sample)
    python bench/parzen.py --n-valid 2000   # the grid on fewer validation images (default all 10,000): faster
    python bench/parzen.py --pictures DIR   # also write sample grids, the RBM's filters and training curve

Sample sets (10,000 each, --samples):
  training images        the first 10,000 training images themselves: the usual reference, a
                         "perfect sampler" that has memorised its data
  independent pixels     draws from a product of Bernoullis with the training images' pixel means
  rbm samples            block-Gibbs samples of the RBM (models/rbm.gdl, 500 hidden units): 100
                         chains from random states, 1,000 sweeps of burn-in, then a sample every
                         10 sweeps (--chains, --burn-in, --thin)
  rbm p(v | h)           the same samples' visible means (grey levels), as often shown for RBMs
  nade samples           exact ancestral samples of NADE (models/nade.gdl), with --models ...,nade

Published figures (Goodfellow et al. 2014, table 1, nats) are on real-valued MNIST, not on the
binarised images here: the numbers are not comparable, only the protocol is.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import set_blas_threads  # noqa: E402

set_blas_threads(sys.argv)

import numpy as np  # noqa: E402

import gdsl  # noqa: E402
from gdsl.runtime.parzen import default_sigmas, select_bandwidth  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "binarized_mnist.npz"
# Goodfellow et al. (2014), "Generative adversarial nets", table 1: Parzen window-based
# log-likelihood estimates on MNIST (real-valued), mean ± standard error over test examples.
NADE_CHUNK = 100
PUBLISHED = [("DBN", "138 ± 2"), ("Stacked CAE", "121 ± 1.6"), ("Deep GSN", "214 ± 1.1"),
             ("Adversarial nets", "225 ± 2")]


def rbm_samples(args, train_x, log):
    m = gdsl.load(ROOT / "models" / "rbm.gdl", nh=args.nh, seed=args.seed)
    history = None
    t = time.perf_counter()
    if args.params:
        m.load_params(args.params)
        how = f"parameters from {args.params}"
    else:
        history = m.fit({"v": train_x}, method="pcd", lr=0.05, epochs=args.epochs, batch_size=100, momentum=0.5,
                        weight_decay=2e-4, progress=False)
        how = f"PCD-1, {args.epochs} epochs, lr 0.05, momentum 0.5, batch 100, {len(train_x)} images"
    train_s = time.perf_counter() - t
    per_chain = args.samples // args.chains
    t = time.perf_counter()
    s = m.sample(per_chain * args.chains, steps=args.thin, burn_in=args.burn_in, chains=args.chains)
    means = m.conditional_mean(s, "v")
    sample_s = time.perf_counter() - t
    log(f"rbm 784-{args.nh}: {how} ({train_s:.0f} s); {len(s['v'])} samples from {args.chains} chains, "
        f"burn-in {args.burn_in}, every {args.thin} sweeps ({sample_s:.0f} s)")
    return m, history, np.asarray(s["v"], np.float64), np.asarray(means, np.float64)


def nade_samples(args, train_x, log):
    m = gdsl.load(ROOT / "models" / "nade.gdl", nh=args.nh, seed=args.seed)
    t = time.perf_counter()
    m.fit({"x": train_x}, method="ml", optimizer="adam", lr=1e-3, epochs=args.nade_epochs, batch_size=100,
          progress=False)
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    # in chunks: the compiled ancestral sampler keeps about 6 MB per row (784 x 500 hidden
    # activations and more), so 10,000 rows at once need tens of GB
    x = np.concatenate([m.sample(min(NADE_CHUNK, args.samples - i))["x"] for i in range(0, args.samples, NADE_CHUNK)])
    log(f"nade {args.nh} hidden: maximum likelihood, Adam lr 0.001, {args.nade_epochs} epochs ({train_s:.0f} s); "
        f"{len(x)} exact samples ({time.perf_counter() - t:.0f} s)")
    return np.asarray(x, np.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="rbm", help="comma-separated: rbm, nade (the references always run)")
    ap.add_argument("--samples", type=int, default=10000, help="samples per model (default 10,000, as published)")
    ap.add_argument("--n-valid", type=int, default=10000, help="validation images for choosing sigma (default: "
                                                                "all 10,000)")
    ap.add_argument("--n-test", type=int, default=10000, help="test images (default: all 10,000)")
    ap.add_argument("--epochs", type=int, default=5, help="the RBM's PCD epochs on the 50,000 training images")
    ap.add_argument("--params", help="load the RBM's parameters from this file (a save or a checkpoint) instead of "
                                     "training it")
    ap.add_argument("--nh", type=int, default=500, help="hidden units of the RBM and NADE")
    ap.add_argument("--nade-epochs", type=int, default=1)
    ap.add_argument("--chains", type=int, default=100)
    ap.add_argument("--burn-in", type=int, default=1000)
    ap.add_argument("--thin", type=int, default=10, help="Gibbs sweeps between a chain's samples")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", default="1")
    ap.add_argument("--batch-size", type=int, default=1000, help="block size of the Parzen computation")
    ap.add_argument("--pictures", help="write sample grids (and the RBM's filters and training curve) to this "
                                       "directory")
    args = ap.parse_args()
    models = [m for m in args.models.split(",") if m]
    unknown = set(models) - {"rbm", "nade"}
    if unknown:
        raise SystemExit(f"--models: unknown {', '.join(sorted(unknown))}; use rbm, nade")
    if args.samples % args.chains:
        raise SystemExit("--samples must be a multiple of --chains")

    def log(text):
        print(text, flush=True)

    data = np.load(DATA)
    train_x = data["train"].astype(np.float32)
    valid_x = data["valid"][:args.n_valid].astype(np.float64)
    test_x = data["test"][:args.n_test].astype(np.float64)
    rng = np.random.default_rng(args.seed)
    pixel_means = train_x.mean(axis=0, dtype=np.float64)

    sets = [("training images", train_x[:args.samples].astype(np.float64)),
            ("independent pixels", (rng.random((args.samples, 784)) < pixel_means).astype(np.float64))]
    rbm = None
    if "rbm" in models:
        rbm, history, v, means = rbm_samples(args, train_x, log)
        sets += [("rbm samples", v), ("rbm p(v | h)", means)]
    if "nade" in models:
        sets.append(("nade samples", nade_samples(args, train_x, log)))

    if args.pictures:
        from gdsl import plot

        out = Path(args.pictures)
        out.mkdir(parents=True, exist_ok=True)
        for name, x in sets:
            # evenly spaced rows: one sample from each of the RBM's 100 chains, not one chain's first 100
            stem = re.sub("[^a-z0-9]+", "_", name).strip("_")
            plot.samples_grid(x[::max(1, len(x) // 100)][:100], path=out / f"{stem}.png", title=name)
        if rbm is not None:
            plot.filters(rbm.params["W"], n=100, path=out / "rbm_filters.png", title="RBM filters (W columns)")
            if history:
                plot.history(history, path=out / "rbm_training.png", title="RBM training")
        log(f"pictures in {out}")

    log(f"Parzen window estimates: sigma chosen on {len(valid_x)} validation images among "
        f"{len(default_sigmas(sets[0][1]))} log-spaced widths (10 per decade, 1/100 to 10 times the samples' "
        f"scale); {len(test_x)} test images; {args.samples} samples per set")
    rows = []
    for name, x in sets:
        t = time.perf_counter()
        sigma, grid, means = select_bandwidth(x, valid_x, batch_size=args.batch_size)
        est = gdsl.parzen_log_likelihood(x, test_x, sigma=sigma, batch_size=args.batch_size)
        rows.append((name, est, float(means.max()), time.perf_counter() - t))
        log(f"  {name}: {est.mean:.2f} ± {est.se:.2f} (sigma {sigma:.4f}, validation {means.max():.2f}; "
            f"{time.perf_counter() - t:.0f} s)")

    print()
    print("| samples | sigma | validation mean | test log-likelihood (nats) |")
    print("| --- | --- | --- | --- |")
    for name, est, valid, _ in rows:
        print(f"| {name} | {est.sigma:.4f} | {valid:.2f} | {est.mean:.2f} ± {est.se:.2f} |")
    print()
    print("Published, real-valued MNIST (Goodfellow et al. 2014, table 1; not comparable with binarised images): "
          + ", ".join(f"{n} {v}" for n, v in PUBLISHED))


if __name__ == "__main__":
    main()
