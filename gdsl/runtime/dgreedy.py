"""Greedy layer-wise training of a deep belief network (Hinton, Osindero & Teh 2006).

The stack is read from the model: every directed layer must be
`child ~ bernoulli(logits = W @ parent + bias)` with one parent, and the chain ends in
the energy part (the top RBM). Bottom up, each (child, parent) pair is trained as a
binary RBM whose weights and visible biases *are* the layer's generative W and bias;
its hidden biases are recognition biases (kept in `model.recognition`, used for the
up-pass). Samples of the hidden means are the next layer's data; the top RBM is the
model's own energy part, trained with the energy learners (PCD by default).
"""
from __future__ import annotations

import numpy as np

from .notebook import History


def dbn_layers(model) -> tuple:
    """[(child, parent, weight, transposed, bias)] from the data upwards, as compiled into the
    module (gdsl/analysis/layers.py), or a ValueError saying why the model is not a DBN stack."""
    refused = getattr(model, "DBN_REFUSED", None)
    if refused:
        raise ValueError(refused)
    return model.DBN_LAYERS


def fit_dbn_greedy(model, data, epochs=10, batch_size=100, lr=0.05, k=1, method="pcd", momentum=0.5,
                   weight_decay=0.0, top_epochs=None, progress=None) -> list:
    stack = dbn_layers(model)
    n = model._n_of(data)
    bottom = stack[0][0]
    if set(data) != {bottom}:
        raise ValueError(f"greedy training takes the data layer only: {{'{bottom}': ...}}")
    current = np.asarray(model._array(bottom, data[bottom], n), dtype=np.float64)
    rng = np.random.default_rng(int(model._rng.integers(2 ** 31)))
    model.recognition = {}
    history = []
    for child, parent, weight, transposed, bias in stack:
        nv, nh = int(np.prod(model.shape(child))), int(np.prod(model.shape(parent)))
        rbm = model.LAYER_RBM(seed=int(rng.integers(2 ** 31)), dtype="float64", nv=nv, nh=nh)
        w = np.asarray(model.params[weight], dtype=np.float64)
        rbm.params = {"W": w.T if transposed else w, "b": model.params[bias],
                      "c": np.zeros(nh)}
        if not np.any(rbm.params["W"]):
            rbm.params["W"] = rng.normal(0, 0.01, (nv, nh))
        h = rbm.fit({"v": current}, method=method, k=k, lr=lr, epochs=epochs, batch_size=batch_size,
                    momentum=momentum, weight_decay=weight_decay, monitor=None, progress=progress)
        model.params[weight] = rbm.params["W"].T if transposed else rbm.params["W"]
        model.params[bias] = rbm.params["b"]
        model.recognition[parent] = np.array(rbm.params["c"])
        history.append({"layer": f"{child} -> {parent}", "history": h})
        means = 1.0 / (1.0 + np.exp(-(current @ rbm.params["W"] + rbm.params["c"])))
        current = (rng.random(means.shape) < means).astype(np.float64)
    top = stack[-1][1]
    # the top RBM: the model's own energy part, its lower biases starting from the recognition ones
    from .model import ModelBase

    h = ModelBase.fit(model, {top: current}, method=method, k=k, lr=lr, epochs=top_epochs or epochs,
                      batch_size=batch_size, momentum=momentum, weight_decay=weight_decay, monitor=None,
                      progress=progress)
    history.append({"layer": f"top RBM ({', '.join(model.UNDIRECTED)})", "history": h})
    return History(history)
