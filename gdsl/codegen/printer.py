"""Print IR pieces as Python/numba source.

Every user identifier is printed with a prefix that says what it is (x_ for
variable groups, p_ parameters, s_ sizes, k_ constants), so no name from a
`.gdl` file can collide with a Python keyword or with the generated code's own
locals; identifiers are validated by the grammar, numbers are printed by repr().
"""
from __future__ import annotations

import functools
import re

from .. import ops
from ..ir.model import IAccess, IBin, IExpr, INum, ISym, IUn
from ..poly import Poly

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def ident(name: str) -> str:
    if not _IDENT.match(name):
        from ..errors import CompilerBug

        raise CompilerBug(f"refusing to print an invalid identifier {name!r}")
    return name


def group(name: str) -> str:
    return "x_" + ident(name)


def param(name: str) -> str:
    return "p_" + ident(name)


def size(name: str) -> str:
    return "s_" + ident(name)


def const(name: str) -> str:
    return "k_" + ident(name)


def number(v: float) -> str:
    v = float(v)
    if v != v or v in (float("inf"), float("-inf")):
        from ..errors import CompilerBug

        raise CompilerBug(f"non-finite constant {v!r} in generated code")
    return repr(v)


def poly(p: Poly, sizes) -> str:
    """An index/size polynomial; sizes get their prefix, index variables print as is."""
    return p.to_str(name=lambda s: size(s) if s in sizes else ident(s))


def bound(bounds, fn: str, sizes) -> str:
    texts = [poly(b, sizes) for b in bounds]
    return texts[0] if len(texts) == 1 else f"{fn}(" + ", ".join(texts) + ")"


def expr(e: IExpr, sizes, scalar_params=frozenset(), numpy: bool = False, access=None) -> str:
    """A coefficient as a numba scalar expression, or with `numpy` as the numpy tier's (its
    functions take arrays too); `access(e)`, when given, prints a subscripted parameter (the
    numpy tier's whole-array slices)."""
    if isinstance(e, INum):
        return number(e.value)
    if isinstance(e, ISym):
        if e.kind == "size":
            return size(e.name)
        if e.kind == "const":
            return const(e.name)
        return ident(e.name)
    if isinstance(e, IAccess):
        assert e.kind == "param"
        if not e.index:  # scalar parameters reach kernels as 1-element views (numba has no a[()])
            return f"{param(e.name)}[0]"
        if access is not None:
            return access(e)
        return f"{param(e.name)}[" + ", ".join(poly(p, sizes) for p in e.index) + "]"
    if isinstance(e, IUn):
        inner = expr(e.arg, sizes, numpy=numpy, access=access)
        if e.op == "neg":
            return f"(-{inner})"
        fn = ops.lookup(e.op)
        return f"{fn.numpy if numpy else fn.numba}({inner})"
    if isinstance(e, IBin):
        op = "**" if e.op == "^" else e.op
        left = expr(e.left, sizes, numpy=numpy, access=access)
        return f"({left} {op} {expr(e.right, sizes, numpy=numpy, access=access)})"
    from ..errors import CompilerBug

    raise CompilerBug(f"cannot print {type(e).__name__} as a coefficient")


def product(parts) -> str:
    """Factors joined with ' * ', the constants 1.0 and -1.0 folded away (-1.0 * a is -a)."""
    negative, kept = False, []
    for part in parts:
        if part == "1.0":
            continue
        if part == "-1.0":
            negative = not negative
            continue
        kept.append(part)
    if not kept:
        return "-1.0" if negative else "1.0"
    body = " * ".join(kept)
    return "-" + body if negative else body


def unwrapped(text: str) -> str:
    """text without one pair of parentheses that encloses all of it (for a right-hand side)."""
    if not (text.startswith("(") and text.endswith(")")):
        return text
    depth = 0
    for k, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and k < len(text) - 1:
            return text  # "(a) * (b)": the first pair closes early
    return text[1:-1]


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def offset(name: str, k: int) -> str:
    """name + k, printed without a zero or a double sign."""
    return name if k == 0 else f"{name} + {k}" if k > 0 else f"{name} - {-k}"


MAX_QUOTED_LINE = 160  # a longer .gdl line is cut in comments (programmatically written models)


@functools.lru_cache(maxsize=4096)
def comment_text(text: str) -> str:
    """Source text made safe for a one-line Python comment (no line breaks of any kind), cut
    after MAX_QUOTED_LINE characters. Cached: every term of a line quotes it again."""
    if len(text) > MAX_QUOTED_LINE:
        text = text[:MAX_QUOTED_LINE] + " ..."
    if text.isascii() and text.isprintable():
        return text.strip()
    out = []
    for ch in text:
        if ch == "\t":
            out.append(" ")
        elif 32 <= ord(ch) < 127:
            out.append(ch)
        else:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}")
    return "".join(out).strip()
