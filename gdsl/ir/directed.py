"""The directed part of the IR: conditionals at element level, in topological order.

Each conditional `x ~ family(arg = e, ...)` becomes, for one element x[a0, a1, ...]
(the index names `elem`), one scalar index-notation expression per argument, with
let bindings inlined and matrix notation elaborated (so `W @ h + b` reads
`sum[t](W[a0, t] * h[t]) + b[a0]`). The leading `free` indices are the
user's free indices of an autoregressive definition; the element-level check
that such a definition reads only earlier elements of itself happens here.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ErrorSink, Span
from ..poly import Poly
from .model import IAccess, IBin, IExpr, ISum, IUn, GroupIR, iexpr_text


@dataclass(frozen=True)
class CondIR:
    group: str
    family: str  # bernoulli | normal | categorical
    args: tuple[tuple[str, IExpr], ...]  # (argument name, expression at element `elem`)
    elem: tuple[str, ...]  # index names of one element, one per axis of the group
    free: int  # how many leading axes are autoregressive (free indices)
    span: Span
    in_guide: bool

    def arg(self, name: str) -> IExpr | None:
        return dict(self.args).get(name)


@dataclass
class DirectedIR:
    groups: dict[str, GroupIR]  # every group of the model, directed or not
    model: list[CondIR]  # p's conditionals, parents first
    guide: list[CondIR]  # q's conditionals, parents first
    undirected: tuple[str, ...]  # groups of the energy part (the top of a chain graph)

    def dump(self) -> str:
        out = []
        for title, conds in (("directed", self.model), ("guide", self.guide)):
            for c in conds:
                idx = ", ".join(c.elem)
                free = f" (autoregressive over {', '.join(c.elem[:c.free])})" if c.free else ""
                out.append(f"  {title} {c.group}[{idx}] ~ {c.family}{free} (line {c.span.line})")
                for name, e in c.args:
                    out.append(f"    {name} = {iexpr_text(e)}")
        return "\n".join(out) + ("\n" if out else "")


def lower_directed(checked, el) -> DirectedIR:
    sink = ErrorSink()
    groups = {name: GroupIR(g.name, g.role, g.shape, g.domain, g.categories, g.decl.span.line)
              for name, g in checked.groups.items()}
    model = [_lower_cond(checked, el, c, sink) for c in checked.conditionals]
    guide = [_lower_cond(checked, el, c, sink) for c in checked.guide]
    sink.raise_if_any(checked.source)
    undirected = tuple(n for n in groups if n not in checked.directed)
    return DirectedIR(groups, model, guide, undirected)


def _lower_cond(checked, el, c, sink: ErrorSink) -> CondIR:
    shape = checked.groups[c.group].shape
    elem = tuple(el.fresh() for _ in shape)
    nfree = len(c.free)
    out = tuple(Poly.sym(n) for n in elem[nfree:])
    el.index_scopes = [dict(zip(c.free, elem))]
    try:
        args = tuple((name, el.elab(e, out if e.type.shape else ())) for name, e in c.args.items())
    finally:
        el.index_scopes = []
    cond = CondIR(c.group, c.family, args, elem, nfree, c.span, c.in_guide)
    if nfree:
        for name, e in args:
            _check_earlier(cond, e, {}, sink)
    return cond


def _check_earlier(c: CondIR, e: IExpr, bounds: dict[str, tuple], sink: ErrorSink) -> None:
    """An autoregressive conditional of x[i, ...] may read x only at elements before i along
    the first free axis: x[i - k] with k >= 1, or x[j] with j bounded by sum[j < i - k], k >= 0."""
    if isinstance(e, IAccess):
        if e.kind == "group" and e.name == c.group and not _before(e.index[0], c.elem[0], bounds):
            shown = iexpr_text(e).replace(c.elem[0], "i")
            sink.error(f"the conditional of {c.group}[i] reads {shown}, which is not an earlier element",
                       c.span, f"an autoregressive definition may read only earlier elements: "
                               f"sum[j < i](... {c.group}[j] ...) or {c.group}[i - 1]")
    elif isinstance(e, IUn):
        _check_earlier(c, e.arg, bounds, sink)
    elif isinstance(e, IBin):
        _check_earlier(c, e.left, bounds, sink)
        _check_earlier(c, e.right, bounds, sink)
    elif isinstance(e, ISum):
        inner = dict(bounds)
        for b in e.binders:
            inner[b.name] = b.hi
        _check_earlier(c, e.body, inner, sink)


def _before(p: Poly, i: str, bounds: dict[str, tuple]) -> bool:
    """Whether p < i for every value of the summation indices in p (their exclusive upper bounds)."""
    rest = p - Poly.sym(i) if p.coefficient(i) == 1 else None
    if rest is not None and rest.is_constant():
        return rest.constant <= -1
    syms = [s for s in p.symbols() if s in bounds]
    if len(syms) != 1 or p.coefficient(syms[0]) != 1:
        return False
    j = syms[0]
    offset = p - Poly.sym(j)
    if offset.symbols():
        return False
    for hi in bounds[j]:  # j <= hi - 1, so p <= hi - 1 + offset, which must be <= i - 1
        gap = hi + offset - Poly.sym(i)
        if gap.is_constant() and gap.constant <= 0:
            return True
    return False
