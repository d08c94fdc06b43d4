"""Classification with models/drbm.gdl: DRBM and HDRBM test error beside logistic regression.

    python bench/drbm.py                      # scikit-learn's digits, binarised at 8 (of 16)
    python bench/drbm.py --epochs 60 --nh 200

MNIST labels are not in ../shared/data (the binarised MNIST there has images only), and
nothing is downloaded at run time, so the classification table uses scikit-learn's 8x8
digits: 1,797 images, split 1,000 train / 300 validation / 497 test by a fixed permutation.
The epoch with the best validation error is kept (early stopping, as in the paper).
Larochelle & Bengio (2008) report on MNIST: DRBM 1.81%, HDRBM 1.28% test error, logistic
regression 7.28%; the digits are a smaller, different task, so compare the ordering.
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


def split(seed: int = 0):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X > 7).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(X))
    X, y = X[order], y[order]
    return (X[:1000], y[:1000]), (X[1000:1300], y[1000:1300]), (X[1300:], y[1300:])


def train(method: str, data, args, alpha: float = 0.0):
    (xtr, ytr), (xva, yva), (xte, yte) = data
    m = gdsl.load(ROOT / "models" / "drbm.gdl", nv=64, nh=args.nh, classes=10, seed=args.seed)
    best = {"valid_error": 2.0}

    def keep_best(model, record):
        if record["valid_error"] < best["valid_error"]:
            best.update(record, params={k: np.array(v) for k, v in model.params.items()})

    eye = np.eye(10, dtype=np.float32)
    t = time.perf_counter()
    m.fit({"v": xtr, "y": eye[ytr]}, method=method, alpha=alpha, lr=args.lr, epochs=args.epochs, batch_size=20,
          momentum=0.5, validation={"v": xva, "y": eye[yva]}, callback=keep_best, progress=False)
    seconds = time.perf_counter() - t
    m.params.update(best["params"])
    error = float(np.mean(m.predict({"v": xte}, target="y") != yte))
    return error, best["epoch"], seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--nh", type=int, default=100)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    data = split()
    from sklearn.linear_model import LogisticRegression

    (xtr, ytr), _, (xte, yte) = data
    lr_error = float(np.mean(LogisticRegression(max_iter=2000).fit(xtr, ytr).predict(xte) != yte))
    rows = [("logistic regression (scikit-learn)", lr_error, "-", "-")]
    for label, method, alpha in (("DRBM", "discriminative", 0.0), (f"HDRBM (alpha {args.alpha})", "hybrid",
                                                                   args.alpha)):
        error, epoch, seconds = train(method, data, args, alpha)
        rows.append((label, error, epoch, f"{seconds:.0f} s"))
    print(f"digits 8x8 binarised, nh={args.nh}, lr={args.lr}, {args.epochs} epochs, batch 20, momentum 0.5")
    print("| model | test error | best epoch | train time |")
    print("| --- | --- | --- | --- |")
    for label, error, epoch, seconds in rows:
        print(f"| {label} | {100 * error:.2f}% | {epoch} | {seconds} |")


if __name__ == "__main__":
    main()
