"""The abstract syntax tree of a `.gdl` model. Every node carries its span."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional, Union

from ..errors import Span


@dataclass(eq=False)
class Node:
    span: Span


# expressions -------------------------------------------------------------
@dataclass(eq=False)
class Num(Node):
    value: Union[int, float]
    text: str


@dataclass(eq=False)
class Name(Node):
    id: str


@dataclass(eq=False)
class Call(Node):
    fn: str
    args: list["Expr"]


@dataclass(eq=False)
class Neg(Node):
    operand: "Expr"


@dataclass(eq=False)
class BinOp(Node):
    op: str  # one of + - * / @ ^
    left: "Expr"
    right: "Expr"


@dataclass(eq=False)
class Slice(Node):
    lo: Optional["Expr"]
    hi: Optional["Expr"]


@dataclass(eq=False)
class Index(Node):
    base: "Expr"
    subscripts: list[Union["Expr", Slice]]


@dataclass(eq=False)
class SumAll(Node):
    body: "Expr"


@dataclass(eq=False)
class Binder(Node):
    name: str
    op: Optional[str]  # "<" or "<=" or None
    bound: Optional["Expr"]


@dataclass(eq=False)
class SumIndex(Node):
    binders: list[Binder]
    body: "Expr"


Expr = Union[Num, Name, Call, Neg, BinOp, Index, SumAll, SumIndex]


# declarations ---------------------------------------------------------------
@dataclass(eq=False)
class ModelArg(Node):
    name: str
    value: Union[int, float]
    text: str

    @property
    def is_size(self) -> bool:
        return isinstance(self.value, int)


@dataclass(eq=False)
class Domain(Node):
    name: str
    args: list[Expr]


@dataclass(eq=False)
class DistArg(Node):
    name: Optional[str]  # the keyword (logits=, mean=, ...), None when positional
    value: Expr


@dataclass(eq=False)
class Dist(Node):
    family: str  # bernoulli | normal | categorical
    args: list[DistArg]


@dataclass(eq=False)
class GroupDecl(Node):
    role: str  # "visible" | "latent"
    name: str
    name_span: Span
    shape: list[Expr]
    domain: Optional[Domain]  # None when the group is defined by a conditional
    dist: Optional[Dist] = None  # `visible x[d] ~ bernoulli(...)`


@dataclass(eq=False)
class SampleDecl(Node):
    """`x ~ family(...)` or `x[i, j] ~ family(...)`: the conditional of a declared group."""
    name: str
    name_span: Span
    indices: Optional[list[str]]  # free indices bound to the leading axes; None: none written
    dist: Dist
    in_guide: bool = False


@dataclass(eq=False)
class LetDecl(Node):
    name: str
    name_span: Span
    expr: Expr
    in_guide: bool = False


@dataclass(eq=False)
class Constraint(Node):
    name: str


@dataclass(eq=False)
class Init(Node):
    kind: str  # "dist" | "value"
    dist: Optional[str]
    args: list[Expr]


@dataclass(eq=False)
class ParamDecl(Node):
    name: str
    name_span: Span
    shape: list[Expr]
    constraints: list[Constraint]
    init: Optional[Init]


@dataclass(eq=False)
class EnergyDecl(Node):
    expr: Expr


@dataclass(eq=False)
class Model(Node):
    name: str
    name_span: Span
    args: list[ModelArg]
    groups: list[GroupDecl] = field(default_factory=list)
    params: list[ParamDecl] = field(default_factory=list)
    energies: list[EnergyDecl] = field(default_factory=list)
    lets: list[LetDecl] = field(default_factory=list)
    samples: list[SampleDecl] = field(default_factory=list)  # model conditionals (explicit form)
    guide: list = field(default_factory=list)  # LetDecl | SampleDecl, in order
    guide_span: Optional[Span] = None


def dump(node, indent: int = 0) -> str:
    """A deterministic, indented text form of an AST (for `gdsl dump --stage ast`)."""
    pad = "  " * indent
    if isinstance(node, list):
        return "\n".join(dump(n, indent) for n in node)
    if not isinstance(node, Node):
        return pad + repr(node)
    scalars, children = [], []
    for f in fields(node):
        if f.name == "span":
            continue
        value = getattr(node, f.name)
        if isinstance(value, Node) or (isinstance(value, list) and value and isinstance(value[0], Node)):
            children.append((f.name, value))
        elif isinstance(value, list) and not value:
            continue
        elif isinstance(value, Span) or value is None:
            continue
        else:
            scalars.append(f"{f.name}={value!r}")
    head = f"{pad}{type(node).__name__}@{node.span.line}:{node.span.column}"
    if scalars:
        head += " " + " ".join(scalars)
    lines = [head]
    for name, value in children:
        lines.append(f"{pad}  .{name}")
        lines.append(dump(value, indent + 2))
    return "\n".join(lines)
