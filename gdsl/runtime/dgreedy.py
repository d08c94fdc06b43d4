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

from ..ir.model import IAccess, IBin, ISum

RBM_TEXT = """model {name}(nv = {nv}, nh = {nh}) {{
    visible v[nv]: binary
    latent  h[nh]: binary
    param W[nv, nh]
    param b[nv]
    param c[nh]
    energy -(v @ W @ h) - b @ v - c @ h
}}
"""


def dbn_layers(model) -> list[tuple]:
    """[(child, parent, weight, transposed, bias)] from the data upwards."""
    from ..driver import compile_source
    from ..errors import Source

    ir = compile_source(Source(model.SOURCE_TEXT, f"<{model.NAME}>"), until="plan").ir.directed
    conds = {c.group: c for c in ir.model}
    if not ir.undirected:
        raise ValueError("greedy training needs an energy (RBM) over the top layers, as in a DBN")
    visible = [g for g in model.visible if g in conds]
    if len(visible) != 1:
        raise ValueError("greedy training needs one visible directed layer at the bottom")
    out, child = [], visible[0]
    while child in conds:
        layer = _linear_layer(conds[child])
        if layer is None:
            raise ValueError(f"greedy training needs '{child} ~ bernoulli(logits = W @ parent + bias)'; "
                             f"the conditional of {child} (line {conds[child].span.line}) is not of that form")
        out.append((child,) + layer)
        child = layer[0]
    if child not in ir.undirected:
        raise ValueError(f"the layer above {out[-1][0]} ({child}) must belong to the top RBM")
    return out


def _linear_layer(c):
    if c.family != "bernoulli" or c.free or c.arg("logits") is None:
        return None
    e = c.arg("logits")
    if not (isinstance(e, IBin) and e.op == "+"):
        return None
    for mat, bias in ((e.left, e.right), (e.right, e.left)):
        if not (isinstance(mat, ISum) and len(mat.binders) == 1 and isinstance(bias, IAccess)
                and bias.kind == "param" and len(bias.index) == 1):
            continue
        body = mat.body
        if not (isinstance(body, IBin) and body.op == "*"):
            continue
        w, x = (body.left, body.right) if getattr(body.left, "kind", "") == "param" else (body.right, body.left)
        if not (isinstance(w, IAccess) and isinstance(x, IAccess) and w.kind == "param" and x.kind == "group"
                and len(w.index) == 2 and len(x.index) == 1):
            continue
        t, a = mat.binders[0].name, c.elem[0]
        names = [str(p) for p in w.index]
        if names == [a, t]:
            return x.name, w.name, False, bias.name
        if names == [t, a]:
            return x.name, w.name, True, bias.name
    return None


def fit_dbn_greedy(model, data, epochs=10, batch_size=100, lr=0.05, k=1, method="pcd", momentum=0.5,
                   weight_decay=0.0, top_epochs=None, progress=None) -> list:
    from ..driver import load_text

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
        module = load_text(RBM_TEXT.format(name=f"{model.NAME}_{child}_{parent}", nv=nv, nh=nh),
                           f"<greedy layer {child}-{parent}>")
        rbm = module.Model(seed=int(rng.integers(2 ** 31)), dtype="float64")
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
    return history
