"""The pictures of docs/api.md: an RBM trained on MNIST, drawn with gdsl.plot.

    python bench/pictures.py            # about two minutes; writes docs/pictures/rbm_*.png

784 x 100 RBM, PCD-1, 10 epochs on the first 10,000 training images of
../shared/data/binarized_mnist.npz (validation: the first 1,000 validation images), then
100 samples after 1,000 sweeps from random starts, the filters (the columns of W), the
training history, and forward and reverse AIS with 2,000 temperatures (100 runs each).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import gdsl
from gdsl import plot

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "binarized_mnist.npz"


def main():
    out = ROOT / "docs" / "pictures"
    out.mkdir(parents=True, exist_ok=True)
    data = np.load(DATA)
    train, valid = data["train"][:10_000].astype(np.float32), data["valid"][:1000].astype(np.float32)
    m = gdsl.load("rbm", nh=100, seed=0)
    history = m.fit({"v": train}, method="pcd", lr=0.05, epochs=10, validation={"v": valid}, progress=True)
    plot.history(history, path=out / "rbm_history.png", title="784 x 100 RBM, PCD-1 on 10,000 MNIST digits")
    s = m.sample(100, steps=1000)
    plot.samples_grid(s["v"], path=out / "rbm_samples.png", title="samples after 1,000 sweeps")
    plot.filters(m.params["W"], path=out / "rbm_filters.png", title="filters: the columns of W")
    betas = np.linspace(0.0, 1.0, 2000)
    forward_estimate = m.log_partition(method="ais", data={"v": train}, betas=betas)
    forward = dict(m.last_ais)
    reverse_estimate = m.log_partition(method="reverse-ais", data={"v": train}, betas=betas)
    plot.ais(forward, m, path=out / "rbm_ais.png", title="AIS, 2,000 temperatures, 100 runs each")
    print(f"log Z: forward {forward_estimate.log_z:.2f} ± {forward_estimate.sd:.2f}, "
          f"reverse {reverse_estimate.log_z:.2f} ± {reverse_estimate.sd:.2f}; wrote {out}/rbm_*.png")


if __name__ == "__main__":
    main()
