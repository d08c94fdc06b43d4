"""Number literals at their limits: every literal that does not fit is a model error with a span.

A literal made of digits only is an int64 (sizes, subscripts, whole-number exponents); any
other is a float64. Whatever its length, a literal that does not fit either is reported at
its own span (never an internal error: Python refuses to convert integers of more than 4,300
digits, which once ended in lark's VisitError), and so is a nonzero literal that a float64
would round to 0. Digits are ASCII only: Python's int() and float() also take the digits of
other scripts (U+0663 ARABIC-INDIC DIGIT THREE), which the language refuses.
"""
from __future__ import annotations

import unicodedata

import pytest

from gdsl import cli
from gdsl.driver import compile_source
from gdsl.errors import ModelErrors, Source

HEADER = "model m(n = 4) {\n    visible v[n]: binary\n    param b[n]\n"


def errors(text: str, until: str = "plan"):
    with pytest.raises(ModelErrors) as info:
        compile_source(Source(text, "m.gdl"), until=until)
    return info.value.errors


def energy(expr: str) -> str:
    return HEADER + f"    energy {expr}\n}}\n"


def column_of(text: str, needle: str) -> tuple[int, int]:
    """(line, column) of the first `needle` in `text`, 1-based."""
    k = text.index(needle)
    return text.count("\n", 0, k) + 1, k - (text.rfind("\n", 0, k) + 1) + 1


def check_cli(tmp_path, capsys, text: str) -> tuple[int, str]:
    path = tmp_path / "m.gdl"
    path.write_text(text, encoding="utf-8")
    status = cli.main(["check", str(path)])
    return status, capsys.readouterr().err


# integers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("digits", [20, 4_301, 4_400, 10_000])
def test_a_huge_integer_literal_is_a_model_error_at_its_span(digits, tmp_path, capsys):
    literal = "9" * digits
    text = energy(f"-{literal} * b @ v")
    (e,) = errors(text)
    assert e.kind == "limit"
    assert e.message.startswith("the integer 9999999999...9999999999 is too large" if digits > 24 else
                                f"the integer {literal} is too large")
    line, column = column_of(text, literal)
    assert (e.span.line, e.span.column, e.span.end_line, e.span.end_column) == \
        (line, column, line, column + digits)
    status, err = check_cli(tmp_path, capsys, text)
    assert status == 2, err  # a model error, not an internal one (3)
    assert "internal compiler error" not in err and "Traceback" not in err


@pytest.mark.parametrize("where", [
    "model m(n = X) {\n    visible v[n]: binary\n    param b[n]\n    energy -b @ v\n}\n",  # a size
    HEADER + "    energy -b[X] * v[0]\n}\n",                                                # a subscript
    "model m(n = 4) {\n    visible v[X]: binary\n    param b[n]\n    energy -sum(v)\n}\n",  # a shape
    HEADER + "    energy -sum(v)^X\n}\n",                                                  # an exponent
    HEADER + "    param c ~ normal(0, X)\n    energy -b @ v\n}\n",                           # an initialiser
])
def test_a_huge_integer_is_refused_wherever_it_is_written(where):
    literal = "1" + "0" * 5_000
    text = where.replace("X", literal)
    found = errors(text)
    assert found and found[0].kind == "limit" and "too large" in found[0].message
    assert (found[0].span.line, found[0].span.column) == column_of(text, literal)


def test_the_int64_boundary():
    assert errors(energy("-9223372036854775808 * b @ v"))[0].kind == "limit"  # 2^63
    ok = compile_source(Source(energy("-9223372036854775807 * b @ v"), "m.gdl"), until="ir")  # 2^63 - 1
    assert ok.ir.monomials[0].scale == -9223372036854775807.0


def test_leading_zeros_do_not_make_an_integer_large():
    compiled = compile_source(Source(energy("-" + "0" * 5_000 + "3 * b @ v"), "m.gdl"), until="ir")
    assert compiled.ir.monomials[0].scale == -3.0
    compiled = compile_source(Source("model m(n = 0003) {\n    visible v[n]: binary\n}\n", "m.gdl"), until="ir")
    assert compiled.ir.sizes == {"n": 3}


# floats ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("literal", ["1e99999", "1e400", "1.8e308", "9" * 400 + ".5",
                                     "1e" + "9" * 5_000, "1" * 10_000 + ".0"])
def test_a_float_too_large_is_a_model_error(literal):
    text = energy(f"-{literal} * b @ v")
    (e,) = errors(text)
    assert e.kind == "arithmetic" and "too large to be a float" in e.message
    assert (e.span.line, e.span.column) == column_of(text, literal)


@pytest.mark.parametrize("literal", ["0." + "0" * 5_000 + "1", "1e-400", "1e-99999", ".1e-330",
                                     "0." + "0" * 400 + "7e10"])
def test_a_nonzero_float_that_would_be_0_is_a_model_error(literal):
    text = energy(f"-{literal} * b @ v")
    (e,) = errors(text)
    assert e.kind == "arithmetic" and "too small to be a float" in e.message
    assert (e.span.line, e.span.column) == column_of(text, literal)
    assert "4.9e-324" in e.hint


@pytest.mark.parametrize("literal, value", [
    ("1e-320", 1e-320),  # subnormal: kept, with fewer significant digits
    ("5e-324", 5e-324),  # the smallest positive float
    ("0e-99999", 0.0), ("0." + "0" * 5_000, 0.0), ("1.7976931348623157e308", 1.7976931348623157e308),
    ("0." + "0" * 300 + "25", 2.5e-301),
])
def test_floats_that_fit_are_kept(literal, value):
    compiled = compile_source(Source(energy(f"-{literal} * b @ v - sum(v)"), "m.gdl"), until="ir")
    scales = sorted(m.scale for m in compiled.ir.monomials)
    assert scales == sorted([-1.0] + ([-value] if value else []))  # a term whose scale is 0 is dropped


# digits of other scripts ---------------------------------------------------------------------
NON_ASCII_DIGITS = ["\u0663", "\u06f3", "\u0969", "\u09e9", "\uff13", "\U0001d7d1", "\u1813", "\u0e53"]


def test_the_sample_covers_what_python_would_accept():
    for ch in NON_ASCII_DIGITS:
        assert unicodedata.decimal(ch) == int(ch) == float(ch), ch  # what the old lexer let through


@pytest.mark.parametrize("digit", NON_ASCII_DIGITS)
@pytest.mark.parametrize("template", [
    "model m(n = X) {\n    visible v[n]: binary\n    param b[n]\n    energy -b @ v\n}\n",
    HEADER + "    energy -X * b @ v\n}\n",
    HEADER + "    energy -1X * b @ v\n}\n",       # after an ASCII digit
    HEADER + "    energy -1.X * b @ v\n}\n",      # in a fraction
    HEADER + "    energy -1eX * b @ v\n}\n",      # in an exponent
    HEADER + "    energy -b[X] * v[0]\n}\n",      # a subscript
])
def test_digits_of_other_scripts_are_refused(template, digit):
    text = template.replace("X", digit)
    (e,) = errors(text)  # reported before parsing: the lexer would stop at the 'e' of 1e<digit>
    assert e.kind == "syntax"
    assert (e.span.line, e.span.column) == column_of(text, digit)
    assert f"'{digit}'" in e.message and e.hint == "numbers are written with the ASCII digits 0-9"


def test_digits_in_comments_are_fine_and_every_foreign_digit_is_reported():
    ok = HEADER + "    energy -b @ v  # \u0663 \uff13\n}\n"
    assert compile_source(Source(ok, "m.gdl"), until="ir").ir.monomials
    text = HEADER + "    energy -\u0663 * b @ v - \uff13\uff13 * sum(v)\n}\n"
    found = errors(text)
    assert [(e.span.line, e.span.column) for e in found] == [(4, 13), (4, 25), (4, 26)]


def test_a_non_ascii_digit_is_reported_like_any_model_error(tmp_path, capsys):
    status, err = check_cli(tmp_path, capsys, "model m(n = \u0663) {\n    visible v[n]: binary\n}\n")
    assert status == 2
    assert err.startswith(f"{tmp_path / 'm.gdl'}:1:13: error: unexpected character '\u0663' (U+0663), "
                          "a digit of another script\n")
    assert "   1 | model m(n = \u0663) {\n" in err and "\n                   ^\n" in err


# no literal ends in an internal error -------------------------------------------------------------
@pytest.mark.parametrize("literal", ["9" * 4_301, "9" * 4_300 + ".", "." + "9" * 4_400, "0" * 4_400,
                                     "9" * 4_400 + "e-4400", "1" + "0" * 4_400 + "e-4400", "0" * 4_400 + "1"])
def test_long_literals_never_end_in_an_internal_error(literal):
    text = energy(f"-{literal} * b @ v")
    try:
        compile_source(Source(text, "m.gdl"), until="py")
    except ModelErrors as e:
        assert all(x.span is not None for x in e.errors)
