"""RNADE (models/rnade.gdl) on scikit-learn's digits, against Gaussian baselines fitted to the
same data in the same script. Prints the test log-likelihood per image and the training time.

    python bench/rnade.py                     # nh = 50, k = 5, up to 300 epochs (a few minutes)
    python bench/rnade.py --quick             # 20 epochs: checks the pipeline only

The data, exactly:
  * sklearn.datasets.load_digits(): 1,797 images of 8x8 pixels, integer values 0..16.
  * split by a permutation of the rows (numpy default_rng(0)): 1,300 training rows, 200
    validation rows (early stopping), 297 test rows.
  * dequantised: y = pixel + u with u ~ uniform[0, 1) drawn once per pixel (default_rng(1)),
    so y is continuous on [0, 17)^64. For any density p on y, E_u[log p(pixel + u)] is a lower
    bound on the log-probability the model gives the integer image (the mass of p on the unit
    cube above it), so the numbers below are comparable with discrete models too.
  * standardised: x = (y - mean) / std per pixel, mean and std from the 1,300 training rows
    (every std is at least ~0.29, the noise's, so no pixel is constant).
  * every model is fitted to x; log-likelihoods are reported for y, in nats per image:
    log p_y(y) = log p_x(x) - sum_d log std_d (the Jacobian of the standardisation).

Models:
  * diagonal Gaussian: the training mean and variance per pixel (maximum likelihood);
  * full-covariance Gaussian: the training mean and covariance (maximum likelihood);
  * a full-covariance Gaussian mixture (scikit-learn's GaussianMixture, EM, random_state
    --seed) with 1, 2, 5, 10 or 20 components, the number chosen on the validation rows;
  * RNADE, d = 64, nh = --nh hidden units, k = --k components: maximum likelihood (fit method
    "ml"), Adam lr --lr, batch --batch, up to --epochs epochs; after every epoch the
    validation log-likelihood is measured, the best epoch's parameters are kept (early
    stopping), and training stops after --patience epochs without improvement.

The training time is the wall-clock time of fit (its epochs, including its per-epoch
measurement of the train and validation log-likelihoods); the compile or cache load of the
kernels is excluded (a throwaway fit of one epoch on 100 rows runs first) and reported apart.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import set_blas_threads  # noqa: E402

set_blas_threads(sys.argv)   # before numpy

import numpy as np  # noqa: E402

import gdsl  # noqa: E402

N_TRAIN, N_VALID = 1300, 200


def load_data():
    """(train, valid, test) standardised rows, and the log-Jacobian sum_d log std_d."""
    from sklearn.datasets import load_digits

    pixels = load_digits().data.astype(np.float64)  # (1797, 64), 0..16
    order = np.random.default_rng(0).permutation(len(pixels))
    y = pixels + np.random.default_rng(1).random(pixels.shape)  # dequantised, on [0, 17)
    train, valid, test = (y[order[:N_TRAIN]], y[order[N_TRAIN:N_TRAIN + N_VALID]],
                          y[order[N_TRAIN + N_VALID:]])
    mean, std = train.mean(0), train.std(0)
    scale = lambda rows: (rows - mean) / std  # noqa: E731
    return scale(train), scale(valid), scale(test), float(np.log(std).sum())


def gaussian_loglik(train, test, diagonal: bool) -> np.ndarray:
    """Per-row log N(test; mean, cov) with the maximum-likelihood mean and covariance of train."""
    mean = train.mean(0)
    centred = train - mean
    cov = np.diag(centred.var(0)) if diagonal else centred.T @ centred / len(train)
    chol = np.linalg.cholesky(cov)
    z = np.linalg.solve(chol, (test - mean).T).T
    d = train.shape[1]
    return -0.5 * (z ** 2).sum(1) - np.log(np.diag(chol)).sum() - 0.5 * d * np.log(2 * np.pi)


def gmm_loglik(train, valid, test, seed: int):
    """A full-covariance Gaussian mixture (scikit-learn, EM): the number of components with the
    best validation log-likelihood among 1, 2, 5, 10, 20; per-row test log-likelihoods."""
    from sklearn.mixture import GaussianMixture

    fits = [GaussianMixture(n, covariance_type="full", random_state=seed).fit(train) for n in (1, 2, 5, 10, 20)]
    best = max(fits, key=lambda g: g.score(valid))
    return best.score_samples(test), best.n_components


def train_rnade(args, train, valid):
    """The fitted model, its history, the best epoch (1-based), the fit's seconds and the warm-up's."""
    t = time.perf_counter()
    warm = gdsl.load("rnade", d=64, nh=args.nh, k=args.k, seed=args.seed)
    warm.fit({"x": train[:100]}, epochs=1, batch_size=50, progress=False)
    warmup = time.perf_counter() - t

    m = gdsl.load("rnade", d=64, nh=args.nh, k=args.k, seed=args.seed)
    best = {"loglik": -np.inf, "epoch": 0, "params": None, "since": 0}

    def keep_best(model, record):
        if record["valid_loglik"] > best["loglik"]:
            best.update(loglik=record["valid_loglik"], epoch=record["epoch"], since=0,
                        params={k: np.array(v) for k, v in model.params.items()})
        else:
            best["since"] += 1
        return best["since"] < args.patience  # False stops fit

    t = time.perf_counter()
    history = m.fit({"x": train}, epochs=args.epochs, batch_size=args.batch, lr=args.lr,
                    validation={"x": valid}, callback=keep_best, progress=False)
    seconds = time.perf_counter() - t
    m.params = best["params"]
    return m, history, best["epoch"], seconds, warmup


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nh", type=int, default=50)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--patience", type=int, default=30)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", default="1")
    ap.add_argument("--quick", action="store_true", help="20 epochs: a check of the pipeline")
    args = ap.parse_args()
    if args.quick:
        args.epochs = 20

    started = time.time()
    train, valid, test, log_jacobian = load_data()
    rows = []
    for name, diagonal in (("diagonal Gaussian", True), ("full-covariance Gaussian", False)):
        t = time.perf_counter()
        ll = gaussian_loglik(train, test, diagonal) - log_jacobian
        rows.append((name, float(ll.mean()), float(ll.std() / np.sqrt(len(ll))), time.perf_counter() - t, ""))

    t = time.perf_counter()
    ll, n = gmm_loglik(train, valid, test, args.seed)
    ll = ll - log_jacobian
    rows.append(("Gaussian mixture, full covariance", float(ll.mean()), float(ll.std() / np.sqrt(len(ll))),
                 time.perf_counter() - t, f"{n} components (best validation of 1, 2, 5, 10, 20; all five "
                                          f"fitted in the time shown), scikit-learn EM"))

    m, history, epoch, seconds, warmup = train_rnade(args, train, valid)
    ll = m.log_prob({"x": test}) - log_jacobian
    valid_ll = float(history[epoch - 1]["valid_loglik"]) - log_jacobian
    rows.append((f"RNADE nh={args.nh} k={args.k}", float(ll.mean()), float(ll.std() / np.sqrt(len(ll))),
                 seconds, f"best validation epoch {epoch} of {len(history)} run ({seconds / len(history):.2f} "
                          f"s/epoch; validation {valid_ll:.2f}); compile or cache load {warmup:.1f} s"))

    print(f"digits 8x8, dequantised (pixel + uniform[0, 1)) and standardised; {N_TRAIN} train / {N_VALID} "
          f"validation / {len(test)} test rows")
    print("test log-likelihood of the dequantised image y on [0, 17)^64, nats per image (higher is better)\n")
    print("| model | test log p(y) | training time | notes |")
    print("| --- | --- | --- | --- |")
    for name, mean, se, secs, note in rows:
        print(f"| {name} | {mean:.2f} ± {se:.2f} | {secs:.2f} s | {note} |")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = "?"
    print(f"\n- Adam lr {args.lr}, batch {args.batch}, up to {args.epochs} epochs, patience {args.patience}, "
          f"seed {args.seed}; ± is one standard error over the test images")
    print(f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; BLAS threads "
          f"{os.environ.get('OPENBLAS_NUM_THREADS')}; Python {platform.python_version()}, numpy {np.__version__}")
    print(f"- load average at the end: {os.getloadavg()[0]:.2f}; code: {commit}; whole run "
          f"{(time.time() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
