"""The spike-and-slab RBM (models/ssrbm.gdl) and its blocked Gibbs scheme (issue 21, item 4).

The plan pairs the binary spike h with the real slab s (same shape, coupled only element by
element), and `gibbs` draws h with s summed out, then s given h, as one block. The three-block
scheme ({v} | {h} | {s}) is still what `gibbs_tempered` does at beta = 1 (AIS), so both are
checked against the exact law of a tiny instance: given h (4 states), (v, s) is jointly
Gaussian with precision [[diag lam, -W diag h], [-diag h W^T, diag alpha]] and linear term
(b, 0), so p(h) and the first two moments of v and s have closed forms.

Tolerances: 20,000 independent chains, 40 sweeps each. TV of h: mean + 4 sd of the TV of as
many i.i.d. draws (400 simulations, fixed seed). Moments: |estimate - exact| < 4 standard
errors (standard errors from the exact variances, for i.i.d. draws).
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

import gdsl
from gdsl.driver import compile_source, dump
from gdsl.errors import Source

MODEL = Path(__file__).resolve().parents[1] / "models" / "ssrbm.gdl"
N, STEPS = 20_000, 40


@pytest.fixture(scope="module")
def model():
    m = gdsl.load(str(MODEL), nv=2, nh=2, seed=3, dtype="float64")
    m.params.update({"W": np.array([[0.9, -0.6], [0.4, 0.8]]), "lam": np.array([1.5, 1.0]),
                     "alpha": np.array([1.2, 2.0]), "b": np.array([0.5, -0.3]), "c": np.array([-0.4, 0.3])})
    return m


def exact(m):
    """p(h) over the 4 spike states, and E[x], E[x^2] of x = (v, s)."""
    p = {k: np.asarray(v, np.float64) for k, v in m.params.items()}
    hs = np.array(list(itertools.product((0.0, 1.0), repeat=2)))
    logw, means, seconds = [], [], []
    for h in hs:
        prec = np.block([[np.diag(p["lam"]), -p["W"] * h], [-(p["W"] * h).T, np.diag(p["alpha"])]])
        lin = np.concatenate([p["b"], np.zeros(2)])
        cov = np.linalg.inv(prec)
        mu = cov @ lin
        logw.append(p["c"] @ h + 0.5 * lin @ mu - 0.5 * np.linalg.slogdet(prec)[1])
        means.append(mu)
        seconds.append(np.diag(cov) + mu ** 2)
    logw = np.array(logw)
    ph = np.exp(logw - logw.max())
    ph /= ph.sum()
    return hs, ph, ph @ np.array(means), ph @ np.array(seconds)


def h_index(h):
    return (h[:, 0] * 2 + h[:, 1]).astype(int)


def check_law(m, s):
    hs, ph, m1, m2 = exact(m)
    freq = np.bincount(h_index(s["h"]), minlength=4) / N
    rng = np.random.default_rng(0)
    tvs = [0.5 * np.abs(rng.multinomial(N, ph) / N - ph).sum() for _ in range(400)]
    tv = 0.5 * np.abs(freq - ph).sum()
    assert tv < np.mean(tvs) + 4 * np.std(tvs), f"TV of h {tv:.4f}"
    x = np.concatenate([s["v"], s["s"]], axis=1)
    var1 = m2 - m1 ** 2
    se1 = np.sqrt(var1 / N)
    assert np.all(np.abs(x.mean(0) - m1) < 4 * se1), (x.mean(0), m1)
    var2 = (x ** 4).mean(0) - m2 ** 2  # the sample's fourth moment: a bound, not the exact variance
    assert np.all(np.abs((x ** 2).mean(0) - m2) < 4 * np.sqrt(var2 / N) + 1e-3), ((x ** 2).mean(0), m2)


def test_the_plan_finds_the_spike_and_slab_block():
    c = compile_source(Source(MODEL.read_text(), "ssrbm.gdl"), until="plan")
    assert c.plan.collapsed == [("h", "s")]
    assert "collapsed block: h with s summed out, then s given h" in dump(c, "plan")


def test_a_coupling_across_elements_is_not_collapsed():
    text = MODEL.read_text().replace("- c @ h", "- c @ h - sum[j, k](s[j] * h[k])")
    c = compile_source(Source(text, "ssrbm.gdl"), until="plan")
    assert c.plan.collapsed == []


def test_blocked_scheme_matches_the_exact_law(model):
    check_law(model, model.sample(N, steps=STEPS))


def test_three_block_scheme_matches_the_exact_law(model):
    st = model.random_state(N)
    masks = model._masks({}, N)
    rng = model._streams(N)
    bases = {g: (np.zeros(int(np.prod(model.shape(g)))), np.zeros(int(np.prod(model.shape(g)))))
             for g in model.group_names}
    for _ in range(STEPS):
        assert model.call("gibbs_tempered", state=st, masks=masks, free={g: True for g in model.group_names},
                          bases=bases, beta=1.0, rng=rng)
    check_law(model, st)


def test_clamping_a_slab_falls_back_to_the_three_block_scheme(model):
    """With s clamped (some elements), summing it out would be wrong: h and v are drawn given it."""
    s = model.sample(200, steps=5, clamp={"s": np.array([1.0, -1.0])}, mask={"s": np.array([True, False])})
    assert np.all(s["s"][:, 0] == 1.0)
    assert np.unique(s["s"][:, 1]).size > 100


def log_likelihood(m, v):
    """Exact mean log p(v) in numpy: s integrated given h, h enumerated; log Z from the joint
    Gaussian of (v, s) for each h."""
    p = {k: np.asarray(a, np.float64) for k, a in m.params.items()}
    nv, nh = p["W"].shape
    hs = np.array(list(itertools.product((0.0, 1.0), repeat=nh)))
    proj = v @ p["W"]  # (n, nh)
    terms = hs @ p["c"] + (hs[None] * (proj ** 2 / (2 * p["alpha"]))[:, None]).sum(-1)  # (n, 2^nh)
    log_unnorm = (-0.5 * (p["lam"] * v ** 2).sum(1) + v @ p["b"] + np.logaddexp.reduce(terms, axis=1)
                  + 0.5 * np.log(2 * np.pi / p["alpha"]).sum())
    log_z = []
    for h in hs:
        prec = np.block([[np.diag(p["lam"]), -p["W"] * h], [-(p["W"] * h).T, np.diag(p["alpha"])]])
        lin = np.concatenate([p["b"], np.zeros(nh)])
        log_z.append(p["c"] @ h + 0.5 * lin @ np.linalg.solve(prec, lin) - 0.5 * np.linalg.slogdet(prec)[1]
                     + 0.5 * (nv + nh) * np.log(2 * np.pi))
    return float(np.mean(log_unnorm) - np.logaddexp.reduce(log_z))


def test_training_raises_the_exact_log_likelihood():
    """PCD on data from a teacher ssRBM raises the exact log p(v) (numpy, above)."""
    teacher = gdsl.load(str(MODEL), nv=3, nh=2, seed=1, dtype="float64")
    teacher.params["W"] = np.array([[0.6, -0.3], [0.2, 0.5], [-0.3, 0.2]])
    teacher.params["b"] = np.array([1.0, -0.5, 0.3])
    w = np.asarray(teacher.params["W"], np.float64)  # a proper joint: I - W^T W positive definite
    assert np.linalg.eigvalsh(np.eye(2) - w.T @ w).min() > 0.1
    data = {"v": teacher.sample(2000, steps=30)["v"]}
    student = gdsl.load(str(MODEL), nv=3, nh=2, seed=4, dtype="float64")
    before = log_likelihood(student, data["v"])
    student.fit(data, method="pcd", lr=0.01, epochs=20, batch_size=50, progress=False, monitor=None)
    after = log_likelihood(student, data["v"])
    best = log_likelihood(teacher, data["v"])
    assert after > before + 0.5 * (best - before), (before, after, best)


def test_free_energy_sums_out_the_pairs(model):
    """F(v) with h and s summed out together (the pair's log-normaliser) against numpy, also at an
    inverse temperature beta (as AIS uses it)."""
    v = np.random.default_rng(3).normal(0, 1, (7, 2))
    p = {k: np.asarray(a, np.float64) for k, a in model.params.items()}
    hs = np.array(list(itertools.product((0.0, 1.0), repeat=2)))
    for beta in (1.0, 0.37):
        proj = beta * (v @ p["W"])
        alpha = beta * p["alpha"]
        terms = beta * (hs @ p["c"]) + (hs[None] * (proj ** 2 / (2 * alpha))[:, None]).sum(-1)
        want = -(-0.5 * beta * (p["lam"] * v ** 2).sum(1) + beta * v @ p["b"] + np.logaddexp.reduce(terms, axis=1)
                 + 0.5 * np.log(2 * np.pi / alpha).sum())
        out = np.zeros(len(v))
        full = {"v": v, "h": np.zeros((7, 2)), "s": np.zeros((7, 2))}
        assert model.call("free_energy", state=full, summed={"v": False, "h": True, "s": True}, beta=beta, out=out)
        np.testing.assert_allclose(out, want, rtol=1e-10, atol=1e-10)
        if beta == 1.0:  # the public API sums out the default set, the pair
            np.testing.assert_allclose(model.free_energy({"v": v}), want, rtol=1e-10, atol=1e-10)


def test_ais_log_partition_of_a_tiny_ssrbm(model):
    """log Z by AIS (h and s summed out together along the way) against the closed form."""
    p = {k: np.asarray(a, np.float64) for k, a in model.params.items()}
    hs = np.array(list(itertools.product((0.0, 1.0), repeat=2)))
    log_z = []
    for h in hs:
        prec = np.block([[np.diag(p["lam"]), -p["W"] * h], [-(p["W"] * h).T, np.diag(p["alpha"])]])
        lin = np.concatenate([p["b"], np.zeros(2)])
        log_z.append(p["c"] @ h + 0.5 * lin @ np.linalg.solve(prec, lin) - 0.5 * np.linalg.slogdet(prec)[1]
                     + 2 * np.log(2 * np.pi))
    want = np.logaddexp.reduce(log_z)
    est = model.log_partition(method="ais", runs=100)
    assert abs(est.log_z - want) < 4 * est.sd + 0.02, (est, want)
