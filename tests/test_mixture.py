"""Mixture-of-normals conditionals (`x ~ mixture(logits = ..., means = ..., stds = ...)`) and
the shipped RNADE, against numpy references written from the equations:

    p(x | args) = sum_k softmax(logits)_k N(x; means_k, stds_k),  per element.

How the tolerances are chosen
-----------------------------
* Log densities are exact in float64 (log-sum-exp in both): the kernels and numpy agree to
  rounding, ~1e-14 here; we allow 1e-10 absolute.
* Gradients: central differences with h = 1e-6 of the float64 log-likelihood (|f| < ~30):
  truncation ~h^2 |f'''| ~ 1e-11, rounding ~1e-16 |f| / h ~ 3e-9; we allow
  |g - fd| <= 1e-6 + 1e-6 |fd|.
* Samples: rows are independent ancestral draws. The probability integral transform
  u_i = F(x_i | x_<i) of a correct draw is uniform on [0, 1]^d and independent across i; the
  u's are binned into B = 10^d cells and compared with the uniform law. For N i.i.d. rows,
  E[TV] <= 1/2 sum_b sqrt(p_b (1 - p_b) / N) < 1/2 sqrt(B / N), and TV moves by at most 1/N
  per row, so by McDiarmid P(TV > E[TV] + 4 / sqrt(N)) <= exp(-32). Power: the same draws
  transformed with a reference whose logits are shifted must be rejected, by more than
  twice the tolerance. Moments: |mean - exact| < 5 standard errors (the exact variance),
  |variance - exact| < 5 standard errors (from the exact fourth central moment).
* Learning: 40 epochs of RNADE (d = 16, nh = 8, k = 3) on the standardised 4x4 digits; the
  exact test log-likelihood must rise by more than 4 nats per image (measured over seeds
  0-3: 8.8 to 11.5, from about -26; the margin is under half of the smallest).
Seeds are fixed for reproducibility; they were not chosen to make tests pass.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import expit as sigmoid
from scipy.special import log_softmax, logsumexp, ndtr

import gdsl
from conftest import differences, model_path

EXACT_ATOL = 1e-10
FD_H, FD_RTOL, FD_ATOL = 1e-6, 1e-6, 1e-6
Z = 5.0
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)

# a mixture whose arguments come from a binary latent layer; one std (a scalar) for every
# element and component, broadcast
HIDDEN = """
model hidden(n = 2, nh = 2, k = 3) {
    latent  h[nh] ~ bernoulli(logits = b)
    visible x[n] ~ mixture(logits = A @ h + a, means = M @ h + m, stds = exp(s))
    param b[nh]
    param A[n, k, nh] ~ normal(0, 1)
    param a[n, k]
    param M[n, k, nh] ~ normal(0, 1)
    param m[n, k] ~ normal(0, 1)
    param s
}
"""


# ============================================================================ references
def mixture_logpdf(x, logits, means, stds):
    """log sum_k softmax(logits)_k N(x; means_k, stds_k); the component axis last, x without it."""
    x = x[..., None]
    comp = log_softmax(logits, axis=-1) - 0.5 * ((x - means) / stds) ** 2 - np.log(stds) - LOG_SQRT_2PI
    return logsumexp(comp, axis=-1)


def mixture_cdf(x, logits, means, stds):
    w = np.exp(log_softmax(logits, axis=-1))
    return (w * ndtr((x[..., None] - means) / stds)).sum(-1)


def rnade_arguments(p, x):
    """Per row and dimension i: (logits, means, stds) of x[i], each [rows, d, k]."""
    d = x.shape[1]
    pre = p["c"] + np.stack([x[:, :i] @ p["W"][:, :i].T for i in range(d)], axis=1)  # [rows, d, nh]
    h = sigmoid(pre)
    logits = np.einsum("dkh,rdh->rdk", p["Va"], h) + p["ba"]
    means = np.einsum("dkh,rdh->rdk", p["Vm"], h) + p["bm"]
    stds = np.exp(np.einsum("dkh,rdh->rdk", p["Vs"], h) + p["bs"])
    return logits, means, stds


def rnade_logp(p, x):
    logits, means, stds = rnade_arguments(p, x)
    return mixture_logpdf(x, logits, means, stds).sum(1)


def hidden_arguments(p, h):
    logits = np.einsum("nkj,rj->rnk", p["A"], h) + p["a"]
    means = np.einsum("nkj,rj->rnk", p["M"], h) + p["m"]
    stds = np.full_like(means, math.exp(float(p["s"])))
    return logits, means, stds


def hidden_log_joint(p, h, x):
    bern = (h * p["b"] - np.logaddexp(0, p["b"])).sum(1)
    return bern + mixture_logpdf(x, *hidden_arguments(p, h)).sum(1)


def all_binary(n):
    return np.array([[(s >> (n - 1 - j)) & 1 for j in range(n)] for s in range(2 ** n)], dtype=float)


def random_params(model, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return {name: rng.normal(0.0, scale, size=model.shape(name)) for name in model.params}


# ============================================================================ fixtures
@pytest.fixture(scope="module")
def rnade():
    """RNADE at d = 3, nh = 4, k = 3 with N(0, 1) parameters (one compile for the module)."""
    m = gdsl.load(model_path("rnade"), seed=0, d=3, nh=4, k=3)
    m.params = random_params(m, 31)
    return m


@pytest.fixture(scope="module")
def hidden(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "hidden.gdl"
    path.write_text(HIDDEN)
    m = gdsl.load(str(path), seed=0)
    m.params = random_params(m, 32)
    m.params["s"] = np.array(-0.3)
    return m


def real_rows(rng, n, d, scale=2.0):
    return rng.normal(0.0, scale, size=(n, d))


# ============================================================================ log densities
def test_rnade_log_density_matches_reference(rnade):
    x = real_rows(np.random.default_rng(1), 50, 3)
    p = {k: np.asarray(v, dtype=np.float64) for k, v in rnade.params.items()}
    got = rnade.log_prob({"x": x})
    np.testing.assert_allclose(got, rnade_logp(p, x), rtol=0, atol=EXACT_ATOL)
    # a point far in a tail (|u| ~ 30 for every component): still finite and exact (log-sum-exp)
    far = np.array([[60.0, -60.0, 60.0]])
    np.testing.assert_allclose(rnade.log_prob({"x": far}), rnade_logp(p, far), rtol=1e-12, atol=EXACT_ATOL)


def test_hidden_layer_mixture_log_joint_and_marginal(hidden):
    """log_joint against numpy; log_prob sums the binary latents out (enumeration)."""
    rng = np.random.default_rng(2)
    p = {k: np.asarray(v, dtype=np.float64) for k, v in hidden.params.items()}
    x = real_rows(rng, 20, 2)
    h = (rng.random((20, 2)) < 0.5).astype(float)
    np.testing.assert_allclose(hidden.log_joint({"h": h, "x": x}), hidden_log_joint(p, h, x), atol=EXACT_ATOL)
    H = all_binary(2)
    joint = np.stack([hidden_log_joint(p, np.repeat(H[j:j + 1], 20, 0), x) for j in range(4)], axis=1)
    np.testing.assert_allclose(hidden.log_prob({"x": x}), logsumexp(joint, axis=1), atol=EXACT_ATOL)


def test_mixture_density_integrates_to_one(hidden):
    """The marginal of x (2 dimensions) by a midpoint rule on [-12, 12]^2, 600^2 points: 1 to 1e-6
    (the density is smooth and its tails beyond 12 are far below 1e-6 for these parameters)."""
    g = np.linspace(-12, 12, 601)
    mid = (g[1:] + g[:-1]) / 2
    xx = np.stack(np.meshgrid(mid, mid, indexing="ij"), axis=-1).reshape(-1, 2)
    total = np.exp(hidden.log_prob({"x": xx})).sum() * (g[1] - g[0]) ** 2
    assert abs(total - 1.0) < 1e-6


# ============================================================================ samples
def tv_tolerance(bins, n):
    return 0.5 * math.sqrt(bins / n) + 4 / math.sqrt(n)


def binned_tv_from_uniform(u, per_axis=10):
    cells = np.clip((u * per_axis).astype(int), 0, per_axis - 1)
    code = np.ravel_multi_index(tuple(cells.T), (per_axis,) * u.shape[1])
    freq = np.bincount(code, minlength=per_axis ** u.shape[1]) / len(u)
    return 0.5 * np.abs(freq - 1.0 / per_axis ** u.shape[1]).sum()


def rnade_pit(p, x):
    """u_i = F(x_i | x_<i) per row, from the reference."""
    logits, means, stds = rnade_arguments(p, x)
    return mixture_cdf(x, logits, means, stds)


N_SAMPLES = 200_000


@pytest.fixture(scope="module")
def rnade_samples(rnade):
    return rnade.sample(N_SAMPLES)["x"]


def test_rnade_samples_follow_the_autoregressive_mixture(rnade, rnade_samples):
    """(F(x_0), F(x_1 | x_0), F(x_2 | x_<2)) of the draws is uniform on the cube: TV over 1000
    cells; and a reference with shifted logits is rejected by the same test."""
    p = {k: np.asarray(v, dtype=np.float64) for k, v in rnade.params.items()}
    x = rnade_samples
    tol = tv_tolerance(1000, len(x))
    assert binned_tv_from_uniform(rnade_pit(p, x)) < tol
    wrong = dict(p, ba=p["ba"] + np.array([1.0, 0.0, -1.0]))
    assert binned_tv_from_uniform(rnade_pit(wrong, x)) > 2 * tol


def test_rnade_first_dimension_moments(rnade, rnade_samples):
    """x_0 has no parents: its law is the mixture with hidden layer sigmoid(c); the sample mean
    and variance against the exact ones."""
    p = {k: np.asarray(v, dtype=np.float64) for k, v in rnade.params.items()}
    logits, means, stds = (a[0, 0] for a in rnade_arguments(p, np.zeros((1, 3))))
    w = np.exp(log_softmax(logits))
    mean = (w * means).sum()
    var = (w * (stds ** 2 + means ** 2)).sum() - mean ** 2
    dev = means - mean
    m4 = (w * (dev ** 4 + 6 * dev ** 2 * stds ** 2 + 3 * stds ** 4)).sum()
    x0 = rnade_samples[:, 0]
    n = len(x0)
    assert abs(x0.mean() - mean) < Z * math.sqrt(var / n)
    assert abs(x0.var() - var) < Z * math.sqrt((m4 - var ** 2) / n)


def test_hidden_layer_mixture_samples(hidden):
    """x given h (both drawn): the PIT of each x_i given h is uniform, jointly (x_0 and x_1 are
    independent given h); h's frequencies against sigmoid(b)."""
    p = {k: np.asarray(v, dtype=np.float64) for k, v in hidden.params.items()}
    s = hidden.sample(N_SAMPLES)
    u = mixture_cdf(s["x"], *hidden_arguments(p, s["h"]))
    assert binned_tv_from_uniform(u) < tv_tolerance(100, N_SAMPLES)
    q = sigmoid(p["b"])
    assert np.all(np.abs(s["h"].mean(0) - q) < Z * np.sqrt(q * (1 - q) / N_SAMPLES))


def test_clamped_elements_are_kept_and_the_rest_drawn_given_them(rnade):
    """Inpainting x_1 and x_2 given x_0 = 1.5: exact (the clamped element comes first)."""
    p = {k: np.asarray(v, dtype=np.float64) for k, v in rnade.params.items()}
    n = 100_000
    clamp = np.zeros((n, 3))
    clamp[:, 0] = 1.5
    mask = np.zeros((n, 3), dtype=bool)
    mask[:, 0] = True
    x = rnade.sample(n, clamp={"x": clamp}, mask={"x": mask})["x"]
    assert np.all(x[:, 0] == 1.5)
    assert binned_tv_from_uniform(rnade_pit(p, x)[:, 1:]) < tv_tolerance(100, n)


# ============================================================================ gradients
def assert_grads_close(got, want):
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=FD_RTOL, atol=FD_ATOL, err_msg=k)


def test_rnade_gradients_match_finite_differences(rnade):
    x = real_rows(np.random.default_rng(3), 7, 3)
    value, grads = rnade.gradients({"x": x})
    assert value == pytest.approx(float(rnade.log_prob({"x": x}).mean()), abs=EXACT_ATOL)
    assert_grads_close(grads, differences(rnade, lambda: float(rnade.log_prob({"x": x}).mean()), FD_H))
    assert all(np.abs(g).max() > 1e-3 for g in grads.values())  # every parameter is reached


def test_hidden_layer_mixture_gradients_match_finite_differences(hidden):
    rng = np.random.default_rng(4)
    st = {"h": (rng.random((9, 2)) < 0.5).astype(float), "x": real_rows(rng, 9, 2)}
    _, grads = hidden.gradients(st)
    assert_grads_close(grads, differences(hidden, lambda: float(hidden.log_joint(st).mean()), FD_H))
    assert abs(float(grads["s"])) > 1e-3  # the scalar std, broadcast to every element and component


# ============================================================================ with a guide
# a mixture prior on a real latent, under a reparameterised normal guide: the ELBO's gradient
# reaches the guide through the mixture's density at z = mean + std * eps
PRIOR = """
model prior(d = 3, k = 2) {
    latent  z ~ mixture(logits = w, means = m, stds = exp(s))
    visible x[d] ~ bernoulli(logits = V * z + b)
    param w[k]
    param m[k] ~ normal(0, 1)
    param s[k]
    param V[d] ~ normal(0, 1)
    param b[d]
    guide {
        z ~ normal(mean = E @ x + c, std = exp(f))
    }
    param E[d] ~ normal(0, 1)
    param c
    param f
}
"""

# a mixture as the guide itself (drawn by picking a component; not reparameterised)
GUIDED = """
model guided(d = 3, k = 2) {
    latent  z ~ normal(0, 1)
    visible x[d] ~ bernoulli(logits = V * z + b)
    param V[d] ~ normal(0, 1)
    param b[d]
    guide {
        z ~ mixture(logits = G @ x + g, means = E @ x + c, stds = exp(f))
    }
    param G[k, d] ~ normal(0, 1)
    param g[k]
    param E[k, d] ~ normal(0, 1)
    param c[k]
    param f[k] ~ normal(0, 0.3)
}
"""


def load_text(tmp_path, name, text, seed):
    path = tmp_path / f"{name}.gdl"
    path.write_text(text)
    m = gdsl.load(str(path), seed=0)
    m.params = random_params(m, seed, scale=0.7)
    return m


def bern_logp(x, logits):
    return (x * logits - np.logaddexp(0, logits)).sum(1)


def test_mixture_prior_under_a_reparameterised_guide(tmp_path):
    """ELBO with fixed noise against numpy; its gradient (guide parameters included) against
    central differences."""
    m = load_text(tmp_path, "prior", PRIOR, 41)
    p = {k: np.asarray(v, dtype=np.float64) for k, v in m.params.items()}
    rng = np.random.default_rng(6)
    x = (rng.random((6, 3)) < 0.5).astype(float)
    eps = rng.standard_normal(6)
    mean, std = x @ p["E"] + p["c"], np.exp(p["f"])
    z = mean + std * eps
    logq = -0.5 * eps ** 2 - np.log(std) - LOG_SQRT_2PI
    logp = (mixture_logpdf(z, p["w"], p["m"], np.exp(p["s"]))
            + bern_logp(x, z[:, None] * p["V"] + p["b"]))
    np.testing.assert_allclose(m.elbo({"x": x}, eps={"z": eps}), logp - logq, atol=EXACT_ATOL)
    value, grads = m.gradients({"x": x}, "elbo", eps={"z": eps})
    assert value == pytest.approx(float((logp - logq).mean()), abs=EXACT_ATOL)
    assert_grads_close(grads, differences(m, lambda: float(m.elbo({"x": x}, eps={"z": eps}).mean()), FD_H))
    assert all(np.abs(grads[k]).max() > 1e-3 for k in ("w", "m", "s", "E", "c", "f"))


def test_mixture_guide_log_q_and_draws(tmp_path):
    """log q against numpy; draws of z given x: the PIT under q is uniform (10 bins, per x)."""
    m = load_text(tmp_path, "guided", GUIDED, 42)
    p = {k: np.asarray(v, dtype=np.float64) for k, v in m.params.items()}
    x = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    z = np.array([-0.7, 1.3])
    args = (x @ p["G"].T + p["g"], x @ p["E"].T + p["c"], np.exp(p["f"]) * np.ones((2, 1)))
    np.testing.assert_allclose(m.log_q({"x": x, "z": z}), mixture_logpdf(z, *args), atol=EXACT_ATOL)
    n = 100_000
    draws = m.sample_guide({"x": np.repeat(x, n, axis=0)})["z"].reshape(2, n)
    for row in range(2):
        u = mixture_cdf(draws[row], *(a[row] for a in args))
        assert binned_tv_from_uniform(u[:, None]) < tv_tolerance(10, n)


# ============================================================================ learning
def test_rnade_training_raises_the_test_log_likelihood(digits4x4):
    """Maximum likelihood (Adam) on the standardised 4x4 digits: the exact test log-likelihood
    rises by more than 4 nats per image, and the training objective rises too."""
    _, real, _, train, test = digits4x4
    x = real.astype(np.float64)
    m = gdsl.load(model_path("rnade"), seed=5, d=16, nh=8, k=3)
    before = float(m.log_prob({"x": x[test]}).mean())
    history = m.fit({"x": x[train]}, epochs=40, batch_size=50, lr=0.01)
    after = float(m.log_prob({"x": x[test]}).mean())
    assert np.isfinite(after)
    assert after > before + 4.0, (before, after)
    assert history[-1]["train_objective"] > history[0]["train_objective"]


def test_a_constant_std_must_be_positive(tmp_path):
    path = tmp_path / "const_std.gdl"
    path.write_text("model const_std(d = 3, k = 2, s = 0.0) {\n"
                    "    visible x[d] ~ mixture(logits = a, means = b, stds = s)\n"
                    "    param a[d, k]\n    param b[d, k]\n}\n")
    with pytest.raises(ValueError, match=r"constant s must be positive, got 0.0 .*line 2: it is the component stds of x"):
        gdsl.load(str(path))
    assert gdsl.load(str(path), s=0.5).shape("a") == (3, 2)
