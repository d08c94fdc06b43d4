"""Spans through the IR, and the kinds of errors.

Lowering keeps the span of every expression node, of each monomial's product (its origin)
and of each factor's access, so the analyses point at the text at fault and quote it as
the user wrote it, never in IR notation (no `term m0 (...)`, no renamed indices)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from gdsl.driver import compile_source
from gdsl.errors import KINDS, CompilerBug, ErrorSink, GdslError, ModelErrors, Source, Span, excerpt
from gdsl.ir.model import IAccess, iexpr_walk

ROOT = Path(__file__).resolve().parents[1]
ERRORS = Path(__file__).parent / "errors"


def _text(source: str, span: Span) -> str:
    line = source.split("\n")[span.line - 1]
    assert span.end_line == span.line
    return line[span.column - 1:span.end_column - 1]


def _errors(text: str, name: str = "m.gdl") -> list[GdslError]:
    with pytest.raises(ModelErrors) as info:
        compile_source(Source(text, name), until="plan")
    return info.value.errors


def _corpus_errors(name: str) -> list[GdslError]:
    return _errors((ERRORS / f"{name}.gdl").read_text(encoding="utf-8"), f"{name}.gdl")


# spans kept through lowering ------------------------------------------------------------
def test_monomials_keep_their_product_and_their_factors_accesses():
    text = (ROOT / "models" / "rbm.gdl").read_text()
    ir = compile_source(Source(text, "rbm.gdl"), until="ir").ir
    origins = [_text(text, m.origin) for m in ir.monomials]
    assert origins == ["v @ W @ h", "b @ v", "c @ h"]
    assert [[_text(text, f.span) for f in m.factors] for m in ir.monomials] == [["v", "h"], ["v"], ["h"]]
    assert all(m.span.line == 12 for m in ir.monomials)  # the statement: what dumps and comments show
    assert _text(text, ir.groups["v"].span) == "v" and _text(text, ir.params["W"].span) == "W"


def test_conditional_arguments_carry_spans_down_to_each_access():
    text = (ROOT / "models" / "nade.gdl").read_text()
    ir = compile_source(Source(text, "nade.gdl"), until="ir").ir
    (cond,) = ir.directed.model
    logits = cond.arg("logits")
    assert _text(text, logits.span) == "b[i] + V[i] @ sigmoid(c + W[:, :i] @ x[:i])"
    written = [_text(text, a.span) for a in iexpr_walk(logits) if isinstance(a, IAccess)]
    assert written == ["b[i]", "V[i]", "c", "W[:, :i]", "x[:i]"]
    assert cond.free_names == ("i",)


def test_sum_binders_carry_the_span_of_their_name():
    text = "model m(n = 4) {\n    visible v[n]: binary\n    energy -sum[i, j < i](v[i] * v[j])\n}\n"
    ir = compile_source(Source(text, "m.gdl"), until="ir").ir
    (m,) = ir.monomials
    assert _text(text, m.origin) == "v[i] * v[j]"
    assert [_text(text, f.span) for f in m.factors] == ["v[i]", "v[j]"]


# messages quote the source, never the IR ------------------------------------------------
IR_TEXT = re.compile(r"term m\d|\bi\d\b|\bt\d+\b| for \w+ in \[")  # monomial text, canonical/fresh indices


@pytest.mark.parametrize("name, quoted", [
    ("binary_quartic", "'(v @ L @ v)^2'"),
    ("real_cubed", "'v^3'"),
    ("real_coupled", "'T[i, j, k] * v[i] * v[j] * v[k]'"),
    ("categorical_lateral", "'y[i, a] * T[a, b] * y[i + 1, b]'"),
    ("lateral_unsolvable", "'v[2 * i]'"),
    ("directed_not_earlier", "'x[j]'"),
    ("directed_not_earlier_named", "'x[j2 + 1]'"),
    ("index_no_range", "'i'"),
    ("directed_sum_no_range", "'j'"),
])
def test_analysis_messages_quote_the_source(name, quoted):
    errors = _corpus_errors(name)
    assert quoted in errors[0].message
    source = (ERRORS / f"{name}.gdl").read_text()
    for e in errors:
        assert not IR_TEXT.search(e.message), e.message
        assert e.span is not None and f"'{_text(source, e.span)}'" in e.message  # the caret is on the quote


def test_the_real_variable_error_points_at_its_declared_name_without_searching_text():
    # the name on the line after `visible`: searching the declaration's line for it found nothing
    text = "model m(n = 3) {\n    latent h[n]: binary\n    visible\n      r[n]: real\n    energy -sum(r) * sum(h)\n}\n"
    (e,) = _errors(text)
    assert (e.span.line, e.span.column, e.span.end_column) == (4, 7, 8) and e.kind == "domain"


# error kinds ------------------------------------------------------------------------------
@pytest.mark.parametrize("name, kinds", [
    ("binary_quartic", ["structure"]),
    ("real_cubed", ["domain"]),
    ("real_coupled", ["domain"]),
    ("real_without_quadratic", ["domain"]),
    ("categorical_lateral", ["domain"]),
    ("lateral_unsolvable", ["index"]),
    ("index_no_range", ["index", "index"]),
    ("sum_in_function", ["structure"]),
    ("sum_in_exponent", ["structure"]),
    ("too_many_monomials", ["limit"]),
    ("divide_by_zero", ["arithmetic"]),
    ("constant_overflow", ["arithmetic"]),
    ("product_overflow", ["arithmetic"]),
    ("directed_not_earlier", ["directed"]),
    ("directed_not_earlier_named", ["directed", "directed"]),
    ("directed_sum_no_range", ["index"]),
])
def test_errors_of_the_ir_and_analyses_have_kinds(name, kinds):
    errors = _corpus_errors(name)
    assert [e.kind for e in errors] == kinds
    assert all(e.kind in KINDS for e in errors)


def test_kind_defaults_and_validation():
    sink = ErrorSink()
    sink.error("a", Span(1, 1, 1, 2))
    sink.error("b", Span(2, 1, 2, 2), "hint", kind="shape")
    assert [e.kind for e in sink.errors] == ["model", "shape"]
    assert GdslError("x").kind == "model"
    with pytest.raises(CompilerBug):
        GdslError("x", kind="bogus")
    both = ModelErrors(list(reversed(sink.errors)))
    assert both.kind == "model"  # the first error's, in source order
    # the kind is not printed: the report format is unchanged
    assert both.format(Source("aa\nbb\n", "f.gdl")).startswith("f.gdl:1:1: error: a\n")


def test_excerpt_quotes_a_span_shortened_when_long():
    lines = ["    energy -(v @ W @ h) - b @ v", "x" * 100]
    assert excerpt(lines, Span(1, 14, 1, 23)) == "v @ W @ h"
    assert excerpt(lines, Span(1, 12, 2, 5)) == "-(v @ W @ h) - b @ v ..."  # cut at the end of its line
    long = excerpt(lines, Span(2, 1, 2, 101))
    assert len(long) <= 40 and " ... " in long
    assert excerpt(["\tx\x1b"], Span(1, 1, 1, 4)) == "x\ufffd"  # as shown under an error
