"""Checks a model instance runs before it allocates anything: its sizes and constants against
what the model's arithmetic needs, and the memory its parameters would take.

The conditions on constants are worked out at compile time (gdsl/analysis/constants.py) and
published in the Model class as `NONZERO_CONSTS`, `POSITIVE_CONSTS` and `CONST_CHECKS`; here
they are evaluated with the instance's values. Without them `gdsl.load("grbm.gdl", sigma=0)`
ended in a ZeroDivisionError from inside a kernel, and a size too large for the machine in
numpy's MemoryError after a long wait.
"""
from __future__ import annotations

import math
import os

import numpy as np

from .. import ops

_NEEDS = {"nonzero": "must not be zero", "positive": "must be positive",
          "nonnegative": "must be >= 0", "finite": "must be a finite number"}


_BINARY = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.true_divide, "^": np.power}


def evaluate(steps, sizes, consts) -> float:
    """The value of a CONST_CHECKS expression (postfix steps, evaluated with a stack), with
    numpy's conventions: 1/0 = inf, 0/0 = nan, log(0) = -inf, never an exception."""
    stack: list = []
    with np.errstate(all="ignore"):
        for step in steps:
            op = step[0]
            if op == "num":
                stack.append(np.float64(step[1]))
            elif op == "size":
                stack.append(np.float64(sizes[step[1]]))
            elif op == "const":
                stack.append(np.float64(consts[step[1]]))
            elif op == "neg":
                stack.append(-stack.pop())
            elif op == "fn":
                stack.append(np.float64(ops.lookup(step[1]).python(float(stack.pop()))))
            elif op in _BINARY:
                b, a = stack.pop(), stack.pop()
                stack.append(np.float64(_BINARY[op](a, b)))
            else:
                raise ValueError(f"unknown step {step!r} in a constant check")
    if len(stack) != 1:
        raise ValueError(f"malformed constant check {steps!r}")
    return float(stack[0])


def _holds(kind: str, value: float) -> bool:
    if not math.isfinite(value):
        return False
    return {"nonzero": value != 0, "positive": value > 0, "nonnegative": value >= 0, "finite": True}[kind]


def _names(steps) -> list:
    """(kind, name) of the sizes and constants the expression reads, in order, once each."""
    return list(dict.fromkeys(tuple(s) for s in steps if s[0] in ("size", "const")))


def check_constants(model_cls, sizes: dict, consts: dict) -> None:
    """A ValueError naming the constant (or size) when a value breaks one of the model's
    conditions: a zero denominator, a std or precision <= 0, a log of a value <= 0, an
    expression that overflows."""
    checks = tuple(getattr(model_cls, "CONST_CHECKS", ()))
    name = model_cls.NAME

    def where(name_, kind_):
        for kind, steps, text, line, role in checks:
            if kind == kind_ and ("const", name_) in _names(steps):
                return f"line {line}: it is {role}" if tuple(steps) == (("const", name_),) else \
                    f"line {line}: '{text}', {role}"
        return "see CONST_CHECKS"

    for c in getattr(model_cls, "NONZERO_CONSTS", ()):
        if c in consts and consts[c] == 0:
            raise ValueError(f"constant {c} must not be zero: {name} divides by it ({where(c, 'nonzero')})")
    for c in getattr(model_cls, "POSITIVE_CONSTS", ()):
        if c in consts and not consts[c] > 0:
            raise ValueError(f"constant {c} must be positive, got {consts[c]!r} ({name}, {where(c, 'positive')})")
    for kind, steps, text, line, role in checks:
        value = evaluate(steps, sizes, consts)
        if _holds(kind, value):
            continue
        used = ", ".join(f"{'size' if k == 'size' else 'constant'} {n} = "
                         f"{(sizes if k == 'size' else consts)[n]!r}" for k, n in _names(steps))
        raise ValueError(f"{role} of {name}, '{text}' (line {line}), {_NEEDS[kind]}; with {used} it is "
                         f"{value!r}. Choose other values for {', '.join(n for _, n in _names(steps))}")


# memory --------------------------------------------------------------------------------------------
MEMORY_LIMIT = None  # bytes; None: the memory available now (MemAvailable, else the physical memory)


def memory_limit() -> tuple[int | None, str]:
    """(bytes, where the figure comes from) that one model's parameters may take; (None, why)
    when it cannot be found (then nothing is refused)."""
    if MEMORY_LIMIT is not None:
        return int(MEMORY_LIMIT), "gdsl.runtime.consts.MEMORY_LIMIT"
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "the memory available now (MemAvailable)"
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "the physical memory"
    except (AttributeError, ValueError, OSError):
        return None, "unknown"


def size_text(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} PiB"


def check_memory(name: str, shapes: dict, params, itemsize: int, overrides_text: str) -> None:
    """Refuse, before anything is allocated, parameters that would not fit: they are drawn in
    float64 and then converted to the model's dtype, so building them needs 8 + itemsize bytes
    per element (the parameters alone then keep `itemsize`)."""
    counts = {p: math.prod(shapes[p]) for p in params}  # Python integers: no overflow
    elements = sum(counts.values())
    keep = elements * itemsize
    peak = elements * (8 + itemsize)
    limit, source = memory_limit()
    if limit is None or peak <= limit:
        return
    largest = sorted(counts, key=counts.get, reverse=True)[:3]
    parts = ", ".join(f"{p}: {shapes[p]}" for p in largest)
    raise ValueError(f"{name}({overrides_text}) is too large: its parameters ({parts}) would take "
                     f"{size_text(keep)} ({size_text(peak)} while they are drawn in float64), more than "
                     f"the {size_text(limit)} allowed ({source}); choose smaller sizes")
