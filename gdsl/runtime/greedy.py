"""Greedy layer-wise pretraining of layered energy models (a DBM), from the model's own terms.

The layers are the breadth-first distance from the data groups in the graph of groups
that share an energy term; every term must join two adjacent layers or stay inside
one group (a bias). For each adjacent pair of layers an RBM is cut out of the model's
own monomials and compiled like any model; it is trained with PCD, and the means of
its upper layer (binarised by sampling) are the data of the next RBM.

The DBM weight correction (Salakhutdinov & Hinton 2009): in the DBM every inner
layer hears from both neighbours, in an RBM only from one. So the bottom RBM is
trained with its data layer replicated (twice the bottom-up input), the top RBM with
its top layer replicated (twice the top-down input), and the couplings of RBMs in
between are halved when they are put back. An inner layer's biases are trained in both
RBMs it belongs to (the RBM above trains a copy, started from the values of the RBM below),
and the DBM takes their mean; the data layer's and the top layer's come from their one RBM.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..ir.model import IAccess, IBin, IUn, ModelIR, Monomial

COPY = "__copy"
UP = "__up"


def layers(ir: ModelIR, data_groups) -> list[list[str]]:
    from ..ir.graph import group_graph

    g = group_graph(ir)
    if any(a == b for a, b in g.edges()):
        raise ValueError("greedy pretraining needs a layered model; this one has lateral couplings")
    depth = {name: 0 for name in data_groups}
    frontier = list(data_groups)
    while frontier:
        nxt = []
        for a in frontier:
            for b in sorted(g.neighbors(a), key=list(ir.groups).index):
                if b not in depth:
                    depth[b] = depth[a] + 1
                    nxt.append(b)
        frontier = nxt
    unreached = [n for n in ir.groups if n not in depth]
    if unreached:
        raise ValueError(f"greedy pretraining: {', '.join(unreached)} share no term with the data's layers")
    for m in ir.monomials:
        ds = sorted({depth[n] for n in m.groups})
        same_layer = len(ds) < len(m.groups)  # two groups of one layer in a term: not an RBM
        if len(ds) > 2 or (len(ds) == 2 and ds[1] - ds[0] != 1) or same_layer:
            raise ValueError(f"greedy pretraining needs every term to join two adjacent layers or to be a "
                             f"bias; term m{m.id} (line {m.span.line}) joins {', '.join(m.groups)}")
    out: list[list[str]] = []
    for name in ir.groups:
        while len(out) <= depth[name]:
            out.append([])
        out[depth[name]].append(name)
    if len(out) < 2:
        raise ValueError("greedy pretraining needs at least one latent layer above the data")
    return out


def _rename_params(e, mapping):
    if isinstance(e, IAccess) and e.kind == "param" and e.name in mapping:
        return IAccess("param", mapping[e.name], e.index)
    if isinstance(e, IUn):
        return IUn(e.op, _rename_params(e.arg, mapping))
    if isinstance(e, IBin):
        return IBin(e.op, _rename_params(e.left, mapping), _rename_params(e.right, mapping))
    return e


def layer_ir(ir: ModelIR, lower: list[str], upper: list[str], replicate: list[str], rename_lower_bias: bool,
             name: str) -> tuple[ModelIR, dict[str, str]]:
    """The RBM between two layers, with `replicate`d groups copied (tied parameters)."""
    keep = set(lower) | set(upper)
    groups = {}
    for gname, g in ir.groups.items():
        if gname in keep:
            groups[gname] = replace(g, role="visible" if gname in lower else "latent")
    for gname in replicate:
        groups[gname + COPY] = replace(groups[gname], name=gname + COPY)
    mapping: dict[str, str] = {}
    monomials: list[Monomial] = []
    for m in ir.monomials:
        if not m.groups or not set(m.groups) <= keep:
            continue
        coef = m.coef
        if rename_lower_bias and set(m.groups) <= set(lower):
            for c in m.coef:
                for a in _accesses(c):
                    mapping[a.name] = a.name + UP
            coef = tuple(_rename_params(c, mapping) for c in m.coef)
        monomials.append(replace(m, coef=coef))
        for gname in replicate:
            if gname in m.groups:
                factors = tuple(replace(f, group=gname + COPY) if f.group == gname else f for f in m.factors)
                monomials.append(replace(m, coef=coef, factors=factors))
    used = {a.name for m in monomials for c in m.coef for a in _accesses(c)}
    params = {}
    for pname, p in ir.params.items():
        if pname in used:
            params[pname] = p
        if pname + UP in used:
            params[pname + UP] = replace(p, name=pname + UP)
    monomials = [replace(m, id=k) for k, m in enumerate(monomials)]
    sub = ModelIR(name, dict(ir.sizes), dict(ir.consts), groups, params, monomials, ir.energy_lines,
                  list(ir.source_lines))
    from ..ir.graph import build_factor_graph

    sub.graph = build_factor_graph(sub)
    return sub, mapping


def _inner_bias(below, above):
    """The DBM bias of an inner layer from its biases in the RBM below it and the RBM above it.

    In the DBM the layer's field is the mean of its fields in the two RBMs: each RBM gives it
    twice the input of one neighbour (a replicated layer, or couplings that are halved when put
    back), and the DBM gives it once the input of both. So the couplings come out right, and the
    biases must be averaged as well (Salakhutdinov & Hinton's code adds half of each)."""
    return 0.5 * (np.asarray(below) + np.asarray(above))


def _accesses(e):
    from ..ir.model import iexpr_accesses

    return [a for a in iexpr_accesses(e) if a.kind == "param"]


def compile_layer(sub: ModelIR, source_text: str):
    """Plan, emit and import the layer RBM (cached on disk like any model)."""
    from ..analysis.plan import analyse
    from ..codegen.emit import emit
    from ..driver import load_cached

    text = source_text + f"\n# greedy layer model {sub.name}: " + ", ".join(
        f"{g.name}:{g.role}" for g in sub.groups.values())
    return load_cached(sub.name, text, lambda: emit(analyse(sub), text))


def fit_greedy(model, data, k=1, lr=0.01, epochs=10, batch_size=100, momentum=0.0, weight_decay=0.0,
               lr_schedule=None, progress=None) -> list:
    """Train the layers of `model` one by one as RBMs and put them together (see module docstring)."""
    from ..driver import compile_source
    from ..errors import Source

    ir = compile_source(Source(model.SOURCE_TEXT, f"<{model.NAME}>"), until="plan").ir
    n = model._n_of(data)
    current = {g: model._array(g, v, n) for g, v in data.items()}
    stack = layers(ir, list(current))
    if set(current) != set(stack[0]):
        raise ValueError("greedy pretraining needs data for exactly the first layer")
    history = []
    top = len(stack) - 2
    for level in range(len(stack) - 1):
        lower, upper = stack[level], stack[level + 1]
        replicate = lower if level == 0 else upper if level == top else []
        if level == 0 and level == top:  # a single RBM: no neighbour to double-count
            replicate = []
        sub_ir, renamed = layer_ir(ir, lower, upper, replicate, level > 0, f"{ir.name}_layer{level + 1}")
        module = compile_layer(sub_ir, model.SOURCE_TEXT)
        rbm = module.Model(seed=int(model._rng.integers(2 ** 31)), dtype=model.dtype.name,
                           **model.sizes, **model.consts)
        rbm.params = {p: model.params[p[:-len(UP)] if p.endswith(UP) else p] for p in rbm.params}
        layer_data = dict(current)
        for g in replicate:
            if g in lower:
                layer_data[g + COPY] = current[g]
        h = rbm.fit(layer_data, method="pcd", k=k, lr=lr, epochs=epochs, batch_size=batch_size,
                    momentum=momentum, weight_decay=weight_decay, lr_schedule=lr_schedule, monitor=None,
                    progress=progress)
        halve = 0 < level < top
        couplings = {a.name for m in sub_ir.monomials if len(set(m.groups) - set(replicate)) > 1
                     or any(f.group.endswith(COPY) for f in m.factors) for c in m.coef for a in _accesses(c)}
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
    return history
