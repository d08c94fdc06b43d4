"""Errors a person can act on: every model error carries a source span.

User mistakes in a `.gdl` file are `GdslError`s (collected per file into a
`ModelErrors`); anything that goes wrong inside the compiler itself is a
`CompilerBug`, reported differently so nobody mistakes it for their fault.
"""
from __future__ import annotations

from dataclasses import dataclass

MAX_SHOWN = 120  # characters of a source line shown under an error


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
        lines = self.text.split("\n")
        return lines[line - 1].rstrip("\r") if 0 < line <= len(lines) else ""


def display_text(line: str) -> str:
    """A source line as shown under an error: one visible character per character, so the
    caret stays aligned, and nothing a terminal would act on (control or format characters)."""
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
    """One error in a model, located in its source."""

    def __init__(self, message: str, span: Span | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint
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
            text = display_text(source.line_text(self.span.line))
            column = self.span.column
            width = 1
            if self.span.end_line == self.span.line:
                width = max(1, self.span.end_column - self.span.column)
            if len(text) > MAX_SHOWN:  # show a window of a long line around the error
                start = max(0, min(column - 1 - MAX_SHOWN // 3, len(text) - MAX_SHOWN))
                before = "..." if start > 0 else ""
                after = "..." if start + MAX_SHOWN < len(text) else ""
                text = before + text[start:start + MAX_SHOWN] + after
                column = column - start + len(before)
                width = min(width, MAX_SHOWN + len(before) - column + 1)
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
    """All the errors found in one file, reported together."""

    def __init__(self, errors: list[GdslError], source: Source | None = None):
        errors = sorted(errors, key=_error_order)
        super().__init__(errors[0].message if errors else "no errors", errors[0].span if errors else None)
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

    def error(self, message: str, span: Span | None, hint: str | None = None) -> None:
        self.errors.append(GdslError(message, span, hint))

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
