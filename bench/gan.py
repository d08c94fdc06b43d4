"""A generative adversarial network (models/gan.gdl, Goodfellow et al. 2014) trained on binarised
MNIST with fit(method="adversarial"), a grid of its samples, and the Parzen-window estimate of
its test log-likelihood (the protocol of the paper's table 1, gdsl.parzen_log_likelihood).

    python bench/gan.py                     # 25 epochs on 50,000 images, nh 256; ~11 min on 2 busy cores
    python bench/gan.py --epochs 5          # a quick look (about 20-25 s an epoch on 2 busy cores)
    python bench/gan.py --no-parzen         # train and draw the grid only
    python bench/gan.py --n-valid 2000      # choose the Parzen width on fewer validation images: faster
    python bench/gan.py --grid docs/gan_samples.png   # where the sample grid goes (the default)

The generator draws x = mean + s * eps with a linear output layer (models/gan.gdl), so its
samples are real numbers near [0, 1]; the grid shows them clipped to [0, 1]. The published
Parzen figure (225 ± 2 nats) is on real-valued MNIST, ours on the binarised images: the two are
not comparable, only the protocol is (docs/evaluation.md says what such estimates are worth).
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

DATA = ROOT.parent / "shared" / "data" / "binarized_mnist.npz"
PUBLISHED = ("Adversarial nets (Goodfellow et al. 2014, table 1; real-valued MNIST)", "225 ± 2")


def save_grid(images: np.ndarray, path: Path, rows: int = 10, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = len(images) // rows
    tiles = np.clip(images[:rows * cols], 0.0, 1.0).reshape(rows, cols, 28, 28)
    canvas = np.ones((rows * 29 + 1, cols * 29 + 1))
    for r in range(rows):
        for c in range(cols):
            canvas[1 + 29 * r:29 * (r + 1), 1 + 29 * c:29 * (c + 1)] = tiles[r, c]
    fig, ax = plt.subplots(figsize=(cols * 0.6, rows * 0.6 + 0.4))
    ax.imshow(canvas, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--nh", type=int, default=256, help="hidden units of every layer (generator and discriminator)")
    ap.add_argument("--nz", type=int, default=100, help="latent dimension")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--k", type=int, default=1, help="discriminator steps per generator step")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--n-train", type=int, default=50000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=10000, help="samples for the Parzen estimate")
    ap.add_argument("--n-valid", type=int, default=10000, help="validation images the Parzen width is chosen on")
    ap.add_argument("--no-parzen", action="store_true")
    ap.add_argument("--grid", type=Path, default=ROOT / "docs" / "gan_samples.png")
    ap.add_argument("--checkpoint", type=Path, default=None, help="write a checkpoint here after every epoch")
    ap.add_argument("--threads", default=None, help="BLAS threads (read by common.set_blas_threads)")
    args = ap.parse_args(argv)

    def log(text: str) -> None:
        print(text, flush=True)

    train, valid, test = load_binarised_mnist(DATA, args.n_train, args.n_valid, log)

    m = gdsl.load(ROOT / "models" / "gan.gdl", seed=args.seed, nz=args.nz, nh=args.nh)
    t = time.perf_counter()

    def report(model, record):
        log(f"  epoch {record['epoch']:3d}  d_loss {record['d_loss']:.4f}  g_loss {record['g_loss']:.4f}  "
            f"D(data) {record['d_real']:.3f}  D(sample) {record['d_fake']:.3f}  ({time.perf_counter() - t:.0f} s)")

    history = m.fit({"x": train}, method="adversarial", epochs=args.epochs, batch_size=args.batch_size,
                    lr=args.lr, k=args.k, callback=report, progress=False, checkpoint=args.checkpoint)
    train_s = time.perf_counter() - t
    log(f"gan 784-{args.nz}-{args.nh}: {len(history)} epochs, Adam lr {args.lr:g} beta1 0.5, batch "
        f"{args.batch_size}, k {args.k}, non-saturating generator loss: {train_s:.0f} s "
        f"({train_s / max(1, len(history)):.0f} s an epoch)")

    grid = m.generate(100, noise={"z": np.random.default_rng(12345).standard_normal((100, args.nz)),
                                  "x": np.zeros((100, 784))})["x"]  # the generator's means, fixed latent points
    save_grid(np.asarray(grid), args.grid, title=f"models/gan.gdl on binarised MNIST, {len(history)} epochs")
    log(f"sample grid (generator means at 100 fixed latent points, clipped to [0, 1]): {args.grid}")

    if args.no_parzen:
        return
    t = time.perf_counter()
    samples = np.asarray(m.sample(args.samples)["x"], np.float64)
    est = gdsl.parzen_log_likelihood(samples, test, validation=valid)
    log(f"Parzen window estimate on the {len(test)} test images from {len(samples)} samples, width chosen on "
        f"{len(valid)} validation images: {est} ({time.perf_counter() - t:.0f} s)")
    log("")
    log("| model | Parzen log-likelihood (nats) |")
    log("| --- | --- |")
    log(f"| gdsl models/gan.gdl, binarised MNIST, {len(history)} epochs | {est.mean:.1f} ± {est.se:.1f} |")
    log(f"| {PUBLISHED[0]} | {PUBLISHED[1]} |")
    log("(different data: binarised vs real-valued images; not comparable, only the protocol is)")


if __name__ == "__main__":
    main()
