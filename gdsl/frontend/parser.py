"""Text -> AST with lark's LALR parser, reporting every syntax error of a file.

Recovery: after a syntax error the statement that holds it is blanked out
(replaced by spaces, so positions stay put) and the file is parsed again.
Errors at the end of the file, in the model header or after the model's closing
brace stop the recovery: nothing after them could be parsed in a useful way.
"""
from __future__ import annotations

import functools
import math
import re
from importlib import resources

import lark
from lark import Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from ..errors import ErrorSink, GdslError, ModelErrors, Source, Span
from . import ast

MAX_SYNTAX_ERRORS = 25
MAX_NESTING = 256  # levels of expression nesting (deeper input would exhaust Python's stack)
MAX_INT = 2**63 - 1  # integer literals must fit the int64 of the generated kernels
STATEMENT_KEYWORD = re.compile(r"\b(visible|latent|param|energy|let|guide)\b")
KEYWORDS = {"MODEL", "ROLE", "PARAM", "ENERGY", "SUM", "LET", "GUIDE"}
STATEMENT_STARTS = {"ROLE", "PARAM", "ENERGY", "LET", "GUIDE"}
EXPRESSION_STARTS = {"NAME", "NUMBER", "LPAR"}
OPERATORS = {"PLUS", "MINUS", "STAR", "SLASH", "AT", "CIRCUMFLEX"}
OPENERS = {"(": ")", "[": "]", "{": "}"}
EXAMPLE_HEADER = "model NAME(n = 10, sigma = 1.0) { ... }"


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
            errors, resume = _syntax_errors(e, text)
            sink.errors.extend(errors)
            if resume is None:
                break
            blanked = _blank(text, *resume)
            if blanked is None or blanked == text:
                break
            text = blanked
    sink.raise_if_any(source)
    deep = _too_deep(tree)
    if deep is not None:
        sink.error(f"this expression is nested more than {MAX_NESTING} levels deep", deep,
                   "split it into several energy statements", kind="limit")
        sink.raise_if_any(source)
    builder = _ToAst()
    model = builder.transform(tree)
    if builder.errors:
        raise ModelErrors(builder.errors, source)
    return model


def _too_deep(tree) -> Span | None:
    """Where an expression is nested deeper than MAX_NESTING (found without recursion): the
    span of the outermost expression of its statement, which is where the user can act."""
    stack = [(tree, 1, None)]
    while stack:
        node, depth, top = stack.pop()
        if not isinstance(node, lark.Tree):
            continue
        if depth > MAX_NESTING:
            meta = (top or node).meta
            if getattr(meta, "empty", True):
                return Span(1, 1, 1, 2)
            return Span(meta.line, meta.column, meta.end_line, meta.end_column)
        for child in node.children:
            below = top if top is not None else None if node.data in ("start", "model") else child
            stack.append((child, depth + 1, below if isinstance(below, lark.Tree) else None))
    return None


# recovery -------------------------------------------------------------------
def _code_mask(text: str) -> str:
    """The text with comments blanked, so keywords inside comments are ignored."""
    return re.sub(r"#[^\n]*", lambda m: " " * len(m.group(0)), text)


def _blank(text: str, offset: int, skip_token: bool) -> str | None:
    """Blank the statement around `offset`: from its keyword to the next statement keyword
    (after the offending token, when that token is a keyword misused inside the statement)."""
    code = _code_mask(text)
    starts = [m.start() for m in STATEMENT_KEYWORD.finditer(code)]
    before = [s for s in starts if s < offset]
    if not before:
        return None  # the error is in the model header: nothing to skip to
    begin = before[-1]
    after = [s for s in starts if s > offset or (s == offset and not skip_token)]
    if after:
        end = after[0]
    else:
        close = code.rfind("}")
        end = close if close >= offset else len(text)
    if end <= begin:
        return None
    middle = "".join(ch if ch == "\n" else " " for ch in text[begin:end])
    return text[:begin] + middle + text[end:]


def _unclosed(code: str, end: int) -> list[tuple[int, str]]:
    """Brackets opened before `end` and not closed (offset, bracket), outermost first."""
    stack: list[tuple[int, str]] = []
    for k, ch in enumerate(code[:end]):
        if ch in OPENERS:
            stack.append((k, ch))
        elif ch in ")]}":
            if stack and OPENERS[stack[-1][1]] == ch:
                stack.pop()
    return stack


# positions --------------------------------------------------------------------
def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _span_at(text: str, offset: int, width: int = 1) -> Span:
    line, col = _line_col(text, offset)
    return Span(line, col, line, col + width)


def _where(text: str, offset: int) -> str:
    line, col = _line_col(text, offset)
    return f"line {line}, column {col}"


# messages -------------------------------------------------------------------
def _describe_token(token: Token) -> str:
    if token.type == "$END":
        return "end of file"
    return f"'{token.value}'"


def _terminal_text(name: str) -> str:
    if name == "$END":
        return "end of file"
    if name == "ROLE":
        return "'visible' or 'latent'"
    if name == "NAME":
        return "a name"
    if name == "NUMBER":
        return "a number"
    try:
        pattern = _parser().get_terminal(name).pattern
        return f"'{pattern.value}'" if pattern.type == "str" else name.lower()
    except KeyError:
        return name.lower()


def _expected(names) -> str:
    """The expected terminals in words: 'an expression', 'an operator', ... ."""
    names = set(names)
    parts = []
    if EXPRESSION_STARTS <= names:
        parts.append("an expression")
        names -= EXPRESSION_STARTS | {"MINUS", "PLUS", "SUM"}
    if names == {"MINUS", "NUMBER"} or names == {"NUMBER"}:
        return "a number"
    if OPERATORS <= names:
        parts.append("an operator")
        names -= OPERATORS | {"LPAR", "LSQB"}
    if STATEMENT_STARTS <= names:
        parts.append("a new statement")
        names -= STATEMENT_STARTS | {"NAME"}  # a name starts a conditional (x ~ ...)
    rest = sorted({_terminal_text(n) for n in names})
    if "end of file" in rest:  # say it last
        rest.remove("end of file")
        rest.append("end of file")
    parts += rest
    if not parts:
        return "something else"
    if len(parts) > 6:
        parts = parts[:6] + ["..."]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def _accepts(e: UnexpectedInput) -> set:
    """The terminals the parser would accept here: exact (lark's interactive parser), unlike
    `e.expected`, which merges the look-aheads of several LALR states."""
    ip = getattr(e, "interactive_parser", None)
    if ip is not None:
        try:
            return set(ip.accepts())
        except Exception:  # pragma: no cover - fall back to the coarser set
            pass
    return set(getattr(e, "expected", None) or ())


def _statement_keyword(code: str, offset: int) -> str | None:
    """The keyword of the statement that holds `offset` (None in the model header)."""
    found = None
    for m in STATEMENT_KEYWORD.finditer(code):
        if m.start() >= offset:
            break
        found = m.group(0)
    return found


def _syntax_errors(e: UnexpectedInput, text: str) -> tuple[list[GdslError], tuple[int, bool] | None]:
    """The errors for one parse failure, and where to resume: (offset, skip_token) or None."""
    code = _code_mask(text)
    if isinstance(e, UnexpectedCharacters):
        return [_bad_character(text, e.pos_in_stream)], (e.pos_in_stream, False)
    token = getattr(e, "token", None)
    if isinstance(e, UnexpectedEOF) or token is None or token.type == "$END":
        return _end_of_file(e, text, code), None
    assert isinstance(e, UnexpectedToken)
    accepts = _accepts(e)
    offset = token.start_pos
    width = max(1, len(str(token.value))) if token.end_line == token.line else 1
    span = _span_at(text, offset, width)
    found = _describe_token(token)
    # brackets opened in this statement and still open where it ends
    following = [m.start() for m in STATEMENT_KEYWORD.finditer(code) if m.start() > offset]
    statement_end = following[0] if following else len(code)
    unclosed = [(k, b) for k, b in _unclosed(code, statement_end) if b != "{" and k < offset]
    keyword = _statement_keyword(code, offset)

    misread = _name_misread_as_statement(e, text, code, accepts)
    if misread is not None:
        return [misread], (offset, False) if keyword is not None else None
    if accepts == {"$END"}:
        return [GdslError(f"unexpected {found} after the end of the model", span,
                          "statements belong inside the model's braces; is there an extra '}'?", kind="syntax")], None
    if token.type == "STAR" and offset > 0 and code[offset - 1] == "*":
        return [GdslError("'**' is not an operator; write powers with '^', as in x^2",
                          _span_at(text, offset - 1, 2), kind="syntax")], (offset, False)
    if token.type in KEYWORDS and "NAME" in accepts and not _starts_line(code, offset):
        return [GdslError(f"'{token.value}' is a keyword and cannot be used as a name", span,
                          "the keywords are model, visible, latent, param, energy, let, guide and sum; rename it",
                          kind="name")], \
            (offset, True)
    if (token.type in STATEMENT_STARTS or token.type == "RBRACE") and _starts_line(code, offset) \
            and not (accepts & STATEMENT_STARTS) and "RBRACE" not in accepts:
        # the statement before ends too early: point at its end, not at the next line
        end = len(code[:offset].rstrip())
        what = "the next statement" if token.type != "RBRACE" else "the '}' that closes the model"
        hint = _unclosed_hint(text, unclosed) or _incomplete_hint(accepts, keyword)
        return [GdslError(f"unexpected end of statement; expected {_expected(accepts)} before {what}",
                          _span_at(text, end) if end else span, hint, kind="syntax")], (offset, False)
    hint = None
    if token.type in ("RPAR", "RSQB", "RBRACE") or accepts & {"RPAR", "RSQB"}:
        hint = _unclosed_hint(text, unclosed)
    if hint is None:
        hint = _token_hint(token, accepts, keyword)
    return [GdslError(f"unexpected {found}; expected {_expected(accepts)}", span, hint, kind="syntax")], \
        (offset, False) if keyword is not None else None


def _name_misread_as_statement(e, text: str, code: str, accepts: set) -> GdslError | None:
    """`energy -x  y(1)`: a name after a complete expression is read as the start of a
    conditional (`y ~ ...`), so the parser fails one token later. Report the name itself."""
    if not accepts or not accepts <= {"LSQB", "TILDE"}:
        return None
    m = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*\Z", code[:e.token.start_pos])
    if m is None or _starts_line(code, m.start()):
        return None
    before = code[:m.start()].rstrip()
    if not before or not (before[-1] in ")]" or before[-1].isalnum() or before[-1] == "_"):
        return None
    return GdslError(f"unexpected '{m.group(1)}'; expected an operator, a new statement or '}}'",
                     _span_at(text, m.start(), len(m.group(1))),
                     "is an operator such as '*' missing before it?", kind="syntax")


def _starts_line(code: str, offset: int) -> bool:
    start = code.rfind("\n", 0, offset) + 1
    return not code[start:offset].strip()


def _unclosed_hint(text: str, unclosed) -> str | None:
    if not unclosed:
        return None
    k, b = unclosed[-1]
    return f"the '{b}' at {_where(text, k)} is never closed with '{OPENERS[b]}'"


def _incomplete_hint(accepts: set, keyword: str | None) -> str | None:
    if accepts in ({"COLON"}, {"COLON", "TILDE"}) and keyword in ("visible", "latent"):
        return ("a variable needs a domain or a conditional, as in 'visible v[n]: binary' or "
                "'visible v[n] ~ bernoulli(logits = a)'")
    if EXPRESSION_STARTS <= accepts:
        return "an operator is missing its right-hand side"
    return None


def _token_hint(token: Token, accepts: set, keyword: str | None) -> str | None:
    value = str(token.value)
    if accepts == {"LPAR", "LSQB"}:
        return "'sum' is a keyword: write sum(e) or sum[i, j](e)"
    if accepts <= {"MINUS", "NUMBER"} and accepts:
        return "a model argument needs a number as its default: n = 10 for a size, sigma = 1.0 for a constant"
    if accepts == {"LPAR"} and keyword is None:
        return f"write the arguments in parentheses, even when there are none: {EXAMPLE_HEADER}"
    if accepts == {"MODEL"}:
        return f"a .gdl file holds one model: {EXAMPLE_HEADER}"
    if value == "=" and keyword == "energy":
        return "an energy statement is just 'energy EXPR', with no name or '='"
    if value == "sum":
        return "'sum' is a keyword: write sum(e) or sum[i, j](e)"
    if token.type in STATEMENT_STARTS:
        return "the statement before this one is incomplete"
    if token.type in ("NAME", "NUMBER") and "COMMA" in accepts:
        return "is a ',' missing before it?"
    if token.type in ("NAME", "NUMBER", "LPAR") and OPERATORS <= accepts:
        return "is an operator such as '*' missing before it?"
    return _incomplete_hint(accepts, keyword) if accepts in ({"COLON"}, {"COLON", "TILDE"}) else None


def _bad_character(text: str, offset: int) -> GdslError:
    ch = text[offset] if offset < len(text) else "?"
    span = _span_at(text, offset)
    if ch == ";":
        return GdslError("unexpected character ';'", span,
                         "statements need no ';': start each one with its keyword", kind="syntax")
    if ch in "\"'`":
        return GdslError("unexpected quote " + (f"'{ch}'" if ch != "'" else '"\'"'), span,
                         "there are no strings in gdl", kind="syntax")
    if ch.isprintable() and not ch.isspace():
        hint = ("names use ASCII letters, digits and '_'" if ch.isalpha() or ch.isdigit() else
                "names use ASCII letters, digits and '_'; comments start with '#'")
        return GdslError(f"unexpected character '{ch}'", span, hint, kind="syntax")
    return GdslError(f"unexpected character U+{ord(ch):04X}", span,
                     "remove it: only comments may hold characters like this", kind="syntax")


def _end_of_file(e: UnexpectedInput, text: str, code: str) -> list[GdslError]:
    if not code.strip():
        return [GdslError(f"the file has no model in it; it should start with {EXAMPLE_HEADER}",
                          Span(1, 1, 1, 2), kind="syntax")]
    unclosed = _unclosed(code, len(code))
    if unclosed:
        out = []
        for k, b in unclosed[-3:]:
            what = "the model's '{'" if b == "{" and k == code.find("{") else f"this '{b}'"
            out.append(GdslError(f"{what} is never closed: the file ends before its '{OPENERS[b]}'",
                                 _span_at(text, k), f"add the missing '{OPENERS[b]}'", kind="syntax"))
        return out
    end = len(code.rstrip())
    return [GdslError(f"unexpected end of file; expected {_expected(_accepts(e))}",
                      _span_at(text, max(0, end - 1)), kind="syntax")]


# tree -> AST ----------------------------------------------------------------
def _span(meta_or_token) -> Span:
    m = meta_or_token
    return Span(m.line, m.column, m.end_line, m.end_column)


def _number(token: Token, errors: list) -> ast.Num:
    text = str(token)
    span = _span(token)
    if re.fullmatch(r"\d+", text):
        value = int(text)
        if value > MAX_INT:
            errors.append(GdslError(f"the integer {_short(text)} is too large (the largest is 2^63 - 1)", span,
                                    kind="limit"))
            value = 1
        return ast.Num(span, value, text)
    value = float(text)
    if not math.isfinite(value):
        errors.append(GdslError(f"the number {_short(text)} is too large to be a float", span,
                                "the largest float is about 1.8e308", kind="arithmetic"))
        value = 1.0
    return ast.Num(span, value, text)


def _short(text: str) -> str:
    return text if len(text) <= 24 else text[:10] + "..." + text[-10:]


@v_args(meta=True)
class _ToAst(Transformer):
    """Builds the AST; number literals that cannot be represented are collected in `errors`."""

    def __init__(self):
        super().__init__()
        self.errors: list[GdslError] = []
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
            elif isinstance(s, ast.LetDecl):
                model.lets.append(s)
            elif isinstance(s, ast.SampleDecl):
                model.samples.append(s)
            elif isinstance(s, tuple) and s[0] == "guide":
                if model.guide_span is not None:
                    self.errors.append(GdslError(
                        f"a model has one guide block (the first is at line {model.guide_span.line})",
                        s[1], "put all the guide's statements in one block", kind="directed"))
                    continue
                model.guide_span = s[1]
                for g in s[2]:
                    g.in_guide = True
                    (model.lets if isinstance(g, ast.LetDecl) else model.samples).append(g)
                    model.guide.append(g)
            else:
                model.energies.append(s)
        return model

    def model_args(self, meta, children):
        return [c for c in children if c is not None]

    def model_arg(self, meta, children):
        name, (value, text) = children
        return ast.ModelArg(_span(meta), str(name), value, text)

    def signed_number(self, meta, children):
        num = _number(children[-1], self.errors)
        if len(children) == 2:
            return -num.value, "-" + num.text
        return num.value, num.text

    def group_decl(self, meta, children):
        role, name, shape, domain = children
        return ast.GroupDecl(_span(meta), str(role), str(name), _span(name), shape or [], domain)

    def group_dist(self, meta, children):
        role, name, shape, dist = children
        return ast.GroupDecl(_span(meta), str(role), str(name), _span(name), shape or [], None, dist)

    def let_decl(self, meta, children):
        name, expr = children
        return ast.LetDecl(_span(meta), str(name), _span(name), expr)

    def sample_decl(self, meta, children):
        name, indices, dist = children
        return ast.SampleDecl(_span(meta), str(name), _span(name), indices, dist)

    def sample_index(self, meta, children):
        return [str(c) for c in children if c is not None]

    def guide_block(self, meta, children):
        return ("guide", _span(meta), [c for c in children if c is not None])

    def dist(self, meta, children):
        family, *args = children
        return ast.Dist(_span(meta), str(family), [a for a in args if a is not None])

    def keyword_arg(self, meta, children):
        name, value = children
        return ast.DistArg(_span(meta), str(name), value)

    def positional_arg(self, meta, children):
        return ast.DistArg(_span(meta), None, children[0])

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
        return _number(children[0], self.errors)

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
