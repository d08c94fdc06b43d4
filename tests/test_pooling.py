"""Probabilistic max pooling: the domain categorical(K, off) (issue 21, item 2).

Each row of such a group is one-hot or all zero: K + 1 states, the all-zero one with logit 0
(Lee et al. 2009). Everything below is checked against an independent numpy reference on a
tiny model whose 2^3 * 3^2 = 72 joint states are enumerated: the Gibbs sampler (TV), the
exclusivity of units in a row, the free energy (log(1 + sum exp)), exact and AIS log Z, the
mean-field means, the compiled gradient statistics against finite differences of the exact
log-likelihood, and learning.

Tolerances: 20,000 independent chains after 30 sweeps (this model mixes in a few) give i.i.d.
draws; the TV bound is the mean + 4 sd of the TV of 20,000 i.i.d. multinomial draws from the
exact law (400 simulations, fixed seed). Exact quantities agree to float32 precision
(rtol 1e-5); the models are loaded in float64 (one dtype: each kernel is compiled once).
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import logsumexp

import gdsl
from conftest import differences
from gdsl.driver import compile_source, dump
from gdsl.errors import ModelErrors, Source

POOL = """
model pool(nv = 3, nb = 2, k = 2) {
    visible v[nv]: binary
    latent  h[nb, k]: categorical(k, off)

    param W[nv, nb, k] ~ normal(0, 1)
    param b[nv]
    param c[nb, k]

    energy -sum[i, a, j](v[i] * W[i, a, j] * h[a, j]) - b @ v - sum[a, j](c[a, j] * h[a, j])
}
"""
N = 20_000


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    p = tmp_path_factory.mktemp("pool") / "pool.gdl"
    p.write_text(POOL)
    return str(p)


@pytest.fixture(scope="module")
def model(path):
    m = gdsl.load(path, seed=5, dtype="float64")  # one dtype in this file: one compilation of each kernel
    rng = np.random.default_rng(11)
    m.params.update({"b": rng.normal(0, 1, 3), "c": rng.normal(0, 1, (2, 2))})
    return m


# --------------------------------------------------------------------------- numpy reference
def row_states(k: int) -> np.ndarray:
    """The K + 1 values of one row: the one-hot rows, then all zero."""
    return np.vstack([np.eye(k), np.zeros((1, k))])


def all_states(nv=3, nb=2, k=2):
    rows = row_states(k)
    vs, hs = [], []
    for v in itertools.product((0.0, 1.0), repeat=nv):
        for idx in itertools.product(range(k + 1), repeat=nb):
            vs.append(v)
            hs.append(rows[list(idx)])
    return np.array(vs), np.array(hs)


def energy(p, v, h):
    return (-np.einsum("ni,iaj,naj->n", v, p["W"], h) - v @ p["b"]
            - np.einsum("aj,naj->n", p["c"], h))


def params64(m):
    return {k: np.asarray(v, np.float64) for k, v in m.params.items()}


def exact(m):
    v, h = all_states()
    e = energy(params64(m), v, h)
    return v, h, np.exp(-e - logsumexp(-e)), logsumexp(-e)


def free_energy(p, v):
    """h summed out row by row: log(1 + sum_j exp(c_aj + sum_i v_i W_iaj))."""
    f = p["c"][None] + np.einsum("ni,iaj->naj", v, p["W"])
    return -v @ p["b"] - np.log1p(np.exp(f).sum(-1)).sum(-1)


def state_index(v, h):
    k = h.shape[-1]
    rows = np.where(h.sum(-1) == 0, k, h.argmax(-1))  # digit k: the all-zero row
    hv = (rows * (k + 1) ** np.arange(h.shape[1] - 1, -1, -1)).sum(1)
    vv = (v.astype(np.int64) * (1 << np.arange(v.shape[1] - 1, -1, -1))).sum(1)
    return vv * (k + 1) ** h.shape[1] + hv


def tv_bound(p, n):
    rng = np.random.default_rng(0)
    tvs = [0.5 * np.abs(rng.multinomial(n, p) / n - p).sum() for _ in range(400)]
    return float(np.mean(tvs) + 4 * np.std(tvs))


# --------------------------------------------------------------------------- the language
def test_the_domain_is_printed_as_written():
    c = compile_source(Source(POOL, "pool.gdl"), until="ir")
    assert "latent h[nb, k]: categorical(k, off)" in dump(c, "ir")


@pytest.mark.parametrize("domain", ["categorical(k, of)", "categorical(k, off, off)", "categorical(k, 2)"])
def test_other_second_arguments_are_refused(domain):
    text = POOL.replace("categorical(k, off)", domain)
    with pytest.raises(ModelErrors, match=r"categorical\(K\) or categorical\(K, off\)"):
        compile_source(Source(text, "pool.gdl"))


def test_units_of_one_row_cannot_be_coupled():
    text = POOL.replace("- b @ v -", "- sum[a](h[a, 0] * h[a, 1]) - b @ v -")
    with pytest.raises(ModelErrors, match="categorical variable h are coupled to each other"):
        compile_source(Source(text, "pool.gdl"))


# --------------------------------------------------------------------------- sampling
def test_gibbs_matches_enumeration(model):
    v, h, p, _ = exact(model)
    s = model.sample(N, steps=30)
    assert set(np.unique(s["h"].sum(-1))) <= {0.0, 1.0}  # never two units of a row on
    assert (s["h"].sum(-1) == 0).mean() > 0.05  # and the off state does occur
    order = state_index(v, h)
    assert sorted(order) == list(range(len(p)))
    want = np.empty_like(p)
    want[order] = p
    freq = np.bincount(state_index(s["v"], s["h"]), minlength=len(p)) / N
    tv = 0.5 * np.abs(freq - want).sum()
    assert tv < tv_bound(want, N), f"TV {tv:.4f}"


def test_rows_must_be_one_hot_or_zero(model):
    ok = {"v": np.zeros((1, 3)), "h": np.zeros((1, 2, 2))}
    model.energy(ok)
    bad = {"v": np.zeros((1, 3)), "h": np.ones((1, 2, 2))}
    with pytest.raises(ValueError, match=r"one-hot or all zero"):
        model.energy(bad)


# --------------------------------------------------------------------------- exact sums
def test_free_energy_is_log_one_plus_sum_exp(model):
    v = np.array(list(itertools.product((0.0, 1.0), repeat=3)))
    got = model.free_energy({"v": v})
    np.testing.assert_allclose(got, free_energy(params64(model), v), rtol=1e-5, atol=1e-5)


def test_energy_matches_reference(model):
    v, h, _, _ = exact(model)
    np.testing.assert_allclose(model.energy({"v": v, "h": h}), energy(params64(model), v, h), rtol=1e-5,
                               atol=1e-5)


def test_log_partition_exact_and_ais(model):
    _, _, _, log_z = exact(model)
    assert model.log_partition() == pytest.approx(log_z, rel=1e-6)
    data = model.sample(500, steps=20)
    for start in (None, data):  # a uniform base, and one fitted to data (its off counts included)
        est = model.log_partition(method="ais", data=start, runs=100)
        assert abs(est.log_z - log_z) < 4 * est.sd + 0.02, (start is None, est, log_z)


def test_mean_field_gives_the_exact_posterior_means(model):
    v = np.array(list(itertools.product((0.0, 1.0), repeat=3)))
    p = params64(model)
    f = p["c"][None] + np.einsum("ni,iaj->naj", v, p["W"])
    want = np.exp(f) / (1.0 + np.exp(f).sum(-1, keepdims=True))
    got = model.mean_field({"v": v})["h"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- learning
def nll_gradient_from_kernels(m, data):
    """E_data[dE/dtheta] (h at its exact posterior means: the energy is linear in h) minus
    E_model[dE/dtheta] by enumeration, through the compiled energy_grad."""
    names = list(m.params)
    bufs = {k: np.zeros(m.shape(k) or (1,), m.dtype) for k in names}

    def grad(state, alpha):
        st = {g: np.ascontiguousarray(state[g], dtype=m.dtype) for g in m.group_names}
        m.KERNELS["energy_grad"](*m.kernel_args(st), float(alpha), *(bufs[k] for k in names))

    q = m.mean_field(data)
    grad({"v": data["v"], "h": q["h"]}, 1.0 / len(data["v"]))
    v, h, p, _ = exact(m)
    grad({"v": v, "h": h}, 0.0)  # shapes only
    for s in range(len(p)):
        grad({"v": v[s:s + 1], "h": h[s:s + 1]}, -p[s])
    return {k: b.reshape(m.shape(k)).astype(np.float64) for k, b in bufs.items()}


def test_gradient_matches_finite_differences_of_the_exact_log_likelihood(path):
    m = gdsl.load(path, seed=2, dtype="float64")
    rng = np.random.default_rng(4)
    m.params.update({"b": rng.normal(0, 1, 3), "c": rng.normal(0, 1, (2, 2))})
    data = {"v": (rng.random((7, 3)) < 0.3).astype(float)}
    g = nll_gradient_from_kernels(m, data)
    want = differences(m, lambda: -np.mean(m.log_prob(data)))
    for name in m.params:
        np.testing.assert_allclose(g[name], want[name], rtol=1e-5, atol=1e-7, err_msg=name)
    assert max(np.abs(w).max() for w in want.values()) > 0.05


def test_pcd_raises_the_exact_log_likelihood(path, model):
    data = model.sample(2000, steps=20)
    data = {"v": data["v"]}
    student = gdsl.load(path, seed=9, dtype="float64")
    before = np.mean(student.log_prob(data))
    student.fit(data, method="pcd", lr=0.05, epochs=15, batch_size=50, progress=False, monitor=None)
    after = np.mean(student.log_prob(data))
    teacher = np.mean(model.log_prob(data))
    assert after > before + 0.5 * (teacher - before), (before, after, teacher)
