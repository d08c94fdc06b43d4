"""Multi-prediction training (issue 21, item 6): fit(method="mpt") and multi_prediction_loss.

The loss of a row is the cross-entropy of its data elements left out of the inputs under their
means after a fixed number of mean-field sweeps with the inputs clamped (Goodfellow et al.
2013). Checked here: the loss against a numpy mean field written from the DBM's equations;
its compiled reverse-mode gradient against central differences of the loss for every domain
the method takes (binary, spin, categorical data, a categorical(K, off) latent); that training
brings the held-out loss on rows of a known law from that of the best answer ignoring the given
bits to near that of the exact predictive; and the refusals. The models are loaded in float64 (one dtype for each model in
this file), so the gradients agree to 1e-6 relative.
"""
from __future__ import annotations

import numpy as np
import pytest

import gdsl
from conftest import SPIN_RBM, differences, load_model, random_params
from test_pooling import POOL


def dbm64(**sizes):
    return load_model("dbm", seed=3, dtype="float64", **sizes)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def reference_dbm_loss(p, v, given, iters):
    """Mean field over v (unclamped part), h1, h2 in the DBM's block order {v, h2} | {h1}."""
    n = len(v)
    mv = np.where(given, v, 0.5)
    h1 = np.full((n, p["W1"].shape[1]), 0.5)
    h2 = np.full((n, p["W2"].shape[1]), 0.5)
    for _ in range(iters):
        mv = np.where(given, v, sigmoid(h1 @ p["W1"].T + p["b"]))
        h2 = sigmoid(h1 @ p["W2"] + p["c2"])
        h1 = sigmoid(mv @ p["W1"] + h2 @ p["W2"].T + p["c1"])
    with np.errstate(divide="ignore", invalid="ignore"):  # given elements hold 0 or 1: not counted
        ce = -(v * np.log(mv) + (1 - v) * np.log(1 - mv))
    return np.where(given, 0.0, ce).sum(1)


@pytest.fixture(scope="module")
def dbm():
    m = dbm64()
    m.params = random_params(m, 1)
    return m


def test_loss_matches_a_numpy_mean_field(dbm):
    rng = np.random.default_rng(0)
    v = (rng.random((7, 3)) < 0.5).astype(float)
    given = rng.random((7, 3)) < 0.4
    p = {k: np.asarray(x, np.float64) for k, x in dbm.params.items()}
    got = dbm.multi_prediction_loss({"v": v}, {"v": given}, mf_iters=5)
    np.testing.assert_allclose(got, reference_dbm_loss(p, v, given, 5), rtol=1e-10, atol=1e-12)
    # a row with every element given has nothing to predict
    everything = np.ones((7, 3), bool)
    assert np.all(dbm.multi_prediction_loss({"v": v}, {"v": everything}) == 0.0)


def _spin(tmp_path_factory):
    path = tmp_path_factory.mktemp("mpt") / "spin_rbm.gdl"
    path.write_text(SPIN_RBM)
    m = gdsl.load(str(path), seed=8, dtype="float64")
    m.params = random_params(m, 5, weight_scale=0.6, bias_scale=0.3)
    return m, {"v": np.where(np.random.default_rng(2).random((6, 4)) < 0.5, -1.0, 1.0)}


def _softmax(tmp_path_factory):
    m = load_model("softmax_rbm", seed=1, dtype="float64")
    m.params = random_params(m, 6)
    rng = np.random.default_rng(3)
    return m, {"v": (rng.random((6, 3)) < 0.5).astype(float), "y": np.eye(3)[rng.integers(0, 3, 6)]}


def _pool(tmp_path_factory):
    path = tmp_path_factory.mktemp("mpt") / "pool.gdl"
    path.write_text(POOL)
    m = gdsl.load(str(path), seed=5, dtype="float64")
    m.params = random_params(m, 7)
    return m, {"v": (np.random.default_rng(4).random((6, 3)) < 0.5).astype(float)}


def _dbm(tmp_path_factory):
    m = dbm64()
    m.params = random_params(m, 8)
    return m, {"v": (np.random.default_rng(5).random((6, 3)) < 0.5).astype(float)}


@pytest.mark.parametrize("make, damping", [(_dbm, 0.0), (_dbm, 0.4), (_spin, 0.0), (_softmax, 0.0), (_pool, 0.3)],
                         ids=["binary dbm", "damped", "spin rbm", "categorical data", "categorical(K, off) latent"])
def test_gradient_matches_finite_differences(make, damping, tmp_path_factory):
    from gdsl.runtime.mpt import loss_and_gradient, random_inputs

    m, data = make(tmp_path_factory)
    inputs = random_inputs(m, data, 0.5, np.random.default_rng(9))
    grads = {p: np.zeros(m.shape(p) or (1,)) for p in m.params}
    loss_and_gradient(m, data, inputs, 4, grads, damping)

    def loss():
        return float(np.mean(m.multi_prediction_loss(data, inputs, mf_iters=4, mf_damping=damping)))

    numeric = differences(m, loss, eps=1e-6)
    for name, want in numeric.items():
        got = grads[name].reshape(want.shape)
        assert np.abs(want).max() > 1e-4, name  # the check has something to compare
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8 * np.abs(want).max(), err_msg=name)


PROTOTYPES = (np.random.default_rng(0).random((4, 16)) < 0.5).astype(float)
FLIP = 0.05


def mixture_rows(n, rng):
    """Rows of a known law: one of four 16-bit prototypes, each bit flipped with probability 5%."""
    x = PROTOTYPES[rng.integers(0, len(PROTOTYPES), n)]
    return np.abs(x - (rng.random(x.shape) < FLIP))


def bayes_loss(x, given):
    """The loss of the exact predictive: the missing bits' marginals given the given ones."""
    match = np.where(x[:, None, :] == PROTOTYPES[None], np.log(1 - FLIP), np.log(FLIP))
    ll = np.where(given[:, None, :], match, 0.0).sum(-1)
    w = np.exp(ll - ll.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    p1 = w @ (PROTOTYPES * (1 - FLIP) + (1 - PROTOTYPES) * FLIP)
    return np.where(given, 0.0, -(x * np.log(p1) + (1 - x) * np.log(1 - p1))).sum(1).mean()


def test_training_learns_to_predict_missing_bits(tmp_path):
    """Half of each row given, the rest predicted. Every bit is 1 about half the time, so ignoring the
    given bits is poor (the frequency answer, ~5.1 nats a row); the exact predictive of the known law
    (~1.8) needs the prototype read from the given bits. Damped mean field (0.5) trains smoothly."""
    rng = np.random.default_rng(1)
    train, test = mixture_rows(1000, rng), mixture_rows(400, rng)
    given = rng.random(test.shape) < 0.5
    m = dbm64(nv=16, n1=8, n2=4)
    before = m.multi_prediction_loss({"v": test}, {"v": given}, mf_iters=10, mf_damping=0.5).mean()
    history = m.fit({"v": train}, method="mpt", lr=0.3, epochs=40, batch_size=50, mf_iters=10, mf_damping=0.5,
                    validation={"v": test}, progress=False, checkpoint=tmp_path / "c.npz")
    after = m.multi_prediction_loss({"v": test}, {"v": given}, mf_iters=10, mf_damping=0.5).mean()
    q = train.mean(0)
    frequency = np.where(given, 0.0, -(test * np.log(q) + (1 - test) * np.log(1 - q))).sum(1).mean()
    best = bayes_loss(test, given)
    assert before > 0.95 * frequency and after < 1.25 * best, (before, frequency, after, best)
    assert history[-1]["valid_mp_loss"] < 0.5 * history[0]["valid_mp_loss"]
    assert {"epoch", "lr", "train_mp_loss", "valid_mp_loss"} <= set(history[0])
    assert (tmp_path / "c.npz").exists()


@pytest.mark.parametrize("name, words", [("grbm", "v is real"), ("bm", "lateral terms")])
def test_refused_where_block_mean_field_does_not_apply(name, words):
    m = load_model(name)
    data = {"v": np.zeros((4,) + m.shape("v"))}
    with pytest.raises(ValueError, match=words):
        m.fit(data, method="mpt", progress=False)


def test_bad_inputs_masks_are_named(dbm):
    v = np.zeros((5, 3))
    with pytest.raises(ValueError, match=r"inputs mask of v must have shape \(5, 3\)"):
        dbm.multi_prediction_loss({"v": v}, {"v": np.zeros((5, 2), bool)})
    with pytest.raises(ValueError, match="h1.*not in the data"):
        dbm.multi_prediction_loss({"v": v}, {"h1": np.zeros((5, 3), bool)})
    with pytest.raises(ValueError, match="input_fraction"):
        dbm.fit({"v": v}, method="mpt", input_fraction=1.5, progress=False)
