"""Real groups coupled to themselves: the mean-covariance RBM (models/mcrbm.gdl) and a Gaussian
graphical model (issue 21, item 1).

Given hc and hm, v is Gaussian with precision A = I + C diag(P hc) C^T and mean A^-1 (b + W hm);
on a tiny instance (2 visible, 2 + 2 binary hidden: 16 discrete states) p(hc, hm) and the first
two moments of v follow in closed form (numpy below), and so do the free energies and log Z.

Tolerances: 20,000 independent chains, 30 sweeps each (the tiny model mixes in a few). TV of the
discrete units: mean + 4 sd of the TV of as many i.i.d. draws (400 simulations, fixed seed).
Moments of v: 4 standard errors, from the exact variances (i.i.d. draws).
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from scipy.special import logsumexp

import gdsl
from conftest import differences
from gdsl.driver import compile_source
from gdsl.errors import Source

MODEL = Path(__file__).resolve().parents[1] / "models" / "mcrbm.gdl"
TINY = dict(nv=2, nf=2, nc=2, nm=2)
N, STEPS = 20_000, 30


@pytest.fixture(scope="module")
def model():
    m = gdsl.load(str(MODEL), seed=0, dtype="float64", **TINY)
    rng = np.random.default_rng(1)
    m.params.update({"C": rng.normal(0, 1, (2, 2)), "P": rng.uniform(0.3, 1.5, (2, 2)),
                     "W": rng.normal(0, 1, (2, 2)), "b": rng.normal(0, 1, 2), "cc": rng.normal(0, 1, 2),
                     "cm": rng.normal(0, 1, 2)})
    return m


def params(m):
    return {k: np.asarray(v, np.float64) for k, v in m.params.items()}


def gaussian_given(p, hc, hm):
    """(precision, linear term) of v given the hidden units."""
    return np.eye(len(p["b"])) + p["C"] @ np.diag(p["P"] @ hc) @ p["C"].T, p["b"] + p["W"] @ hm


def exact(m):
    """Hidden states (hc, hm), their probabilities, E[v], E[v^2] and log Z."""
    p = params(m)
    bits = list(itertools.product((0.0, 1.0), repeat=2))
    states, logw, mean, second = [], [], [], []
    for hc in map(np.array, bits):
        for hm in map(np.array, bits):
            a, f = gaussian_given(p, hc, hm)
            cov = np.linalg.inv(a)
            mu = cov @ f
            states.append((hc, hm))
            logw.append(p["cc"] @ hc + p["cm"] @ hm + 0.5 * f @ mu - 0.5 * np.linalg.slogdet(a)[1]
                        + 0.5 * len(f) * np.log(2 * np.pi))
            mean.append(mu)
            second.append(np.diag(cov) + mu ** 2)
    logw = np.array(logw)
    w = np.exp(logw - logsumexp(logw))
    return states, w, w @ np.array(mean), w @ np.array(second), logsumexp(logw)


def energy(p, v, hc, hm):
    u = v @ p["C"]  # (n, nf)
    return (0.5 * (v ** 2).sum(1) + 0.5 * ((u ** 2) @ p["P"] * hc).sum(1) - np.einsum("ni,ij,nj->n", v, p["W"], hm)
            - v @ p["b"] - hc @ p["cc"] - hm @ p["cm"])


def test_the_plan_draws_v_as_one_gaussian():
    c = compile_source(Source(MODEL.read_text(), "mcrbm.gdl"), until="plan")
    assert c.plan.groups["v"].coupled
    assert "multivariate Gaussian" in c.plan.groups["v"].conditional


def test_gibbs_matches_the_exact_mixture(model):
    states, w, m1, m2, _ = exact(model)
    s = model.sample(N, steps=STEPS)
    index = (s["hc"] @ [8, 4] + s["hm"] @ [2, 1]).astype(int)  # the order of `exact`
    freq = np.bincount(index, minlength=16) / N
    rng = np.random.default_rng(0)
    tvs = [0.5 * np.abs(rng.multinomial(N, w) / N - w).sum() for _ in range(400)]
    tv = 0.5 * np.abs(freq - w).sum()
    assert tv < np.mean(tvs) + 4 * np.std(tvs), f"TV {tv:.4f}"
    se = np.sqrt((m2 - m1 ** 2) / N)
    assert np.all(np.abs(s["v"].mean(0) - m1) < 4 * se), (s["v"].mean(0), m1)
    fourth = (s["v"] ** 4).mean(0)
    assert np.all(np.abs((s["v"] ** 2).mean(0) - m2) < 4 * np.sqrt((fourth - m2 ** 2) / N)), ((s["v"] ** 2).mean(0), m2)


def test_energy_and_free_energies_match_numpy(model):
    p = params(model)
    rng = np.random.default_rng(2)
    v = rng.normal(0, 1, (9, 2))
    hc = (rng.random((9, 2)) < 0.5).astype(float)
    hm = (rng.random((9, 2)) < 0.5).astype(float)
    np.testing.assert_allclose(model.energy({"v": v, "hc": hc, "hm": hm}), energy(p, v, hc, hm), rtol=1e-10)
    # v summed out: the Gaussian integral with its log determinant
    want = []
    for a_hc, a_hm in zip(hc, hm):
        a, f = gaussian_given(p, a_hc, a_hm)
        want.append(-(p["cc"] @ a_hc + p["cm"] @ a_hm + 0.5 * f @ np.linalg.solve(a, f)
                      - 0.5 * np.linalg.slogdet(a)[1] + np.log(2 * np.pi)))
    np.testing.assert_allclose(model.free_energy({"hc": hc, "hm": hm}), want, rtol=1e-10)
    # the hidden units summed out, v given
    bits = np.array(list(itertools.product((0.0, 1.0), repeat=2)))
    e = np.stack([energy(p, v, np.repeat(a[None], 9, 0), np.repeat(b[None], 9, 0)) for a in bits for b in bits], 1)
    np.testing.assert_allclose(model.free_energy({"v": v}), -logsumexp(-e, axis=1), rtol=1e-10)


def test_log_partition_exact_and_ais(model):
    log_z = exact(model)[-1]
    assert model.log_partition() == pytest.approx(log_z, rel=1e-10)
    est = model.log_partition(method="ais", runs=100)
    assert abs(est.log_z - log_z) < 4 * est.sd + 0.02, (est, log_z)


def test_mean_field_of_v_is_the_gaussian_mean(model):
    p = params(model)
    hc, hm = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    a, f = gaussian_given(p, hc[0], hm[0])
    got = model.mean_field({"hc": hc, "hm": hm})["v"][0]
    np.testing.assert_allclose(got, np.linalg.solve(a, f), rtol=1e-10)


def test_energy_gradient_matches_finite_differences(model):
    rng = np.random.default_rng(3)
    st = {"v": rng.normal(0, 1, (5, 2)), "hc": (rng.random((5, 2)) < 0.5) * 1.0,
          "hm": (rng.random((5, 2)) < 0.5) * 1.0}
    names = list(model.params)
    bufs = {k: np.zeros(model.shape(k) or (1,)) for k in names}
    model.KERNELS["energy_grad"](*model.kernel_args({g: np.ascontiguousarray(v) for g, v in st.items()}), 1.0,
                                 *(bufs[k] for k in names))
    want = differences(model, lambda: model.energy(st).sum(), eps=1e-6)
    for name in names:
        np.testing.assert_allclose(bufs[name].reshape(model.shape(name)), want[name], rtol=1e-5, atol=1e-7,
                                   err_msg=name)


def test_pcd_raises_the_exact_log_likelihood(model):
    data = {"v": model.sample(2000, steps=STEPS)["v"]}
    student = gdsl.load(str(MODEL), seed=5, dtype="float64", **TINY)
    before = np.mean(student.log_prob(data))
    student.fit(data, method="pcd", lr=0.05, epochs=60, batch_size=50, progress=False, monitor=None)
    after = np.mean(student.log_prob(data))
    teacher = np.mean(model.log_prob(data))
    assert after > before + 0.5 * (teacher - before), (before, after, teacher)


GAUSSIAN_BM = """
model gbm(n = 3) {
    visible x[n]: real
    param L[n, n]: symmetric
    energy sum(x^2) / 2 - (x @ L @ x) / 2
}
"""


def test_a_gaussian_graphical_model_and_a_precision_that_is_not_positive_definite(tmp_path):
    path = tmp_path / "gbm.gdl"
    path.write_text(GAUSSIAN_BM)
    m = gdsl.load(str(path), seed=0, dtype="float64")
    m.params["L"] = np.array([[0.0, 0.4, 0.0], [0.4, 0.0, 0.3], [0.0, 0.3, 0.0]])
    s = m.sample(20_000, steps=3)["x"]
    cov = np.linalg.inv(np.eye(3) - m.params["L"])
    np.testing.assert_allclose(np.cov(s.T), cov, atol=0.05)
    m.params["L"] = np.array([[0.0, 2.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # I - L has eigenvalue -1
    with pytest.raises(ValueError, match=r"precision of x \(not positive definite\) is not positive"):
        m.sample(10, steps=1)
    with pytest.raises(ValueError, match=r"precision of x \(not positive definite\)"):
        m.log_partition()
