"""Companion models inside a module: the layer RBMs that greedy training trains.

A layer RBM is emitted like any model, then its top-level kernels and its Model class are
renamed with a prefix (token by token, so strings and comments are untouched) and placed in
the main module before the main Model class, which refers to them. The runtime trains them
from the module alone: it never calls the compiler.
"""
from __future__ import annotations

import io
import tokenize

HEADER_END = ("import ", "from ")


def companion_source(module_text: str, prefix: str, class_name: str) -> list[str]:
    """The kernels and class of a generated module, renamed with `prefix`, without its header."""
    lines = module_text.split("\n")
    start = max(k for k, line in enumerate(lines) if line.startswith(HEADER_END)) + 1
    body = "\n".join(lines[start:])
    names = {line[4:line.index("(")] for line in lines[start:] if line.startswith("def ")}
    mapping = {name: prefix + name for name in names}
    mapping["Model"] = class_name
    return _rename(body, mapping).rstrip("\n").split("\n")


def _rename(text: str, mapping: dict[str, str]) -> str:
    """`text` with every NAME token in `mapping` replaced (strings and comments untouched)."""
    rows = text.split("\n")
    edits: dict[int, list[tuple[int, int, str]]] = {}
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.NAME and tok.string in mapping:
            (row, col), (_, end) = tok.start, tok.end
            edits.setdefault(row - 1, []).append((col, end, mapping[tok.string]))
    for row, changes in edits.items():
        line = rows[row]
        for col, end, new in sorted(changes, reverse=True):
            line = line[:col] + new + line[end:]
        rows[row] = line
    return "\n".join(rows)


def greedy_attributes(greedy, classes: list[str | None]) -> list[str]:
    """Class attributes of the main model: each greedy level and the class that trains it."""
    if greedy is None:
        return []
    if greedy.refused:
        return [f"GREEDY_REFUSED = {greedy.refused!r}"]
    out = ["GREEDY = (  # (lower, upper, replicated, halve couplings, couplings, layer class or None = this one)"]
    for level, cls in zip(greedy.levels, classes):
        out.append(f"    ({tuple(level.lower)!r}, {tuple(level.upper)!r}, {tuple(level.replicate)!r}, "
                   f"{level.halve!r}, {tuple(level.couplings)!r}, {cls or 'None'}),")
    out.append(")")
    return out


def dbn_attributes(stack, refused, class_name: str | None) -> list[str]:
    if refused:
        return [f"DBN_REFUSED = {refused!r}"]
    out = ["DBN_LAYERS = (  # (child, parent, weight, weight is [parent, child], bias), from the data up"]
    for layer in stack:
        out.append(f"    ({layer.child!r}, {layer.parent!r}, {layer.weight!r}, {layer.transposed!r}, "
                   f"{layer.bias!r}),")
    out += [")", f"LAYER_RBM = {class_name}"]
    return out
