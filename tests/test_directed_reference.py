"""Checks of the numpy references in directed_reference.py against each other and against the
math (hand-computed tiny cases, normalisation, quadrature, Monte-Carlo with stated tolerances)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import directed_reference as ref

TINY = {
    "fvsbn": dict(d=6),
    "nade": dict(d=6, nh=4),
    "sbn": dict(nv=4, n1=3, n2=2),          # 2^9 = 512 joint states
    "dbn": dict(nv=3, n1=2, n2=2, n3=2),    # 2^9 = 512 joint states
    "vae": dict(d=6, nh=4, nz=1),
}


def params_for(model, seed, scale=1.0, **sizes):
    return ref.random_params(ref.model_shapes(model, **(sizes or TINY[model])), seed, scale)


def sig(a):
    return 1.0 / (1.0 + math.exp(-a))


def bern(x, p):
    return math.log(p if x == 1 else 1.0 - p)


def test_all_states_order():
    np.testing.assert_array_equal(ref.all_states(2), [[0, 0], [0, 1], [1, 0], [1, 1]])


# ----------------------------------------------------------------------------- FVSBN / NADE


def test_fvsbn_by_hand():
    p = params_for("fvsbn", 1, d=3)
    W, b = p["W"], p["b"]
    for x in ref.all_states(3):
        want = (bern(x[0], sig(b[0])) + bern(x[1], sig(b[1] + W[1, 0] * x[0]))
                + bern(x[2], sig(b[2] + W[2, 0] * x[0] + W[2, 1] * x[1])))
        assert ref.fvsbn_logp(p, x[None])[0] == pytest.approx(want, abs=1e-12)


def test_fvsbn_table_matches_logp():
    p = params_for("fvsbn", 2)
    states, probs = ref.table_fvsbn(p, TINY["fvsbn"]["d"])
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_array_equal(states["x"], ref.all_states(TINY["fvsbn"]["d"]))
    np.testing.assert_allclose(np.exp(ref.fvsbn_logp(p, states["x"])), probs, rtol=1e-10)


def test_nade_by_hand():
    p = params_for("nade", 3, d=2, nh=2)
    W, V, b, c = p["W"], p["V"], p["b"], p["c"]
    for x in ref.all_states(2):
        h0 = [sig(c[k]) for k in range(2)]
        h1 = [sig(c[k] + W[k, 0] * x[0]) for k in range(2)]
        want = (bern(x[0], sig(b[0] + V[0, 0] * h0[0] + V[0, 1] * h0[1]))
                + bern(x[1], sig(b[1] + V[1, 0] * h1[0] + V[1, 1] * h1[1])))
        assert ref.nade_logp_naive(p, x[None])[0] == pytest.approx(want, abs=1e-12)
        assert ref.nade_logp_numpy(p, x[None])[0] == pytest.approx(want, abs=1e-12)


def test_nade_table_matches_logp():
    p = params_for("nade", 4)
    states, probs = ref.table_nade(p, TINY["nade"]["d"])
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(np.exp(ref.nade_logp_naive(p, states["x"])), probs, rtol=1e-10)


@pytest.mark.parametrize("skip_zeros", [True, False])
def test_nade_numpy_equals_naive(skip_zeros):
    p = params_for("nade", 5, d=11, nh=7)
    x = (np.random.default_rng(6).random((37, 11)) < 0.4).astype(np.float64)
    want = ref.nade_logp_naive(p, x)
    for chunk in (8, 37, 512):   # chunk boundaries inside, at and beyond the row count
        got = ref.nade_logp_numpy(p, x, chunk=chunk, skip_zeros=skip_zeros)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
    got32 = ref.nade_logp_numpy(p, x.astype(np.float32), dtype=np.float32, chunk=8, skip_zeros=skip_zeros)
    np.testing.assert_allclose(got32, want, rtol=1e-4)
    np.testing.assert_allclose(ref.nade_logp_numpy(p, x.astype(np.uint8)), want, atol=1e-10)


def test_nade_numpy_rejects_non_binary():
    p = params_for("nade", 5)
    with pytest.raises(ValueError):
        ref.nade_logp_numpy(p, np.full((2, 6), 0.5))


# ----------------------------------------------------------------------------- SBN


def test_sbn_by_hand():
    p = params_for("sbn", 7, nv=1, n1=1, n2=1)
    s = {k: float(v.ravel()[0]) for k, v in p.items()}
    # p(v=1) = sum_{h2, h1} p(h2) p(h1 | h2) p(v=1 | h1)
    want = sum(math.exp(bern(h2, sig(s["c2"])) + bern(h1, sig(s["W2"] * h2 + s["c1"])))
               * sig(s["W1"] * h1 + s["b"]) for h2 in (0, 1) for h1 in (0, 1))
    assert ref.sbn_logp_exact(p, np.ones((1, 1)))[0] == pytest.approx(math.log(want), abs=1e-12)
    h = np.ones((1, 1))
    assert ref.sbn_log_joint(p, h, h, h)[0] == pytest.approx(
        math.log(sig(s["c2"]) * sig(s["W2"] + s["c1"]) * sig(s["W1"] + s["b"])), abs=1e-12)
    assert ref.sbn_guide_log_q(p, h, h, 0 * h)[0] == pytest.approx(
        math.log(sig(s["R1"] + s["d1"]) * (1 - sig(s["R2"] + s["d2"]))), abs=1e-12)


def test_sbn_table_and_exact_marginal():
    p = params_for("sbn", 8)
    states, probs = ref.table_sbn(p)
    assert list(states) == ["h2", "h1", "v"] and len(probs) == 2 ** 9
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(np.exp(ref.sbn_log_joint(p, states["h2"], states["h1"], states["v"])),
                               probs, rtol=1e-10)
    V = ref.all_states(TINY["sbn"]["nv"])
    code = states["v"] @ (2 ** np.arange(V.shape[1] - 1, -1, -1))
    marginal = np.bincount(code.astype(int), weights=probs)
    np.testing.assert_allclose(np.exp(ref.sbn_logp_exact(p, V)), marginal, rtol=1e-10)


def test_sbn_guide_normalised():
    p = params_for("sbn", 9)
    H = ref.all_states(TINY["sbn"]["n1"] + TINY["sbn"]["n2"])
    h1, h2 = H[:, :TINY["sbn"]["n1"]], H[:, TINY["sbn"]["n1"]:]
    for v in ref.all_states(TINY["sbn"]["nv"])[::5]:
        lq = ref.sbn_guide_log_q(p, np.broadcast_to(v, (len(H), v.size)), h1, h2)
        assert ref.logsumexp(lq) == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------- DBN


def test_dbn_by_hand():
    p = params_for("dbn", 10, nv=1, n1=1, n2=1, n3=1)
    s = {k: float(v.ravel()[0]) for k, v in p.items()}
    z = 1 + math.exp(s["c2"]) + math.exp(s["c3"]) + math.exp(s["W3"] + s["c2"] + s["c3"])
    assert ref.dbn_log_z_top(p) == pytest.approx(math.log(z), abs=1e-12)
    p_h2 = (math.exp(s["c2"]) + math.exp(s["W3"] + s["c2"] + s["c3"])) / z       # p(h2 = 1)
    want = sum((p_h2 if h2 else 1 - p_h2) * math.exp(bern(h1, sig(s["W2"] * h2 + s["c1"])))
               * sig(s["W1"] * h1 + s["b"]) for h2 in (0, 1) for h1 in (0, 1))
    assert ref.dbn_logp_exact(p, np.ones((1, 1)))[0] == pytest.approx(math.log(want), abs=1e-12)
    h = np.ones((1, 1))
    assert ref.dbn_log_joint_unnormalised(p, h, h, h, h)[0] == pytest.approx(
        s["W3"] + s["c2"] + s["c3"] + math.log(sig(s["W2"] + s["c1"]) * sig(s["W1"] + s["b"])), abs=1e-12)


def test_dbn_table_and_exact_marginal():
    p = params_for("dbn", 11)
    states, probs = ref.table_dbn(p)
    assert list(states) == ["h3", "h2", "h1", "v"] and len(probs) == 2 ** 9
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    lj = ref.dbn_log_joint_unnormalised(p, states["h3"], states["h2"], states["h1"], states["v"])
    np.testing.assert_allclose(np.exp(lj - ref.dbn_log_z_top(p)), probs, rtol=1e-10)
    V = ref.all_states(TINY["dbn"]["nv"])
    code = states["v"] @ (2 ** np.arange(V.shape[1] - 1, -1, -1))
    marginal = np.bincount(code.astype(int), weights=probs)
    np.testing.assert_allclose(np.exp(ref.dbn_logp_exact(p, V)), marginal, rtol=1e-10)


# ----------------------------------------------------------------------------- VAE


def test_vae_by_hand():
    p = params_for("vae", 12, d=3, nh=2, nz=2)
    x, z = np.array([1.0, 0.0, 1.0]), np.array([0.3, -1.2])
    h = [math.tanh(sum(p["Wh"][k, j] * z[j] for j in range(2)) + p["bh"][k]) for k in range(2)]
    want = sum(-0.5 * zj ** 2 - 0.5 * math.log(2 * math.pi) for zj in z)
    want += sum(bern(x[i], sig(sum(p["Wo"][i, k] * h[k] for k in range(2)) + p["bo"][i])) for i in range(3))
    assert ref.vae_log_joint(p, x[None], z[None])[0] == pytest.approx(want, abs=1e-12)
    e = [math.tanh(sum(p["Ex"][k, i] * x[i] for i in range(3)) + p["be"][k]) for k in range(2)]
    mean = [sum(p["Em"][j, k] * e[k] for k in range(2)) + p["bm"][j] for j in range(2)]
    std = [math.exp(sum(p["Es"][j, k] * e[k] for k in range(2)) + p["bs"][j]) for j in range(2)]
    lq = sum(-0.5 * ((z[j] - mean[j]) / std[j]) ** 2 - math.log(std[j] * math.sqrt(2 * math.pi))
             for j in range(2))
    assert ref.vae_log_q(p, x[None], z[None])[0] == pytest.approx(lq, abs=1e-12)


@pytest.fixture(scope="module")
def vae1d():
    p = params_for("vae", 13)
    x = (np.random.default_rng(14).random((4, TINY["vae"]["d"])) < 0.5).astype(np.float64)
    return p, x


def test_vae_quadrature_against_adaptive(vae1d):
    """Exact ELBO and log p(x) against scipy's adaptive quadrature of the full integrands
    q(z) [log p(x, z) - log q(z | x)] and p(x, z), over mean +- 12 std (resp. +- 12)."""
    from scipy.integrate import quad

    p, x = vae1d
    mean, std = ref.vae_guide(p, x)
    elbo, logp = [], []
    for r in range(len(x)):
        xr = x[r:r + 1]

        def f(z):
            zz = np.array([[z]])
            lq = ref.vae_log_q(p, xr, zz)[0]
            return math.exp(lq) * (ref.vae_log_joint(p, xr, zz)[0] - lq)

        m, s = mean[r, 0], std[r, 0]
        elbo.append(quad(f, m - 12 * s, m + 12 * s, epsabs=1e-12, epsrel=1e-12, limit=1000)[0])
        g = lambda z: math.exp(ref.vae_log_joint(p, xr, np.array([[z]]))[0])  # noqa: E731
        logp.append(math.log(quad(g, -12, 12, epsabs=0, epsrel=1e-12, limit=1000)[0]))
    np.testing.assert_allclose(ref.vae_elbo_exact_1d(p, x), elbo, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ref.vae_logp_exact_1d(p, x), logp, rtol=0, atol=1e-9)
    assert np.all(ref.vae_elbo_exact_1d(p, x) < ref.vae_logp_exact_1d(p, x))    # Jensen, q != posterior


def test_vae_reparam_elbo_and_iwae_monte_carlo(vae1d):
    """Per row: the mean of M one-sample ELBOs is within 5 standard errors of the exact ELBO;
    eps with a leading k = 1 axis gives the same values; the IWAE (k = 20) estimates average
    between ELBO - 5 se and log p(x) + 5 se, and above the ELBO on average over rows."""
    p, x = vae1d
    n, M, K = len(x), 20000, 20
    rng = np.random.default_rng(15)
    eps = rng.standard_normal((M, n, 1))
    xs = np.broadcast_to(x, (M,) + x.shape).reshape(M * n, -1)
    w = ref.vae_elbo_reparam(p, xs, eps.reshape(M * n, 1)).reshape(M, n)
    np.testing.assert_allclose(ref.vae_elbo_reparam(p, x, eps[:1]), w[0], rtol=1e-12)
    exact = ref.vae_elbo_exact_1d(p, x)
    se = w.std(axis=0, ddof=1) / math.sqrt(M)
    assert np.all(np.abs(w.mean(axis=0) - exact) < 5 * se), (w.mean(axis=0), exact, se)

    R = 2000
    iw = np.stack([ref.vae_elbo_reparam(p, x, rng.standard_normal((K, n, 1))) for _ in range(R)])
    se_iw = iw.std(axis=0, ddof=1) / math.sqrt(R)
    logp = ref.vae_logp_exact_1d(p, x)
    assert np.all(iw.mean(axis=0) > exact - 5 * se_iw)
    assert np.all(iw.mean(axis=0) < logp + 5 * se_iw)
    assert iw.mean() > w.mean()


# ----------------------------------------------------------------------------- total variation


def _expected_tv_bound(probs, N):
    """E[TV] <= 1/2 sum sqrt(p (1 - p) / N); TV moves by <= 1/N per sample, so by McDiarmid
    P(TV > E[TV] + 4/sqrt(N)) <= exp(-32)."""
    return 0.5 * np.sum(np.sqrt(probs * (1 - probs) / N)) + 4 / math.sqrt(N)


def test_tv_distance_exact_samples_and_wrong_table():
    p = params_for("sbn", 16)
    states, probs = ref.table_sbn(p)
    N = 200_000
    idx = np.random.default_rng(17).choice(len(probs), size=N, p=probs)
    samples = {k: states[k][idx].astype(np.float32) for k in ("v", "h1", "h2")}   # any key order
    tol = _expected_tv_bound(probs, N)
    tv = ref.tv_distance(samples, states, probs)
    assert tv < tol, (tv, tol)
    _, wrong = ref.table_sbn(params_for("sbn", 18))
    exact_tv = 0.5 * np.abs(wrong - probs).sum()
    tv_wrong = ref.tv_distance(samples, states, wrong)
    assert exact_tv > 3 * tol and tv_wrong > 2 * tol
    assert abs(tv_wrong - exact_tv) <= tv + 1e-12      # triangle inequality


def test_tv_distance_dbn_and_bad_rows():
    states, probs = ref.table_dbn(params_for("dbn", 19))
    assert ref.tv_distance(states, states, np.full(len(probs), 1 / len(probs))) == pytest.approx(0.0, abs=1e-12)
    bad = {k: v[:3].copy() for k, v in states.items()}
    bad["v"][0, 0] = 0.5
    with pytest.raises(ValueError):
        ref.tv_distance(bad, states, probs)
