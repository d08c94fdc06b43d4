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

from ..errors import ErrorSink, Span, excerpt
from ..frontend import ast
from ..frontend.checker import CheckedModel, index_poly_of
from ..poly import Poly
from .model import (Binder, Factor, GroupIR, Guard, IAccess, IBin, IExpr, IndexRange, INum, ISum, ISym, IUn,
                    ModelIR, Monomial, ParamIR, iexpr_accesses, iexpr_index_names, iexpr_rename, iexpr_walk)

MAX_TERMS_PER_STATEMENT = 4096


class _Unsupported(Exception):
    """A term that cannot be expanded, located at the subexpression at fault."""

    def __init__(self, message: str, span: Span | None, hint: str | None = None, kind: str = "structure"):
        super().__init__(message)
        self.span, self.hint, self.kind = span, hint, kind


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
            if e.op == "@":
                return self._matmul(e, out)
            if e.op == "^":
                return IBin("^", self.elab(e.left, out), self.elab(e.right, ()), span)
            left = self.elab(e.left, out if e.left.type.shape else ())
            right = self.elab(e.right, out if e.right.type.shape else ())
            return IBin(e.op, left, right, span)
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

    def _matmul(self, e: ast.BinOp, out: tuple[Poly, ...]) -> IExpr:
        a, b = self._shape(e.left.type), self._shape(e.right.type)
        k = self.fresh()
        split = len(a) - 1
        left = self.elab(e.left, out[:split] + (Poly.sym(k),))
        right = self.elab(e.right, (Poly.sym(k),) + out[split:])
        return ISum((Binder(k, (Poly.const(0),), (a[-1],)),), IBin("*", left, right, e.span), e.span)

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
            unique = f"{b.name}{next(self.counter)}"
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
    from `v @ W @ h`, and `sum(v^2) / 2` one from `sum(v^2) / 2`."""
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
            return [t.negated() for t in expand(e.arg)]
        return [_Term(coef=(_coefficient(e, f"{e.op}(...)"),), span=e.span)]
    if isinstance(e, ISum):
        return [_Term(t.scale, t.coef, t.factors, t.binders + e.binders, t.span) for t in expand(e.body)]
    assert isinstance(e, IBin)
    if e.op in "+-":
        right = expand(e.right)
        if e.op == "-":
            right = [t.negated() for t in right]
        return _limit(expand(e.left) + right, e)
    if e.op == "*":
        return _limit([a.times(b, e.span) for a in expand(e.left) for b in expand(e.right)], e)
    if e.op == "/":
        if isinstance(e.right, INum):
            if e.right.value == 0:
                raise _Unsupported("this divides by zero", e.span, "divide by a nonzero number", "arithmetic")
            return [_Term(t.scale / e.right.value, t.coef, t.factors, t.binders, e.span) for t in expand(e.left)]
        inv = IBin("/", INum(1.0), _coefficient(e.right, "a denominator"))
        return [t.times(_Term(coef=(inv,)), e.span) for t in expand(e.left)]
    if e.op == "^":
        if isinstance(e.left, INum) and isinstance(e.right, INum):
            return [_Term(scale=_power(e), span=e.span)]
        if not _has_groups(e.left) and _first_sum(e.left) is None:
            return [_Term(coef=(_coefficient(e, "an exponent"),), span=e.span)]
        if not (isinstance(e.right, INum) and float(e.right.value).is_integer() and e.right.value >= 1):
            raise _Unsupported("a power of a sum needs a whole-number exponent", e.span)
        base = expand(e.left)
        out = [t.formed_by(e.span) for t in base]
        for k in range(1, int(e.right.value)):
            # each factor of the power sums over its own copy of the indices: (sum_i x_i)^2 = sum_i sum_j x_i x_j
            copy = [_rename_binders(b, f"'{k}") for b in base]
            out = _limit([a.times(b, e.span) for a in out for b in copy], e)
        return out
    raise TypeError(e.op)


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


def _limit(terms: list[_Term], e: IExpr) -> list[_Term]:
    if len(terms) > MAX_TERMS_PER_STATEMENT:
        raise _Unsupported(f"this expands into more than {MAX_TERMS_PER_STATEMENT} monomials", e.span,
                           "split it into several energy statements or simplify it", "limit")
    return terms


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
        if domain in ("binary", "categorical"):
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
    factors = tuple(Factor(f.group, tuple(p.rename(mapping) for p in f.index), f.power, f.span) for f in factors)
    coef = tuple(sorted((iexpr_rename(c, mapping) for c in term.coef), key=repr))
    ranges = tuple(IndexRange(mapping[r.name], tuple(p.rename(mapping) for p in r.lo),
                              tuple(p.rename(mapping) for p in r.hi)) for r in ranges)
    guards = tuple(Guard(g.expr.rename(mapping), g.dim) for g in guards)
    return factors, coef, ranges, guards


def lower(checked: CheckedModel) -> ModelIR:
    sink = ErrorSink()
    el = Elaborator(checked)
    lines = checked.source.text.split("\n")
    monomials: list[Monomial] = []
    for term_no, decl in enumerate(checked.energies):
        span = decl.span
        try:
            terms = expand(el.elab(decl.expr, ()))
        except _Unsupported as e:
            sink.error(str(e), e.span or decl.expr.span, e.hint, kind=e.kind)
            continue
        except ZeroDivisionError:  # not expected: expand reports divisions by zero where they are
            sink.error("this term divides by zero", decl.expr.span, "divide by a nonzero number", kind="arithmetic")
            continue
        except OverflowError:
            sink.error("a constant in this term is too large: it overflows a float", decl.expr.span,
                       kind="arithmetic")
            continue
        merged: dict[tuple, Monomial] = {}
        for t in terms:
            factors = _simplify_factors(t.factors, checked.groups)
            r = _ranges(t, factors, checked, decl.expr.span, sink, lines)
            if r is None:
                continue
            factors, coef, ranges, guards = _canonical(t, factors, *r)
            key = (factors, coef, ranges, guards)
            if key in merged:
                merged[key].scale += t.scale
            else:  # equal monomials of one statement merge; the first one's origin is kept
                merged[key] = Monomial(0, t.scale, coef, factors, ranges, guards, span, term_no, t.span or span)
        huge = [m for m in merged.values() if not math.isfinite(m.scale)]
        if huge:
            sink.error("the constant factor of this product is too large: it overflows a float", huge[0].origin,
                       kind="arithmetic")
            continue
        monomials.extend(m for m in merged.values() if m.scale != 0.0)
    for k, m in enumerate(monomials):
        m.id = k
    sink.raise_if_any(checked.source)
    directed = checked.directed
    groups = {name: group_ir(g) for name, g in checked.groups.items() if name not in directed}
    params = {name: ParamIR(p.name, p.shape, p.constraints, _init(el, p.init), p.decl.span.line, p.decl.name_span)
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
