"""scikit-learn's "RBM features for digit classification" example, with gdsl.sklearn.Estimator
beside scikit-learn's BernoulliRBM in the same run (issue 23, item 1).

The set-up of that example: the 8x8 digits, each also shifted by one pixel in the four
directions (5 x 1,797 images), scaled to [0, 1] and split 80/20 (random_state=0); an RBM of 100
hidden units (learning rate 0.06, 10 epochs, minibatches of 10) feeding a logistic regression
(C = 6000), against a logistic regression on the raw pixels (C = 100). The example's newton-cg
solver with tol=1 stops at once in scikit-learn 1.9 (every image gets one class); lbfgs is used. Both RBMs train by
persistent contrastive divergence on the grey levels as probabilities.

    python bench/sklearn_digits.py
"""
from __future__ import annotations

import time

import numpy as np
from scipy.ndimage import shift
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import BernoulliRBM
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import minmax_scale

from gdsl.sklearn import Estimator


def shifted_digits():
    """The digits and their copies moved one pixel up, down, left and right."""
    d = load_digits()
    images = d.images
    moved = [images] + [np.stack([shift(im, s, mode="constant") for im in images])
                        for s in ((-1, 0), (1, 0), (0, -1), (0, 1))]
    X = np.concatenate(moved).reshape(-1, 64)
    y = np.tile(d.target, 5)
    return minmax_scale(X, feature_range=(0, 1)), y


def main():
    X, y = shifted_digits()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
    logistic = LogisticRegression(C=6000, max_iter=5000)
    rows = {
        "raw pixels + logistic regression": LogisticRegression(C=100, max_iter=5000),
        "scikit-learn BernoulliRBM + logistic regression": Pipeline([
            ("rbm", BernoulliRBM(n_components=100, learning_rate=0.06, n_iter=10, batch_size=10, random_state=0)),
            ("logistic", clone(logistic))]),
        "gdsl Estimator('rbm') + logistic regression": Pipeline([
            ("rbm", Estimator("rbm", sizes={"nh": 100}, lr=0.06, epochs=10, batch_size=10, method="pcd",
                              random_state=0)),
            ("logistic", clone(logistic))]),
    }
    print(f"{len(X_train)} training and {len(X_test)} test images of 8 x 8")
    print("| classifier | accuracy | weighted F1 | RBM fit (s) | whole fit (s) |\n| --- | --- | --- | --- | --- |")
    for name, clf in rows.items():
        t = time.perf_counter()
        rbm_seconds = "-"
        if isinstance(clf, Pipeline):  # the steps by hand, to time the RBM alone
            features = clf.named_steps["rbm"].fit_transform(X_train)
            rbm_seconds = f"{time.perf_counter() - t:.2f}"
            clf.named_steps["logistic"].fit(features, y_train)
        else:
            clf.fit(X_train, y_train)
        seconds = time.perf_counter() - t
        pred = clf.predict(X_test)
        print(f"| {name} | {accuracy_score(y_test, pred):.4f} | {f1_score(y_test, pred, average='weighted'):.4f} "
              f"| {rbm_seconds} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
