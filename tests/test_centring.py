"""Centred training (issue 21, item 6): fit(..., centered=True).

The centred model writes each layer as x - mu: -(x - mu)' W (y - lam) - b'(x - mu) - c'(y - lam),
the same family as the plain model with b = b' - W lam, c = c' - W' mu. A gradient step in the
centred parameters, mapped back to the plain ones, is the plain gradient g transformed by
    g_W' = g_W - mu g_c^T - g_b lam^T,  g_b' = g_b - g_W' lam,  g_c' = g_c - g_W'^T mu.
The first test derives that from the centred parametrisation by finite differences of the
exact log-likelihood of a tiny RBM (numpy only); the others check that the compiled epoch
applies it, moves the offsets, trains, and keeps its state through checkpoints.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import logsumexp

from gdsl.driver import compile_source
from gdsl.errors import Source
from conftest import load_model, random_params
from small_data import digits_4x4


def rbm_loglik(W, b, c, V, s=(-1.0, -1.0, -1.0)):
    """Mean exact log p(v) of E = sW v'Wh + sb b'v + sc c'h."""
    sw, sb, sc = s
    Vall = np.array(list(itertools.product((0.0, 1.0), repeat=len(b))))
    free = lambda v: -sb * (v @ b) + np.logaddexp(0.0, -sc * c - sw * (v @ W)).sum(-1)  # noqa: E731  (-F(v))
    return float(np.mean(free(V)) - logsumexp(free(Vall)))


def transform(g, mu, lam, s=(-1.0, -1.0, -1.0)):
    """The centred step in plain parameters, for the energy sW v'Wh + sb b'v + sc c'h."""
    kl, ku = s[0] / s[1], s[0] / s[2]
    gW = g["W"] - ku * np.outer(mu, g["c"]) - kl * np.outer(g["b"], lam)
    return {"W": gW, "b": g["b"] - kl * gW @ lam, "c": g["c"] - ku * gW.T @ mu}


@pytest.mark.parametrize("s", [(-1.0, -1.0, -1.0), (-2.0, -0.5, 1.5)], ids=["canonical", "other scales"])
def test_the_centred_step_is_the_gradient_of_the_centred_parametrisation(s):
    """d/d(theta') of L(plain(theta')) mapped back to plain parameters, by finite differences."""
    rng = np.random.default_rng(0)
    W, b, c = rng.normal(0, 1, (3, 2)), rng.normal(0, 1, 3), rng.normal(0, 1, 2)
    V = (rng.random((10, 3)) < 0.4).astype(float)
    mu, lam = rng.uniform(0.2, 0.8, 3), rng.uniform(0.2, 0.8, 2)
    eps = 1e-6

    def grad(f, x):
        out = np.zeros_like(x)
        for at in np.ndindex(x.shape):
            d = np.zeros_like(x)
            d[at] = eps
            out[at] = (f(x + d) - f(x - d)) / (2 * eps)
        return out

    kl, ku = s[0] / s[1], s[0] / s[2]
    plain = {"W": grad(lambda w: rbm_loglik(w, b, c, V, s), W), "b": grad(lambda x: rbm_loglik(W, x, c, V, s), b),
             "c": grad(lambda x: rbm_loglik(W, b, x, V, s), c)}
    # centred parameters of the same model (sW (v-mu)'W(h-lam) + sb b'(v-mu) + sc c'(h-lam)), L as their function
    bc, cc = b + kl * W @ lam, c + ku * W.T @ mu

    def centred(Wc, bc, cc):
        return rbm_loglik(Wc, bc - kl * Wc @ lam, cc - ku * Wc.T @ mu, V, s)

    gc = {"W": grad(lambda w: centred(w, bc, cc), W), "b": grad(lambda x: centred(W, x, cc), bc),
          "c": grad(lambda x: centred(W, bc, x), cc)}
    # a step d theta' = gc maps to plain parameters through b = b' - kl W lam, c = c' - ku W' mu
    step = {"W": gc["W"], "b": gc["b"] - kl * gc["W"] @ lam, "c": gc["c"] - ku * gc["W"].T @ mu}
    want = transform(plain, mu, lam, s)
    for k in step:
        np.testing.assert_allclose(step[k], want[k], rtol=1e-6, atol=1e-8, err_msg=k)


SCALED_RBM = """
model scaled(nv = 4, nh = 3) {
    visible v[nv]: binary
    latent  h[nh]: binary
    param W[nv, nh] ~ normal(0, 0.1)
    param b[nv]
    param c[nh]
    energy -2 * (v @ W @ h) - 0.5 * (b @ v) + 1.5 * (c @ h)
}
"""


def test_other_scales_enter_the_generated_step_as_ratios():
    """-2 v'Wh - 0.5 b'v + 1.5 c'h: k_b = sW / sb = 4 and k_c = sW / sc = -4/3 in the transform
    (whose algebra the finite-difference test above checks with these scales)."""
    python = compile_source(Source(SCALED_RBM, "scaled.gdl")).python
    assert "gw[a, b] -= -1.3333333333333333 * mu_v[a] * gu[b] + 4.0 * gl[a] * mu_h[b]" in python
    assert "gl[a] -= 4.0 * gw[a, b] * mu_h[b]" in python
    assert "gu[b] -= -1.3333333333333333 * gw[a, b] * mu_v[a]" in python


def one_epoch(centered, offset_rate=0.0, seed=3):
    m = load_model("rbm", seed=seed, dtype="float64")
    m.params.update(random_params(m, seed=seed))
    data = {"v": (np.random.default_rng(seed).random((20, 4)) < 0.4).astype(float)}
    before = {k: np.array(v) for k, v in m.params.items()}
    m.fit(data, method="cd", k=1, lr=0.1, epochs=1, batch_size=20, centered=centered, offset_rate=offset_rate,
          progress=False, monitor=())
    return m, data, before, {k: np.asarray(v) - before[k] for k, v in m.params.items()}


def test_the_compiled_epoch_applies_the_centred_step():
    _, data, _, plain = one_epoch(False)
    m, _, _, step = one_epoch(True)  # the same seed: the same samples, only the step differs
    mu, lam = data["v"].mean(0), np.full(3, 0.5)  # the starting offsets, kept (offset_rate 0)
    want = transform(plain, mu, lam)
    for k in want:
        np.testing.assert_allclose(step[k], want[k], rtol=1e-9, atol=1e-12, err_msg=k)
    assert np.abs(step["b"] - plain["b"]).max() > 1e-4  # centring changed the step


def test_offsets_move_to_the_positive_phase_means():
    m, data, before, _ = one_epoch(True, offset_rate=1.0)  # one minibatch of all the data
    offsets = m._state["offsets"]
    np.testing.assert_allclose(offsets["v"], data["v"].mean(0), rtol=1e-12)
    p = before
    posterior = 1 / (1 + np.exp(-(p["c"] + data["v"] @ p["W"])))
    np.testing.assert_allclose(offsets["h"], posterior.mean(0), rtol=1e-9)


def test_centred_training_of_a_dbm_raises_the_exact_log_likelihood():
    binary, _, _, train, test = digits_4x4()
    m = load_model("dbm", seed=2, nv=16, n1=8, n2=4)  # 2^12 hidden states: log p exact
    before = np.mean(m.log_prob({"v": binary[test]}))
    m.fit({"v": binary[train]}, method="pcd", lr=0.05, epochs=15, batch_size=50, centered=True, progress=False,
          monitor=())
    after = np.mean(m.log_prob({"v": binary[test]}))
    assert after > before + 1.0, (before, after)


def test_models_it_does_not_apply_to_say_why():
    m = load_model("grbm")
    with pytest.raises(ValueError, match=r"centred training is not available for grbm: the term m0 \(line \d+\) "
                                         r"is neither a weight"):
        m.fit({"v": np.zeros((4, 2))}, centered=True, progress=False)


def test_offsets_are_checkpointed(tmp_path):
    data = {"v": (np.random.default_rng(0).random((40, 4)) < 0.4).astype(float)}
    straight = load_model("rbm", seed=1)
    straight.fit(data, method="pcd", lr=0.1, epochs=3, batch_size=10, centered=True, offset_rate=0.1,
                 progress=False, monitor=())
    first = load_model("rbm", seed=1)
    path = tmp_path / "ckpt.npz"
    first.fit(data, method="pcd", lr=0.1, epochs=2, batch_size=10, centered=True, offset_rate=0.1,
              progress=False, monitor=(), checkpoint=str(path))
    resumed = load_model("rbm", seed=99)
    resumed.fit(data, method="pcd", lr=0.1, epochs=3, batch_size=10, centered=True, offset_rate=0.1,
                progress=False, monitor=(), resume=str(path))
    for k in straight.params:
        np.testing.assert_array_equal(resumed.params[k], straight.params[k], err_msg=k)
