"""The last pass over a generated module: what an expert would not have written is tidied.

The emitters print statements as they go; this pass works on the finished lines of each
kernel. It drops a status flag (`ok = True ... return ok`) that nothing in the kernel can
change, and wraps lines longer than LINE_WIDTH at the commas of their outermost bracket
(continuation lines aligned with the bracket, as a person formats a long call). Docstrings
are wrapped where they are written (`docstring()`). Tokens are never split: a line whose
brackets or strings do not allow a clean break is left as it is.
"""
from __future__ import annotations

import io
import textwrap
import tokenize

LINE_WIDTH = 110


def tidy(lines: list[str]) -> list[str]:
    out: list[str] = []
    for kernel in _kernels(lines):
        out.extend(_drop_constant_flag(kernel))
    wrapped: list[str] = []
    for line in out:
        wrapped.extend(wrap(line))
    return wrapped


def docstring(text: str, indent: int) -> list[str]:
    """A docstring as lines no longer than LINE_WIDTH at this indent."""
    pad = "    " * indent
    body = textwrap.wrap(text, LINE_WIDTH - len(pad) - 6, break_long_words=False, break_on_hyphens=False)
    if len(body) <= 1:
        return [f'{pad}"""{text}"""']
    return [f'{pad}"""{body[0]}'] + [pad + b for b in body[1:-1]] + [f'{pad}{body[-1]}"""']


def _kernels(lines: list[str]):
    """The module split into pieces that each start at a top-level `def` (or the module's head)."""
    piece: list[str] = []
    for line in lines:
        if line.startswith("def ") and piece:
            # the decorator and blank lines above a def belong to it
            head = []
            while piece and (piece[-1].startswith("@") or not piece[-1].strip()):
                head.insert(0, piece.pop())
            yield piece
            piece = head
        piece.append(line)
    yield piece


def _drop_constant_flag(kernel: list[str]) -> list[str]:
    """`ok = True` ... `return ok` with no other assignment to ok: return True directly."""
    flag = "    ok = True"
    if flag not in kernel or not kernel[0:1] or not any(line.startswith("def ") for line in kernel):
        return kernel
    changes = [line for line in kernel if line.strip().startswith("ok ") and line.strip() != "ok = True"]
    if changes:
        return kernel
    out = [line for line in kernel if line != flag]
    return [line.replace("return ok", "return True") if line.strip() == "return ok" else line for line in out]


def wrap(line: str) -> list[str]:
    """`line` broken at the commas of its first top-level bracket that has any, if too long; a long
    string assignment becomes a parenthesised concatenation; a long top-level comment, several."""
    if len(line) <= LINE_WIDTH:
        return [line]
    if line.startswith("# "):
        return ["# " + part for part in textwrap.wrap(line[2:], LINE_WIDTH - 2, break_long_words=False)]
    if line.lstrip().startswith("#"):
        return [line]  # a comment quoting a .gdl line stays whole
    string = _string_assignment(line)
    if string is not None:
        return string
    group = _first_bracket_with_breaks(line)
    if group is None:
        return [line]
    opener, breaks = group
    cont = " " * (opener + 1)
    bounds = [opener + 1] + breaks + [len(line)]
    pieces = [line[a:b].strip() for a, b in zip(bounds, bounds[1:])]
    out, current = [], line[:opener + 1] + pieces[0]
    for piece in pieces[1:]:
        if len(current) + 1 + len(piece) > LINE_WIDTH:
            out.append(current)
            current = cont + piece
        else:
            current += " " + piece
    out.append(current)
    return out


def _string_assignment(line: str):
    """`NAME = 'long text'` as NAME = ( 'chunk' 'chunk' ... ), chunks cut after newlines and spaces."""
    import ast
    import re

    m = re.match(r"(\s*)([A-Za-z_][A-Za-z0-9_]*) = (['\"].*)$", line)
    if not m:
        return None
    try:
        value = ast.literal_eval(m.group(3))
    except (ValueError, SyntaxError):
        return None
    if not isinstance(value, str):
        return None
    pad = m.group(1) + "    "
    room = LINE_WIDTH - len(pad) - 2
    chunks = []
    for piece in re.findall(r"[^\n]*\n|[^\n]+$", value):
        chunks.extend(_cut(piece, room))
    return [f"{m.group(1)}{m.group(2)} = ("] + [pad + repr(c) for c in chunks] + [m.group(1) + ")"]


def _cut(piece: str, room: int) -> list[str]:
    """`piece` in chunks whose repr fits in `room` columns, cut after a space where there is one,
    front first; the rest is never copied (a megabyte line makes ten thousand chunks)."""
    chunks, start = [], 0
    while len(piece) - start > room // 4 and len(repr(piece[start:start + room])) > room:
        head = piece[start:start + room - 10]
        cut = head.rfind(" ")
        cut = cut + 1 if cut > 0 else len(head)
        while cut > 1 and len(repr(piece[start:start + cut])) > room:  # escapes make repr longer than the text
            cut //= 2
        chunks.append(piece[start:start + cut])
        start += cut
    chunks.append(piece[start:])
    return chunks


def _first_bracket_with_breaks(line: str):
    """(column of the first top-level bracket that can be broken, the columns just after its
    commas) or, for a bracket without commas, after its binary + - * operators; None if none."""
    offset = len(line) - len(line.lstrip())
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(line.lstrip() + "\n").readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    depth, opener, commas, operators, previous = 0, None, [], [], None
    for tok in tokens:
        col = tok.start[1] + offset
        if tok.type == tokenize.OP and tok.string in "([{":
            depth += 1
            if depth == 1:
                opener, commas, operators = col, [], []
        elif tok.type == tokenize.OP and tok.string in ")]}":
            depth -= 1
            if depth == 0 and opener is not None and opener < LINE_WIDTH - 30 and (commas or operators):
                return opener, commas or operators
        elif depth == 1 and tok.type == tokenize.OP and tok.string == ",":
            commas.append(col + 1)
        elif (depth == 1 and tok.type == tokenize.OP and tok.string in ("+", "-", "*") and previous is not None
              and (previous.type in (tokenize.NAME, tokenize.NUMBER) or previous.string in (")", "]", "}"))):
            operators.append(col + 1)  # a binary operator ends the line it breaks
        previous = tok
    return None
