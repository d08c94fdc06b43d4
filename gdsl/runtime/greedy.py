"""Greedy layer-wise pretraining of layered energy models (a DBM).

The layers, the layer RBMs cut out of the model's own terms and the DBM weight correction
are worked out at compile time (gdsl/analysis/layers.py, which explains the method); the
module carries them as `Model.GREEDY`, with a compiled class per layer RBM. Here each layer
RBM is trained with PCD, its parameters are put back (an inner layer's biases as the mean of
its two RBMs', couplings of RBMs in between halved), and the means of its upper layer,
binarised by sampling, are the data of the next.
"""
from __future__ import annotations

import numpy as np

from .notebook import History

COPY = "__copy"  # the names analysis/layers.py gives replicated groups and upper copies of biases
UP = "__up"


def _inner_bias(below, above):
    """The DBM bias of an inner layer from its biases in the RBM below it and the RBM above it.

    In the DBM the layer's field is the mean of its fields in the two RBMs: each RBM gives it
    twice the input of one neighbour (a replicated layer, or couplings that are halved when put
    back), and the DBM gives it once the input of both. So the couplings come out right, and the
    biases must be averaged as well (Salakhutdinov & Hinton's code adds half of each)."""
    return 0.5 * (np.asarray(below) + np.asarray(above))


def greedy_levels(model) -> tuple:
    """The compiled layer structure of `model`, or a ValueError saying why it has none."""
    refused = getattr(model, "GREEDY_REFUSED", None)
    if refused:
        raise ValueError(refused)
    return model.GREEDY


def fit_greedy(model, data, k=1, lr=0.01, epochs=10, batch_size=100, momentum=0.0, weight_decay=0.0,
               lr_schedule=None, progress=None) -> list:
    """Train the layers of `model` one by one as RBMs and put them together (see module docstring)."""
    levels = greedy_levels(model)
    n = model._n_of(data)
    current = {g: model._array(g, v, n) for g, v in data.items()}
    if set(current) != set(levels[0][0]):
        raise ValueError(f"greedy pretraining needs data for exactly the first layer "
                         f"({', '.join(levels[0][0])}), got {', '.join(current) or 'none'}")
    history = []
    for lower, upper, replicate, halve, couplings, layer_class in levels:
        cls = layer_class or type(model)
        rbm = cls(seed=int(model._rng.integers(2 ** 31)), dtype=model.dtype.name, **model.sizes, **model.consts)
        rbm.params = {p: model.params[p[:-len(UP)] if p.endswith(UP) else p] for p in rbm.params}
        layer_data = dict(current)
        for g in replicate:
            if g in lower:
                layer_data[g + COPY] = current[g]
        h = rbm.fit(layer_data, method="pcd", k=k, lr=lr, epochs=epochs, batch_size=batch_size,
                    momentum=momentum, weight_decay=weight_decay, lr_schedule=lr_schedule, monitor=None,
                    progress=progress)
        for p, value in rbm.params.items():
            if p.endswith(UP):
                # an inner layer's biases: the mean of the two RBMs' (see _inner_bias)
                model.params[p[:-len(UP)]] = _inner_bias(model.params[p[:-len(UP)]], value)
                continue
            model.params[p] = value * 0.5 if halve and p in couplings else value
        history.append({"layer": f"{', '.join(lower)} -> {', '.join(upper)}", "history": h,
                        "replicated": list(replicate), "halved": halve,
                        "params": {p: v.copy() for p, v in rbm.params.items()}})
        means = rbm.mean_field(layer_data)
        rng = np.random.default_rng(int(model._rng.integers(2 ** 31)))
        current = {g: (rng.random(means[g].shape) < means[g]).astype(model.dtype) for g in upper}
        for g in upper:
            if model.domains[g] != "binary":
                raise ValueError(f"greedy pretraining passes binary samples up; {g} is {model.domains[g]}")
    return History(history)
