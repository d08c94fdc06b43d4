"""Train models/conv_rbm.gdl on binarized MNIST and save a picture of the learned filters.

    python bench/train_conv_rbm.py --out /tmp/conv_rbm             # 10,000 images, 20 epochs
    python bench/train_conv_rbm.py --out /tmp/conv_rbm --resume      # go on from the checkpoint

PCD-1 with momentum, the existing learner (`fit`), a checkpoint every epoch in --out and a
log line per epoch (reconstruction error, pseudo-log-likelihood). At the end the 24 filters
are drawn to --picture (docs/conv_rbm_filters.png by default; needs matplotlib, the `bench`
extra). The weights are shared over the 20x20 detector positions, so the gradient of W sums
400 positions per image: the learning rate is about 400 times smaller than a dense RBM's.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import gdsl  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "binarized_mnist.npz"


def save_filters(W: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nk = len(W)
    cols = 8
    rows = -(-nk // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.1))
    for k, ax in enumerate(np.ravel(axes)):
        ax.axis("off")
        if k < nk:
            lim = np.abs(W[k]).max() or 1.0
            ax.imshow(W[k], cmap="gray", vmin=-lim, vmax=lim, interpolation="nearest")
    fig.suptitle("conv_rbm.gdl: 24 filters (9x9) learned on binarized MNIST")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, help="directory for the checkpoint and the log")
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--picture", default=str(ROOT / "docs" / "conv_rbm_filters.png"))
    args = ap.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = np.load(DATA)["train"][: args.images].reshape(-1, 28, 28).astype(np.float32)
    data = {"v": images}
    m = gdsl.load(ROOT / "models" / "conv_rbm.gdl", seed=0)
    ckpt = out / "checkpoint.npz"
    log = open(out / "log.jsonl", "a")

    def report(model, record):
        record = {k: float(v) if isinstance(v, (int, float, np.floating)) else v for k, v in record.items()}
        record["time"] = time.time()
        log.write(json.dumps(record) + "\n")
        log.flush()

    t = time.perf_counter()
    m.fit(data, method="pcd", lr=args.lr, momentum=0.5, epochs=args.epochs, batch_size=100,
          checkpoint=str(ckpt), resume=str(ckpt) if args.resume and ckpt.exists() else None,
          callback=report, progress=True)
    print(f"trained in {time.perf_counter() - t:.0f} s; reconstruction error {m.reconstruction_error(data):.4f}")
    save_filters(np.asarray(m.params["W"]), Path(args.picture))
    print(f"filters written to {args.picture}")


if __name__ == "__main__":
    main()
