"""Integer polynomials over named symbols.

Shapes are symbolic in the model's size arguments (`nv`, `n - 1`, `n * m`) and
index expressions are affine in index variables (`i + 1`); both are `Poly`s, so
shape checking is exact polynomial equality and code generation prints them.
"""
from __future__ import annotations

from typing import Iterable, Mapping

Monom = tuple[str, ...]  # sorted symbol names, with repetition for powers


class Poly:
    """Immutable once made (`terms` is never changed), so its hash is computed once."""

    __slots__ = ("terms", "_hash")

    def __init__(self, terms: Mapping[Monom, int] | None = None):
        self.terms: dict[Monom, int] = {m: c for m, c in (terms or {}).items() if c != 0}
        self._hash = None

    @staticmethod
    def _of(terms: dict[Monom, int]) -> "Poly":
        """A Poly of `terms` as they are: no coefficient is 0 (lowering makes a Poly per
        subscript and bound of every term, so the checks of __init__ add up)."""
        p = _new(Poly)
        p.terms = terms
        p._hash = None
        return p

    @staticmethod
    def const(value: int) -> "Poly":
        value = int(value)
        return Poly._of({(): value} if value else {})

    @staticmethod
    def sym(name: str) -> "Poly":
        return Poly._of({(name,): 1})

    # arithmetic ---------------------------------------------------------
    def __add__(self, other: "Poly | int") -> "Poly":
        return self._plus(_as_poly(other), 1)

    __radd__ = __add__

    def _plus(self, other: "Poly", sign: int) -> "Poly":
        """self + sign * other, its monomials in the order of self's, then of other's new ones."""
        terms = dict(self.terms)
        for m, c in other.terms.items():
            total = terms.get(m, 0) + sign * c
            if total:
                terms[m] = total
            else:
                terms.pop(m, None)
        return Poly._of(terms)

    def __neg__(self) -> "Poly":
        return Poly._of({m: -c for m, c in self.terms.items()})

    def __sub__(self, other: "Poly | int") -> "Poly":
        return self._plus(_as_poly(other), -1)

    def __rsub__(self, other: "Poly | int") -> "Poly":
        return _as_poly(other) - self

    def __mul__(self, other: "Poly | int") -> "Poly":
        other = _as_poly(other)
        terms: dict[Monom, int] = {}
        for m1, c1 in self.terms.items():
            for m2, c2 in other.terms.items():
                m = tuple(sorted(m1 + m2))
                terms[m] = terms.get(m, 0) + c1 * c2
        return Poly(terms)

    __rmul__ = __mul__

    # queries --------------------------------------------------------------
    def __eq__(self, other) -> bool:
        if isinstance(other, int):
            other = Poly.const(other)
        return isinstance(other, Poly) and self.terms == other.terms

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(tuple(sorted(self.terms.items())))
        return self._hash

    @property
    def constant(self) -> int:
        return self.terms.get((), 0)

    def is_constant(self) -> bool:
        return all(m == () for m in self.terms)

    def symbols(self) -> set[str]:
        return {s for m in self.terms for s in m}

    def is_affine(self) -> bool:
        return all(len(m) <= 1 for m in self.terms)

    def coefficient(self, name: str) -> int:
        return self.terms.get((name,), 0)

    def without(self, names: Iterable[str]) -> "Poly":
        names = set(names)
        return Poly({m: c for m, c in self.terms.items() if not (set(m) & names)})

    def substitute(self, mapping: Mapping[str, "Poly"]) -> "Poly":
        out = Poly()
        for m, c in self.terms.items():
            term = Poly.const(c)
            for s in m:
                term = term * (mapping[s] if s in mapping else Poly.sym(s))
            out = out + term
        return out

    def rename(self, mapping: Mapping[str, str]) -> "Poly":
        return Poly({tuple(sorted(mapping.get(s, s) for s in m)): c for m, c in self.terms.items()})

    def evaluate(self, env: Mapping[str, int]) -> int:
        total = 0
        for m, c in self.terms.items():
            v = c
            for s in m:
                v *= env[s]
            total += v
        return total

    # printing ---------------------------------------------------------------
    def to_str(self, name=lambda s: s) -> str:
        if not self.terms:
            return "0"
        parts = []
        for m in sorted(self.terms, key=lambda m: (len(m) == 0, m)):
            c = self.terms[m]
            body = "*".join(name(s) for s in m)
            if not body:
                parts.append((c < 0, str(abs(c))))
            elif abs(c) == 1:
                parts.append((c < 0, body))
            else:
                parts.append((c < 0, f"{abs(c)}*{body}"))
        neg, first = parts[0]
        out = ("-" if neg else "") + first
        for neg, p in parts[1:]:
            out += (" - " if neg else " + ") + p
        return out

    def __str__(self) -> str:
        return self.to_str()

    def __repr__(self) -> str:
        return f"Poly({self.to_str()})"


_new = object.__new__


def _as_poly(x) -> Poly:
    if isinstance(x, Poly):
        return x
    if isinstance(x, int):
        return Poly.const(x)
    raise TypeError(f"not a polynomial: {x!r}")
