"""dE/dtheta for every parameter, derived symbolically from the energy monomials.

A monomial is  scale * c_1 * ... * c_k * (variable factors); each parameter access
P[t] in the coefficients is a leaf. dE/dP[t] = scale * sum over the c_j holding P[t] of
(prod of the other c) * dc_j/dP[t], times the factors; it is scattered to P[t] for
every index assignment. Leaves of P with different subscripts (W[i, j] and W[j, i])
are separate terms whose contributions add, which is the chain rule over repeated
uses of one element. Parameters may enter non-linearly (exp(-2 * log_sigma[i])).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .. import ops
from ..errors import CompilerBug
from ..ir.model import IAccess, IBin, IExpr, INum, ISum, ISym, IUn, Monomial, iexpr_accesses, iexpr_text
from .plan import Dense, Plan

ONE = INum(1.0)


@dataclass(frozen=True)
class GradTerm:
    monomial: int
    index: tuple  # the subscript of P in this term
    derivative: IExpr  # d(prod of coefficients)/dP[index], without the monomial's scale
    dense: Optional[Dense]  # dE/dP = scale * rest * A (x) X, one BLAS call

    def text(self, m: Monomial) -> str:
        return f"m{m.id}: " + " * ".join([repr(m.scale), iexpr_text(self.derivative)] + [f.text() for f in m.factors])


# symbolic differentiation ------------------------------------------------------------
def _is_zero(e) -> bool:
    return e is None or (isinstance(e, INum) and e.value == 0.0)


def _mul(a: IExpr, b: IExpr) -> Optional[IExpr]:
    if _is_zero(a) or _is_zero(b):
        return None
    if a == ONE:
        return b
    if b == ONE:
        return a
    return IBin("*", a, b)


def _add(a, b, op="+"):
    if _is_zero(b):
        return a
    if _is_zero(a):
        return b if op == "+" else IUn("neg", b)
    return IBin(op, a, b)


def formula(f, a: IExpr, y: IExpr) -> Optional[IExpr]:
    """An operator-table derivative formula as IR, with "a" the argument and "y" = f(a); None is 0."""
    if isinstance(f, (int, float)):
        return None if f == 0 else INum(float(f))
    if f == "a":
        return a
    if f == "y":
        return y
    op, *args = f
    parts = [formula(g, a, y) for g in args]
    parts = [INum(0.0) if p is None else p for p in parts]
    if op == "neg":
        return IUn("neg", parts[0])
    if op in ("+", "-", "*", "/"):
        return IBin(op, parts[0], parts[1])
    ops.lookup(op)
    return IUn(op, parts[0])


def diff(e: IExpr, target: IAccess) -> Optional[IExpr]:
    """d e / d target, where every access equal to `target` is the variable; None means 0.

    A sum is differentiated term by term, d sum[j](f) = sum[j](d f), keeping its binders: the
    target is an element named outside the sum, so it must not use the sum's own indices
    (binder names are unique in lowered IR; a target that did would be a compiler bug)."""
    if isinstance(e, (INum, ISym)):
        return None
    if isinstance(e, IAccess):
        return ONE if e == target else None
    if isinstance(e, ISum):
        bound = {b.name for b in e.binders}
        if any(p.symbols() & bound for p in target.index):
            raise CompilerBug(f"differentiating by {iexpr_text(target)}, which uses the indices of the sum")
        d = diff(e.body, target)
        return None if d is None else ISum(e.binders, d)
    if isinstance(e, IUn):
        da = diff(e.arg, target)
        if da is None:
            return None
        a = e.arg
        if e.op == "neg":
            return IUn("neg", da)
        return _mul(formula(ops.lookup(e.op).derivative, a, e), da)
    assert isinstance(e, IBin)
    da, db = diff(e.left, target), diff(e.right, target)
    if e.op in "+-":
        return _add(da, db, e.op)
    if e.op == "*":
        return _add(_mul(da, e.right), _mul(e.left, db))
    if e.op == "/":
        first = _mul(da, IBin("/", ONE, e.right))
        second = None if db is None else IUn("neg", _mul(_mul(e.left, db), IBin("/", ONE, IBin("*", e.right, e.right))))
        return _add(first, second)
    if e.op == "^":
        if db is None:  # a^k: k a^(k-1) a'
            return _mul(_mul(e.right, IBin("^", e.left, IBin("-", e.right, ONE))), da)
        # a^b (b' log a + b a' / a)
        inner = _add(_mul(db, IUn("log", e.left)), _mul(e.right, _mul(da, IBin("/", ONE, e.left))))
        return _mul(e, inner)
    raise TypeError(e.op)


def coefficient_derivative(coef: tuple, target: IAccess) -> Optional[IExpr]:
    """d(c_1 * ... * c_k)/d target by the product rule."""
    total = None
    for j, c in enumerate(coef):
        dc = diff(c, target)
        if dc is None:
            continue
        term = dc
        for k, other in enumerate(coef):
            if k != j:
                term = _mul(term, other)
        total = _add(total, term)
    return total


def gradient_terms(plan: Plan) -> dict[str, list[GradTerm]]:
    """For each parameter (declaration order), the monomials it appears in and how to differentiate."""
    out: dict[str, list[GradTerm]] = {name: [] for name in plan.ir.params}
    for m in plan.monomials:
        leaves: list[IAccess] = []
        for c in m.coef:
            for a in iexpr_accesses(c):
                if a.kind == "param" and a not in leaves:
                    leaves.append(a)
        dense = _dense_of(plan, m)
        for leaf in leaves:
            d = coefficient_derivative(m.coef, leaf)
            if d is None:
                continue
            use_dense = dense if dense is not None and dense.param == leaf.name and leaf.index else None
            out[leaf.name].append(GradTerm(m.id, leaf.index, d, use_dense))
    return out


def _dense_of(plan: Plan, m: Monomial) -> Optional[Dense]:
    for name in m.groups:
        d = plan.groups[name].dense.get(m.id)
        if d is not None:
            return d
    return None


def dump(plan: Plan) -> str:
    lines = []
    for name, terms in gradient_terms(plan).items():
        lines.append(f"dE/d{name}:" + ("" if terms else " 0 (the parameter is not in the energy)"))
        for t in terms:
            m = plan.monomials[t.monomial]
            how = " (blas)" if t.dense else ""
            lines.append(f"  at {name}[{', '.join(str(i) for i in t.index)}] {t.text(m)}{how}")
    return "\n".join(lines) + "\n"
