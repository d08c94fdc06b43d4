"""PyTorch (CPU) versions of the RBM algorithms the benchmarks time, and the worker process
that runs them.

Used by bench/learning.py (`--only torch`) and bench/gibbs.py (`--only torch`), which start
this file as a child process, one per run, with the thread count fixed before torch is
imported (OMP_NUM_THREADS, MKL_NUM_THREADS, ... in the environment, and torch.set_num_threads
here). Nothing of gdsl or numba is imported in this process.

    python bench/torch_rbm.py pcd   --threads N --n 10000 --epochs 5 --out params.npz
    python bench/torch_rbm.py gibbs --threads N --repeats 5 --steps 20

Each prints one JSON line on stdout (the last line) with its timings.

The arithmetic is the one gdsl's compiled PCD-1 epoch does (bench/learning.py's docstring
spells it out), dense and in float32, with W laid out nv x nh like gdsl's parameter:

    per minibatch of B rows v_pos (visited in a fresh random order each epoch), B chains:
        h_pos  = sigmoid(v_pos W + c)                     positive phase: hidden means
        v_neg ~ Bernoulli(sigmoid(h_chain W^T + b))       one Gibbs step on the persistent chains,
        h_neg  = sigmoid(v_neg W + c)                        block v then block h
        h_chain ~ Bernoulli(h_neg)
        W += lr/B (v_pos^T h_pos - v_neg^T h_neg)         Rao-Blackwellised statistics, plain SGD
        b += lr/B (sum v_pos - sum v_neg);  c += lr/B (sum h_pos - sum h_neg)

W starts N(0, 0.01) (standard deviation), the biases at zero, the persistent hidden chains
at random bits: as gdsl's model and its fit(method="pcd").

Written to be fast in PyTorch's own terms: no autograd (torch.inference_mode), fused
bias-plus-product (addmm), in-place sigmoid, the weight update as two in-place addmm_ on W,
buffers allocated once. A Bernoulli draw is `rand < p` (torch.rand into a buffer, then
torch.lt): on this machine that is about 4x faster than torch.bernoulli(p) with a tensor of
probabilities (0.24 ms against 0.88 ms for 100 x 784 on one thread), so PyTorch gets the
faster of its two idioms.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time


def _threads_from_argv(argv) -> int:
    n = int(argv[argv.index("--threads") + 1]) if "--threads" in argv else 1
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(n))
    return n


if __name__ == "__main__":
    _threads_from_argv(sys.argv)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from rbm_check import small_model_check  # noqa: E402  (bench/ is on sys.path when run as a script)


class TorchRBM:
    """A binary RBM in float32 torch tensors: W (nv x nh), b (nv), c (nh)."""

    def __init__(self, nv: int, nh: int, seed: int = 0):
        self.gen = torch.Generator().manual_seed(seed)
        self.W = torch.randn(nv, nh, generator=self.gen, dtype=torch.float32).mul_(0.01)
        self.b = torch.zeros(nv, dtype=torch.float32)
        self.c = torch.zeros(nh, dtype=torch.float32)

    @property
    def nv(self) -> int:
        return self.W.shape[0]

    @property
    def nh(self) -> int:
        return self.W.shape[1]

    def _draw(self, p, u, out):
        """out = (u < p) with u ~ U[0, 1): a Bernoulli(p) draw into `out` (float32)."""
        torch.rand(p.shape, generator=self.gen, out=u)
        torch.lt(u, p, out=out)
        return out

    # ------------------------------------------------------------------ block Gibbs sampling
    def gibbs(self, v, h, steps: int, bufs=None):
        """`steps` block-Gibbs sweeps in place on chains v (n x nv) and h (n x nh): block v
        given h, then block h given v, as gdsl's kernel sweeps this model's blocks {v} | {h}."""
        n = v.shape[0]
        if bufs is None:
            bufs = self.gibbs_buffers(n)
        ph, uh, pv, uv = bufs
        W, Wt = self.W, self.W.t()
        for _ in range(steps):
            torch.addmm(self.b, h, Wt, out=pv)
            pv.sigmoid_()
            self._draw(pv, uv, v)
            torch.addmm(self.c, v, W, out=ph)
            ph.sigmoid_()
            self._draw(ph, uh, h)
        return v, h

    def gibbs_buffers(self, n: int):
        e = lambda *s: torch.empty(*s, dtype=torch.float32)  # noqa: E731
        return e(n, self.nh), e(n, self.nh), e(n, self.nv), e(n, self.nv)

    # ------------------------------------------------------------------ PCD-1 learning
    def pcd_epoch(self, X, h_chain, lr: float, batch: int, bufs=None):
        """One epoch of PCD-1 over X (N x nv float32 tensor) with persistent hidden chains
        h_chain (batch x nh, updated in place); minibatches in a fresh random order."""
        N = X.shape[0]
        if bufs is None:
            bufs = self.pcd_buffers(batch)
        h_pos, pv, uv, v_neg, h_neg, uh = bufs
        W, Wt, b, c = self.W, self.W.t(), self.b, self.c
        order = torch.randperm(N, generator=self.gen)
        for start in range(0, N, batch):
            v_pos = X.index_select(0, order[start:start + batch])
            B = v_pos.shape[0]
            step = lr / B
            # positive phase: hidden means with the data clamped
            torch.addmm(c, v_pos, W, out=h_pos[:B])
            h_pos[:B].sigmoid_()
            # negative phase: one Gibbs step on the persistent chains, v then h
            torch.addmm(b, h_chain, Wt, out=pv)
            pv.sigmoid_()
            self._draw(pv, uv, v_neg)
            torch.addmm(c, v_neg, W, out=h_neg)
            h_neg.sigmoid_()
            # biases first (they read the statistics only), then W
            b.add_(v_pos.sum(0).sub_(v_neg.sum(0)), alpha=step)
            c.add_(h_pos[:B].sum(0).sub_(h_neg.sum(0)), alpha=step)
            W.addmm_(v_pos.t(), h_pos[:B], alpha=step)
            W.addmm_(v_neg.t(), h_neg, alpha=-step)
            # the chains' next hidden state, drawn from E[h | v_neg] (the Gibbs half-step)
            self._draw(h_neg, uh, h_chain)

    def pcd_buffers(self, batch: int):
        e = lambda *s: torch.empty(*s, dtype=torch.float32)  # noqa: E731
        return (e(batch, self.nh), e(batch, self.nv), e(batch, self.nv), e(batch, self.nv),
                e(batch, self.nh), e(batch, self.nh))

    def random_bits(self, *shape):
        return torch.rand(*shape, generator=self.gen).lt_(0.5).float()

    def params_numpy(self):
        return self.W.numpy().copy(), self.b.numpy().copy(), self.c.numpy().copy()


# ---------------------------------------------------------------------- worker entry points
def run_pcd(args) -> dict:
    X = np.load(args.data)[args.split][:args.n].astype(np.float32)
    Xt = torch.from_numpy(X)
    nv, nh = X.shape[1], args.nh
    # warm-up on a throwaway model (first-call costs of the kernels and the allocator), excluded
    warm = TorchRBM(nv, nh, seed=args.seed + 1)
    warm.pcd_epoch(Xt[:2 * args.batch], warm.random_bits(args.batch, nh), args.lr, args.batch)

    rbm = TorchRBM(nv, nh, seed=args.seed)
    chains = rbm.random_bits(args.batch, nh)
    bufs = rbm.pcd_buffers(args.batch)
    times = []
    for _ in range(args.epochs):
        t = time.perf_counter()
        rbm.pcd_epoch(Xt, chains, args.lr, args.batch, bufs)
        times.append(time.perf_counter() - t)
    if args.out:
        W, b, c = rbm.params_numpy()
        np.savez(args.out, W=W, b=b, c=c)
    return {"side": "torch", "times": times}


def run_gibbs(args) -> dict:
    rbm = TorchRBM(args.nv, args.nh, seed=args.seed)
    n = args.chains
    v, h = rbm.random_bits(n, args.nv), rbm.random_bits(n, args.nh)
    bufs = rbm.gibbs_buffers(n)
    rbm.gibbs(v, h, 2, bufs)
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        rbm.gibbs(v, h, args.steps, bufs)
        times.append((time.perf_counter() - t) / args.steps)
    out = {"side": "torch", "times": times}
    if args.check:
        out["check"] = small_model_check(lambda W, b, c, v, h, steps: _torch_sample(W, b, c, v, h, steps, args.seed))
    return out


def _torch_sample(W, b, c, v, h, steps, seed):
    rbm = TorchRBM(W.shape[0], W.shape[1], seed=seed)
    rbm.W = torch.from_numpy(np.ascontiguousarray(W, dtype=np.float32))
    rbm.b = torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32))
    rbm.c = torch.from_numpy(np.ascontiguousarray(c, dtype=np.float32))
    vt, ht = torch.from_numpy(v.astype(np.float32)), torch.from_numpy(h.astype(np.float32))
    rbm.gibbs(vt, ht, steps)
    return vt.numpy(), ht.numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("pcd", "gibbs"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=None)
    ap.add_argument("--split", default="train")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--nv", type=int, default=784)
    ap.add_argument("--nh", type=int, default=500)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--out", default=None, help="write the trained W, b, c here (npz)")
    ap.add_argument("--chains", type=int, default=100)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--check", action="store_true", help="also run the small-model sampler check")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    info = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    with torch.inference_mode():
        result = run_pcd(args) if args.what == "pcd" else run_gibbs(args)
    print(json.dumps({**info, **result}))


if __name__ == "__main__":
    main()
