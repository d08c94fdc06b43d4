"""The intermediate representation: variable groups, parameters, energy monomials.

Every energy term is expanded into monomials

    scale * coef_1 * ... * coef_k * x1[idx]^p1 * x2[idx]^p2 ...   summed over index ranges

where the coefficients are expressions over parameters and constants (no
variables) and the factors are accesses of variable groups with affine index
maps. Matrix notation and index notation end up as the same monomials.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from ..errors import Span
from ..poly import Poly


# index-notation scalar expressions --------------------------------------------
@dataclass(frozen=True)
class INum:
    value: float


@dataclass(frozen=True)
class ISym:
    kind: str  # "size" | "const" | "index"
    name: str


@dataclass(frozen=True)
class IAccess:
    kind: str  # "group" | "param"
    name: str
    index: tuple[Poly, ...]


@dataclass(frozen=True)
class IUn:
    op: str  # "neg" or a function name
    arg: "IExpr"


@dataclass(frozen=True)
class IBin:
    op: str  # + - * / ^
    left: "IExpr"
    right: "IExpr"


@dataclass(frozen=True)
class Binder:
    name: str
    lo: tuple[Poly, ...]  # explicit lower bounds (max of them)
    hi: tuple[Poly, ...]  # explicit upper bounds, exclusive (min of them)


@dataclass(frozen=True)
class ISum:
    binders: tuple[Binder, ...]
    body: "IExpr"


IExpr = Union[INum, ISym, IAccess, IUn, IBin, ISum]


def iexpr_text(e: IExpr) -> str:
    if isinstance(e, INum):
        return _num_text(e.value)
    if isinstance(e, ISym):
        return e.name
    if isinstance(e, IAccess):
        name = "eps_" + e.name if e.kind == "eps" else e.name
        return name + ("[" + ", ".join(str(i) for i in e.index) + "]" if e.index else "")
    if isinstance(e, IUn):
        return f"-({iexpr_text(e.arg)})" if e.op == "neg" else f"{e.op}({iexpr_text(e.arg)})"
    if isinstance(e, IBin):
        return f"({iexpr_text(e.left)} {e.op} {iexpr_text(e.right)})"
    if isinstance(e, ISum):
        names = ", ".join(b.name for b in e.binders)
        return f"sum[{names}]({iexpr_text(e.body)})"
    raise TypeError(e)


def _num_text(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(float(v))


def iexpr_rename(e: IExpr, mapping: dict[str, str]) -> IExpr:
    if isinstance(e, ISym) and e.kind == "index":
        return ISym("index", mapping.get(e.name, e.name))
    if isinstance(e, IAccess):
        return IAccess(e.kind, e.name, tuple(p.rename(mapping) for p in e.index))
    if isinstance(e, IUn):
        return IUn(e.op, iexpr_rename(e.arg, mapping))
    if isinstance(e, IBin):
        return IBin(e.op, iexpr_rename(e.left, mapping), iexpr_rename(e.right, mapping))
    return e


def iexpr_replace(e: IExpr, old: IExpr, new: IExpr) -> IExpr:
    """e with every subexpression equal to `old` replaced by `new` (functions and operators only)."""
    if e == old:
        return new
    if isinstance(e, IUn):
        return IUn(e.op, iexpr_replace(e.arg, old, new))
    if isinstance(e, IBin):
        return IBin(e.op, iexpr_replace(e.left, old, new), iexpr_replace(e.right, old, new))
    return e


def iexpr_accesses(e: IExpr):
    if isinstance(e, IAccess):
        yield e
    elif isinstance(e, IUn):
        yield from iexpr_accesses(e.arg)
    elif isinstance(e, IBin):
        yield from iexpr_accesses(e.left)
        yield from iexpr_accesses(e.right)
    elif isinstance(e, ISum):
        yield from iexpr_accesses(e.body)


def iexpr_index_names(e: IExpr) -> set[str]:
    names = set()
    if isinstance(e, ISym) and e.kind == "index":
        names.add(e.name)
    for a in iexpr_accesses(e):
        for p in a.index:
            names |= p.symbols()
    if isinstance(e, (IUn, IBin)):
        for child in ((e.arg,) if isinstance(e, IUn) else (e.left, e.right)):
            names |= iexpr_index_names(child)
    return names


# monomials ----------------------------------------------------------------------
@dataclass(frozen=True)
class Factor:
    group: str
    index: tuple[Poly, ...]
    power: int = 1

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
    span: Span
    term: int  # which `energy` statement it came from (0-based)

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


@dataclass
class ParamIR:
    name: str
    shape: tuple[Poly, ...]
    constraints: tuple[str, ...]
    init: Optional[tuple[str, tuple[IExpr, ...]]]  # ("normal", (mean, std)) | ("value", (v,))
    line: int


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
            dom = g.domain + (f"({g.categories})" if g.categories is not None else "")
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
            out.append(f"  m{m.id} (line {m.span.line}): {m.text()}")
        return "\n".join(out) + "\n"
