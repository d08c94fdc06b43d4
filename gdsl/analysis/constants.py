"""What the model's arithmetic needs of its sizes and constants, worked out at compile time.

A constant (`sigma = 1.0`) or size may be overridden per instance (`gdsl.load(..., sigma=0)`),
so values the .gdl file's defaults never reach must be refused by the runtime constructor,
before a kernel divides by zero. Every expression of the model is searched: the energy
monomials' coefficients, the parameters' initialisers, and the directed conditionals and
guide. What it finds is published in the Model class (`write_class_header`):

* `NONZERO_CONSTS`: constants that are a multiplicative factor of a denominator (`sigma` in
  `/ (2 * sigma^2)`): zero makes the denominator zero, whatever the other constants are.
* `POSITIVE_CONSTS`: constants whose sign is the sign of a value that must be positive: the
  `std` of a normal conditional or the `stds` of a mixture (`std = s`, `std = 2 * s * exp(a)`), the argument of `log`,
  or the only quadratic coefficient of a real variable (its Gaussian's precision).
* `CONST_CHECKS`: the exact conditions, as `(kind, expression, text, line, role)`: `kind` is
  "nonzero" (a denominator's factor made of sizes and constants), "positive" (a std, a log's
  argument, a precision), "nonnegative" (a sqrt's argument, an initialiser's std) or "finite"
  (every largest subexpression made of sizes, constants and numbers: `log(0)`, `exp(1000 * c)`);
  `expression` is the expression in postfix order, a flat tuple of steps the runtime evaluates
  with a stack (gdsl.runtime.consts): ("num", v), ("size", name), ("const", name), ("neg",),
  ("fn", name), ("+",) ("-",) ("*",) ("/",) ("^",). Flat, so that a chain of thousands of terms
  is neither a nested literal Python refuses to parse nor a recursion. `text` quotes the .gdl
  source (or spells the expression in the language when the compiler made it up) and `role`
  says what the value is ("a denominator", "the std of z"...).

Every walk here is a loop over an explicit stack: chains (`a + b + ...`) are as deep as they are
long (the parser allows any length), so recursion is not an option.

Expressions that read parameters, variables or indices are not decided here: a parameter's
value is only known at run time (its own checks and the kernels' precision checks cover it).
Only the param-free factors of such an expression are checked (`sigma` in `W / sigma`).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import Span, excerpt
from ..ir.model import IAccess, IBin, INum, ISum, ISym, IUn, ModelIR, iexpr_walk

KINDS = ("nonzero", "positive", "nonnegative", "finite")


@dataclass(frozen=True)
class ConstCheck:
    kind: str  # one of KINDS
    steps: tuple  # the expression in postfix order (see the module docstring)
    text: str  # the expression as written in the .gdl file
    line: int
    role: str  # what the value is, for the message: "a denominator", "the std of z"

    def as_tuple(self) -> tuple:
        return (self.kind, self.steps, self.text, self.line, self.role)


@dataclass(frozen=True)
class ConstRequirements:
    nonzero: tuple[str, ...]
    positive: tuple[str, ...]
    checks: tuple[ConstCheck, ...]


def const_requirements(ir: ModelIR) -> ConstRequirements:
    """The conditions on sizes and constants of `ir` (see the module docstring)."""
    c = _Collector(ir.source_lines)
    for m in ir.monomials:
        line = m.span.line if m.span is not None else 0
        for coef in m.coef:
            c.expression(coef, line)
    for p in ir.params.values():
        if p.init is None:
            continue
        kind, args = p.init
        for k, arg in enumerate(args):
            c.expression(arg, p.line, f" in the initialiser of {p.name}")
            if kind == "normal" and k == 1 and _evaluable(arg):
                c.add("nonnegative", arg, p.line, f"the std of {p.name}'s initialiser")
    _precisions(ir, c)
    directed = getattr(ir, "directed", None)
    if directed is not None:
        for cond in list(directed.model) + list(directed.guide):
            line = cond.span.line if cond.span is not None else 0
            for name, arg in cond.args:
                c.expression(arg, line)
                if (cond.family, name) in (("normal", "std"), ("mixture", "stds")):
                    what = "the std" if name == "std" else "the component stds"
                    c.positive(arg, line, f"{what} of {cond.group}" + (" in the guide" if cond.in_guide else ""))
    return ConstRequirements(tuple(dict.fromkeys(c.nonzero)), tuple(dict.fromkeys(c.positive_consts)),
                             tuple(c.checks.values()))


def _precisions(ir: ModelIR, c: "_Collector") -> None:
    """A real variable whose only quadratic term is `coef * x^2` with coef made of constants:
    coef is half its conditional's precision, so it must be positive."""
    quadratic: dict[str, list] = {}
    for m in ir.monomials:
        for f in m.factors:
            if f.power == 2 and ir.groups[f.group].domain == "real":
                quadratic.setdefault(f.group, []).append(m)
    for group, ms in quadratic.items():
        if len(ms) != 1 or len(ms[0].factors) != 1:
            continue
        m = ms[0]
        if not all(_evaluable(e) for e in m.coef):
            continue
        value = INum(m.scale)
        for e in m.coef:
            value = IBin("*", value, e)
        line = m.span.line if m.span is not None else 0
        origin = excerpt(ir.source_lines, m.origin) if m.origin is not None and ir.source_lines else None
        c.positive(value, line, f"the coefficient of {group}^2, half the precision of {group}'s Gaussian conditional",
                   text=origin)


class _Collector:
    def __init__(self, lines):
        self.lines = lines
        self.checks: dict[tuple, ConstCheck] = {}
        self.nonzero: list[str] = []
        self.positive_consts: list[str] = []

    def text(self, e, text=None) -> str:
        if text is not None:
            return text
        span = getattr(e, "span", None)
        if isinstance(span, Span) and self.lines:
            quoted = excerpt(self.lines, span)
            if quoted:
                return quoted
        return spell(postfix(e))

    def add(self, kind, e, line, role, text=None) -> None:
        steps = postfix(e)
        if not any(s[0] in ("size", "const") for s in steps):  # numbers alone: the checker refuses `/ 0`
            return
        key = (kind, steps)
        if key not in self.checks:
            self.checks[key] = ConstCheck(kind, steps, self.text(e, text), line, role)

    def expression(self, e, line, where: str = "") -> None:
        """Denominators, function arguments and the largest evaluable subexpressions of e
        (`where`: " in the initialiser of W", appended to the roles)."""
        evaluable = _evaluable_nodes(e)
        for node in iexpr_walk(e):
            denominator = _denominator(node)
            if denominator is not None:
                whole = None
                for factor, _power in _factors(denominator):
                    if not (evaluable[id(factor)] if id(factor) in evaluable else _evaluable(factor)):
                        continue
                    if factor is not denominator and whole is None:
                        whole = self.text(denominator)
                    role = ("a denominator" if factor is denominator
                            else f"a factor of the denominator '{whole}'") + where
                    self.add("nonzero", factor, line, role)
                    if isinstance(factor, ISym) and factor.kind == "const":
                        self.nonzero.append(factor.name)
            if isinstance(node, IUn) and node.op in ("log", "sqrt") and evaluable[id(node.arg)]:
                kind = "positive" if node.op == "log" else "nonnegative"
                self.add(kind, node.arg, line, f"the argument of {node.op}{where}")
                if node.op == "log":
                    self._sign_of(node.arg)
        for sub in _largest_evaluable(e, evaluable):
            self.add("finite", sub, line, "a constant expression" + where)

    def positive(self, e, line, role, text=None) -> None:
        """e must be > 0: its param-free factors when it reads parameters (each must then keep
        its sign: a product of constants and positive functions of parameters)."""
        evaluable = _evaluable_nodes(e)
        if evaluable[id(e)]:
            self.add("positive", e, line, role, text)
            self._sign_of(e)
            return
        for factor, power in _factors(e):
            known = evaluable[id(factor)] if id(factor) in evaluable else _evaluable(factor)
            if known and power % 2 == 1:
                self.add("positive", factor, line, role)
                self._sign_of(factor)

    def _sign_of(self, e) -> None:
        """Record the constant whose sign alone decides e's sign (e = number * c^odd * ...^even)."""
        sign, odd = 1.0, []
        for factor, power in _factors(e):
            if isinstance(factor, INum):
                sign *= 1.0 if factor.value > 0 or power % 2 == 0 else -1.0
            elif isinstance(factor, ISym) and factor.kind == "const":
                if power % 2 == 1:
                    odd.append(factor.name)
            elif isinstance(factor, ISym) and factor.kind == "size":
                continue  # sizes are >= 1
            elif power % 2 == 1:
                return  # a factor of unknown sign
        if sign > 0 and len(odd) == 1:
            self.positive_consts.append(odd[0])


def _denominator(node):
    """The expression node divides by, if any: `a / d`, or `d ^ -k`."""
    if isinstance(node, IBin) and node.op == "/":
        return node.right
    if isinstance(node, IBin) and node.op == "^" and isinstance(node.right, INum) and node.right.value < 0:
        return node.left
    return None


def _factors(e):
    """(factor, power) of e seen as a product: through *, /, unary minus and whole powers (a
    factor of a denominator counts with its own power: for signs and zeros that is the same)."""
    stack = [(e, 1)]
    while stack:
        node, power = stack.pop()
        if isinstance(node, IBin) and node.op in ("*", "/"):
            stack += [(node.right, power), (node.left, power)]
        elif isinstance(node, IUn) and node.op == "neg":
            yield INum(-1.0), 1
            stack.append((node.arg, power))
        elif (isinstance(node, IBin) and node.op == "^" and isinstance(node.right, INum)
              and float(node.right.value).is_integer() and node.right.value != 0):
            stack.append((node.left, power * abs(int(node.right.value))))
        else:
            yield node, power


def _opaque(node) -> bool:
    """A node whose value is not known at instantiation: a parameter, variable, index or sum."""
    return isinstance(node, (IAccess, ISum)) or (isinstance(node, ISym) and node.kind not in ("size", "const"))


def _evaluable(e) -> bool:
    """Made of numbers, sizes and constants only (no parameter, variable, index or sum)."""
    return not any(_opaque(node) for node in iexpr_walk(e))


def _evaluable_nodes(e) -> dict:
    """{id(node): evaluable} for every node of e, bottom up in one pass."""
    out: dict[int, bool] = {}
    stack = [(e, False)]
    while stack:
        node, done = stack.pop()
        children = (node.arg,) if isinstance(node, IUn) else (node.left, node.right) if isinstance(node, IBin) \
            else (node.body,) if isinstance(node, ISum) else ()
        if not done and children:
            stack.append((node, True))
            stack += [(c, False) for c in children]
            continue
        out[id(node)] = not _opaque(node) and all(out[id(c)] for c in children)
    return out


def _largest_evaluable(e, evaluable):
    """The largest evaluable subexpressions of e that read a size or constant (a bare one is
    checked finite by the constructor anyway)."""
    stack = [e]
    while stack:
        node = stack.pop()
        if evaluable[id(node)]:
            if not isinstance(node, (ISym, INum)):
                yield node
            continue
        if isinstance(node, IUn):
            stack.append(node.arg)
        elif isinstance(node, IBin):
            stack += [node.right, node.left]
        elif isinstance(node, ISum):
            stack.append(node.body)


def postfix(e) -> tuple:
    """An evaluable expression as a flat tuple of steps in postfix order (module docstring)."""
    out = []
    stack = [(e, False)]
    while stack:
        node, done = stack.pop()
        if isinstance(node, INum):
            out.append(("num", float(node.value)))
        elif isinstance(node, ISym):
            out.append((node.kind, node.name))
        elif done:
            if isinstance(node, IUn):
                out.append(("neg",) if node.op == "neg" else ("fn", node.op))
            else:
                out.append((node.op,))
        elif isinstance(node, IUn):
            stack += [(node, True), (node.arg, False)]
        elif isinstance(node, IBin):
            stack += [(node, True), (node.right, False), (node.left, False)]
        else:
            raise TypeError(f"not an evaluable expression: {type(node).__name__}")
    return tuple(out)


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "neg": 3, "^": 4, "atom": 5}


def spell(steps) -> str:
    """Postfix steps in the language's notation (for expressions the compiler made up)."""
    stack: list[tuple[str, int]] = []

    def wrap(item, at_least):
        text, p = item
        return f"({text})" if p < at_least else text

    for step in steps:
        op = step[0]
        if op == "num":
            v = step[1]
            stack.append((str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(v), _PRECEDENCE["atom"]))
        elif op in ("size", "const"):
            stack.append((step[1], _PRECEDENCE["atom"]))
        elif op == "fn":
            stack.append((f"{step[1]}({stack.pop()[0]})", _PRECEDENCE["atom"]))
        elif op == "neg":
            stack.append(("-" + wrap(stack.pop(), _PRECEDENCE["neg"] + 1), _PRECEDENCE["neg"]))
        else:
            right, left = stack.pop(), stack.pop()
            p = _PRECEDENCE[op]
            if op == "^":
                stack.append((f"{wrap(left, p + 1)}^{wrap(right, p)}", p))
            else:
                stack.append((f"{wrap(left, p)} {op} {wrap(right, p + (0 if op in ('+', '*') else 1))}", p))
    return stack[-1][0]
