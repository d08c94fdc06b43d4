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

from conftest import differences, load_model, random_params


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


# --------------------------------------------------------------------------- discriminative training
def teacher_data(m, n, seed):
    """(v, y) drawn from the fixture model itself: labels that depend on v."""
    s = m.sample(n, steps=30)
    return {"v": s["v"], "y": s["y"]}


def test_conditional_gradient_matches_finite_differences():
    from gdsl.runtime.discriminative import _conditional_gradient

    m = load_model("softmax_rbm", seed=1, dtype="float64")
    m.params.update(random_params(m, seed=1))
    rng = np.random.default_rng(2)
    v = (rng.random((6, m.shape("v")[0])) < 0.5).astype(float)
    labels = rng.integers(0, 3, 6)
    grads = {p: np.zeros(m.shape(p) or (1,)) for p in m.params}
    _conditional_gradient(m, {"v": v}, labels, "y", ("h",), grads)

    def nll():
        p = m.predict_proba({"v": v}, "y")
        return -np.mean(np.log(p[np.arange(6), labels]))

    want = differences(m, nll, eps=1e-6)
    for name in m.params:
        np.testing.assert_allclose(grads[name].reshape(m.shape(name)), want[name], rtol=1e-6, atol=1e-9, err_msg=name)
    assert max(np.abs(w).max() for w in want.values()) > 0.05


def exact_cll(m, data):
    p = m.predict_proba({"v": data["v"]}, "y")
    return float(np.mean(np.log(p[np.arange(len(p)), data["y"].argmax(1)])))


def test_discriminative_training_raises_the_exact_conditional_log_likelihood(model):
    data = teacher_data(model, 600, seed=0)
    student = load_model("softmax_rbm", seed=7)
    student.params.update(random_params(student, seed=7, weight_scale=0.1, bias_scale=0.1))
    before = exact_cll(student, data)
    history = student.fit(data, method="discriminative", lr=0.2, epochs=15, batch_size=30, momentum=0.5,
                          progress=False)
    after = exact_cll(student, data)
    best = exact_cll(model, data)  # the teacher's own conditional
    assert after > before + 0.5 * (best - before), (before, after, best)
    assert history[-1]["train_cll"] == pytest.approx(after, abs=1e-6)
    assert {"train_cll", "train_error"} <= set(history[-1])


def test_hybrid_training_raises_both_objectives(model):
    data = teacher_data(model, 600, seed=1)
    student = load_model("softmax_rbm", seed=8)
    student.params.update(random_params(student, seed=8, weight_scale=0.1, bias_scale=0.1))
    cll0, ll0 = exact_cll(student, data), float(np.mean(student.log_prob(data)))
    student.fit(data, method="hybrid", alpha=1.0, lr=0.1, epochs=15, batch_size=30, momentum=0.5, progress=False)
    cll1, ll1 = exact_cll(student, data), float(np.mean(student.log_prob(data)))
    assert cll1 > cll0 + 0.05 and ll1 > ll0 + 0.2, (cll0, cll1, ll0, ll1)


@pytest.mark.parametrize("kw, message", [
    (dict(method="discriminative", target="h"), r"needs a class label"),
    (dict(method="discriminative", target="v"), r"needs a class label"),
    (dict(method="hybrid", alpha=-1.0), r"alpha must be a finite number >= 0"),
])
def test_discriminative_options_are_checked(model, kw, message):
    data = teacher_data(model, 20, seed=2)
    with pytest.raises(ValueError, match=message):
        load_model("softmax_rbm").fit(data, progress=False, **kw)


def test_the_labels_must_be_given(model):
    with pytest.raises(ValueError, match="say which group is the class label"):
        load_model("softmax_rbm").fit({"v": np.zeros((4, 3))}, method="discriminative", progress=False)
