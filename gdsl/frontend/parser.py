"""Text -> AST with lark's LALR parser, reporting every syntax error of a file.

Recovery: after a syntax error the statement that holds it is blanked out
(replaced by spaces, so positions stay put) and the file is parsed again.
"""
from __future__ import annotations

import functools
import re
from importlib import resources

import lark
from lark import Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from ..errors import ErrorSink, GdslError, ModelErrors, Source, Span
from . import ast

MAX_SYNTAX_ERRORS = 25
STATEMENT_KEYWORD = re.compile(r"\b(visible|latent|param|energy)\b")
_EXPRESSION_STARTS = {"NAME", "NUMBER", "LPAR"}


@functools.lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    text = resources.files("gdsl.grammars").joinpath("gdl.lark").read_text()
    return lark.Lark(text, parser="lalr", lexer="basic", propagate_positions=True, maybe_placeholders=True)


def parse(source: Source) -> ast.Model:
    """Parse a whole file; raise ModelErrors listing every syntax error found."""
    sink = ErrorSink()
    text = source.text
    tree = None
    for _ in range(MAX_SYNTAX_ERRORS):
        try:
            tree = _parser().parse(text)
            break
        except UnexpectedInput as e:
            sink.errors.append(_syntax_error(e, text))
            blanked = _blank_statement(text, _offset(e, text))
            if blanked is None or blanked == text:
                break
            text = blanked
    if sink.errors:
        sink.raise_if_any(source)
    try:
        return _ToAst().transform(tree)
    except lark.exceptions.VisitError as e:  # raised from our own transformer
        if isinstance(e.orig_exc, GdslError):
            raise ModelErrors([e.orig_exc], source) from None
        raise


# recovery -------------------------------------------------------------------
def _offset(e: UnexpectedInput, text: str) -> int:
    if isinstance(e, UnexpectedEOF) or getattr(e, "pos_in_stream", None) is None:
        token = getattr(e, "token", None)
        if token is not None and getattr(token, "start_pos", None) is not None:
            return token.start_pos
        return len(text)
    return e.pos_in_stream


def _code_mask(text: str) -> str:
    """The text with comments blanked, so keywords inside comments are ignored."""
    return re.sub(r"#[^\n]*", lambda m: " " * len(m.group(0)), text)


def _blank_statement(text: str, offset: int) -> str | None:
    code = _code_mask(text)
    starts = [m.start() for m in STATEMENT_KEYWORD.finditer(code)]
    before = [s for s in starts if s < offset]
    if not before:
        return None  # the error is in the model header: nothing to skip to
    begin = before[-1]
    after = [s for s in starts if s >= offset]
    if after:
        end = after[0]
    else:
        close = code.rfind("}")
        end = close if close >= offset else len(text)
    if end <= begin:
        return None
    middle = "".join(ch if ch == "\n" else " " for ch in text[begin:end])
    return text[:begin] + middle + text[end:]


# messages -------------------------------------------------------------------
def _describe_token(token: Token) -> str:
    if token.type == "$END":
        return "end of file"
    return f"'{token.value}'"


def _expected(names) -> str:
    names = set(names)
    if _EXPRESSION_STARTS <= names or {"NAME", "NUMBER"} <= names:
        return "an expression"
    if names == {"NAME"}:
        return "a name"
    if names == {"NUMBER"} or names == {"NUMBER", "MINUS"}:
        return "a number"
    shown = []
    for n in sorted(names):
        if n == "$END":
            shown.append("end of file")
            continue
        try:
            pattern = _parser().get_terminal(n).pattern
            shown.append(f"'{pattern.value}'" if pattern.type == "str" else n.lower())
        except KeyError:
            shown.append(n.lower())
    shown = sorted(set(shown))
    if len(shown) > 6:
        shown = shown[:6] + ["..."]
    return "one of " + ", ".join(shown) if len(shown) > 1 else (shown[0] if shown else "something else")


def _hint_for(token_value: str, expected: set) -> str | None:
    if token_value == "*":
        return "write powers with '^' (x^2), not '**'"
    if token_value in ("visible", "latent", "param", "energy", "}"):
        return "the statement before this one is incomplete"
    if token_value == "=" and "~" in {str(e) for e in expected}:
        return None
    if token_value == "sum":
        return "'sum' is a keyword: write sum(e) or sum[i, j](e)"
    return None


def _syntax_error(e: UnexpectedInput, text: str) -> GdslError:
    line = getattr(e, "line", None) or 1
    column = getattr(e, "column", None) or 1
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else "?"
        shown = ch if ch.isprintable() else repr(ch)
        return GdslError(
            f"unexpected character '{shown}'",
            Span(line, column, line, column + 1),
            "names use letters, digits and '_'; comments start with '#'",
        )
    if isinstance(e, UnexpectedEOF) or (isinstance(e, UnexpectedToken) and e.token.type == "$END"):
        lines = text.splitlines() or [""]
        last = len(lines)
        col = len(lines[-1]) + 1
        exp = getattr(e, "expected", None) or ()
        return GdslError(
            f"unexpected end of file; expected {_expected(exp)}",
            Span(last, max(1, col - 1), last, col),
            "is a closing '}' or ')' missing?",
        )
    assert isinstance(e, UnexpectedToken)
    token = e.token
    end_col = (token.end_column or column + 1) if token.end_line == token.line else column + 1
    return GdslError(
        f"unexpected {_describe_token(token)}; expected {_expected(e.expected)}",
        Span(line, column, line, end_col),
        _hint_for(str(token.value), set(e.expected)),
    )


# tree -> AST ----------------------------------------------------------------
def _span(meta_or_token) -> Span:
    m = meta_or_token
    return Span(m.line, m.column, m.end_line, m.end_column)


def _number(token: Token) -> ast.Num:
    text = str(token)
    is_int = re.fullmatch(r"\d+", text) is not None
    return ast.Num(_span(token), int(text) if is_int else float(text), text)


@v_args(meta=True)
class _ToAst(Transformer):
    def start(self, meta, children):
        return children[0]

    def model(self, meta, children):
        name, args, *stmts = children
        model = ast.Model(_span(meta), str(name), _span(name), args or [])
        for s in stmts:
            if isinstance(s, ast.GroupDecl):
                model.groups.append(s)
            elif isinstance(s, ast.ParamDecl):
                model.params.append(s)
            else:
                model.energies.append(s)
        return model

    def model_args(self, meta, children):
        return [c for c in children if c is not None]

    def model_arg(self, meta, children):
        name, (value, text) = children
        return ast.ModelArg(_span(meta), str(name), value, text)

    def signed_number(self, meta, children):
        num = _number(children[-1])
        if len(children) == 2:
            return -num.value, "-" + num.text
        return num.value, num.text

    def group_decl(self, meta, children):
        role, name, shape, domain = children
        return ast.GroupDecl(_span(meta), str(role), str(name), _span(name), shape or [], domain)

    def shape(self, meta, children):
        return [c for c in children if c is not None]

    def domain(self, meta, children):
        name, *args = children
        return ast.Domain(_span(meta), str(name), [a for a in args if a is not None])

    def param_decl(self, meta, children):
        name, shape, *rest = children
        init = rest[-1] if rest and isinstance(rest[-1], ast.Init) else None
        constraints = [c for c in rest if isinstance(c, ast.Constraint)]
        return ast.ParamDecl(_span(meta), str(name), _span(name), shape or [], constraints, init)

    def constraint(self, meta, children):
        return ast.Constraint(_span(meta), str(children[0]))

    def init_dist(self, meta, children):
        name, *args = children
        return ast.Init(_span(meta), "dist", str(name), [a for a in args if a is not None])

    def init_value(self, meta, children):
        return ast.Init(_span(meta), "value", None, [children[0]])

    def energy_decl(self, meta, children):
        return ast.EnergyDecl(_span(meta), children[0])

    # expressions
    def number(self, meta, children):
        return _number(children[0])

    def name(self, meta, children):
        return ast.Name(_span(meta), str(children[0]))

    def call(self, meta, children):
        fn, *args = children
        return ast.Call(_span(meta), str(fn), list(args))

    def _bin(op):
        def build(self, meta, children):
            left, *_, right = children
            return ast.BinOp(_span(meta), op, left, right)

        return build

    add = _bin("+")
    sub = _bin("-")
    mul = _bin("*")
    div = _bin("/")
    matmul = _bin("@")
    pow = _bin("^")

    def neg(self, meta, children):
        return ast.Neg(_span(meta), children[-1])

    def index(self, meta, children):
        base, *subs = children
        return ast.Index(_span(meta), base, [s for s in subs if s is not None])

    def slice(self, meta, children):
        lo, hi = children
        return ast.Slice(_span(meta), lo, hi)

    def sum_all(self, meta, children):
        return ast.SumAll(_span(meta), children[0])

    def sum_index(self, meta, children):
        *binders, body = children
        return ast.SumIndex(_span(meta), binders, body)

    def binder(self, meta, children):
        name, op, bound = children
        return ast.Binder(_span(meta), str(name), str(op) if op is not None else None, bound)
