"""predict_proba / predict: the exact p(y | v) of a class label (issue 21, item 5).

For the classification RBM (models/softmax_rbm.gdl), p(y | v) has a closed form with the
hidden units summed out (Larochelle & Bengio 2008):
    p(y = k | v) ∝ exp(d_k + sum_j softplus(c_j + U_kj + sum_i v_i W_ij)),
written here in numpy from the parameters; the compiled answer must agree to float32
precision. Independently, the same conditional comes from brute-force enumeration of the
joint (y, h) through log_prob.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import logsumexp

from conftest import load_model, random_params


@pytest.fixture(scope="module")
def model():
    m = load_model("softmax_rbm", seed=4)
    m.params.update(random_params(m, seed=4))
    return m


def closed_form(m, v):
    p = {k: np.asarray(a, np.float64) for k, a in m.params.items()}
    k = m.shape("y")[0]
    logits = np.stack([p["d"][y] + np.logaddexp(0.0, p["c"] + p["U"][y] + v @ p["W"]).sum(1) for y in range(k)], 1)
    return np.exp(logits - logsumexp(logits, axis=1, keepdims=True))


def all_visible(m):
    return np.array(list(itertools.product((0.0, 1.0), repeat=m.shape("v")[0])))


def test_predict_proba_matches_the_closed_form(model):
    v = all_visible(model)
    got = model.predict_proba({"v": v}, target="y")
    want = closed_form(model, v)
    assert got.shape == want.shape == (len(v), 3)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.abs(want - 1 / 3).max() > 0.1  # the parameters make the classes distinguishable
    np.testing.assert_array_equal(model.predict({"v": v}, target="y"), want.argmax(1))


def test_predict_proba_matches_enumeration_of_the_joint(model):
    v = all_visible(model)[:5]
    eye = np.eye(3)
    joint = np.stack([model.log_prob({"v": v, "y": np.repeat(eye[k][None], len(v), 0)}) for k in range(3)], 1)
    want = np.exp(joint - logsumexp(joint, axis=1, keepdims=True))
    np.testing.assert_allclose(model.predict_proba({"v": v}, target="y"), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("data, target, message", [
    ({"v": np.zeros((2, 4))}, "h", r"needs a class label: a categorical\(K\) group of one row; h is binary"),
    ({"v": np.zeros((2, 4))}, "z", r"has no variable 'z'"),
    ({"v": np.zeros((2, 4)), "y": np.eye(3)[[0, 1]]}, "y", r"y is the target: leave it out of the data"),
    ({"v": np.zeros((2, 5))}, "y", r"v"),
])
def test_clear_errors(model, data, target, message):
    with pytest.raises(ValueError, match=message):
        model.predict_proba(data, target=target)
