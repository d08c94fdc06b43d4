"""Text -> AST with lark's LALR parser, reporting every syntax error of a file.

Recovery: after a syntax error the statement that holds it is blanked out
(replaced by spaces, so positions stay put) and the file is parsed again.
Errors at the end of the file, in the model header or after the model's closing
brace stop the recovery: nothing after them could be parsed in a useful way.

Depth: lark's LALR parser needs no recursion, but its trees are left-nested along a chain
such as `a - b - c - ...` (as deep as the chain is long). The tree is turned into the AST
without recursion (`_build`), which also measures each expression's nesting depth: every
pair of parentheses, function call, subscript, sum, unary minus and operator counts one
level, except that a chain of additions and subtractions (`a + b - c - ...`) counts one
level however long it is. The AST keeps binary `BinOp`s (left-nested along a chain); every
stage walks a chain's left spine with a loop (`ast.left_spine`), and lowering balances long
sums (ir/lower.py), so only real nesting, at most MAX_NESTING levels, becomes recursion.

Speed: lark parses in pure Python, and how the tree is made costs as much as the parse. So
lark makes `_Node`s (its `tree_class`), each computing its span from its first and last
child, as `propagate_positions` would but for a fraction of its cost; lark keeps every token
in the tree (`keep_all_tokens`) so that spans include brackets, and `_Node` drops the ones
the AST builder does not read. The cyclic garbage collector is paused while the tree and
the AST are made (`_collector_paused`): they are acyclic, freed by reference counting, and
the collector, run every few hundred allocations, scanned the growing tree again and again.
"""
from __future__ import annotations

import contextlib
import functools
import gc
import math
import re
import threading
from importlib import resources

import lark
from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from ..errors import ErrorSink, GdslError, ModelErrors, Source, Span
from . import ast

MAX_SYNTAX_ERRORS = 25
MAX_NESTING = 256  # levels of expression nesting, counted as the module docstring says (docs/language.md)
MAX_INT = 2**63 - 1  # integer literals must fit the int64 of the generated kernels
MAX_INT_DIGITS = len(str(MAX_INT))  # longer integers are too large without converting them
MAX_SOURCE_CHARS = 10_000_000  # a longer file is refused before it is parsed (driver.compile_source)
STATEMENT_KEYWORD = re.compile(r"\b(visible|latent|param|energy|let|guide|discriminator|denoiser|time)\b")
KEYWORDS = {"MODEL", "ROLE", "PARAM", "ENERGY", "SUM", "LET", "GUIDE", "DISCRIMINATOR", "DENOISER", "TIME", "FROM"}
STATEMENT_STARTS = {"ROLE", "PARAM", "ENERGY", "LET", "GUIDE", "DISCRIMINATOR", "DENOISER", "TIME"}
EXPRESSION_STARTS = {"NAME", "NUMBER", "LPAR"}
OPERATORS = {"PLUS", "MINUS", "STAR", "SLASH", "AT", "CIRCUMFLEX"}
OPENERS = {"(": ")", "[": "]", "{": "}"}
EXAMPLE_HEADER = "model NAME(n = 10, sigma = 1.0) { ... }"


def _grammar_text() -> str:
    return resources.files("gdsl.grammars").joinpath("gdl.lark").read_text()


@functools.lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    global _DROPPED
    text = _grammar_text()
    parser = lark.Lark(text, parser="lalr", lexer="basic", propagate_positions=False, maybe_placeholders=True,
                       keep_all_tokens=True, tree_class=_Node)
    defined = set(_DEFINED_TERMINAL.findall(text))
    _DROPPED = frozenset(t.name for t in parser.terminals if t.name not in defined)
    for rule in parser.rules:
        # After each reduction lark looks the rule's name up in a table keyed by plain strings;
        # the name is a lark Token, whose __eq__ is Python code: an equal plain string is
        # compared in C (a tenth of the parse of `((((...))))`).
        rule.origin.name = str(rule.origin.name)
    return parser


_DEFINED_TERMINAL = re.compile(r"^([A-Z][A-Z0-9_]*)(?:\.-?\d+)?\s*:", re.M)
# The terminals lark names after a literal string of a rule ("(" is LPAR), which it leaves out
# of a tree unless told to keep every token; the grammar never writes a terminal it defines
# (MINUS, NAME ...) as a literal (tests/test_limits.py checks this against lark's own choice).
_DROPPED: frozenset = frozenset()


class _Node:
    """A parse tree node (lark's `tree_class`): the rule (or alias) name, the children the AST
    builder reads, and the span from the first to the last child, brackets and keywords
    included (what lark's `propagate_positions` gives). Rules lark inlines (`__x_star_0`) keep
    every token: their children are spliced into the parent, which computes its span and drops
    the tokens."""

    __slots__ = ("data", "children", "line", "column", "end_line", "end_column")

    def __init__(self, data: str, children: list):
        self.data = data
        first = children[0] if children else None
        last = children[-1] if children else None
        if first is None or last is None or first.line is None or last.line is None:
            first, last = _ends(children)
        if first is None:
            self.line = self.column = self.end_line = self.end_column = None
        else:
            self.line, self.column = first.line, first.column
            self.end_line, self.end_column = last.end_line, last.end_column
        if data[0] != "_":
            dropped = _DROPPED
            children = [c for c in children if c.__class__ is not Token or c.type not in dropped]
        self.children = children


def _ends(children: list):
    """The first and last children that have a position (not None, not an empty node)."""
    placed = [c for c in children if c is not None and c.line is not None]
    return (placed[0], placed[-1]) if placed else (None, None)


@contextlib.contextmanager
def _collector_paused():
    """The cyclic garbage collector off, and back as it was: making a tree allocates an object
    per token, and the collector's passes over the growing heap cost a third of the parse."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def parse(source: Source) -> ast.Model:
    """Parse a whole file; raise ModelErrors listing every syntax error found."""
    with _collector_paused():
        return _parse(source)


def _parse(source: Source) -> ast.Model:
    sink = ErrorSink()
    text = source.text
    foreign = _foreign_digits(text)
    if foreign:
        raise ModelErrors(foreign, source)
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
    builder = _ToAst()
    model, deepest = _build(tree, builder)
    if deepest is not None:
        depth, span = deepest
        builder.errors.append(GdslError(
            f"this expression is nested {depth} levels deep; the limit is {MAX_NESTING}", span,
            "remove redundant parentheses or split the expression (a sum such as a + b - c counts "
            "as one level, however long)", kind="limit"))
    if builder.errors:
        raise ModelErrors(builder.errors, source)
    return model


# tree -> AST without recursion, measuring the nesting depth --------------------
_SUM_CHAIN = frozenset({"add", "sub"})
_NESTING = _SUM_CHAIN | {"mul", "div", "matmul", "neg", "pow", "call", "index", "sum_all", "sum_index", "paren"}
_LEAVES = frozenset({"name", "number"})


def _level(parent: str, position: int, child: str) -> int:
    """The levels `child` (the tree at `position` among `parent`'s children) adds to the depth:
    one for a nesting construct, none for the left operand that continues a chain of + and -
    (a - b - c is sub(sub(a, b), c)), for names, numbers, slices, binders and statements."""
    if child not in _NESTING:
        return 0
    if position == 0 and parent in _SUM_CHAIN and child in _SUM_CHAIN:
        return 0
    return 1


def _build(tree: _Node, builder: "_ToAst"):
    """The AST of a parse tree, built bottom up with an explicit stack (lark's Transformer
    recurses once per tree level, and a chain of n terms is n levels deep); and the deepest
    expression nested more than MAX_NESTING levels, as (depth, span), or None. Names and
    numbers are built as soon as their parent is entered: they are half the nodes of an
    expression, nest nothing, and lie as deep as their parent (which is measured first)."""
    build = builder.methods()
    values: list = []
    stack: list = [(tree, 0, False)]
    deepest = None
    while stack:
        node, depth, built = stack.pop()
        if node.__class__ is not _Node:
            values.append(node)  # a token, a name or number already built, or None for an optional part left out
            continue
        if built:
            n = len(node.children)
            children = values[len(values) - n:] if n else []
            del values[len(values) - n:]
            values.append(build[node.data](node, children))
            continue
        if depth > MAX_NESTING and (deepest is None or depth > deepest[0]):
            deepest = (depth, _span(node))
        stack.append((node, depth, True))
        children = node.children
        for k in range(len(children) - 1, -1, -1):
            child = children[k]
            if child.__class__ is not _Node:
                stack.append((child, depth, False))
                continue
            data = child.data
            if data in _LEAVES:
                value = build[data](child, child.children)
                value.depth = depth  # the levels around it, for lets written out (directed_checks)
                stack.append((value, depth, False))
                continue
            stack.append((child, depth + _level(node.data, k, data), False))
    return values[0], deepest


_FOREIGN_DIGIT = re.compile(r"(?![0-9])\d")  # a decimal digit of another script (U+0663, U+FF13 ...)


def _foreign_digits(text: str) -> list[GdslError]:
    """Digits other than 0-9 outside comments, found before parsing: Python's int() and float()
    read them as numbers, the language does not, and the lexer may stop earlier (at the 'e' of
    `1e<digit>`), so they are reported here, each at its own position."""
    out = []
    for m in _FOREIGN_DIGIT.finditer(_code_mask(text)):
        ch = m.group(0)
        out.append(GdslError(f"unexpected character '{ch}' (U+{ord(ch):04X}), a digit of another script",
                             _span_at(text, m.start()), "numbers are written with the ASCII digits 0-9",
                             kind="syntax"))
        if len(out) == MAX_SYNTAX_ERRORS:
            break
    return out


# recovery -------------------------------------------------------------------
def _code_mask(text: str) -> str:
    """What recovery reads: the text with comments blanked, so keywords inside comments are
    ignored. For a text that `_blank` returned, the text as if only the statements with errors
    had been blanked (see `_blank`); so the messages do not depend on the other blanking."""
    known, code = getattr(_RECOVERY, "mask", (None, None))
    if known is text:
        return code
    code = re.sub(r"#[^\n]*", lambda m: " " * len(m.group(0)), text)
    _RECOVERY.mask = (text, code)  # `_syntax_errors` and `_blank` both ask for it
    return code


_RECOVERY = threading.local()  # .mask: (a text, what `_code_mask` gives for it), per thread


def _blank(text: str, offset: int, skip_token: bool) -> str | None:
    """Blank the statement around `offset`: from its keyword to the next statement keyword
    (after the offending token, when that token is a keyword misused inside the statement).

    The text returned, which the parser reads next, also has the complete statements before
    that one blanked (those at the model's level: a guide block the statement is in is kept
    whole). They parsed, so the parser reaches the same state at the statement's keyword
    through white space and fails at the same tokens after it, but lark skips white space in
    one step: recovering from k errors costs about one parse of the file, not k. The messages
    are computed from `_code_mask`, which still holds those statements: they are the messages
    of blanking the statement alone. And every search here starts at `offset`, none at the
    start of the file."""
    code = _code_mask(text)
    first = _keyword_before(code, offset)
    if first is None:
        return None  # the error is in the model header: nothing to skip to
    begin = first.start()
    after = STATEMENT_KEYWORD.search(code, offset + 1 if skip_token else offset)
    if after is not None:
        end = after.start()
    else:
        close = code.rfind("}")
        end = close if close >= offset else len(text)
    if end <= begin:
        return None
    body = code.find("{") + 1  # just after the model's '{' (the parser got past the header)
    if not 0 < body <= begin:
        body = begin
    guide = _open_guide(code, begin, body)
    keep = guide if guide is not None else begin
    blanked = text[:body] + _spaces(text[body:keep]) + text[keep:begin] + _spaces(text[begin:end]) + text[end:]
    _RECOVERY.mask = (blanked, code[:begin] + _spaces(code[begin:end]) + code[end:])
    return blanked


def _spaces(chunk: str) -> str:
    """`chunk` with every character but '\\n' replaced by a space, so positions stay put."""
    if not chunk.strip(" \n"):
        return chunk  # already blank: statements blanked before
    return "\n".join(" " * len(line) for line in chunk.split("\n"))


def _keyword_before(code: str, offset: int, pattern: re.Pattern = STATEMENT_KEYWORD):
    """The last match of `pattern` (keywords) that starts before `offset`, or None. Searched
    backwards in growing windows, so the cost is the distance to it, not to the file's start
    (a search from a window's start sees the real text before it, for `\\b`)."""
    limit = min(len(code), offset + 8)  # a keyword that starts before `offset` ends before this
    width = 256
    while True:
        lo = max(0, offset - width)
        found = None
        for m in pattern.finditer(code, lo, limit):
            if m.start() >= offset:
                break
            found = m
        if found is not None or lo == 0:
            return found
        width *= 4


GUIDE_KEYWORD = re.compile(r"\b(guide|discriminator|denoiser)\b")  # the keywords that open a block


def _open_guide(code: str, begin: int, body: int) -> int | None:
    """Where the `guide` (or `discriminator`) keyword is whose block holds `begin` (None if none
    does). The text before `begin` parsed, so its only braces are the model's (before `body`) and
    those of guide and discriminator blocks, which hold no others: the last '{' before `begin` opens a block still open if no '}'
    follows it."""
    brace = code.rfind("{", body, begin)
    if brace < 0 or code.find("}", brace, begin) >= 0:
        return None
    guide = _keyword_before(code, brace, GUIDE_KEYWORD)
    return guide.start() if guide is not None and guide.start() >= body else None


_BRACKET = re.compile(r"[()\[\]{}]")


def _unclosed(code: str, end: int, start: int = 0) -> list[tuple[int, str]]:
    """Brackets opened from `start` to `end` and not closed (offset, bracket), outermost first."""
    stack: list[tuple[int, str]] = []
    for m in _BRACKET.finditer(code, start, end):
        ch = m.group()
        if ch in OPENERS:
            stack.append((m.start(), ch))
        elif stack and OPENERS[stack[-1][1]] == ch:
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
    # brackets opened in this statement and still open where it ends (the statements before it
    # parsed, so only braces can be open before its keyword, and braces are not reported)
    following = STATEMENT_KEYWORD.search(code, offset + 1)
    statement_end = following.start() if following is not None else len(code)
    statement = _keyword_before(code, offset)
    start = statement.start() if statement is not None else 0
    unclosed = [(k, b) for k, b in _unclosed(code, statement_end, start) if b != "{" and k < offset]
    keyword = statement.group(0) if statement is not None else None

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
                          "the keywords are model, visible, latent, param, energy, let, guide, discriminator, denoiser, "
                          "time, from and sum; "
                          "rename it",
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
    found = _name_before(code, e.token.start_pos)
    if found is None or _starts_line(code, found[0]):
        return None
    start, stop = found
    name = code[start:stop]
    before = code[:start].rstrip()
    if not before or not (before[-1] in ")]" or before[-1].isalnum() or before[-1] == "_"):
        return None
    return GdslError(f"unexpected '{name}'; expected an operator, a new statement or '}}'",
                     _span_at(text, start, len(name)),
                     "is an operator such as '*' missing before it?", kind="syntax")


_NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"
_NAME_START = re.compile(r"[A-Za-z_]")


def _name_before(code: str, offset: int) -> tuple[int, int] | None:
    """(start, end) of the name that `code[:offset]` ends with, white space aside, or None:
    what re.search(r"[A-Za-z_][A-Za-z0-9_]*\\s*\\Z", code[:offset]) finds, in time linear in
    the text (that search backtracks through every long name before, quadratically)."""
    head = code[:offset]
    stop = len(head.rstrip())
    start = len(head[:stop].rstrip(_NAME_CHARS))
    m = _NAME_START.search(code, start, stop)
    return (m.start(), stop) if m is not None else None


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
    if accepts == {"EQUAL"} and keyword == "discriminator":
        return "a discriminator block holds let bindings and its output, written 'logit = ...'"
    if value == "=" and keyword == "denoiser":
        return ("a denoiser block holds let bindings and '~' statements: the corruption first (xt ~ ...), "
                "the reconstruction of the data last (x ~ ...)")
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
    """A number literal: an int64 when it is digits only, else a float64. A literal that
    does not fit (whatever its length) or a nonzero one that a float would round to 0 is
    reported; the grammar admits ASCII digits only (see NUMBER in gdl.lark)."""
    text = str(token)
    span = _span(token)
    if not text.isascii():  # not reachable through the grammar; int()/float() would accept them
        errors.append(GdslError(f"the number {_short(text)} has digits other than 0-9", span,
                                "numbers are written with the ASCII digits 0-9", kind="syntax"))
        return ast.Num(span, 1, text)
    if re.fullmatch(r"[0-9]+", text):
        digits = text.lstrip("0")
        # compare lengths first: int() refuses strings of more than 4300 digits
        if len(digits) > MAX_INT_DIGITS or (digits and int(digits) > MAX_INT):
            errors.append(GdslError(f"the integer {_short(text)} is too large (the largest is 2^63 - 1)", span,
                                    "integers are 64-bit; write a large real constant with an exponent, as in 1e30",
                                    kind="limit"))
            return ast.Num(span, 1, text)
        return ast.Num(span, int(digits or "0"), text)
    value = float(text)
    if not math.isfinite(value):
        errors.append(GdslError(f"the number {_short(text)} is too large to be a float", span,
                                "the largest float is about 1.8e308", kind="arithmetic"))
        value = 1.0
    elif value == 0.0 and re.search(r"[1-9]", re.split(r"[eE]", text)[0]):
        errors.append(GdslError(f"the number {_short(text)} is too small to be a float: it would be 0", span,
                                "the smallest positive float is about 4.9e-324; write 0 for zero", kind="arithmetic"))
        value = 1.0
    return ast.Num(span, value, text)


def _short(text: str) -> str:
    return text if len(text) <= 24 else text[:10] + "..." + text[-10:]


def _denoiser_statements(model: ast.Model, statements: list) -> None:
    """A denoiser block's statements join the model's: its `~` statements but the last (the
    corruption C(x~ | x), then any latent states of a GSN) as q's conditionals, the last (the
    reconstruction p(x | ...)) as p's, all marked in_denoiser (frontend/directed_checks.py)."""
    samples = [g for g in statements if isinstance(g, ast.SampleDecl)]
    for g in statements:
        g.in_denoiser = True
        if isinstance(g, ast.LetDecl):
            model.lets.append(g)
        else:
            g.in_guide = g is not samples[-1]
            model.samples.append(g)
        model.denoiser.append(g)


class _ToAst:
    """Builds the AST, one method per rule of the grammar, called by `_build` with the tree's
    meta and its children already built; number literals that cannot be represented are
    collected in `errors`."""

    def __init__(self):
        self.errors: list[GdslError] = []

    def methods(self) -> dict:
        """rule name -> the bound method that builds it (one dict look-up per node)."""
        return {name: getattr(self, name) for name in dir(self) if not name.startswith("_")}

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
            elif isinstance(s, ast.TimeDecl):
                if model.time is not None:
                    self.errors.append(GdslError(
                        f"a model has one time axis (the first is declared at line {model.time.span.line})",
                        s.span, "a sequence model unfolds along one axis; remove this declaration",
                        kind="sequence"))
                    continue
                model.time = s
            elif isinstance(s, tuple) and s[0] == "discriminator":
                if model.discriminator_span is not None:
                    self.errors.append(GdslError(
                        f"a model has one discriminator block (the first is at line "
                        f"{model.discriminator_span.line})", s[1],
                        "put all the discriminator's statements in one block", kind="directed"))
                    continue
                model.discriminator_span = s[1]
                for g in s[2]:
                    if isinstance(g, ast.LetDecl):
                        g.in_discriminator = True
                        model.lets.append(g)
                    model.discriminator.append(g)
            elif isinstance(s, tuple) and s[0] == "denoiser":
                if model.denoiser_span is not None:
                    self.errors.append(GdslError(
                        f"a model has one denoiser block (the first is at line {model.denoiser_span.line})",
                        s[1], "put the corruption, the network and the reconstruction in one block",
                        kind="directed"))
                    continue
                model.denoiser_span = s[1]
                _denoiser_statements(model, s[2])
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
        name, index, expr, start = children
        return ast.LetDecl(_span(meta), str(name), _span(name), expr, index=index, start=start)

    def let_index(self, meta, children):
        return str(children[0])

    def let_start(self, meta, children):
        return children[0]

    def time_decl(self, meta, children):
        return ast.TimeDecl(_span(meta), str(children[0]), _span(children[0]))

    def sample_decl(self, meta, children):
        name, indices, dist = children
        return ast.SampleDecl(_span(meta), str(name), _span(name), indices, dist)

    def sample_index(self, meta, children):
        return [str(c) for c in children if c is not None]

    def guide_block(self, meta, children):
        return ("guide", _span(meta), [c for c in children if c is not None])

    def discriminator_block(self, meta, children):
        return ("discriminator", _span(meta), [c for c in children if c is not None])

    def denoiser_block(self, meta, children):
        return ("denoiser", _span(meta), [c for c in children if c is not None])

    def output_decl(self, meta, children):
        name, expr = children
        return ast.OutputDecl(_span(meta), str(name), _span(name), expr)

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

    def paren(self, meta, children):
        return children[0]  # the expression keeps its own span, as before parentheses had a node

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

    def unary(self, meta, children):
        return children[-1]  # `+ x` is x (its span, like a parenthesis's, counts in its parent's)

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
