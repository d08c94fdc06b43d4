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

# A chain of left-associative operators, a - b - c or a * b @ W, is a left-nested tree of
# BinOps as long as the chain (a flat sum of 20,000 terms is 20,000 levels deep). Whatever
# walks an expression goes down a chain with a loop (`left_spine`) and recurses only into
# operands, so its recursion depth is the real nesting of the expression (at most
# parser.MAX_NESTING levels), never the length of a chain.
CHAIN_OPS = frozenset("+-*/@")  # '^' is right-associative: a^b^c nests


def left_spine(e: Expr) -> tuple[Expr, list[BinOp]]:
    """For e = ((x op1 y1) op2 y2) ... opn yn: (x, [the n BinOps, innermost first]). The
    spine follows every left-associative operator (a * b + c is one spine of two)."""
    spine = []
    while isinstance(e, BinOp) and e.op in CHAIN_OPS:
        spine.append(e)
        e = e.left
    spine.reverse()
    return e, spine


def children(node: Node) -> list[Node]:
    """The nodes directly below `node`, in field order (lists flattened)."""
    out = []
    for f in fields(node):
        value = getattr(node, f.name)
        for x in (value if isinstance(value, list) else (value,)):
            if isinstance(x, Node):
                out.append(x)
    return out


def walk(node: Node):
    """Every node under `node` (itself included), parents first, left to right, without recursion."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(children(n)))


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
    # True inside a `denoiser { ... }` block; None elsewhere (dumps list the fields that are set)
    in_denoiser: Optional[bool] = None


@dataclass(eq=False)
class LetDecl(Node):
    name: str
    name_span: Span
    expr: Expr
    in_guide: bool = False
    # True inside a `discriminator { ... }` block; None (not False) elsewhere, so that dumps,
    # which list every field that is set, stay as they were before discriminators existed
    in_discriminator: Optional[bool] = None
    in_denoiser: Optional[bool] = None  # True inside a `denoiser { ... }` block
    # along a time axis: `let u[t] = ... from u0` (index "t", start u0); None elsewhere, as above
    index: Optional[str] = None
    start: Optional[Expr] = None


@dataclass(eq=False)
class OutputDecl(Node):
    """`logit = expr` in a discriminator block: the network's output (one logit per row)."""
    name: str
    name_span: Span
    expr: Expr


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
class TimeDecl(Node):
    """`time t`: the model unfolds along an axis named t (one step given the past)."""
    name: str
    name_span: Span


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
    discriminator: list = field(default_factory=list)  # LetDecl | OutputDecl, in order
    discriminator_span: Optional[Span] = None
    denoiser: list = field(default_factory=list)  # LetDecl | SampleDecl, in order
    denoiser_span: Optional[Span] = None
    time: Optional[TimeDecl] = None  # `time t`: the model is one step of a sequence


_CHAIN_CLASS = {"+": "+", "-": "+", "*": "*", "/": "*", "@": "*"}
FLAT_CHAIN_DUMP = 32  # a dump shows a chain longer than this flat, not as nested BinOps


def dump(node, indent: int = 0) -> str:
    """A deterministic, indented text form of an AST (for `gdsl dump --stage ast`), written
    without recursion; a chain of more than FLAT_CHAIN_DUMP operators of one precedence is
    shown flat (its operands one below the other), not as as many nested BinOps."""
    lines: list[str] = []
    stack: list = [(node, indent)]
    while stack:
        item, ind = stack.pop()
        pad = "  " * ind
        if isinstance(item, str):  # a field label, already indented
            lines.append(item)
            continue
        if isinstance(item, list):
            stack.extend((x, ind) for x in reversed(item))
            continue
        if not isinstance(item, Node):
            lines.append(pad + repr(item))
            continue
        chain = _flat_chain(item)
        if chain is not None:
            first, spine = chain
            lines.append(f"{pad}BinOp@{item.span.line}:{item.span.column} chain of {len(spine) + 1} operands "
                         "(shown flat; a left-nested chain of BinOps)")
            below = [(f"{pad}  .operand", None), (first, ind + 2)]
            for b in spine:
                below += [(f"{pad}  .operand op={b.op!r}", None), (b.right, ind + 2)]
            stack.extend((x, i if i is not None else ind) for x, i in reversed(below))
            continue
        scalars, children_ = [], []
        for f in fields(item):
            if f.name == "span":
                continue
            value = getattr(item, f.name)
            if isinstance(value, Node) or (isinstance(value, list) and value and isinstance(value[0], Node)):
                children_.append((f.name, value))
            elif isinstance(value, list) and not value:
                continue
            elif isinstance(value, Span) or value is None:
                continue
            else:
                scalars.append(f"{f.name}={value!r}")
        head = f"{pad}{type(item).__name__}@{item.span.line}:{item.span.column}"
        if scalars:
            head += " " + " ".join(scalars)
        lines.append(head)
        below = []
        for name, value in children_:
            below += [(f"{pad}  .{name}", ind), (value, ind + 2)]
        stack.extend(reversed(below))
    return "\n".join(lines)


def _flat_chain(node: Node):
    """(first operand, spine) when `node` ends a chain longer than FLAT_CHAIN_DUMP of one precedence."""
    if not (isinstance(node, BinOp) and node.op in _CHAIN_CLASS):
        return None
    kind, spine, e = _CHAIN_CLASS[node.op], [], node
    while isinstance(e, BinOp) and _CHAIN_CLASS.get(e.op) == kind:
        spine.append(e)
        e = e.left
    if len(spine) <= FLAT_CHAIN_DUMP:
        return None
    spine.reverse()
    return e, spine
