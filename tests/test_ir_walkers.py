"""The IR expression core: one traversal (children / rebuild / walk / scoped walk / map) that
every walker uses, and how each walker treats a sum (ISum) and its binders."""
from __future__ import annotations

import pytest

from gdsl.analysis.gradients import diff
from gdsl.errors import CompilerBug, Span
from gdsl.ir.model import (Binder, IAccess, IBin, INum, ISum, ISym, IUn, iexpr_accesses, iexpr_children,
                           iexpr_index_names, iexpr_map, iexpr_rebuild, iexpr_rename, iexpr_replace,
                           iexpr_scoped_walk, iexpr_text, iexpr_walk)
from gdsl.poly import Poly

S = Span(3, 5, 3, 9)


def acc(name, *idx, kind="param", span=None):
    return IAccess(kind, name, tuple(Poly.sym(i) if isinstance(i, str) else Poly.const(i) for i in idx), span)


def binder(name, hi=(), span=None):
    return Binder(name, (), tuple(Poly.sym(h) for h in hi), span)


# sum[j < i](W[i, j] * x[j]) + exp(b[i])
W_IJ, X_J, B_I = acc("W", "i", "j"), acc("x", "j", kind="group"), acc("b", "i")
SUM = ISum((binder("j", ("i",)),), IBin("*", W_IJ, X_J))
EXPR = IBin("+", SUM, IUn("exp", B_I))


def test_children_and_rebuild():
    assert iexpr_children(SUM) == (SUM.body,)
    assert iexpr_children(EXPR) == (SUM, IUn("exp", B_I))
    assert iexpr_children(W_IJ) == ()
    assert iexpr_rebuild(EXPR, iexpr_children(EXPR)) is EXPR  # unchanged children: the same node
    s = ISum(SUM.binders, SUM.body, S)
    rebuilt = iexpr_rebuild(s, (INum(1.0),))
    assert rebuilt == ISum(SUM.binders, INum(1.0)) and rebuilt.span == S


def test_walk_is_preorder_and_enters_sums():
    nodes = list(iexpr_walk(EXPR))
    assert nodes[0] is EXPR and nodes[1] is SUM
    assert [n for n in nodes if isinstance(n, IAccess)] == [W_IJ, X_J, B_I]


def test_scoped_walk_gives_the_enclosing_binders():
    scopes = {n: tuple(b.name for b in bs) for n, bs in iexpr_scoped_walk(EXPR) if isinstance(n, IAccess)}
    assert scopes == {W_IJ: ("j",), X_J: ("j",), B_I: ()}
    nested = ISum((binder("k"),), ISum((binder("l"),), acc("A", "k", "l")))
    (deepest,) = [bs for n, bs in iexpr_scoped_walk(nested) if isinstance(n, IAccess)]
    assert [b.name for b in deepest] == ["k", "l"]  # outermost first


def test_accesses_inside_sums_are_found():
    assert list(iexpr_accesses(EXPR)) == [W_IJ, X_J, B_I]


def test_index_names_are_the_free_ones_inside_sums_too():
    assert iexpr_index_names(SUM) == {"i"}  # j is bound; i is used by the bound and by W[i, j]
    assert iexpr_index_names(EXPR) == {"i"}
    assert iexpr_index_names(SUM.body) == {"i", "j"}
    # a bound that uses an earlier binder of the same sum does not make it free
    s = ISum((binder("a"), binder("b", ("a",))), acc("A", "a", "b"))
    assert iexpr_index_names(s) == set()
    assert iexpr_index_names(ISum((binder("j"),), ISym("index", "q"))) == {"q"}


def test_rename_reaches_inside_sums_and_renames_binders_with_their_uses():
    renamed = iexpr_rename(EXPR, {"i": "a0"})
    assert renamed == IBin("+", ISum((binder("j", ("a0",)),), IBin("*", acc("W", "a0", "j"), X_J)),
                           IUn("exp", acc("b", "a0")))
    # renaming a bound index renames the binder too: the sum means the same
    alpha = iexpr_rename(SUM, {"j": "j'1"})
    assert alpha == ISum((binder("j'1", ("i",)),), IBin("*", acc("W", "i", "j'1"), acc("x", "j'1", kind="group")))
    assert iexpr_text(alpha) == "sum[j'1]((W[i, j'1] * x[j'1]))"
    assert iexpr_rename(ISym("index", "i"), {"i": "k"}) == ISym("index", "k")
    assert iexpr_rename(ISym("size", "i"), {"i": "k"}) == ISym("size", "i")  # only indices


def test_replace_reaches_inside_sums_top_down():
    new = acc("V", "j")
    out = iexpr_replace(EXPR, X_J, new)
    assert list(iexpr_accesses(out)) == [W_IJ, new, B_I]
    # the outermost match is replaced and the replacement is not searched again
    f = lambda a: IUn("exp", a)  # noqa: E731
    assert iexpr_replace(f(f(B_I)), f(B_I), B_I) == f(B_I)
    assert iexpr_replace(EXPR, SUM, INum(0.0)) == IBin("+", INum(0.0), IUn("exp", B_I))


def test_map_is_bottom_up_and_keeps_spans():
    e = IBin("*", INum(2.0, S), ISum((binder("j"),), acc("b", "j", span=S), S), S)
    seen = []

    def visit(node):
        seen.append(type(node).__name__)
        return INum(3.0) if node == INum(2.0) else node

    out = iexpr_map(e, visit)
    assert seen == ["INum", "IAccess", "ISum", "IBin"]
    assert out == IBin("*", INum(3.0), e.right) and out.span == S and out.right is e.right


def test_spans_take_no_part_in_equality_hash_or_repr():
    a, b = acc("W", "i", span=S), acc("W", "i")
    assert a == b and hash(a) == hash(b) and repr(a) == repr(b)
    assert ISum((binder("j", span=S),), a) == ISum((binder("j"),), b)
    assert iexpr_rename(a, {"i": "k"}).span == S


def test_diff_goes_through_sums():
    assert diff(ISum((binder("j"),), IBin("*", B_I, acc("c", "j"))), B_I) == ISum((binder("j"),), acc("c", "j"))
    assert diff(SUM, B_I) is None
    with pytest.raises(CompilerBug):
        diff(SUM, W_IJ)  # W[i, j] names the sum's own index j: not an element outside it
