"""Denoising autoencoders as generative Markov chains and GSNs: a model with a `denoiser { ... }`
block (models/dae.gdl, dae_binary.gdl, gsn.gdl; gdsl/runtime/denoising.py).

    corruption      x~ ~ C(x~ | x)                      (the block's first ~)
    state (GSN)     h = tanh(W x~ + U prev(h) + c) + s eps   (between; prev(h) = 0 at step 1)
    reconstruction  log p(x | x~ or h)                   (the block's last ~)

How the tolerances are chosen
-----------------------------
* Log-densities are exact in float64 up to rounding and reassociated sums: we allow 1e-10.
* Gradients: the draws (x~ per step, the states' noise) are fixed, so the objective is a smooth
  function of the parameters. Central differences with h = 1e-6 of objectives of size ~5:
  truncation ~1e-12, rounding ~1e-10; we allow |g - fd| <= 1e-6 + 1e-6 |fd|.
* The chain's stationary distribution: six bits, four patterns with probabilities .4 .3 .2 .1,
  2000 rows; bits flipped with probability 0.1; an autoregressive reconstruction (so p(x | x~)
  can be the exact posterior) with 32 tanh units; 60 epochs, batch 50, Adam lr 0.01; the
  chain distribution estimated from 4000 chains after 50 steps from uniform random bits (the
  TV of 4000 draws from the exact law is ~0.02). Measured over model seeds 0-2: untrained
  0.93-0.95, denoising 0.09-0.16, walk-back (4 steps) 0.04-0.08 (seed 0, the test's: 0.95,
  0.155, 0.037). The test asks for untrained > 0.5, denoising below untrained by 0.3, and
  walk-back no worse than denoising + 0.02. With the factorised Bernoulli reconstruction of
  models/dae_binary.gdl on the same data walk-back is *worse* than plain denoising (seeds 0-2:
  denoising 0.23-0.27, walk-back 0.49-0.55; docs/directed.md says why), so the test uses the
  autoregressive one. Seeds are fixed for reproducibility; they were not chosen to make the
  test pass.
"""
from __future__ import annotations

import numpy as np
import pytest

import gdsl
from conftest import model_path
from gdsl.errors import ModelErrors
from gdsl.runtime import denoising

ATOL = 1e-10
FD_H, FD_RTOL, FD_ATOL = 1e-6, 1e-6, 1e-6

AR_DAE = """
model dae_ar(d = 6, nh = 32, p = 0.1) {
    visible x[d]: binary
    latent xt[d]: binary
    denoiser {
        xt ~ bernoulli(probs = x * (1 - p) + (1 - x) * p)
        let h = tanh(W @ xt + c)
        x[i] ~ bernoulli(logits = V[i] @ h + b[i] + sum[j < i](A[i, j] * x[j]))
    }
    param W[nh, d] ~ normal(0, 0.5)
    param c[nh]
    param V[d, nh] ~ normal(0, 0.2)
    param b[d]
    param A[d, d]
}
"""


GSN_H0 = """
model gsn_h0(d = 4, nh = 5, p = 0.3, s = 0.5) {
    visible x[d]: binary
    latent xt[d]: binary
    latent h[nh]: real
    denoiser {
        xt ~ bernoulli(probs = x * (1 - p) + (1 - x) * p)
        h ~ normal(mean = tanh(W @ xt + U @ prev(h, h0) + c), std = s)
        x ~ bernoulli(logits = V @ h + b)
    }
    param W[nh, d]
    param U[nh, nh]
    param c[nh]
    param V[d, nh]
    param b[d]
    param h0[nh]
}
"""


def _randomise(m, rng, scale=0.5):
    m.params.update({k: scale * rng.standard_normal(np.shape(v)) for k, v in m.params.items()})


@pytest.fixture(scope="module")
def dae():
    return gdsl.load(model_path("dae"), d=3, nh=5, seed=0)


@pytest.fixture(scope="module")
def binary():
    return gdsl.load(model_path("dae_binary"), d=4, nh=6, seed=0)


@pytest.fixture(scope="module")
def gsn():
    return gdsl.load(model_path("gsn"), d=4, nh=5, seed=0)


@pytest.fixture(scope="module")
def ar_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("dae") / "dae_ar.gdl"
    path.write_text(AR_DAE)
    return str(path)


# ============================================================================ densities
def _softplus(a):
    return np.logaddexp(0.0, a)


def test_real_reconstruction_log_density(dae):
    rng = np.random.default_rng(1)
    _randomise(dae, rng)
    x, xt = rng.standard_normal((7, 3)), rng.standard_normal((7, 3))
    p = dae.params
    h = np.tanh(xt @ p["W"].T + p["c"])
    mean, std = h @ p["V"].T + p["b"], np.exp(h @ p["V_s"].T + p["b_s"])
    ref = np.sum(-0.5 * ((x - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi), axis=1)
    np.testing.assert_allclose(dae.reconstruct_log_prob({"x": x}, {"xt": xt}), ref, rtol=0, atol=ATOL)


def test_binary_reconstruction_log_density(binary):
    rng = np.random.default_rng(2)
    _randomise(binary, rng)
    x, xt = (rng.random((9, 4)) < 0.5) * 1.0, (rng.random((9, 4)) < 0.5) * 1.0
    p = binary.params
    a = np.tanh(xt @ p["W"].T + p["c"]) @ p["V"].T + p["b"]
    ref = np.sum(x * a - _softplus(a), axis=1)
    np.testing.assert_allclose(binary.reconstruct_log_prob({"x": x}, {"xt": xt}), ref, rtol=0, atol=ATOL)


def test_reconstruction_mean(binary, dae, gsn):
    rng = np.random.default_rng(9)
    for m in (binary, dae, gsn):
        _randomise(m, rng)
    xt = (rng.random((5, 4)) < 0.5) * 1.0
    p = binary.params
    ref = 1 / (1 + np.exp(-(np.tanh(xt @ p["W"].T + p["c"]) @ p["V"].T + p["b"])))
    np.testing.assert_allclose(binary.reconstruction_mean({"xt": xt}), ref, rtol=1e-12, atol=ATOL)
    h = rng.standard_normal((5, 5))
    p = gsn.params
    ref = 1 / (1 + np.exp(-(h @ p["V"].T + p["b"])))
    np.testing.assert_allclose(gsn.reconstruction_mean({"xt": xt, "h": h}), ref, rtol=1e-12, atol=ATOL)
    xt = rng.standard_normal((5, 3))
    p = dae.params
    ref = np.tanh(xt @ p["W"].T + p["c"]) @ p["V"].T + p["b"]
    np.testing.assert_allclose(dae.reconstruction_mean({"xt": xt}), ref, rtol=0, atol=ATOL)


def test_corruption_flips_bits_at_rate_p(binary):
    x = np.zeros((20000, 4))
    xt = binary.corrupt({"x": x})["xt"]
    assert abs(xt.mean() - 0.3) < 0.01  # 80000 bits, sd 0.0016
    assert np.array_equal(binary.corrupt({"x": x})["x"], x)


# ============================================================================ gradients
def _fd_check(m, x0, draws):
    _, grads = denoising.objective_and_gradients(m, x0, draws)
    for name in m.params:
        base = np.array(m.params[name], dtype=np.float64)
        flat = base.reshape(-1)
        for k in range(min(flat.size, 6)):
            vals = []
            for sign in (1, -1):
                pert = flat.copy()
                pert[k] += sign * FD_H
                m.params[name] = pert.reshape(base.shape)
                vals.append(denoising.objective_and_gradients(m, x0, draws)[0].mean())
            m.params[name] = base
            fd = (vals[0] - vals[1]) / (2 * FD_H)
            g = grads[name].reshape(-1)[k]
            assert abs(g - fd) <= FD_ATOL + FD_RTOL * abs(fd), (name, k, g, fd)


def test_gradient_against_finite_differences_binary(binary):
    rng = np.random.default_rng(3)
    _randomise(binary, rng)
    x0 = (rng.random((6, 4)) < 0.5) * 1.0
    _fd_check(binary, x0, denoising._draws(binary, x0, 3))


def test_gradient_against_finite_differences_real(dae):
    rng = np.random.default_rng(4)
    _randomise(dae, rng)
    x0 = rng.standard_normal((6, 3))
    _fd_check(dae, x0, denoising._draws(dae, x0, 2))


def test_gsn_unrolled_gradient_against_finite_differences(gsn):
    """Back-propagation through three unrolled steps: h_t reads h_{t-1} through prev(h)."""
    rng = np.random.default_rng(5)
    _randomise(gsn, rng)
    x0 = (rng.random((5, 4)) < 0.5) * 1.0
    draws = denoising._draws(gsn, x0, 3)
    _fd_check(gsn, x0, draws)
    # the unrolled steps matter: without U's path through prev(h) the gradient of U would be 0
    _, grads = denoising.objective_and_gradients(gsn, x0, draws)
    assert np.abs(grads["U"]).max() > 1e-3


def test_gsn_initial_state_parameter(tmp_path):
    """prev(h, h0): h0 is the state before the first step, trained through the unrolled steps."""
    path = tmp_path / "gsn_h0.gdl"
    path.write_text(GSN_H0)
    m = gdsl.load(str(path), seed=0)
    rng = np.random.default_rng(10)
    _randomise(m, rng)
    x0 = (rng.random((5, 4)) < 0.5) * 1.0
    _fd_check(m, x0, denoising._draws(m, x0, 3))
    assert m.DENOISER["init"] == {"prev_h": "h0"}
    out = m.corrupt({"x": x0})
    np.testing.assert_array_equal(out["prev_h"], np.broadcast_to(m.params["h0"], (5, 5)))


# ============================================================================ the chain
def _tv(x, pats, probs):
    w = 2 ** np.arange(x.shape[1])
    emp = np.bincount((x @ w).astype(int), minlength=2 ** x.shape[1]) / len(x)
    true = np.zeros(2 ** x.shape[1])
    np.add.at(true, (pats @ w).astype(int), probs)
    return 0.5 * np.abs(emp - true).sum()


def test_stationary_distribution_denoising_and_walkback(ar_path):
    rng = np.random.default_rng(1)
    pats = (rng.random((4, 6)) < 0.5).astype(float)
    probs = np.array([0.4, 0.3, 0.2, 0.1])
    data = {"x": pats[rng.choice(4, size=2000, p=probs)]}
    tv = {}
    for method, options in (("untrained", None), ("denoising", {}), ("walkback", {"walkbacks": 4})):
        m = gdsl.load(ar_path, seed=0)
        if options is not None:
            m.fit(data, method=method, epochs=60, batch_size=50, lr=0.01, **options)
        tv[method] = _tv(m.sample(4000, steps=50)["x"], pats, probs)
    assert tv["untrained"] > 0.5, tv
    assert tv["denoising"] < tv["untrained"] - 0.3, tv
    assert tv["walkback"] <= tv["denoising"] + 0.02, tv


def test_clamped_elements_never_change(binary):
    rng = np.random.default_rng(6)
    _randomise(binary, rng, 2.0)
    n = 300
    values = (rng.random((n, 4)) < 0.5) * 1.0
    mask = np.zeros((n, 4), bool)
    mask[:, :2] = True
    mask[::3, 3] = True
    x = None
    for _ in range(5):  # step by step: each step's state is the next one's start
        s = binary.sample(n, steps=1, clamp={"x": values}, mask={"x": mask}, init=x)
        x = s["x"]
        assert np.array_equal(x[mask], values[mask])
    assert not np.array_equal(x[~mask], values[~mask])  # the free elements do move
    s = binary.sample(n, steps=20, clamp={"x": values}, mask={"x": mask})
    assert np.array_equal(s["x"][mask], values[mask])


def test_inpainting_follows_the_data():
    """Trained on two patterns, the chain with the first half of one clamped completes it.
    Measured over model seeds 0-2: 99.0-99.4% of 500 chains complete it exactly after 10 steps
    (unclamped: 38-60% end with that second half); the test asks for 90%."""
    m = gdsl.load(model_path("dae_binary"), d=8, nh=16, p=0.1, seed=0)
    rng = np.random.default_rng(7)
    pats = np.array([[1, 1, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1]], float)
    m.fit({"x": pats[rng.integers(0, 2, size=1000)]}, epochs=30, batch_size=50, lr=0.01)
    clamp = np.tile(pats[0], (500, 1))
    mask = np.zeros((500, 8), bool)
    mask[:, :4] = True
    out = m.sample(500, steps=10, clamp={"x": clamp}, mask={"x": mask})["x"]
    assert np.array_equal(out[:, :4], clamp[:, :4])
    assert np.mean(np.all(out[:, 4:] == 0.0, axis=1)) > 0.9


def test_gsn_trains_and_runs(gsn):
    """Measured over model seeds 1-3: the 3-step objective goes from -9.3..-8.6 to -6.5..-6.0,
    and 87.5-88.5% of 200 chain samples lie within one bit of a pattern;
    the test asks for a gain of 1 nat and 80% of the samples near a pattern. (Uniform random
    bits are within one bit of one of the two patterns with probability 10/16.)"""
    rng = np.random.default_rng(8)
    m = gdsl.load(model_path("gsn"), d=4, nh=5, seed=1)
    pats = np.array([[1, 1, 0, 0], [0, 0, 1, 1]], float)
    data = {"x": pats[rng.integers(0, 2, size=400)]}
    before = m.denoising_gradients(data, walkbacks=3)[0]
    h = m.fit(data, method="walkback", walkbacks=3, epochs=15, batch_size=50, lr=0.01)
    after = m.denoising_gradients(data, walkbacks=3)[0]
    assert after > before + 1.0, (before, after)
    assert len(h) == 15 and h[-1]["train_objective"] > h[0]["train_objective"]
    s = m.sample(200, steps=10)
    assert set(np.unique(s["x"])) <= {0.0, 1.0}
    assert np.array_equal(s["prev_h"], s["h"])  # the state carried to the next step
    near = np.mean([min(np.abs(r - p).sum() for p in pats) <= 1 for r in s["x"]])
    assert near > 0.8, near


def test_sampling_starts_from_init_and_is_reproducible(binary):
    a = gdsl.load(model_path("dae_binary"), d=4, nh=6, seed=3).sample(10, steps=4)
    b = gdsl.load(model_path("dae_binary"), d=4, nh=6, seed=3).sample(10, steps=4)
    assert np.array_equal(a["x"], b["x"])
    with pytest.raises(ValueError, match="clamps the data"):
        binary.sample(3, clamp={"xt": np.zeros(4)})


# ============================================================================ API errors
def test_api_errors(binary):
    x = {"x": np.zeros((4, 4))}
    with pytest.raises(ValueError, match="no tractable density"):
        binary.log_prob(x)
    with pytest.raises(ValueError, match="walkbacks > 1"):
        binary.fit(x, method="denoising", walkbacks=2)
    with pytest.raises(ValueError, match="for a denoiser's chain"):
        binary.fit(x, method="elbo")
    with pytest.raises(ValueError, match="is not it"):
        binary.fit({"x": np.zeros((4, 4)), "xt": np.zeros((4, 4))})
    vae = gdsl.load(model_path("vae"), d=4, nh=3, nz=2)
    with pytest.raises(ValueError, match="needs a denoiser"):
        vae.fit({"x": np.zeros((4, 4))}, method="walkback")
    assert "denoising_gradients" in binary.supported()


def test_prev_outside_denoiser_is_an_error():
    text = """model m(d = 2) {
    visible x[d] ~ bernoulli(logits = b + prev(b))
    param b[d]
}"""
    from gdsl.driver import compile_source
    from gdsl.errors import Source

    with pytest.raises(ModelErrors, match="used only inside a denoiser block"):
        compile_source(Source(text, "m.gdl"))
