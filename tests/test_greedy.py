"""Greedy layer-wise pretraining: layers found from the model's terms, the DBM correction, and
that it trains a tiny DBM (exact log-likelihood by enumeration)."""
from pathlib import Path

import numpy as np
import pytest

import gdsl
from gdsl.driver import compile_source, read_source
from gdsl.runtime.greedy import COPY, layer_ir, layers

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
    sub, renamed = layer_ir(_ir("dbm"), ["v"], ["h1"], ["v"], False, "dbm_layer1")
    assert list(sub.groups) == ["v", "h1", "v" + COPY]
    assert set(sub.params) == {"W1", "b", "c1"}  # the copy shares W1 and b
    coupled = [m for m in sub.monomials if set(m.groups) == {"v" + COPY, "h1"}]
    assert len(coupled) == 1 and not renamed


def test_upper_layer_uses_a_copy_of_the_lower_biases():
    sub, renamed = layer_ir(_ir("dbm"), ["h1"], ["h2"], ["h2"], True, "dbm_layer2")
    assert renamed == {"c1": "c1__up"}
    assert set(sub.params) == {"W2", "c1__up", "c2"}
    assert [g.role for g in sub.groups.values()] == ["visible", "latent", "latent"]


def test_greedy_pretraining_raises_the_test_likelihood(digits4x4):
    binary, _, _, train_rows, test_rows = digits4x4
    train, test = binary[train_rows], binary[test_rows]
    m = gdsl.load(MODELS / "dbm.gdl", nv=16, n1=8, n2=4, seed=0)
    before = m.log_prob({"v": test}).mean()
    history = m.fit({"v": train}, method="greedy", lr=0.05, epochs=10, batch_size=20, progress=False)
    after = m.log_prob({"v": test}).mean()
    assert [h["layer"] for h in history] == ["v -> h1", "h1 -> h2"]
    assert history[0]["replicated"] == ["v"] and history[1]["replicated"] == ["h2"]
    # The initial model is nearly uniform (about -11 nats for 16 pixels); pretraining reaches about
    # -5 nats (measured -4.97 with 15 epochs). A 3-nat gain is far outside run-to-run noise of
    # the estimate (exact, so only training randomness: about 0.1 nat).
    assert after > before + 3.0


DBM3 = """
model dbm3(nv = 6, n1 = 4, n2 = 3, n3 = 2) {
    visible v[nv]: binary
    latent  h1[n1]: binary
    latent  h2[n2]: binary
    latent  h3[n3]: binary

    param W1[nv, n1] ~ normal(0, 0.1)
    param W2[n1, n2] ~ normal(0, 0.1)
    param W3[n2, n3] ~ normal(0, 0.1)
    param b[nv]
    param c1[n1]
    param c2[n2]
    param c3[n3]

    energy -(v @ W1 @ h1) - (h1 @ W2 @ h2) - (h2 @ W3 @ h3) - b @ v - c1 @ h1 - c2 @ h2 - c3 @ h3
}
"""


def _dbm_fields(p, v, h1, h2, h3):
    """Each layer's field (-dE/dx) in the three-layer DBM."""
    return {"v": h1 @ p["W1"].T + p["b"], "h1": v @ p["W1"] + h2 @ p["W2"].T + p["c1"],
            "h2": h1 @ p["W2"] + h3 @ p["W3"].T + p["c2"], "h3": h2 @ p["W3"] + p["c3"]}


def test_every_dbm_field_is_the_mean_of_its_rbm_fields(tmp_path, digits4x4):
    """The DBM correction, checked on what it is for: a layer's field in the assembled DBM is
    the mean of its fields in the RBMs it belongs to (a replicated layer's copy equal to the
    layer), or the one RBM's field for the data and top layers. Three hidden layers, so that a
    middle RBM (halved couplings) is covered too. Weights and biases are all checked: a DBM that
    keeps an inner layer's biases from one RBM only fails here."""
    path = tmp_path / "dbm3.gdl"
    path.write_text(DBM3)
    m = gdsl.load(path, nv=16, seed=0)
    binary, _, _, train_rows, _ = digits4x4
    history = m.fit({"v": binary[train_rows]}, method="greedy", lr=0.05, epochs=3, batch_size=20, progress=False)
    assert [h["replicated"] for h in history] == [["v"], [], ["h3"]]
    r1, r2, r3 = (h["params"] for h in history)
    rng = np.random.default_rng(0)
    v, h1, h2, h3 = (rng.integers(0, 2, size=(5, n)).astype(np.float64) for n in (16, 4, 3, 2))
    up = "__up"
    rbm_fields = {
        "v": [h1 @ r1["W1"].T + r1["b"]],
        "h1": [2 * v @ r1["W1"] + r1["c1"], h2 @ r2["W2"].T + r2["c1" + up]],
        "h2": [h1 @ r2["W2"] + r2["c2"], 2 * h3 @ r3["W3"].T + r3["c2" + up]],
        "h3": [h2 @ r3["W3"] + r3["c3"]],
    }
    dbm = _dbm_fields({k: np.asarray(x, np.float64) for k, x in m.params.items()}, v, h1, h2, h3)
    for layer, fields in rbm_fields.items():
        np.testing.assert_allclose(dbm[layer], np.mean(fields, axis=0), rtol=1e-5, atol=1e-5, err_msg=layer)
    # and the biases really were trained in both RBMs (otherwise the check above is weaker)
    assert not np.allclose(r1["c1"], r2["c1" + up])
