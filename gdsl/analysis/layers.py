"""The layer structure greedy training needs, worked out at compile time.

Layered energy models (a DBM): the layers are the breadth-first distance from the visible
groups in the graph of groups that share an energy term; every term must join two adjacent
layers or stay inside one group (a bias). For each adjacent pair of layers an RBM is cut out
of the model's own monomials; the code generator compiles each into the model's module, so
the runtime trains them without re-entering the compiler.

The DBM weight correction (Salakhutdinov & Hinton 2009): in the DBM every inner layer hears
from both neighbours, in an RBM only from one. So the bottom RBM is trained with its data
layer replicated (twice the bottom-up input), the top RBM with its top layer replicated
(twice the top-down input), and the couplings of RBMs in between are halved when they are put
back. An inner layer's biases are trained in both RBMs it belongs to: the RBM above trains a
copy (renamed with UP), and the runtime averages the two.

Deep belief nets: every directed layer must be `child ~ bernoulli(logits = W @ parent + bias)`
with one parent, and the chain ends in the energy part (the top RBM). Each (child, parent)
pair is trained as a binary RBM (DBN_LAYER_TEXT, compiled into the module once).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from ..ir.model import IAccess, IBin, ISum, ModelIR, Monomial, iexpr_accesses, iexpr_map

COPY = "__copy"  # a replicated group of a layer RBM (tied parameters)
UP = "__up"  # the copy of an inner layer's bias trained by the RBM above it


@dataclass
class Level:
    """One layer RBM of a greedy pass: `lower` groups are its data, `upper` its hidden groups."""
    lower: list[str]
    upper: list[str]
    replicate: list[str]
    halve: bool  # couplings are halved when put back (an RBM between two others)
    couplings: list[str]  # parameters of terms that join the two layers
    ir: ModelIR  # the layer RBM, cut out of the model's monomials
    plan: object = None  # its Plan (analysis.plan), which the code generator emits

    def dump(self) -> str:
        rep = f", replicating {', '.join(self.replicate)}" if self.replicate else ""
        halve = ", couplings halved when put back" if self.halve else ""
        return (f"  {', '.join(self.lower)} -> {', '.join(self.upper)}: params "
                f"{', '.join(self.ir.params)}{rep}{halve}\n")


@dataclass
class GreedyPlan:
    levels: list[Level]
    refused: Optional[str] = None  # why the model cannot be pretrained greedily

    def dump(self) -> str:
        if self.refused:
            return f"greedy pretraining: not available ({self.refused})\n"
        return "greedy pretraining, layer by layer:\n" + "".join(level.dump() for level in self.levels)


class NotLayered(ValueError):
    pass


def layers(ir: ModelIR, data_groups) -> list[list[str]]:
    """The groups of each layer, from the data groups upwards (NotLayered says why not)."""
    from ..ir.graph import group_graph

    g = group_graph(ir)
    if any(a == b for a, b in g.edges()):
        raise NotLayered("greedy pretraining needs a layered model; this one has lateral couplings")
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
        raise NotLayered(f"greedy pretraining: {', '.join(unreached)} share no term with the data's layers")
    for m in ir.monomials:
        ds = sorted({depth[n] for n in m.groups})
        same_layer = len(ds) < len(m.groups)  # two groups of one layer in a term: not an RBM
        if len(ds) > 2 or (len(ds) == 2 and ds[1] - ds[0] != 1) or same_layer:
            raise NotLayered(f"greedy pretraining needs every term to join two adjacent layers or to be a "
                             f"bias; the term on line {m.span.line} joins {', '.join(m.groups)}")
    out: list[list[str]] = []
    for name in ir.groups:
        while len(out) <= depth[name]:
            out.append([])
        out[depth[name]].append(name)
    if len(out) < 2:
        raise NotLayered("greedy pretraining needs at least one latent layer above the data")
    return out


def layer_ir(ir: ModelIR, lower: list[str], upper: list[str], replicate: list[str], rename_lower_bias: bool,
             name: str) -> ModelIR:
    """The RBM between two layers, with `replicate`d groups copied (tied parameters)."""
    keep = set(lower) | set(upper)
    groups = {}
    for gname, g in ir.groups.items():
        if gname in keep:
            groups[gname] = replace(g, role="visible" if gname in lower else "latent")
    for gname in replicate:
        groups[gname + COPY] = replace(groups[gname], name=gname + COPY)
    monomials: list[Monomial] = []
    for m in ir.monomials:
        if not m.groups or not set(m.groups) <= keep:
            continue
        coef = m.coef
        if rename_lower_bias and set(m.groups) <= set(lower):
            coef = tuple(iexpr_map(c, _renamed_param) for c in m.coef)
        monomials.append(replace(m, coef=coef))
        for gname in replicate:
            if gname in m.groups:
                factors = tuple(replace(f, group=gname + COPY) if f.group == gname else f for f in m.factors)
                monomials.append(replace(m, coef=coef, factors=factors))
    used = {a.name for m in monomials for a in _param_accesses(m)}
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
    return sub


def _renamed_param(e):
    if isinstance(e, IAccess) and e.kind == "param":
        return IAccess("param", e.name + UP, e.index)
    return e


def _param_accesses(m: Monomial):
    return [a for c in m.coef for a in iexpr_accesses(c) if a.kind == "param"]


def greedy_plan(ir: ModelIR) -> GreedyPlan:
    """The layer RBMs of a layered energy model, trained bottom up from its visible groups."""
    from .plan import analyse

    visible = [n for n, g in ir.groups.items() if g.role == "visible"]
    try:
        stack = layers(ir, visible)
    except NotLayered as e:
        return GreedyPlan([], str(e))
    levels = []
    top = len(stack) - 2
    for level in range(len(stack) - 1):
        lower, upper = stack[level], stack[level + 1]
        replicate = lower if level == 0 else upper if level == top else []
        if level == 0 and level == top:  # a single RBM: no neighbour to double-count
            replicate = []
        sub = layer_ir(ir, lower, upper, replicate, level > 0, f"{ir.name}_layer{level + 1}")
        couplings = sorted({a.name for m in sub.monomials
                            if len(set(m.groups) - set(replicate)) > 1 or any(f.group.endswith(COPY) for f in m.factors)
                            for a in _param_accesses(m)})
        levels.append(Level(lower, upper, list(replicate), 0 < level < top, couplings, sub,
                            analyse(sub) if len(stack) > 2 else None))  # one level: the model itself
    return GreedyPlan(levels)


# deep belief nets ---------------------------------------------------------------------------------
DBN_LAYER_TEXT = """model dbn_layer(nv = 1, nh = 1) {
    visible v[nv]: binary
    latent  h[nh]: binary
    param W[nv, nh]
    param b[nv]
    param c[nh]
    energy -(v @ W @ h) - b @ v - c @ h
}
"""


@dataclass(frozen=True)
class DbnLayer:
    child: str
    parent: str
    weight: str
    transposed: bool  # the weight is W[parent, child] rather than W[child, parent]
    bias: str


def dbn_stack(directed, visible: list[str]) -> tuple[list[DbnLayer], Optional[str]]:
    """([(child, parent, weight, transposed, bias)] from the data upwards, None), or ([], why not)."""
    conds = {c.group: c for c in directed.model}
    if not directed.undirected:
        return [], "greedy training needs an energy (RBM) over the top layers, as in a DBN"
    bottom = [g for g in visible if g in conds]
    if len(bottom) != 1:
        return [], "greedy training needs one visible directed layer at the bottom"
    out, child = [], bottom[0]
    while child in conds:
        layer = _linear_layer(conds[child])
        if layer is None:
            return [], (f"greedy training needs '{child} ~ bernoulli(logits = W @ parent + bias)'; "
                        f"the conditional of {child} (line {conds[child].span.line}) is not of that form")
        out.append(DbnLayer(child, *layer))
        child = layer[0]
    if child not in directed.undirected:
        return [], f"the layer above {out[-1].child} ({child}) must belong to the top RBM"
    return out, None


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
