"""Lattices with uniform couplings: the models multi-spin coding can sample.

Multi-spin coding packs one bit of 64 chains into a machine word, so one pass of bitwise
operations updates a site in 64 chains at once (codegen/multispin.py, runtime/multispin.py).
It needs the conditional of a site to depend only on how many of its neighbours of each coupling
are up, and so this analysis proves, from the monomials alone, that the energy is

    sum over bonds (x, x + d) of  coupling_d * s[x] * s[x + d]   +   sum over x of  bias * s[x]

for one two-state group s (spin or binary) on a lattice, with one bias and at most two
couplings (each bond's coefficient is one of two expressions: an anisotropic lattice, or
nearest and next-nearest neighbours), scalar expressions of parameters and constants (no
index), every bond of each offset d present once (the ranges run over the whole lattice) and
nothing else in the energy. The
result is a UniformLattice for the plan, or the reason the model is not one, which a user who
asks for multi-spin sampling is told.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..ir.model import ModelIR, Monomial, iexpr_index_names
from ..poly import Poly

MAX_NEIGHBOURS = 15  # the bit-sliced neighbour count has four bits


MAX_CLASSES = 2  # different couplings (each with its own neighbour count): anisotropic, or J1-J2 lattices


@dataclass(frozen=True)
class UniformLattice:
    group: str
    domain: str  # "spin" | "binary"
    offsets: tuple[tuple[int, ...], ...]  # one per bond monomial; a site's neighbours are x + d and x - d
    bonds: tuple[int, ...]  # the bond monomials
    classes: tuple[int, ...]  # per bond, its coupling class: bonds of a class have the same coefficient
    biases: tuple[int, ...]  # the monomials linear in the group (their coefficients are added)

    def neighbours(self, cls: int) -> int:
        return 2 * sum(1 for c in self.classes if c == cls)

    @property
    def class_count(self) -> int:
        return max(self.classes) + 1

    def text(self) -> str:
        per = "; ".join(f"coupling {c + 1} over offsets "
                        + ", ".join(str(d) for d, k in zip(self.offsets, self.classes) if k == c)
                        + f" ({self.neighbours(c)} neighbours)" for c in range(self.class_count))
        return f"{self.group}: uniform couplings, {per}: multi-spin coding (64 chains a word)"


def uniform_lattice(ir: ModelIR, colouring) -> tuple[Optional[UniformLattice], str]:
    """(the lattice, "") or (None, why the model is not a lattice of uniform couplings)."""
    if ir.directed is not None:
        return None, "the model has directed parts"
    if len(ir.groups) != 1:
        return None, f"it has {len(ir.groups)} variable groups; multi-spin coding samples a single lattice group"
    g = next(iter(ir.groups.values()))
    if g.domain not in ("spin", "binary"):
        return None, f"{g.name} is {g.domain}; multi-spin coding needs two-state units (spin or binary)"
    if colouring is None:
        return None, f"{g.name}'s couplings are not a stencil of constant offsets"
    offsets, bonds, classes, biases = [], [], [], []
    couplings: list = []  # (scale, coef) of each class, in order of appearance
    for m in ir.monomials:
        if not m.factors:
            continue  # a constant: no effect on any conditional
        occ = m.occurrences(g.name)
        if len(occ) == 1 and m.factors[0].power == 1:
            why = _whole_lattice(m, [m.factors[0].index], g.shape) or _index_free(m)
            if why:
                return None, why
            biases.append(m.id)
            continue
        if len(occ) != 2 or any(f.power != 1 for f in m.factors):
            return None, f"m{m.id} ({m.text()}) is neither a bond nor a bias"
        why = _index_free(m)
        if why:
            return None, why
        d = _offset(m)
        if d is None:
            return None, f"m{m.id} ({m.text()}) does not couple each site to the site at a constant offset"
        why = _whole_lattice(m, [f.index for f in m.factors], g.shape)
        if why:
            return None, why
        if (m.scale, m.coef) not in couplings:
            if len(couplings) == MAX_CLASSES:
                return None, (f"the bonds have more than {MAX_CLASSES} different couplings (m{m.id} adds another); "
                              f"multi-spin coding counts neighbours for at most {MAX_CLASSES} (bonds with the "
                              f"same coupling must write its coefficient as the same expression)")
            couplings.append((m.scale, m.coef))
        offsets.append(d)
        bonds.append(m.id)
        classes.append(couplings.index((m.scale, m.coef)))
    if not bonds:
        return None, f"{g.name} has no couplings between its sites"
    for c in range(len(couplings)):
        count = 2 * classes.count(c)
        if count > MAX_NEIGHBOURS:
            return None, (f"a site has {count} neighbours of one coupling; multi-spin coding counts at most "
                          f"{MAX_NEIGHBOURS}")
    return UniformLattice(g.name, g.domain, tuple(offsets), tuple(bonds), tuple(classes), tuple(biases)), ""


def _index_free(m: Monomial) -> str:
    """Why m's coefficient is not one number for every site, or "" (J, 0.5 * J, J[0] are)."""
    sites = {r.name for r in m.ranges}
    for c in m.coef:
        if iexpr_index_names(c) & sites:
            return f"the coefficient of m{m.id} ({m.text()}) depends on the site; multi-spin coding needs uniform couplings"
    return ""


def _offset(m: Monomial) -> Optional[tuple[int, ...]]:
    """d when m holds s[i + a] * s[i + a + d], each axis subscripted by its own index."""
    a, b = (f.index for f in m.factors)
    names = {r.name for r in m.ranges}
    d = []
    for pa, pb in zip(a, b):
        vs = pa.symbols() & names
        if len(vs) != 1 or (pb.symbols() & names) != vs:
            return None
        v = next(iter(vs))
        if pa.coefficient(v) != 1 or pb.coefficient(v) != 1:
            return None
        diff = pb - pa
        if not diff.is_constant():
            return None
        d.append(diff.constant)
    axes = [next(iter(p.symbols() & names)) for p in a]
    if len(set(axes)) != len(axes) or not any(d):
        return None
    return tuple(d)


def _whole_lattice(m: Monomial, indices, shape) -> str:
    """Why m's ranges do not cover every site (bias) or every bond (pair) exactly once, or ""."""
    if m.guards:
        return f"m{m.id} ({m.text()}) is guarded; multi-spin coding needs every bond of the lattice"
    names = {r.name: r for r in m.ranges}
    if len(names) != len(shape):
        return f"m{m.id} ({m.text()}) does not run over the whole lattice"
    axes = [next(iter(ix[axis].symbols() & set(names)), None) for ix in indices[:1] for axis in range(len(shape))]
    if None in axes or len(set(axes)) != len(shape):  # s[i, i]: the diagonal, not every site
        return f"m{m.id} ({m.text()}) does not run over the whole lattice"
    for axis, dim in enumerate(shape):
        subs = [ix[axis] for ix in indices]
        vs = subs[0].symbols() & set(names)
        if len(vs) != 1:
            return f"m{m.id} ({m.text()}) does not run over the whole lattice"
        r = names[next(iter(vs))]
        if len(r.lo) != 1 or len(r.hi) != 1:
            return f"m{m.id} ({m.text()}) does not run over the whole lattice"
        v = Poly.sym(r.name)
        shifts = []
        for p in subs:
            if p.coefficient(r.name) != 1 or not (p - v).is_constant():
                return f"m{m.id} ({m.text()}) does not run over the whole lattice"
            shifts.append((p - v).constant)
        # the subscripts run over [lo + min(shift), hi + max(shift)): all of [0, dim)
        if r.lo[0] + Poly.const(min(shifts)) != Poly.const(0) or r.hi[0] + Poly.const(max(shifts)) != dim:
            return f"m{m.id} ({m.text()}) does not run over the whole lattice"
    return ""
