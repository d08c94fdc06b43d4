"""Checked AST -> IR: elaborate to index notation, expand into monomials.

1. elaborate: every tensor expression becomes a scalar expression of explicit
   index variables (`v @ W @ h` -> sum[t0, t1](v[t0] * W[t0, t1] * h[t1])).
2. expand: distribute products over sums until each energy term is a list of
   monomials (coefficient x variable factors, summed over index ranges).
3. simplify by domain: x^2 = x for binary and one-hot units, x^2 = 1 for spins.
4. ranges: an index runs over every value for which each subscript it appears in
   alone (as `i + c`) is in bounds; other subscripts get a guard.
5. combine like monomials: equal factors, index ranges, guards and coefficient expressions
   (in any energy statement) become one monomial whose scale is the sum of theirs; one whose
   scale adds up to 0 is dropped. The generated module's size and its kernels' cost depend on
   the distinct terms only. A statement is lowered one summand at a time, and a summand
   written like an earlier one of the statement adds the scales of that one's monomials
   without being elaborated again (`_StatementLowering`): a flat sum of n `b @ v` costs one
   elaboration and n look-ups.

Chains (a - b - c ..., see frontend/ast.py) are elaborated along their left spine with a
loop. A run of `+` and `-` (or of `*`) stays nested to the left, as written, while that tree is
at most MAX_WRITTEN_HEIGHT levels high; a higher one (a long chain, or one whose first
operands are deep) becomes a weight-balanced tree of the same operands in the same order,
each operand of height h weighing 2^h, so the tree is at most about log2(n) + 2 levels higher
than its highest operand: no later stage recurses once per term, and nested chains do not
add up. `expand` itself uses an explicit stack.
"""
from __future__ import annotations

import bisect
import math

from ..abi import ONE_HOT
from ..errors import ErrorSink, Span, excerpt
from ..frontend import ast
from ..frontend.checker import CheckedModel, index_poly_of
from ..poly import Poly
from .model import (Binder, Factor, GroupIR, Guard, IAccess, IBin, IExpr, IndexRange, INum, ISum, ISym, IUn,
                    ModelIR, Monomial, ParamIR, iexpr_accesses, iexpr_children, iexpr_index_names, iexpr_rename,
                    iexpr_walk)

MAX_PRODUCT_TERMS = 4096  # monomials a product or power may expand into
MAX_TERMS_PER_STATEMENT = 2**18  # monomials one energy statement may expand into (before combining)
MAX_WRITTEN_HEIGHT = 32  # a run of + and - (or *) whose written tree is higher becomes a balanced tree


class _Unsupported(Exception):
    """A term that cannot be expanded, located at the subexpression at fault."""

    def __init__(self, message: str, span: Span | None, hint: str | None = None, kind: str = "structure"):
        super().__init__(message)
        self.span, self.hint, self.kind = span, hint, kind


class Elaborator:
    def __init__(self, checked: CheckedModel):
        self.m = checked
        self.made = 0  # fresh names made so far (t0, t1, ... and the binders' suffixes)
        self.index_scopes: list[dict[str, str]] = []
        self.heights: dict[int, tuple[IExpr, int]] = {}  # id -> (node, height) of the IR made so far

    def height(self, e: IExpr) -> int:
        """The number of levels of e (a leaf is 1), computed without recursion and remembered
        for every node, so the operands of nested chains are measured once."""
        memo = self.heights
        stack = [(e, False)]
        while stack:
            node, ready = stack.pop()
            if id(node) in memo:
                continue
            below = iexpr_children(node)
            if ready or not below:
                memo[id(node)] = (node, 1 + max((memo[id(c)][1] for c in below), default=0))
            else:
                stack.append((node, True))
                stack.extend((c, False) for c in below)
        return memo[id(e)][1]

    def serial(self) -> int:
        """The number of the next fresh name (`_StatementLowering` skips the ones a summand it
        does not elaborate again would take)."""
        self.made += 1
        return self.made - 1

    def fresh(self) -> str:
        return f"t{self.serial()}"

    def _index_names(self) -> dict[str, str]:
        out = {}
        for scope in self.index_scopes:
            out.update(scope)
        return out

    def _index_poly(self, e: ast.Expr) -> Poly:
        names = self._index_names()
        p = index_poly_of(e, self.m.sizes, set(names))
        return p.rename(names)

    def elab(self, e: ast.Expr, out: tuple[Poly, ...]) -> IExpr:
        """e at element `out`, every node carrying the span of the text it comes from (the
        nodes of an inlined `let` carry spans inside the let's definition)."""
        span = e.span
        if isinstance(e, ast.Num):
            return INum(float(e.value), span)
        if isinstance(e, ast.Name):
            names = self._index_names()
            if e.id in names:
                return ISym("index", names[e.id], span)
            if e.id in self.m.sizes:
                return ISym("size", e.id, span)
            if e.id in self.m.consts:
                return ISym("const", e.id, span)
            if e.id in self.m.lets:  # let bindings are inlined; the analysis shares repeated work
                saved, self.index_scopes = self.index_scopes, []
                try:
                    return self.elab(self.m.lets[e.id].decl.expr, out)
                finally:
                    self.index_scopes = saved
            kind = "group" if e.id in self.m.groups else "param"
            return IAccess(kind, e.id, out, span)
        if isinstance(e, ast.Call):
            return IUn(e.fn, self.elab(e.args[0], out), span)
        if isinstance(e, ast.Neg):
            return IUn("neg", self.elab(e.operand, out), span)
        if isinstance(e, ast.BinOp):
            if e.op == "^":
                return IBin("^", self.elab(e.left, out), self.elab(e.right, ()), span)
            return self._chain(e, out)
        if isinstance(e, ast.Index):
            return self._index(e, out)
        if isinstance(e, ast.SumAll):
            shape = self._shape(e.body.type)
            names = [self.fresh() for _ in shape]
            binders = tuple(Binder(n, (Poly.const(0),), (d,)) for n, d in zip(names, shape))
            body = self.elab(e.body, tuple(Poly.sym(n) for n in names))
            return ISum(binders, body, span) if binders else body
        if isinstance(e, ast.SumIndex):
            return self._sum_index(e)
        raise TypeError(f"cannot elaborate {type(e).__name__}")

    def _shape(self, t) -> tuple[Poly, ...]:
        """A checked shape, with index names (slice bounds such as x[:i]) renamed to this scope's."""
        names = self._index_names()
        return tuple(d.rename(names) for d in t.shape) if names else t.shape

    def _chain(self, e: ast.BinOp, out: tuple[Poly, ...]) -> IExpr:
        """A chain of + - * / @ (a single operation is a chain of one), elaborated along its left
        spine with loops: first top down, the element at which each operation's left operand is
        taken (and each contraction's fresh index, in the order recursion would make them),
        then bottom up, the operations (a run of + and -, or of *, at a time: `_run`)."""
        first, spine = ast.left_spine(e)
        outs, ks = [()] * len(spine), [""] * len(spine)
        node_out = out
        for j in range(len(spine) - 1, -1, -1):
            node = spine[j]
            outs[j] = node_out
            if node.op == "@":  # a @ b = sum[k](a[..., k] * b[k, ...])
                ks[j] = self.fresh()
                node_out = node_out[:len(self._shape(node.left.type)) - 1] + (Poly.sym(ks[j]),)
            else:
                node_out = node_out if node.left.type.shape else ()
        acc = self.elab(first, node_out)
        run: list = []  # the pending run of one balanceable kind: (operation, right operand)
        for j, node in enumerate(spine):
            if node.op == "@":
                a = self._shape(node.left.type)
                k, split = ks[j], len(a) - 1
                right = self.elab(node.right, (Poly.sym(k),) + outs[j][split:])
                acc = self._run(acc, run)
                run = []
                acc = ISum((Binder(k, (Poly.const(0),), (a[-1],)),), IBin("*", acc, right, node.span), node.span)
                continue
            right = self.elab(node.right, outs[j] if node.right.type.shape else ())
            if run and _KIND.get(node.op) != _KIND[run[0][0].op]:
                acc = self._run(acc, run)
                run = []
            if node.op in _KIND:
                run.append((node, right))
            else:
                acc = IBin(node.op, acc, right, node.span)
        return self._run(acc, run)

    def _run(self, acc: IExpr, run: list) -> IExpr:
        """acc op1 r1 op2 r2 ... for a run of + and - (or of *): nested to the left as written
        while that is at most MAX_WRITTEN_HEIGHT levels high, else a weight-balanced tree of
        the same operands in the same order (a - b - c - d can become (a - b) - (c + d)), whose
        new nodes' spans cover their operands."""
        if not run:
            return acc
        items = [(1, acc, run[0][0].left.span)] + [(-1 if node.op == "-" else 1, right, node.right.span)
                                                   for node, right in run]
        heights = [self.height(x) for _, x, _ in items]
        written = heights[0]
        for h in heights[1:]:
            written = 1 + max(written, h)
        if written <= MAX_WRITTEN_HEIGHT:
            for node, right in run:
                acc = IBin(node.op, acc, right, node.span)
            return acc
        weights = [0]
        for h in heights:
            weights.append(weights[-1] + (1 << h))  # exact: Python integers
        return _balanced(items, weights, 0, len(items), 1, _KIND[run[0][0].op])

    def _index(self, e: ast.Index, out: tuple[Poly, ...]) -> IExpr:
        base_shape = self._shape(e.base.type)
        idx, pos = [], 0
        for sub, dim in zip(e.subscripts, base_shape):
            if isinstance(sub, ast.Slice):
                lo = self._slice_lo(sub.lo, dim)
                idx.append(lo + out[pos])
                pos += 1
            else:
                p = self._index_poly(sub)
                idx.append(dim + p if p.is_constant() and p.constant < 0 else p)  # x[-1]: the last
        idx.extend(out[pos:])
        base = self.elab(e.base, tuple(idx))
        if isinstance(base, IAccess) and isinstance(e.base, ast.Name) and base.name == e.base.id:
            base = IAccess(base.kind, base.name, base.index, e.span)  # the access with its subscripts
        return base

    def _slice_lo(self, lo, dim: Poly) -> Poly:
        if lo is None:
            return Poly.const(0)
        p = self._index_poly(lo)
        return dim + p if p.is_constant() and p.constant < 0 else p

    def _sum_index(self, e: ast.SumIndex) -> IExpr:
        scope: dict[str, str] = {}
        binders = []
        for b in e.binders:
            unique = f"{b.name}{self.serial()}"
            hi = ()
            if b.bound is not None:
                self.index_scopes.append(scope)
                bound = self._index_poly(b.bound)
                self.index_scopes.pop()
                hi = (bound + 1,) if b.op == "<=" else (bound,)
            scope[b.name] = unique
            binders.append(Binder(unique, (), hi, _name_span(b)))
        self.index_scopes.append(scope)
        body = self.elab(e.body, ())
        self.index_scopes.pop()
        return ISum(tuple(binders), body, e.span)


_KIND = {"+": "+", "-": "+", "*": "*"}  # the operations a run is made of: + and -, or *


def _balanced(items: list, weights: list[int], lo: int, hi: int, sign: int, op: str) -> IExpr:
    """The sum (or product, op "*") of items[lo:hi], each item (sign s, expression x, span) taken with
    the sign sign * s, where sign * s of items[lo] is +1; split where the cumulative weights
    (`weights[k]` = the weight of items[:k]) reach half, so an item of weight w is at most
    about log2(total / w) + 2 levels down, and so is the recursion."""
    if hi - lo == 1:
        return items[lo][1]
    twice = weights[lo] + weights[hi]  # twice the halfway weight (integers: weights can be 2^300)
    k = bisect.bisect_left(weights, (twice + 1) // 2, lo + 1, hi)
    mid = min((m for m in (k - 1, k) if lo < m < hi), key=lambda m: abs(2 * weights[m] - twice))
    left = _balanced(items, weights, lo, mid, sign, op)
    first = sign * items[mid][0]  # the sign the right part is taken with (always +1 in a product)
    right = _balanced(items, weights, mid, hi, first * sign, op)
    start, end = items[lo][2], items[hi - 1][2]
    span = Span(start.line, start.column, end.end_line, end.end_column) if start and end else None
    return IBin(op if first > 0 else "-", left, right, span)


def _name_span(b: ast.Binder) -> Span:
    """The span of a binder's name: a binder is written `name` or `name < bound`, name first."""
    s = b.span
    return Span(s.line, s.column, s.line, s.column + len(b.name))


# expansion -------------------------------------------------------------------
class _Term:
    """scale * coef * factors summed over binders; `factors` are the group accesses (with their
    spans) and `span` is the product the term was formed by (see `expand`)."""

    __slots__ = ("scale", "coef", "factors", "binders", "span")

    def __init__(self, scale=1.0, coef=(), factors=(), binders=(), span=None):
        self.scale, self.coef, self.factors, self.binders, self.span = scale, coef, factors, binders, span

    def times(self, other: "_Term", span: Span | None) -> "_Term":
        return _Term(self.scale * other.scale, self.coef + other.coef, self.factors + other.factors,
                     self.binders + other.binders, span)

    def negated(self) -> "_Term":
        return _Term(-self.scale, self.coef, self.factors, self.binders, self.span)

    def formed_by(self, span: Span | None) -> "_Term":
        return _Term(self.scale, self.coef, self.factors, self.binders, span)


def _has_groups(e: IExpr) -> bool:
    return any(a.kind == "group" for a in iexpr_accesses(e))


def _first_sum(e: IExpr) -> ISum | None:
    return next((node for node in iexpr_walk(e) if isinstance(node, ISum)), None)


def _coefficient(e: IExpr, where: str) -> IExpr:
    inner = _first_sum(e)
    if inner is not None:
        raise _Unsupported(f"a sum or contraction inside {where} is not supported", inner.span or e.span,
                           "compute it outside, e.g. move the sum out of the function, denominator or exponent")
    return e


def expand(e: IExpr) -> list[_Term]:
    """e as a list of terms (products summed over index ranges).

    Each term remembers where it was formed, for error messages: a product (`*`, `/`, the
    power of a sum) is the origin of the terms it makes; a negation, a difference or a sum
    passes its terms' origins on; a leaf is its own origin. So `-(v @ W @ h)` gives one term
    from `v @ W @ h`, and `sum(v^2) / 2` one from `sum(v^2) / 2`.

    Evaluated bottom up with an explicit stack: `_operands` says which subexpressions a node
    needs expanded (in the order they are expanded; it also raises the errors found before
    expanding them), `_combine` makes the node's terms from theirs."""
    results: list[list[_Term]] = []
    stack: list = [(e, None)]
    while stack:
        node, count = stack.pop()
        if count is not None:
            args = results[len(results) - count:]
            del results[len(results) - count:]
            results.append(_combine(node, args))
            continue
        operands = _operands(node)
        if isinstance(operands, list) and operands and isinstance(operands[0], _Term):
            results.append(operands)  # a leaf's terms
            continue
        stack.append((node, len(operands)))
        stack.extend((x, None) for x in reversed(operands))
    return results[0]


def _operands(e: IExpr):
    """The subexpressions `e`'s terms are made from, in the order they are expanded (a sum's
    right operand first), or the terms of a leaf; raises what cannot be expanded."""
    if isinstance(e, INum):
        return [_Term(scale=e.value, span=e.span)]
    if isinstance(e, ISym):
        return [_Term(coef=(e,), span=e.span)]
    if isinstance(e, IAccess):
        if e.kind == "group":
            return [_Term(factors=(e,), span=e.span)]
        return [_Term(coef=(e,), span=e.span)]
    if isinstance(e, IUn):
        if e.op == "neg":
            return [e.arg]
        return [_Term(coef=(_coefficient(e, f"{e.op}(...)"),), span=e.span)]
    if isinstance(e, ISum):
        return [e.body]
    assert isinstance(e, IBin)
    if e.op in "+-":
        return [e.right, e.left]
    if e.op == "*":
        return [e.left, e.right]
    if e.op == "/":
        if isinstance(e.right, INum):
            if e.right.value == 0:
                raise _Unsupported("this divides by zero", e.span, "divide by a nonzero number", "arithmetic")
        else:
            _coefficient(e.right, "a denominator")
        return [e.left]
    if e.op == "^":
        if isinstance(e.left, INum) and isinstance(e.right, INum):
            return [_Term(scale=_power(e), span=e.span)]
        if not _has_groups(e.left) and _first_sum(e.left) is None:
            return [_Term(coef=(_coefficient(e, "an exponent"),), span=e.span)]
        if not (isinstance(e.right, INum) and float(e.right.value).is_integer() and e.right.value >= 1):
            raise _Unsupported("a power of a sum needs a whole-number exponent", e.span)
        return [e.left]
    raise TypeError(e.op)


def _combine(e: IExpr, args: list[list[_Term]]) -> list[_Term]:
    """The terms of `e` from the terms of its `_operands` (in that order)."""
    if isinstance(e, IUn):  # a negation
        return [t.negated() for t in args[0]]
    if isinstance(e, ISum):
        return [_Term(t.scale, t.coef, t.factors, t.binders + e.binders, t.span) for t in args[0]]
    if e.op in "+-":
        right, left = args
        if e.op == "-":
            right = [t.negated() for t in right]
        left.extend(right)  # each operand's list is new: extending it keeps a long chain linear
        if len(left) > MAX_TERMS_PER_STATEMENT:
            raise _Unsupported(f"this energy statement expands into more than {MAX_TERMS_PER_STATEMENT} monomials",
                               None, "split it into several energy statements", "limit")
        return left
    if e.op == "*":
        left, right = args
        _limit(len(left) * len(right), e)
        return [a.times(b, e.span) for a in left for b in right]
    if e.op == "/":
        if isinstance(e.right, INum):
            return [_Term(t.scale / e.right.value, t.coef, t.factors, t.binders, e.span) for t in args[0]]
        inv = IBin("/", INum(1.0), e.right)
        return [t.times(_Term(coef=(inv,)), e.span) for t in args[0]]
    assert e.op == "^"
    base = args[0]
    out = [t.formed_by(e.span) for t in base]
    for k in range(1, int(e.right.value)):
        # each factor of the power sums over its own copy of the indices: (sum_i x_i)^2 = sum_i sum_j x_i x_j
        _limit(len(out) * len(base), e)
        copy = [_rename_binders(b, f"'{k}") for b in base]
        out = [a.times(b, e.span) for a in out for b in copy]
    return out


def _power(e: IBin) -> float:
    """A number to a number's power, as a float."""
    try:
        value = e.left.value ** e.right.value
    except ZeroDivisionError:
        raise _Unsupported("this divides by zero: zero to a negative power", e.span,
                           "divide by a nonzero number", "arithmetic") from None
    except OverflowError:
        raise _Unsupported("this constant is too large: it overflows a float", e.span, None, "arithmetic") from None
    if isinstance(value, complex):
        raise _Unsupported("this constant is not a real number: a negative number to a fractional power",
                           e.span, None, "arithmetic")
    return value


def _rename_binders(t: _Term, suffix: str) -> _Term:
    """The same term with its summation indices renamed (the suffix cannot occur in a .gdl name)."""
    mapping = {b.name: b.name + suffix for b in t.binders}
    if not mapping:
        return t
    binders = tuple(Binder(mapping[b.name], tuple(p.rename(mapping) for p in b.lo),
                           tuple(p.rename(mapping) for p in b.hi), b.span) for b in t.binders)
    factors = tuple(iexpr_rename(a, mapping) for a in t.factors)
    coef = tuple(iexpr_rename(c, mapping) for c in t.coef)
    return _Term(t.scale, coef, factors, binders, t.span)


def _limit(count: int, e: IExpr) -> None:
    """A product or power may make at most MAX_PRODUCT_TERMS monomials (checked before making them)."""
    if count > MAX_PRODUCT_TERMS:
        raise _Unsupported(f"this expands into more than {MAX_PRODUCT_TERMS} monomials", e.span,
                           "split it into several energy statements or simplify it", "limit")


# monomials ------------------------------------------------------------------------
def _simplify_factors(raw, groups) -> tuple[Factor, ...] | None:
    """Merge repeated accesses (IAccess of groups) into powers and apply the domain identities;
    a merged factor keeps the span of its first access.

    Returns None when the monomial vanishes (never, for the supported domains)."""
    merged: dict[tuple, list] = {}
    for a in raw:
        entry = merged.setdefault((a.name, a.index), [0, a.span])
        entry[0] += 1
    out = []
    for (name, index), (power, span) in merged.items():
        domain = groups[name].domain
        if domain in ("binary",) + ONE_HOT:  # x * x = x for values 0 and 1
            power = 1
        elif domain == "spin":
            power %= 2
            if power == 0:
                continue
        out.append(Factor(name, index, power, span))
    return tuple(out)


def _shape_of(name: str, checked: CheckedModel) -> tuple[Poly, ...]:
    if name in checked.groups:
        return checked.groups[name].shape
    return checked.params[name].shape


def _ranges(term: _Term, factors, checked: CheckedModel, span: Span, sink: ErrorSink, lines):
    """The loop ranges and guards of a term, or None after reporting why they cannot be told
    (at the summation index's name when the user wrote it, else at the term's origin)."""
    names = [b.name for b in term.binders]
    lo = {b.name: list(b.lo) for b in term.binders}
    hi = {b.name: list(b.hi) for b in term.binders}
    accesses = [(f.group, f.index) for f in factors]
    for c in term.coef:
        accesses += [(a.name, a.index) for a in iexpr_accesses(c)]
    guards = []
    for name, index in accesses:
        for axis, (p, dim) in enumerate(zip(index, _shape_of(name, checked))):
            bound_vars = [s for s in p.symbols() if s in lo]
            if len(bound_vars) == 1 and p.coefficient(bound_vars[0]) == 1 and \
                    not (p.without([bound_vars[0]]).symbols() & set(lo)):
                v = bound_vars[0]
                offset = p - Poly.sym(v)
                _add_bound(lo[v], -offset)
                _add_bound(hi[v], dim - offset)
            elif not bound_vars and p.is_constant() and p.constant == 0:
                continue
            else:
                g = Guard(p, dim)
                if g not in guards:
                    guards.append(g)
    where = term.span or span
    unknown = [b for b in term.binders if not hi[b.name]]
    for b in unknown:
        what = f"the index '{excerpt(lines, b.span)}'" if b.span else "an index"
        sink.error(f"cannot tell the range of {what}: it is never used alone as a subscript", b.span or where,
                   "give it a bound, as in sum[i < n](...), or use it as a plain subscript x[i + c]", kind="index")
    if unknown:
        return None
    for n in names:
        if not lo[n]:
            lo[n] = [Poly.const(0)]
    ranges = {n: IndexRange(n, tuple(_tighten(lo[n], "lo")), tuple(_tighten(hi[n], "hi"))) for n in names}
    order = _loop_order(names, ranges)
    if order is None:
        sink.error("the bounds of the summation indices depend on each other in a cycle", where, kind="index")
        return None
    return tuple(ranges[n] for n in order), tuple(g for g in guards if not _guard_implied(g, ranges))


def _guard_implied(g: Guard, ranges) -> bool:
    """Whether the loop ranges already keep 0 <= g.expr < g.dim for every size (each at least 1):
    a guard in the innermost loop stops numba from vectorising it (`v[2 * p + s + a]` under
    `s < 2`, `a < f`, `p < np` in a convolution is always inside `v[2 * np + f - 1]`)."""
    loops = [s for s in g.expr.symbols() if s in ranges]
    if any(m != (s,) for m in g.expr.terms for s in m if s in ranges):
        return False  # not linear in the loop indices
    fixed = g.expr.without(loops)
    low, high = fixed, fixed
    for v in loops:
        c = g.expr.coefficient(v)
        lo = [b for b in ranges[v].lo if not b.symbols() & set(ranges)]
        hi = [b for b in ranges[v].hi if not b.symbols() & set(ranges)]
        if not lo or not hi:
            return False
        first, last = lo[0], hi[0] - 1  # any one bound of each side holds (the range is their intersection)
        low, high = (low + first * c, high + last * c) if c > 0 else (low + last * c, high + first * c)
    return _provably_nonnegative(low) and _provably_nonnegative(g.dim - 1 - high)


def _provably_nonnegative(p: Poly) -> bool:
    """p >= 0 for every value >= 1 of its symbols: with each symbol written 1 + t (t >= 0), every
    coefficient is non-negative. For an affine p (every subscript and most bounds) that is: its
    linear coefficients and the sum of all its coefficients (its constant once shifted)."""
    terms = p.terms
    if all(len(m) <= 1 for m in terms):
        return all(c >= 0 for m, c in terms.items() if m) and sum(terms.values()) >= 0
    shifted = p.substitute({s: Poly.sym(s) + 1 for s in p.symbols()})
    return all(c >= 0 for c in shifted.terms.values())


def _add_bound(bounds: list, p: Poly) -> None:
    if p not in bounds:
        bounds.append(p)


def _tighten(bounds: list[Poly], side: str) -> list[Poly]:
    """Drop bounds that another bound with the same symbolic part makes redundant."""
    best: dict = {}
    for b in bounds:
        key = b - b.constant
        prev = best.get(key)
        if prev is None or (b.constant > prev.constant if side == "lo" else b.constant < prev.constant):
            best[key] = b
    return list(best.values())


def _loop_order(names, ranges):
    order, placed = [], set()
    pending = list(names)
    while pending:
        for n in pending:
            deps = set()
            for p in ranges[n].lo + ranges[n].hi:
                deps |= p.symbols() & set(names)
            if deps <= placed:
                order.append(n)
                placed.add(n)
                pending.remove(n)
                break
        else:
            return None
    return order


def _canonical(term: _Term, factors, ranges, guards):
    """Rename index variables to i0, i1, ... in loop order so equal monomials compare equal."""
    if not ranges:  # nothing to rename (x[0] * W[0, 1] * y[1]): the parts as they are
        coef = tuple(term.coef)
        return factors, tuple(sorted(coef, key=repr)) if len(coef) > 1 else coef, ranges, guards
    mapping = {r.name: f"i{k}" for k, r in enumerate(ranges)}
    factors = tuple(Factor(f.group, tuple(p.rename(mapping) for p in f.index), f.power, f.span) for f in factors)
    coef = tuple(iexpr_rename(c, mapping) for c in term.coef)
    if len(coef) > 1:  # (repr prints every subscript: most terms have one coefficient or none)
        coef = tuple(sorted(coef, key=repr))
    ranges = tuple(IndexRange(mapping[r.name], tuple(p.rename(mapping) for p in r.lo),
                              tuple(p.rename(mapping) for p in r.hi)) for r in ranges)
    guards = tuple(Guard(g.expr.rename(mapping), g.dim) for g in guards)
    return factors, coef, ranges, guards


def lower(checked: CheckedModel) -> ModelIR:
    sink = ErrorSink()
    el = Elaborator(checked)
    lines = checked.source.text.split("\n")
    combined: dict[tuple, Monomial] = {}  # like monomials of every statement, in order of first appearance
    for term_no, decl in enumerate(checked.energies):
        merged = _StatementLowering(el, decl, term_no, sink, lines).monomials()
        if merged is None:
            continue
        huge = [m for m in merged.values() if not math.isfinite(m.scale)]
        if huge:
            sink.error("the constant factor of this product is too large: it overflows a float", huge[0].origin,
                       kind="arithmetic")
            continue
        for key, m in merged.items():
            if m.scale != 0.0:
                _combine_like(combined, key, m, sink)
    monomials = [m for m in combined.values() if m.scale != 0.0]
    for k, m in enumerate(monomials):
        m.id = k
    sink.raise_if_any(checked.source)
    directed = checked.directed
    if checked.energies:  # a sequence's per-step energy reads its states as given inputs
        directed = directed - set(checked.states)
    groups = {name: group_ir(g) for name, g in checked.groups.items() if name not in directed}
    params = {name: ParamIR(p.name, p.shape, p.constraints, _init(el, p.init), p.decl.span.line, p.decl.name_span)
              for name, p in checked.params.items()}
    ir = ModelIR(checked.name, dict(checked.sizes), dict(checked.consts), groups, params, monomials,
                 [d.span.line for d in checked.energies], checked.source.text.splitlines())
    from .graph import build_factor_graph

    ir.graph = build_factor_graph(ir)
    if checked.conditionals or checked.sequence is not None:
        from .directed import lower_directed

        ir.directed = lower_directed(checked, el)
        from .graph import add_directed

        add_directed(ir.graph, ir.directed)
    return ir


class _StatementLowering:
    """The monomials of one energy statement, equal ones merged (monomial key -> Monomial, in
    order of first appearance), or None after reporting why the statement cannot be expanded.

    A statement is a run of summands, a - b + c ... (often one). It is lowered summand by
    summand, left to right, which gives the terms, in the order, that expanding it whole gives
    (a sum's terms are its operands' in turn, negated after a '-'). A summand written like an
    earlier one of the statement (the same AST, spans aside: `_written`) expands to the same
    monomials with the same scales, so those scales are added again without elaborating it: a
    flat sum of 100,000 `b @ v` costs one elaboration. Every error a summand meets aborts this
    and the statement is lowered whole, as one expression, to report what that reports."""

    def __init__(self, el: Elaborator, decl, term_no: int, sink: ErrorSink, lines: list[str]):
        self.el, self.decl, self.term_no, self.sink, self.lines = el, decl, term_no, sink, lines
        self.groups = el.m.groups

    def monomials(self) -> dict | None:
        start = self.el.made
        try:
            return self._by_summand()
        except (_Unsupported, ZeroDivisionError, OverflowError):
            self.el.made = start  # the same fresh names as if this had not been tried
        return self._whole()

    def _by_summand(self) -> dict:
        merged: dict[tuple, Monomial] = {}
        errors = ErrorSink()  # the ranges that cannot be told, reported if no summand fails
        seen: dict[tuple, tuple] = {}  # written summand -> (fresh names made, [(monomial key, scale)])
        count = 0
        for sign, summand in _summands(self.decl.expr):
            written = _written(summand)
            known = seen.get(written) if written is not None else None
            if known is None:
                before, reported = self.el.made, len(errors.errors)
                terms = expand(self.el.elab(summand, ()))
                count += len(terms)
                if count > MAX_TERMS_PER_STATEMENT:
                    raise _Unsupported("too many monomials", None)  # reported by `_whole`
                keys = [(self._merge(merged, t.negated() if sign < 0 else t, errors), t.scale) for t in terms]
                if written is not None and len(errors.errors) == reported:
                    seen[written] = (self.el.made - before, keys)
                continue
            made, keys = known
            self.el.made += made
            count += len(keys)
            if count > MAX_TERMS_PER_STATEMENT:
                raise _Unsupported("too many monomials", None)
            for key, scale in keys:
                merged[key].scale += -scale if sign < 0 else scale
        self.sink.errors.extend(errors.errors)
        return merged

    def _whole(self) -> dict | None:
        decl, sink = self.decl, self.sink
        try:
            terms = expand(self.el.elab(decl.expr, ()))
        except _Unsupported as e:
            sink.error(str(e), e.span or decl.expr.span, e.hint, kind=e.kind)
            return None
        except ZeroDivisionError:  # not expected: expand reports divisions by zero where they are
            sink.error("this term divides by zero", decl.expr.span, "divide by a nonzero number", kind="arithmetic")
            return None
        except OverflowError:
            sink.error("a constant in this term is too large: it overflows a float", decl.expr.span,
                       kind="arithmetic")
            return None
        merged: dict[tuple, Monomial] = {}
        for t in terms:
            self._merge(merged, t, sink)
        return merged

    def _merge(self, merged: dict, t: _Term, sink: ErrorSink) -> tuple | None:
        """Add term t to `merged`: its monomial key, or None when its ranges cannot be told
        (reported to `sink`). Equal monomials merge; the first one's origin is kept."""
        decl = self.decl
        factors = _simplify_factors(t.factors, self.groups)
        # the ranges come from every access as written: a factor the domain removes (a spin squared
        # is 1) still says where the sum runs (sum[i](s[i]^2 * s[i + 1]) has n - 1 terms, not n)
        r = _ranges(t, [Factor(a.name, a.index) for a in t.factors], self.el.m, decl.expr.span, sink, self.lines)
        if r is None:
            return None
        factors, coef, ranges, guards = _canonical(t, factors, *r)
        key = (factors, coef, ranges, guards)
        first = merged.get(key)
        if first is not None:
            first.scale += t.scale
        else:
            merged[key] = Monomial(0, t.scale, coef, factors, ranges, guards, decl.span, self.term_no,
                                   t.span or decl.span)
        return key


def _summands(e: ast.Expr) -> list[tuple[int, ast.Expr]]:
    """(sign, operand) of the run of + and - at the top of e, left to right ([(1, e)] if none)."""
    out = []
    while isinstance(e, ast.BinOp) and e.op in ("+", "-"):
        out.append((-1 if e.op == "-" else 1, e.right))
        e = e.left
    out.append((1, e))
    out.reverse()
    return out


def _written(e: ast.Expr) -> tuple | None:
    """What elaborating e depends on, as a flat tuple (node kinds, operators, names, literals and
    the number of each node's operands, parents first), spans left out; None for a node it does
    not know. Equal tuples elaborate to the same expression up to the fresh index names."""
    out: list = []
    stack: list = [e]
    while stack:
        n = stack.pop()
        kind = type(n)
        out.append(kind)
        if kind is ast.Name:
            out.append(n.id)
        elif kind is ast.Num:
            out += (type(n.value), n.text)
        elif kind is ast.BinOp:
            out.append(n.op)
            stack += (n.right, n.left)
        elif kind is ast.Neg:
            stack.append(n.operand)
        elif kind is ast.Call:
            out += (n.fn, len(n.args))
            stack.extend(reversed(n.args))
        elif kind is ast.Index:
            out.append(len(n.subscripts))
            stack.extend(reversed(n.subscripts))
            stack.append(n.base)
        elif kind is ast.Slice:
            stack += (n.hi, n.lo)
        elif kind is ast.SumAll:
            stack.append(n.body)
        elif kind is ast.SumIndex:
            out.append(len(n.binders))
            stack.append(n.body)
            stack.extend(reversed(n.binders))
        elif kind is ast.Binder:
            out += (n.name, n.op)
            stack.append(n.bound)
        elif n is not None:
            return None
    return tuple(out)


def _combine_like(combined: dict, key: tuple, m: Monomial, sink: ErrorSink) -> None:
    """Add monomial m (of a later statement) to an equal one already there, or keep it: like
    monomials of different statements become one, with the first one's line and origin."""
    first = combined.get(key)
    if first is None:
        combined[key] = m
        return
    scale = first.scale + m.scale
    if not math.isfinite(scale):
        sink.error(f"this term and the equal one on line {first.span.line} add up to more than a float can hold",
                   m.origin, kind="arithmetic")
        return
    first.scale = scale
    first.repeats += (m.span.line,)


def group_ir(g) -> GroupIR:
    """A checked group (GroupInfo) in the IR, with the span of its name in the declaration."""
    return GroupIR(g.name, g.role, g.shape, g.domain, g.categories, g.decl.span.line, g.decl.name_span)


def _init(el: Elaborator, init):
    if init is None:
        return None
    args = tuple(el.elab(a, ()) for a in init.args)
    return ("value", args) if init.kind == "value" else (init.dist, args)


def index_names_of(m: Monomial) -> list[str]:
    return [r.name for r in m.ranges]


__all__ = ["lower", "expand", "index_names_of", "iexpr_index_names"]
