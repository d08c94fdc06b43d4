"""The shipped convolutional RBM with probabilistic max pooling (models/conv_rbm.gdl) on tiny
instances, against a numpy reference written from the paper's definitions (issue 21, item 3):
a filter bank W[k] correlated with the image, detector units in 2x2 pooling blocks of which at
most one is on.

Tolerances as in tests/test_pooling.py: independent chains, TV bound = mean + 4 sd of the TV of
as many i.i.d. multinomial draws from the exact law (400 simulations, fixed seed).
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from scipy.special import logsumexp

import gdsl
from conftest import differences

MODEL = str(Path(__file__).resolve().parents[1] / "models" / "conv_rbm.gdl")
N = 40_000


def load(seed=0, dtype="float64", **sizes):  # one dtype in this file: one compilation of each kernel
    m = gdsl.load(MODEL, seed=seed, dtype=dtype, **sizes)
    rng = np.random.default_rng(seed + 100)
    m.params.update({"W": rng.normal(0, 1, m.shape("W")), "b": rng.normal(0, 0.5, m.shape("b")),
                     "c": rng.normal(0, 0.5, m.shape("c"))})
    return m


def detector_maps(h):
    """(n, nk, np, np, 4) -> (n, nk, 2 np, 2 np): unit 2s + t of block (p, q) at (2p + s, 2q + t)."""
    n, nk, npool = h.shape[:3]
    return h.reshape(n, nk, npool, npool, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, nk, 2 * npool, 2 * npool)


def correlate(v, W):
    """Valid correlation of each image with each filter: (n, nk, 2 np, 2 np)."""
    f = W.shape[1]
    out_size = v.shape[1] - f + 1
    out = np.zeros((len(v), len(W), out_size, out_size))
    for a in range(f):
        for e in range(f):
            out += W[None, :, a, e, None, None] * v[:, None, a:a + out_size, e:e + out_size]
    return out


def energy(p, v, h):
    hmap = detector_maps(h)
    return (-(hmap * correlate(v, p["W"])).sum((1, 2, 3)) - p["b"].reshape(()) * v.sum((1, 2))
            - (hmap.sum((2, 3)) * p["c"][None]).sum(1))


def free_energy(p, v):
    fields = correlate(v, p["W"]) + p["c"][None, :, None, None]  # detector fields
    n, nk, d = fields.shape[:3]
    blocks = fields.reshape(n, nk, d // 2, 2, d // 2, 2)
    return -p["b"].reshape(()) * v.sum((1, 2)) - np.log1p(np.exp(blocks).sum((3, 5))).sum((1, 2, 3))


def all_states(side, nk, npool):
    rows = np.vstack([np.eye(4), np.zeros((1, 4))])
    vs, hs = [], []
    for bits in itertools.product((0.0, 1.0), repeat=side * side):
        for idx in itertools.product(range(5), repeat=nk * npool * npool):
            vs.append(np.reshape(bits, (side, side)))
            hs.append(rows[list(idx)].reshape(nk, npool, npool, 4))
    return np.array(vs), np.array(hs)


def params64(m):
    return {k: np.asarray(v, np.float64) for k, v in m.params.items()}


def tv_bound(p, n):
    rng = np.random.default_rng(0)
    tvs = [0.5 * np.abs(rng.multinomial(n, p) / n - p).sum() for _ in range(400)]
    return float(np.mean(tvs) + 4 * np.std(tvs))


def test_energy_and_free_energy_match_the_convolution(tmp_path):
    m = load(np=2, f=3, nk=2)  # 6x6 images
    rng = np.random.default_rng(1)
    v = (rng.random((20, 6, 6)) < 0.4).astype(float)
    h = np.vstack([np.eye(4), np.zeros((1, 4))])[rng.integers(0, 5, (20, 2, 2, 2))]
    p = params64(m)
    np.testing.assert_allclose(m.energy({"v": v, "h": h}), energy(p, v, h), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(m.free_energy({"v": v}), free_energy(p, v), rtol=1e-5, atol=1e-4)


def test_gibbs_matches_enumeration():
    m = load(np=1, f=1, nk=2)  # 2x2 images, 2 filters of 1x1: 16 x 25 = 400 joint states
    v, h = all_states(2, 2, 1)
    e = energy(params64(m), v, h)
    p = np.exp(-e - logsumexp(-e))
    s = m.sample(N, steps=30)
    assert set(np.unique(s["h"].sum(-1))) <= {0.0, 1.0}
    key = {(tuple(a.ravel()), tuple(b.ravel())): i for i, (a, b) in enumerate(zip(v, h))}
    idx = np.array([key[(tuple(a.ravel()), tuple(b.ravel()))] for a, b in zip(s["v"], s["h"])])
    freq = np.bincount(idx, minlength=len(p)) / N
    tv = 0.5 * np.abs(freq - p).sum()
    assert tv < tv_bound(p, N), f"TV {tv:.4f}"


def test_log_partition_exact_and_ais():
    m = load(np=1, f=2, nk=1)  # 3x3 images: 512 x 5 states
    v, h = all_states(3, 1, 1)
    log_z = logsumexp(-energy(params64(m), v, h))
    assert m.log_partition() == pytest.approx(log_z, rel=1e-6)
    est = m.log_partition(method="ais", runs=100)
    assert abs(est.log_z - log_z) < 4 * est.sd + 0.02, (est, log_z)


def test_gradient_matches_finite_differences_of_the_exact_log_likelihood():
    m = load(seed=3, dtype="float64", np=1, f=2, nk=1)
    rng = np.random.default_rng(5)
    data = {"v": (rng.random((6, 3, 3)) < 0.3).astype(float)}
    names = list(m.params)
    bufs = {k: np.zeros(m.shape(k) or (1,)) for k in names}

    def grad(state, alpha):
        st = {g: np.ascontiguousarray(state[g], dtype=np.float64) for g in m.group_names}
        m.KERNELS["energy_grad"](*m.kernel_args(st), float(alpha), *(bufs[k] for k in names))

    grad({"v": data["v"], "h": m.mean_field(data)["h"]}, 1.0 / 6)
    v, h = all_states(3, 1, 1)
    e = energy(params64(m), v, h)
    p = np.exp(-e - logsumexp(-e))
    for s in range(len(p)):
        grad({"v": v[s:s + 1], "h": h[s:s + 1]}, -p[s])
    want = differences(m, lambda: -np.mean(m.log_prob(data)))
    for name in names:
        np.testing.assert_allclose(bufs[name].reshape(m.shape(name)), want[name], rtol=1e-5, atol=1e-7, err_msg=name)
