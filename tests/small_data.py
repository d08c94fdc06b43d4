"""Small data sets shared by the tests (through conftest's fixtures) and bench/ais_accuracy.py."""
from __future__ import annotations

import numpy as np


def digits_4x4():
    """scikit-learn's digits averaged to 4x4 (16 pixels, so every small model stays enumerable):
    binary (> 7 of 16), standardised real values, one-hot labels, and a fixed 1400/397 split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    small = d.data.reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(-1, 16)
    binary = (small > 7).astype(np.float32)
    real = ((small - small.mean(0)) / (small.std(0) + 1e-3)).astype(np.float32)
    labels = np.eye(10, dtype=np.float32)[d.target]
    order = np.random.default_rng(0).permutation(len(binary))
    return binary, real, labels, order[:1400], order[1400:]
