"""The RNN-RBM's training epoch in PyTorch (CPU), the same algorithm as gdsl's
`fit(method="cd", k=...)` on models/rnnrbm.gdl, for bench/sequences.py --speed.

Per minibatch of pieces: the recurrence over the padded frames gives the states u[t - 1];
every frame's RBM biases follow from them; CD-k runs for all frames at once from the data
(the chains are independent given the states); the cost sum over frames of F(v) - F(v^-),
v^- held constant, is back-propagated through time by autograd; Adam steps every parameter.
The weights are initialised and named as in the .gdl file.
"""
from __future__ import annotations

import numpy as np
import torch


class RnnRbm:
    def __init__(self, nv=88, nh=150, nu=100, seed=0, lr=1e-3):
        g = torch.Generator().manual_seed(seed)

        def normal(*shape):
            return (0.01 * torch.randn(*shape, generator=g, dtype=torch.float64)).requires_grad_()

        def zeros(*shape):
            return torch.zeros(*shape, dtype=torch.float64, requires_grad=True)
        self.p = {"W": normal(nv, nh), "bv": zeros(nv), "bh": zeros(nh), "Wuv": normal(nv, nu),
                  "Wuh": normal(nh, nu), "Wvu": normal(nu, nv), "Wuu": normal(nu, nu), "bu": zeros(nu),
                  "u0": zeros(nu)}
        self.opt = torch.optim.Adam(self.p.values(), lr=lr)
        self.gen = torch.Generator().manual_seed(seed + 1)

    def free_energy(self, v, bv, bh):
        return -(v * bv).sum(1) - torch.nn.functional.softplus(bh + v @ self.p["W"]).sum(1)

    def step(self, padded: np.ndarray, lengths: np.ndarray, k: int) -> float:
        p = self.p
        x = torch.from_numpy(padded)  # (n, T, nv)
        n, T, _ = x.shape
        u = p["u0"].expand(n, -1)
        before = []
        for t in range(T):  # the states before each step
            before.append(u)
            u = torch.tanh(p["bu"] + x[:, t] @ p["Wvu"].T + u @ p["Wuu"].T)
        U = torch.stack(before, 1)  # (n, T, nu)
        mask = torch.from_numpy(np.arange(T)[None, :] < lengths[:, None])
        v, u_prev = x[mask], U[mask]  # every frame (N, nv), (N, nu)
        bv = p["bv"] + u_prev @ p["Wuv"].T
        bh = p["bh"] + u_prev @ p["Wuh"].T
        with torch.no_grad():  # CD-k from the data
            h = torch.bernoulli(torch.sigmoid(bh + v @ p["W"]), generator=self.gen)
            s = v
            for _ in range(k):
                s = torch.bernoulli(torch.sigmoid(bv + h @ p["W"].T), generator=self.gen)
                h = torch.bernoulli(torch.sigmoid(bh + s @ p["W"]), generator=self.gen)
        cost = (self.free_energy(v, bv, bh) - self.free_energy(s, bv, bh)).sum() / n
        self.opt.zero_grad()
        cost.backward()
        self.opt.step()
        return float(cost.detach())

    def epoch(self, pieces: list, batch: int, k: int, rng: np.random.Generator) -> None:
        order = rng.permutation(len(pieces))
        for start in range(0, len(pieces), batch):
            chunk = [pieces[i] for i in order[start:start + batch]]
            lengths = np.array([len(c) for c in chunk])
            padded = np.zeros((len(chunk), lengths.max(), chunk[0].shape[1]))
            for i, c in enumerate(chunk):
                padded[i, :len(c)] = c
            self.step(padded, lengths, k)
