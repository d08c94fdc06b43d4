"""The intermediate representation: variable groups, parameters, energy monomials.

Every energy term is expanded into monomials

    scale * coef_1 * ... * coef_k * x1[idx]^p1 * x2[idx]^p2 ...   summed over index ranges

where the coefficients are expressions over parameters and constants (no
variables) and the factors are accesses of variable groups with affine index
maps. Matrix notation and index notation end up as the same monomials, and like
monomials (equal but for the scale, in any energy statements) are one monomial.

Walkers over expressions go through one traversal: `iexpr_children` / `iexpr_rebuild` (the
one place that knows each node's subexpressions), `iexpr_walk` / `iexpr_scoped_walk`
(pre-order, the latter with the binders in scope) and `iexpr_map` (bottom-up rebuild); each
walker's docstring says what it does with a sum's body and binders. None of them recurses:
an expression may be hundreds of levels deep. Only the folds that give
each operator its own meaning (iexpr_text, lower.expand, gradients.diff and the directed
plan's _product_terms) dispatch on node types themselves, sums included.

Spans: expression nodes, sum binders, monomial factors and each monomial's `origin` carry the
span of the .gdl text they come from, so the analyses locate and quote errors as the user
wrote them (gdsl.errors.excerpt) instead of printing IR text. Spans never take part in
equality, hashing or repr.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from ..abi import domain_text
from ..errors import Span
from ..poly import Poly


# index-notation scalar expressions --------------------------------------------
# Every node may carry the span of the .gdl text it was elaborated from (None for nodes the
# compiler makes up, such as a derivative). The span takes no part in equality, hashing or
# repr: two nodes are the same expression wherever they were written.
def _span_field():
    return field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class INum:
    value: float
    span: Optional[Span] = _span_field()


@dataclass(frozen=True)
class ISym:
    kind: str  # "size" | "const" | "index"
    name: str
    span: Optional[Span] = _span_field()


@dataclass(frozen=True)
class IAccess:
    kind: str  # "group" | "param"
    name: str
    index: tuple[Poly, ...]
    span: Optional[Span] = _span_field()  # the whole access as written: x[j], W[:, :i], h


@dataclass(frozen=True)
class IUn:
    op: str  # "neg" or a function name
    arg: "IExpr"
    span: Optional[Span] = _span_field()


@dataclass(frozen=True)
class IBin:
    op: str  # + - * / ^
    left: "IExpr"
    right: "IExpr"
    span: Optional[Span] = _span_field()  # for the product of a matrix product, the `a @ b`


@dataclass(frozen=True)
class Binder:
    name: str
    lo: tuple[Poly, ...]  # explicit lower bounds (max of them)
    hi: tuple[Poly, ...]  # explicit upper bounds, exclusive (min of them)
    span: Optional[Span] = _span_field()  # the index's name in sum[j < i](...); None when implicit


@dataclass(frozen=True)
class ISum:
    binders: tuple[Binder, ...]
    body: "IExpr"
    span: Optional[Span] = _span_field()


IExpr = Union[INum, ISym, IAccess, IUn, IBin, ISum]


# the one traversal: every walker over expressions is built on these -------------------------
def iexpr_children(e: IExpr) -> tuple:
    """The direct subexpressions of e (index polynomials are not expressions)."""
    if isinstance(e, IUn):
        return (e.arg,)
    if isinstance(e, IBin):
        return (e.left, e.right)
    if isinstance(e, ISum):
        return (e.body,)
    return ()


def iexpr_rebuild(e: IExpr, children) -> IExpr:
    """e with its direct subexpressions replaced by `children` (same operator, binders and
    span); e itself when every child is the one it had."""
    children = tuple(children)
    if all(new is old for new, old in zip(children, iexpr_children(e))):
        return e
    if isinstance(e, IUn):
        return IUn(e.op, children[0], e.span)
    if isinstance(e, IBin):
        return IBin(e.op, children[0], children[1], e.span)
    if isinstance(e, ISum):
        return ISum(e.binders, children[0], e.span)
    raise TypeError(f"{type(e).__name__} has no subexpressions")


def iexpr_walk(e: IExpr):
    """Every node of e, parents before children, left to right; sums are entered (their
    bodies are walked like any other subexpression)."""
    stack = [e]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(iexpr_children(node)))


def iexpr_scoped_walk(e: IExpr):
    """(node, binders) for every node of e in `iexpr_walk` order, where `binders` are the
    Binders of the sums enclosing the node, outermost first (a sum's own binders enclose its
    body, not the sum)."""
    stack = [(e, ())]
    while stack:
        node, binders = stack.pop()
        yield node, binders
        inner = binders + node.binders if isinstance(node, ISum) else binders
        stack.extend((child, inner) for child in reversed(iexpr_children(node)))


def _fold(e: IExpr, leaf, node, skip=None):
    """The bottom-up fold every rebuilding walker shares, with an explicit stack (an expression
    may be hundreds of levels deep): node(e, folded children) for a node with subexpressions,
    leaf(e) for one without, children left to right; a node for which skip(e) is not None
    is not entered and folds to that value."""
    results: list = []
    stack: list = [(e, False)]
    while stack:
        x, ready = stack.pop()
        children = iexpr_children(x)
        if ready:
            k = len(children)
            folded = results[len(results) - k:]
            del results[len(results) - k:]
            results.append(node(x, folded))
            continue
        if skip is not None:
            value = skip(x)
            if value is not None:
                results.append(value)
                continue
        if children:
            stack.append((x, True))
            stack.extend((c, False) for c in reversed(children))
        else:
            results.append(leaf(x))
    return results[0]


def iexpr_map(e: IExpr, fn) -> IExpr:
    """e rebuilt bottom up with every node replaced by fn(node) (fn returns the node to keep it):
    children first, so fn sees a node whose subexpressions are already mapped; sum bodies are
    mapped like any other subexpression, and fn may rebuild a sum's binders."""
    return _fold(e, fn, lambda x, children: fn(iexpr_rebuild(x, children)))


def iexpr_text(e: IExpr) -> str:
    """The IR's own notation (dumps and generated comments; never in a message to a user)."""
    return _fold(e, _leaf_text, _node_text)


def _leaf_text(e: IExpr) -> str:
    if isinstance(e, INum):
        return _num_text(e.value)
    if isinstance(e, ISym):
        return e.name
    if isinstance(e, IAccess):
        name = "eps_" + e.name if e.kind == "eps" else e.name
        return name + ("[" + ", ".join(str(i) for i in e.index) + "]" if e.index else "")
    raise TypeError(e)


def _node_text(e: IExpr, children: list[str]) -> str:
    if isinstance(e, IUn):
        return f"-({children[0]})" if e.op == "neg" else f"{e.op}({children[0]})"
    if isinstance(e, IBin):
        return f"({children[0]} {e.op} {children[1]})"
    if isinstance(e, ISum):
        names = ", ".join(b.name for b in e.binders)
        return f"sum[{names}]({children[0]})"
    raise TypeError(e)


def _num_text(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(float(v))


def iexpr_rename(e: IExpr, mapping: dict[str, str]) -> IExpr:
    """e with index names renamed by `mapping`, everywhere: index symbols, subscripts, and
    inside sums also the binders' names and bounds. A sum's binder is renamed together with
    its uses, so renaming a bound index keeps the sum meaning the same (this is how a copy of
    a term gets its own summation indices), and renaming a free index reaches its uses inside
    sums. Binder names are unique in lowered IR (one fresh name per sum), so a mapping meant
    for free indices cannot catch a bound one by accident."""
    def rename(node: IExpr) -> IExpr:
        if isinstance(node, ISym) and node.kind == "index" and node.name in mapping:
            return ISym("index", mapping[node.name], node.span)
        if isinstance(node, IAccess) and node.index:
            return IAccess(node.kind, node.name, tuple(p.rename(mapping) for p in node.index), node.span)
        if isinstance(node, ISum):
            binders = tuple(Binder(mapping.get(b.name, b.name), tuple(p.rename(mapping) for p in b.lo),
                                   tuple(p.rename(mapping) for p in b.hi), b.span) for b in node.binders)
            return ISum(binders, node.body, node.span)
        return node

    return iexpr_map(e, rename)


def iexpr_replace(e: IExpr, old: IExpr, new: IExpr) -> IExpr:
    """e with every subexpression equal to `old` replaced by `new`, top down: the outermost
    match is replaced and `new` is not searched again. Sum bodies are searched too; as binder
    names are unique in lowered IR, an expression equal to `old` inside a sum means the same
    element as `old` (nothing is shadowed), so it is replaced like any other."""
    return _fold(e, lambda x: x, iexpr_rebuild, lambda x: new if x == old else None)


def iexpr_accesses(e: IExpr):
    """Every access in e, in walk order, inside sums included."""
    return (node for node in iexpr_walk(e) if isinstance(node, IAccess))


def iexpr_index_names(e: IExpr) -> set[str]:
    """The names e's value depends on through indices: index symbols, the symbols of its
    subscripts and of its sums' bounds (so the sizes in them too), inside sums included,
    except the names the enclosing sums bind (sum[j](W[i, j]) uses i, not j)."""
    names: set[str] = set()
    for node, binders in iexpr_scoped_walk(e):
        if isinstance(node, ISym) and node.kind == "index":
            used = {node.name}
        elif isinstance(node, IAccess):
            used = {s for p in node.index for s in p.symbols()}
        elif isinstance(node, ISum):
            used = {s for b in node.binders for p in b.lo + b.hi for s in p.symbols()}
            binders = binders + node.binders  # a sum's bounds may use its earlier binders
        else:
            continue
        names |= used - {b.name for b in binders}
    return names


# monomials ----------------------------------------------------------------------
@dataclass(frozen=True)
class Factor:
    group: str
    index: tuple[Poly, ...]
    power: int = 1
    span: Optional[Span] = _span_field()  # the access as written (its first one, for a power)

    def text(self) -> str:
        base = self.group + ("[" + ", ".join(str(i) for i in self.index) + "]" if self.index else "")
        return base + (f"^{self.power}" if self.power != 1 else "")


@dataclass(frozen=True)
class IndexRange:
    name: str
    lo: tuple[Poly, ...]  # start = max(lo)
    hi: tuple[Poly, ...]  # stop = min(hi), exclusive

    def text(self) -> str:
        lo = _bound_text(self.lo, "max", "0")
        hi = _bound_text(self.hi, "min", "?")
        return f"{self.name} in [{lo}, {hi})"


def _bound_text(bounds, fn, empty) -> str:
    if not bounds:
        return empty
    if len(bounds) == 1:
        return str(bounds[0])
    return f"{fn}(" + ", ".join(str(b) for b in bounds) + ")"


@dataclass(frozen=True)
class Guard:
    """0 <= expr < dim, checked inside the loops when the ranges do not imply it."""

    expr: Poly
    dim: Poly


@dataclass
class Monomial:
    id: int
    scale: float
    coef: tuple[IExpr, ...]
    factors: tuple[Factor, ...]
    ranges: tuple[IndexRange, ...]
    guards: tuple[Guard, ...]
    span: Span  # the `energy` statement (its line is the one dumps and generated comments show)
    term: int  # which `energy` statement it came from (0-based; the first, when like monomials were combined)
    origin: Optional[Span] = None  # the product it was expanded from, e.g. `v @ W @ h` or `v^3`
    repeats: tuple[int, ...] = ()  # lines of the later statements whose like monomials were added to this one

    @property
    def groups(self) -> list[str]:
        out = []
        for f in self.factors:
            if f.group not in out:
                out.append(f.group)
        return out

    def occurrences(self, group: str) -> list[int]:
        return [k for k, f in enumerate(self.factors) if f.group == group]

    def text(self) -> str:
        parts = [_num_text(self.scale)] + [iexpr_text(c) for c in self.coef] + [f.text() for f in self.factors]
        body = " * ".join(parts)
        if self.ranges:
            body += "  for " + ", ".join(r.text() for r in self.ranges)
        if self.guards:
            body += "  if " + ", ".join(f"0 <= {g.expr} < {g.dim}" for g in self.guards)
        return body


@dataclass
class GroupIR:
    name: str
    role: str
    shape: tuple[Poly, ...]
    domain: str
    categories: Optional[Poly]
    line: int
    span: Optional[Span] = None  # the group's name in its declaration


@dataclass
class ParamIR:
    name: str
    shape: tuple[Poly, ...]
    constraints: tuple[str, ...]
    init: Optional[tuple[str, tuple[IExpr, ...]]]  # ("normal", (mean, std)) | ("value", (v,))
    line: int
    span: Optional[Span] = None  # the parameter's name in its declaration


@dataclass
class ModelIR:
    name: str
    sizes: dict[str, int]
    consts: dict[str, float]
    groups: dict[str, GroupIR]
    params: dict[str, ParamIR]
    monomials: list[Monomial]
    energy_lines: list[int]
    source_lines: list[str] = field(default_factory=list)
    graph: object = None  # networkx factor graph, built by ir.graph
    directed: object = None  # DirectedIR (ir.directed) when the model has conditionals

    def dump(self) -> str:
        out = [f"model {self.name}"]
        for k, v in self.sizes.items():
            out.append(f"  size {k} = {v}")
        for k, v in self.consts.items():
            out.append(f"  const {k} = {v!r}")
        for g in self.groups.values():
            shape = "[" + ", ".join(str(d) for d in g.shape) + "]"
            dom = domain_text(g.domain, g.categories)
            out.append(f"  {g.role} {g.name}{shape}: {dom}")
        for p in self.params.values():
            shape = "[" + ", ".join(str(d) for d in p.shape) + "]"
            init = "0"
            if p.init is not None:
                kind, args = p.init
                init = iexpr_text(args[0]) if kind == "value" else f"{kind}({', '.join(iexpr_text(a) for a in args)})"
            cons = (" " + ",".join(p.constraints)) if p.constraints else ""
            out.append(f"  param {p.name}{shape}{cons} ~ {init}")
        for m in self.monomials:
            more = f" and {len(m.repeats)} more" if m.repeats else ""
            out.append(f"  m{m.id} (line {m.span.line}{more}): {m.text()}")
        return "\n".join(out) + "\n"
