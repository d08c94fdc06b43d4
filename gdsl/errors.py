"""Errors a person can act on: every model error carries a source span.

User mistakes in a `.gdl` file are `GdslError`s (collected per file into a
`ModelErrors`); anything that goes wrong inside the compiler itself is a
`CompilerBug`, reported differently so nobody mistakes it for their fault.

Every `GdslError` has a `kind`: a short, stable string naming what sort of mistake it
is, so that tests (and tools) can pin the kind of an error as well as its text. The
kinds are the members of `KINDS`:

    syntax      the text does not parse
    name        an unknown, duplicate or reserved name
    shape       shapes or axes that do not fit (contractions, subscripts, a non-scalar energy)
    index       summation indices and subscripts: an index whose range cannot be told,
                bounds that depend on each other, subscripts that cannot be solved
    domain      what a variable's domain allows (a real variable's conditional must be a
                Gaussian, a categorical variable cannot be coupled to itself, ...)
    structure   a form of energy term the compiler does not handle (a sum inside a function,
                a denominator or an exponent, more than pairwise interactions within one group)
    directed    conditionals and guides (which elements an autoregressive definition reads, ...)
    sequence    the time axis: a state without a start, a read of the future, axes that differ
    arithmetic  arithmetic on constants: a division by zero, a float overflow
    limit       a size limit of the compiler (too many monomials, nesting too deep)
    file        the file cannot be read or written
    model       the default: an error not yet given a finer kind

The kind is not printed: the message and its caret say what to change, and the kinds are
too broad to help a reader (`gdsl check` output is unchanged). Every stage sets the kind of
the errors it raises: the parser, the checker (whose `error` requires one), the IR and the
analyses, the driver for files it cannot read and the command line for files it cannot
write. The one error of a model file still of kind "model" is a model
that declares no variables, which fits none of the finer kinds.

Messages quote the user's text, never the IR's notation: `excerpt` gives the text a span
covers ('v @ L @ v'), and the IR keeps the spans it needs for that (see gdsl/ir/model.py).
"""
from __future__ import annotations

from dataclasses import dataclass

MAX_SHOWN = 120  # characters of a source line shown under an error
MAX_QUOTED = 40  # characters of source text quoted inside a message (see `excerpt`)

KINDS = ("syntax", "name", "shape", "index", "domain", "structure", "directed", "sequence", "arithmetic",
         "limit", "file", "model")
DEFAULT_KIND = "model"


@dataclass(frozen=True)
class Span:
    """A region of source text: 1-based line and column, end exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.line}:{self.column}"


@dataclass
class Source:
    """The text of one `.gdl` file and the name it is reported under."""

    text: str
    filename: str = "<string>"

    def line_text(self, line: int) -> str:
        """Line `line` (1-based). Only '\\n' ends a line, as in the parser, so other line
        separators (a lone '\\r', U+2028 ...) cannot shift the line numbers."""
        lines = self._lines()
        return lines[line - 1].rstrip("\r") if 0 < line <= len(lines) else ""

    def _lines(self) -> list:
        """The text split once (a report of thousands of errors asks for a line each)."""
        cached = self.__dict__.get("_split")
        if cached is None or cached[0] is not self.text:
            cached = (self.text, self.text.split("\n"))
            self.__dict__["_split"] = cached
        return cached[1]


def excerpt(lines, span: Span, limit: int = MAX_QUOTED) -> str:
    """The source text `span` covers, for quoting in a message ('in (v @ L @ v)^2, ...'):
    `lines` are the source's lines (1-based `span.line`). A span over several lines is cut
    at the end of its first line, and a long one is shortened in the middle, both marked
    with '...'; tabs and odd characters are shown as under an error (`display_text`)."""
    line = lines[span.line - 1] if 0 < span.line <= len(lines) else ""
    start = span.column - 1
    end = span.end_column - 1 if span.end_line == span.line else len(line.rstrip())
    text = display_text(line[start:end].strip())
    if span.end_line != span.line:
        text += " ..."
    if len(text) > limit:
        keep = (limit - 5) // 2
        text = text[:keep].rstrip() + " ... " + text[len(text) - keep:].lstrip()
    return text


def display_text(line: str) -> str:
    """A source line as shown under an error: one visible character per character, so the
    caret stays aligned, and nothing a terminal would act on (control or format characters)."""
    if line.isprintable():  # the usual line, checked in C (a report may show 100,000 of them)
        return line
    out = []
    for ch in line:
        if ch == "\t":
            out.append(" ")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append("\ufffd")
    return "".join(out)


class GdslError(Exception):
    """One error in a model, located in its source, of one of the `KINDS`."""

    def __init__(self, message: str, span: Span | None = None, hint: str | None = None,
                 kind: str = DEFAULT_KIND):
        if kind not in KINDS:
            raise CompilerBug(f"unknown error kind {kind!r}; the kinds are {', '.join(KINDS)}")
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint
        self.kind = kind
        self.source: Source | None = None

    def format(self, source: Source | None = None) -> str:
        source = source or self.source
        filename = source.filename if source else "gdsl"
        if self.span is None:
            head = f"{filename}: error: {self.message}"
            return head + (f"\n  hint: {self.hint}" if self.hint else "")
        head = f"{filename}:{self.span.line}:{self.span.column}: error: {self.message}"
        out = [head]
        if source is not None:
            raw = source.line_text(self.span.line)
            column = self.span.column
            width = 1
            if self.span.end_line == self.span.line:
                width = max(1, self.span.end_column - self.span.column)
            if len(raw) > MAX_SHOWN:  # show a window of a long line around the error (cut first:
                # display_text maps one character to one, and the line may be a megabyte)
                start = max(0, min(column - 1 - MAX_SHOWN // 3, len(raw) - MAX_SHOWN))
                before = "..." if start > 0 else ""
                after = "..." if start + MAX_SHOWN < len(raw) else ""
                text = before + display_text(raw[start:start + MAX_SHOWN]) + after
                column = column - start + len(before)
                width = min(width, MAX_SHOWN + len(before) - column + 1)
            else:
                text = display_text(raw)
            width = max(1, min(width, len(text) - column + 1))
            gutter = f"{self.span.line:4d} | "
            out.append(gutter + text)
            out.append(" " * (len(gutter) + column - 1) + "^" * width)
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.format()


class ModelErrors(GdslError):
    """All the errors found in one file, reported together (in source order). Its own message,
    span and kind are the first error's; each error in `errors` keeps its own."""

    def __init__(self, errors: list[GdslError], source: Source | None = None):
        errors = sorted(errors, key=_error_order)
        first = errors[0] if errors else None
        super().__init__(first.message if first else "no errors", first.span if first else None,
                         kind=first.kind if first else DEFAULT_KIND)
        self.errors = errors
        self.source = source
        for e in errors:
            e.source = source

    def format(self, source: Source | None = None) -> str:
        source = source or self.source
        body = "\n".join(e.format(source) for e in self.errors)
        n = len(self.errors)
        return body + f"\n{n} error{'s' if n != 1 else ''} in {source.filename if source else '<string>'}"


class CompilerBug(Exception):
    """An internal failure of gdsl, not a mistake in the model."""


def _error_order(e: GdslError):
    if e.span is None:
        return (0, 0, e.message)
    return (e.span.line, e.span.column, e.message)


class ErrorSink:
    """Collects errors during a pass so that one run reports all of them."""

    def __init__(self):
        self.errors: list[GdslError] = []

    def error(self, message: str, span: Span | None, hint: str | None = None, *, kind: str = DEFAULT_KIND) -> None:
        """Record an error; `kind` is one of `KINDS` (the default, "model", for callers that
        do not classify their errors yet)."""
        self.errors.append(GdslError(message, span, hint, kind))

    def raise_if_any(self, source: Source | None) -> None:
        if self.errors:
            raise ModelErrors(_dedupe(self.errors), source)


def _dedupe(errors: list[GdslError]) -> list[GdslError]:
    seen, out = set(), []
    for e in errors:
        key = (e.span, e.message)
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out
