"""Checked AST -> IR: elaborate to index notation, expand into monomials.

1. elaborate: every tensor expression becomes a scalar expression of explicit
   index variables (`v @ W @ h` -> sum[t0, t1](v[t0] * W[t0, t1] * h[t1])).
2. expand: distribute products over sums until each energy term is a list of
   monomials (coefficient x variable factors, summed over index ranges).
3. simplify by domain: x^2 = x for binary and one-hot units, x^2 = 1 for spins.
4. ranges: an index runs over every value for which each subscript it appears in
   alone (as `i + c`) is in bounds; other subscripts get a guard.
"""
from __future__ import annotations

import itertools
import math

from ..errors import ErrorSink, GdslError, Source, Span
from ..frontend import ast
from ..frontend.checker import CheckedModel, index_poly_of
from ..poly import Poly
from .model import (Binder, Factor, GroupIR, Guard, IAccess, IBin, IExpr, IndexRange, INum, ISum, ISym, IUn,
                    ModelIR, Monomial, ParamIR, iexpr_accesses, iexpr_index_names, iexpr_rename)

MAX_TERMS_PER_STATEMENT = 4096


class _Unsupported(Exception):
    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class Elaborator:
    def __init__(self, checked: CheckedModel):
        self.m = checked
        self.counter = itertools.count()
        self.index_scopes: list[dict[str, str]] = []

    def fresh(self) -> str:
        return f"t{next(self.counter)}"

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
        if isinstance(e, ast.Num):
            return INum(float(e.value))
        if isinstance(e, ast.Name):
            names = self._index_names()
            if e.id in names:
                return ISym("index", names[e.id])
            if e.id in self.m.sizes:
                return ISym("size", e.id)
            if e.id in self.m.consts:
                return ISym("const", e.id)
            if e.id in self.m.lets:  # let bindings are inlined; the analysis shares repeated work
                saved, self.index_scopes = self.index_scopes, []
                try:
                    return self.elab(self.m.lets[e.id].decl.expr, out)
                finally:
                    self.index_scopes = saved
            kind = "group" if e.id in self.m.groups else "param"
            return IAccess(kind, e.id, out)
        if isinstance(e, ast.Call):
            return IUn(e.fn, self.elab(e.args[0], out))
        if isinstance(e, ast.Neg):
            return IUn("neg", self.elab(e.operand, out))
        if isinstance(e, ast.BinOp):
            if e.op == "@":
                return self._matmul(e, out)
            if e.op == "^":
                return IBin("^", self.elab(e.left, out), self.elab(e.right, ()))
            left = self.elab(e.left, out if e.left.type.shape else ())
            right = self.elab(e.right, out if e.right.type.shape else ())
            return IBin(e.op, left, right)
        if isinstance(e, ast.Index):
            return self._index(e, out)
        if isinstance(e, ast.SumAll):
            shape = self._shape(e.body.type)
            names = [self.fresh() for _ in shape]
            binders = tuple(Binder(n, (Poly.const(0),), (d,)) for n, d in zip(names, shape))
            body = self.elab(e.body, tuple(Poly.sym(n) for n in names))
            return ISum(binders, body) if binders else body
        if isinstance(e, ast.SumIndex):
            return self._sum_index(e)
        raise TypeError(f"cannot elaborate {type(e).__name__}")

    def _shape(self, t) -> tuple[Poly, ...]:
        """A checked shape, with index names (slice bounds such as x[:i]) renamed to this scope's."""
        names = self._index_names()
        return tuple(d.rename(names) for d in t.shape) if names else t.shape

    def _matmul(self, e: ast.BinOp, out: tuple[Poly, ...]) -> IExpr:
        a, b = self._shape(e.left.type), self._shape(e.right.type)
        k = self.fresh()
        split = len(a) - 1
        left = self.elab(e.left, out[:split] + (Poly.sym(k),))
        right = self.elab(e.right, (Poly.sym(k),) + out[split:])
        return ISum((Binder(k, (Poly.const(0),), (a[-1],)),), IBin("*", left, right))

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
        return self.elab(e.base, tuple(idx))

    def _slice_lo(self, lo, dim: Poly) -> Poly:
        if lo is None:
            return Poly.const(0)
        p = self._index_poly(lo)
        return dim + p if p.is_constant() and p.constant < 0 else p

    def _sum_index(self, e: ast.SumIndex) -> IExpr:
        scope: dict[str, str] = {}
        binders = []
        for b in e.binders:
            unique = f"{b.name}{next(self.counter)}"
            hi = ()
            if b.bound is not None:
                self.index_scopes.append(scope)
                bound = self._index_poly(b.bound)
                self.index_scopes.pop()
                hi = (bound + 1,) if b.op == "<=" else (bound,)
            scope[b.name] = unique
            binders.append(Binder(unique, (), hi))
        self.index_scopes.append(scope)
        body = self.elab(e.body, ())
        self.index_scopes.pop()
        return ISum(tuple(binders), body)


# expansion -------------------------------------------------------------------
class _Term:
    __slots__ = ("scale", "coef", "factors", "binders")

    def __init__(self, scale=1.0, coef=(), factors=(), binders=()):
        self.scale, self.coef, self.factors, self.binders = scale, coef, factors, binders

    def times(self, other: "_Term") -> "_Term":
        return _Term(self.scale * other.scale, self.coef + other.coef, self.factors + other.factors,
                     self.binders + other.binders)


def _has_groups(e: IExpr) -> bool:
    return any(a.kind == "group" for a in iexpr_accesses(e))


def _has_sum(e: IExpr) -> bool:
    if isinstance(e, ISum):
        return True
    if isinstance(e, IUn):
        return _has_sum(e.arg)
    if isinstance(e, IBin):
        return _has_sum(e.left) or _has_sum(e.right)
    return False


def _coefficient(e: IExpr, where: str) -> IExpr:
    if _has_sum(e):
        raise _Unsupported(f"a sum or contraction inside {where} is not supported",
                           "compute it outside, e.g. move the sum out of the function or denominator")
    return e


def expand(e: IExpr) -> list[_Term]:
    if isinstance(e, INum):
        return [_Term(scale=e.value)]
    if isinstance(e, ISym):
        return [_Term(coef=(e,))]
    if isinstance(e, IAccess):
        if e.kind == "group":
            return [_Term(factors=((e.name, e.index),))]
        return [_Term(coef=(e,))]
    if isinstance(e, IUn):
        if e.op == "neg":
            return [_Term(-t.scale, t.coef, t.factors, t.binders) for t in expand(e.arg)]
        return [_Term(coef=(_coefficient(e, f"{e.op}(...)"),))]
    if isinstance(e, ISum):
        return [_Term(t.scale, t.coef, t.factors, t.binders + e.binders) for t in expand(e.body)]
    assert isinstance(e, IBin)
    if e.op in "+-":
        right = expand(e.right)
        if e.op == "-":
            right = [_Term(-t.scale, t.coef, t.factors, t.binders) for t in right]
        return _limit(expand(e.left) + right)
    if e.op == "*":
        return _limit([a.times(b) for a in expand(e.left) for b in expand(e.right)])
    if e.op == "/":
        if isinstance(e.right, INum):
            return [_Term(t.scale / e.right.value, t.coef, t.factors, t.binders) for t in expand(e.left)]
        inv = IBin("/", INum(1.0), _coefficient(e.right, "a denominator"))
        return [t.times(_Term(coef=(inv,))) for t in expand(e.left)]
    if e.op == "^":
        if isinstance(e.left, INum) and isinstance(e.right, INum):
            return [_Term(scale=e.left.value ** e.right.value)]
        if not _has_groups(e.left) and not _has_sum(e.left):
            return [_Term(coef=(e,))]
        if not (isinstance(e.right, INum) and float(e.right.value).is_integer() and e.right.value >= 1):
            raise _Unsupported("a power of a sum needs a whole-number exponent")
        base = expand(e.left)
        out = base
        for k in range(1, int(e.right.value)):
            # each factor of the power sums over its own copy of the indices: (sum_i x_i)^2 = sum_i sum_j x_i x_j
            copy = [_rename_binders(b, f"'{k}") for b in base]
            out = _limit([a.times(b) for a in out for b in copy])
        return out
    raise TypeError(e.op)


def _rename_binders(t: _Term, suffix: str) -> _Term:
    """The same term with its summation indices renamed (the suffix cannot occur in a .gdl name)."""
    mapping = {b.name: b.name + suffix for b in t.binders}
    if not mapping:
        return t
    binders = tuple(Binder(mapping[b.name], tuple(p.rename(mapping) for p in b.lo),
                           tuple(p.rename(mapping) for p in b.hi)) for b in t.binders)
    factors = tuple((name, tuple(p.rename(mapping) for p in index)) for name, index in t.factors)
    coef = tuple(iexpr_rename(c, mapping) for c in t.coef)
    return _Term(t.scale, coef, factors, binders)


def _limit(terms: list[_Term]) -> list[_Term]:
    if len(terms) > MAX_TERMS_PER_STATEMENT:
        raise _Unsupported(f"this term expands into more than {MAX_TERMS_PER_STATEMENT} monomials",
                           "split it into several energy statements or simplify it")
    return terms


# monomials ------------------------------------------------------------------------
def _simplify_factors(raw, groups) -> tuple[Factor, ...] | None:
    """Merge repeated accesses into powers and apply the domain identities.

    Returns None when the monomial vanishes (never, for the supported domains)."""
    merged: dict[tuple, int] = {}
    for name, index in raw:
        merged[(name, index)] = merged.get((name, index), 0) + 1
    out = []
    for (name, index), power in merged.items():
        domain = groups[name].domain
        if domain in ("binary", "categorical"):
            power = 1
        elif domain == "spin":
            power %= 2
            if power == 0:
                continue
        out.append(Factor(name, index, power))
    return tuple(out)


def _shape_of(name: str, checked: CheckedModel) -> tuple[Poly, ...]:
    if name in checked.groups:
        return checked.groups[name].shape
    return checked.params[name].shape


def _ranges(term: _Term, factors, checked: CheckedModel, span: Span, sink: ErrorSink):
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
    for n in names:
        if not hi[n]:
            sink.error(f"cannot tell the range of an index: it is never used alone as a subscript", span,
                       "give it a bound, as in sum[i < n](...), or use it as a plain subscript x[i + c]")
            return None
        if not lo[n]:
            lo[n] = [Poly.const(0)]
    ranges = {n: IndexRange(n, tuple(_tighten(lo[n], "lo")), tuple(_tighten(hi[n], "hi"))) for n in names}
    order = _loop_order(names, ranges)
    if order is None:
        sink.error("the bounds of the summation indices depend on each other in a cycle", span)
        return None
    return tuple(ranges[n] for n in order), tuple(guards)


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
    mapping = {r.name: f"i{k}" for k, r in enumerate(ranges)}
    factors = tuple(Factor(f.group, tuple(p.rename(mapping) for p in f.index), f.power) for f in factors)
    coef = tuple(sorted((iexpr_rename(c, mapping) for c in term.coef), key=repr))
    ranges = tuple(IndexRange(mapping[r.name], tuple(p.rename(mapping) for p in r.lo),
                              tuple(p.rename(mapping) for p in r.hi)) for r in ranges)
    guards = tuple(Guard(g.expr.rename(mapping), g.dim) for g in guards)
    return factors, coef, ranges, guards


def lower(checked: CheckedModel) -> ModelIR:
    sink = ErrorSink()
    el = Elaborator(checked)
    monomials: list[Monomial] = []
    for term_no, decl in enumerate(checked.energies):
        span = decl.span
        try:
            terms = expand(el.elab(decl.expr, ()))
        except _Unsupported as e:
            sink.error(str(e), decl.expr.span, e.hint)
            continue
        except ZeroDivisionError:
            sink.error("this term divides by zero", decl.expr.span, "divide by a nonzero number")
            continue
        except OverflowError:
            sink.error("a constant in this term is too large: it overflows a float", decl.expr.span)
            continue
        merged: dict[tuple, Monomial] = {}
        for t in terms:
            factors = _simplify_factors(t.factors, checked.groups)
            r = _ranges(t, factors, checked, decl.expr.span, sink)
            if r is None:
                continue
            factors, coef, ranges, guards = _canonical(t, factors, *r)
            key = (factors, coef, ranges, guards)
            if key in merged:
                merged[key].scale += t.scale
            else:
                merged[key] = Monomial(0, t.scale, coef, factors, ranges, guards, span, term_no)
        if any(not math.isfinite(m.scale) for m in merged.values()):
            sink.error("a constant in this term is too large: it overflows a float", decl.expr.span)
            continue
        monomials.extend(m for m in merged.values() if m.scale != 0.0)
    for k, m in enumerate(monomials):
        m.id = k
    sink.raise_if_any(checked.source)
    directed = checked.directed
    groups = {name: GroupIR(g.name, g.role, g.shape, g.domain, g.categories, g.decl.span.line)
              for name, g in checked.groups.items() if name not in directed}
    params = {name: ParamIR(p.name, p.shape, p.constraints, _init(el, p.init), p.decl.span.line)
              for name, p in checked.params.items()}
    ir = ModelIR(checked.name, dict(checked.sizes), dict(checked.consts), groups, params, monomials,
                 [d.span.line for d in checked.energies], checked.source.text.splitlines())
    from .graph import build_factor_graph

    ir.graph = build_factor_graph(ir)
    if checked.conditionals:
        from .directed import lower_directed

        ir.directed = lower_directed(checked, el)
        from .graph import add_directed

        add_directed(ir.graph, ir.directed)
    return ir


def _init(el: Elaborator, init):
    if init is None:
        return None
    args = tuple(el.elab(a, ()) for a in init.args)
    return ("value", args) if init.kind == "value" else (init.dist, args)


def index_names_of(m: Monomial) -> list[str]:
    return [r.name for r in m.ranges]


__all__ = ["lower", "expand", "index_names_of", "iexpr_index_names"]
