"""Greedy layer-wise pretraining: layers found from the model's terms, the DBM correction, and
that it trains a tiny DBM (exact log-likelihood by enumeration)."""
from pathlib import Path

import numpy as np
import pytest

import gdsl
from gdsl.driver import compile_source, read_source
from gdsl.analysis.layers import COPY, UP, layer_ir, layers

MODELS = Path(__file__).resolve().parents[1] / "models"


def _ir(name):
    return compile_source(read_source(MODELS / f"{name}.gdl"), until="plan").ir


def test_layers_follow_the_terms():
    assert layers(_ir("dbm"), ["v"]) == [["v"], ["h1"], ["h2"]]
    assert layers(_ir("rbm"), ["v"]) == [["v"], ["h"]]
    assert layers(_ir("softmax_rbm"), ["v", "y"]) == [["v", "y"], ["h"]]


@pytest.mark.parametrize("name, data, message", [
    ("bm", ["v"], "lateral couplings"),
    ("threeway", ["x", "y"], "adjacent layers"),
])
def test_models_that_are_not_layered_are_refused(name, data, message):
    with pytest.raises(ValueError, match=message):
        layers(_ir(name), data)


def test_bottom_layer_replicates_the_data_with_tied_parameters():
    sub = layer_ir(_ir("dbm"), ["v"], ["h1"], ["v"], False, "dbm_layer1")
    assert list(sub.groups) == ["v", "h1", "v" + COPY]
    assert set(sub.params) == {"W1", "b", "c1"}  # the copy shares W1 and b
    coupled = [m for m in sub.monomials if set(m.groups) == {"v" + COPY, "h1"}]
    assert len(coupled) == 1


def test_upper_layer_uses_a_copy_of_the_lower_biases():
    sub = layer_ir(_ir("dbm"), ["h1"], ["h2"], ["h2"], True, "dbm_layer2")
    assert set(sub.params) == {"W2", "c1" + UP, "c2"}
    assert [g.role for g in sub.groups.values()] == ["visible", "latent", "latent"]


@pytest.fixture(scope="module")
def greedy_dbm(digits4x4):
    """A 16-8-4 DBM before and after greedy pretraining on 4x4 digits: (model, history, test
    log-likelihood before)."""
    binary, _, _, train_rows, test_rows = digits4x4
    m = gdsl.load(MODELS / "dbm.gdl", nv=16, n1=8, n2=4, seed=0)
    before = m.log_prob({"v": binary[test_rows]}).mean()
    history = m.fit({"v": binary[train_rows]}, method="greedy", lr=0.05, epochs=10, batch_size=20, progress=False)
    return m, history, before


def test_greedy_pretraining_raises_the_test_likelihood(greedy_dbm, digits4x4):
    m, history, before = greedy_dbm
    binary, _, _, _, test_rows = digits4x4
    after = m.log_prob({"v": binary[test_rows]}).mean()
    assert [h["layer"] for h in history] == ["v -> h1", "h1 -> h2"]
    assert history[0]["replicated"] == ["v"] and history[1]["replicated"] == ["h2"]
    # The initial model is nearly uniform (about -11 nats for 16 pixels); pretraining reaches about
    # -5 nats (measured -4.97 with 15 epochs). A 3-nat gain is far outside run-to-run noise of
    # the estimate (exact, so only training randomness: about 0.1 nat).
    assert after > before + 3.0


def test_every_dbm_field_is_the_mean_of_its_rbm_fields(greedy_dbm):
    """The DBM correction, checked on what it is for: a layer's field in the assembled DBM is
    the mean of its fields in the RBMs it belongs to (a replicated layer's copy equal to the
    layer), or its one RBM's field for the data and top layers. Weights and biases are both
    checked: a DBM that keeps the inner layer's biases from one RBM only fails here."""
    m, history, _ = greedy_dbm
    r1, r2 = (h["params"] for h in history)
    rng = np.random.default_rng(0)
    v, h1, h2 = (rng.integers(0, 2, size=(5, n)).astype(np.float64) for n in (16, 8, 4))
    p = {k: np.asarray(x, np.float64) for k, x in m.params.items()}
    dbm = {"v": h1 @ p["W1"].T + p["b"], "h1": v @ p["W1"] + h2 @ p["W2"].T + p["c1"], "h2": h1 @ p["W2"] + p["c2"]}
    rbm_fields = {
        "v": [h1 @ r1["W1"].T + r1["b"]],                                      # bottom RBM, v and its copy
        "h1": [2 * v @ r1["W1"] + r1["c1"], 2 * h2 @ r2["W2"].T + r2["c1__up"]],  # bottom and top RBM
        "h2": [h1 @ r2["W2"] + r2["c2"]],                                      # top RBM, h2 and its copy
    }
    for layer, fields in rbm_fields.items():
        np.testing.assert_allclose(dbm[layer], np.mean(fields, axis=0), rtol=1e-5, atol=1e-5, err_msg=layer)
    assert not np.allclose(r1["c1"], r2["c1__up"])  # the biases were trained in both RBMs
