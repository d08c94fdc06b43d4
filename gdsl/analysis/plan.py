"""IR -> plan: what the code generator needs to know, and nothing it must work out itself.

* the conditional of each group given the rest (from the monomials that hold it),
* Gibbs blocks: a colouring of the graph of groups that share a monomial,
* within a laterally coupled group: an element colouring when the coupling is a
  stencil of constant offsets (a lattice gives a checkerboard), else a sweep
  site by site,
* which groups can be summed out analytically (free energy),
* which products are dense contractions that go through BLAS.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Optional

import networkx as nx

from ..abi import ONE_HOT
from ..errors import ErrorSink, Span, excerpt
from ..ir.graph import group_graph
from ..ir.model import IAccess, ModelIR, Monomial, iexpr_index_names
from ..poly import Poly
from .multispin import UniformLattice, uniform_lattice

MAX_STENCIL_COLOURS = 8
CONDITIONAL = {
    "binary": "Bernoulli(sigmoid(f))",
    "spin": "spin: P(+1) = sigmoid(2 f)",
    "categorical": "softmax(f) over the last axis",
    "categorical_off": "softmax over the last axis and an all-zero state of logit 0",
    "real": "Gaussian(mean f / 2q, variance 1 / 2q)",
}


@dataclass(frozen=True)
class Dense:
    """field[X] += alpha * A_flat @ P_mat (or P_mat.T): one BLAS call per block."""

    other: str  # the other group A
    param: str
    transpose: bool  # P is indexed (X, A) rather than (A, X)
    scalar_coef: tuple  # index-free coefficient factors


@dataclass
class GroupPlan:
    name: str
    role: str
    domain: str
    shape: tuple[Poly, ...]
    categories: Optional[Poly]
    index: int  # declaration order
    linear: list[tuple[int, int]] = field(default_factory=list)  # (monomial, factor)
    quadratic: list[tuple[int, int]] = field(default_factory=list)
    lateral: list[int] = field(default_factory=list)
    # real groups only: monomials holding two elements of the group (x_i x_j): with the squared
    # terms they make the precision matrix of a multivariate Gaussian conditional
    coupled: list[int] = field(default_factory=list)
    sweep: str = "block"  # "block" | "stencil" | "sequential"
    colouring: Optional[tuple[tuple[int, ...], int]] = None  # (a, C): colour = a.k mod C
    summable: bool = False
    dense: dict[int, Dense] = field(default_factory=dict)

    @property
    def conditional(self) -> str:
        if self.coupled:
            return "multivariate Gaussian N(A^-1 f, A^-1), A = couplings + 2q on the diagonal"
        return CONDITIONAL[self.domain]


@dataclass
class Plan:
    ir: ModelIR
    groups: dict[str, GroupPlan]
    blocks: list[list[str]]
    free_energy_over: list[str]  # groups kept when the default set is summed out
    default_summed: list[str]
    # (spike, slab) pairs the Gibbs sweep draws as one block: the binary spike with the real slab
    # summed out, then the slab given it (the blocked scheme of the spike-and-slab RBM)
    collapsed: list[tuple[str, str]] = field(default_factory=list)
    # centred training (analysis/centring.py): the weights and biases it transforms, or why not
    couplings: list = field(default_factory=list)
    centring_refused: Optional[str] = None
    # a lattice of uniform couplings (analysis/multispin.py): sampled 64 chains a word, or why not
    multispin: Optional[UniformLattice] = None
    multispin_refused: str = ""

    @property
    def monomials(self) -> list[Monomial]:
        return self.ir.monomials

    def schedule(self) -> str:
        n = len(self.groups)
        blocks = " | ".join("{" + ", ".join(b) + "}" for b in self.blocks)
        parts = [f"{self.ir.name}: {n} variable group{'s' if n != 1 else ''}, "
                 f"{len(self.monomials)} energy term{'s' if len(self.monomials) != 1 else ''}, "
                 f"{len(self.blocks)} Gibbs block{'s' if len(self.blocks) != 1 else ''} {blocks}"]
        for g in self.groups.values():
            if g.sweep == "stencil":
                parts.append(f"{g.name} coloured by site ({g.colouring[1]} colours)")
            elif g.sweep == "sequential":
                parts.append(f"{g.name} swept site by site")
        for g in self.groups.values():
            if g.coupled:
                parts.append(f"{g.name} drawn as one multivariate Gaussian (a Cholesky factor per chain)")
        for spike, slab in self.collapsed:
            parts.append(f"{spike} drawn with {slab} summed out, then {slab}")
        if self.multispin is not None:
            parts.append(f"{self.multispin.group} has uniform couplings: multi-spin coding with "
                         f"sample(..., multispin=True)")
        if self.default_summed:
            parts.append(f"{', '.join(self.default_summed)} summable (free energy over "
                         f"{', '.join(self.free_energy_over) or 'nothing'})")
        else:
            parts.append("nothing summable")
        return "; ".join(parts)

    def dump(self) -> str:
        out = [f"plan {self.ir.name}", "blocks: " + " | ".join("{" + ", ".join(b) + "}" for b in self.blocks)]
        out.append("free energy: sums out " + (", ".join(self.default_summed) or "nothing")
                   + " over " + (", ".join(self.free_energy_over) or "nothing"))
        for spike, slab in self.collapsed:
            out.append(f"collapsed block: {spike} with {slab} summed out, then {slab} given {spike}")
        if self.multispin is not None:
            out.append("lattice " + self.multispin.text())
        for g in self.groups.values():
            out.append(f"group {g.name} ({g.role} {g.domain}): {g.conditional}")
            out.append(f"  sweep: {g.sweep}" + (f" colour = {g.colouring[0]} . k mod {g.colouring[1]}"
                                                if g.colouring else ""))
            out.append(f"  summable: {'yes' if g.summable else 'no'}")
            for mid, fi in g.linear:
                how = "blas" if mid in g.dense else "loops"
                if mid in g.dense:
                    d = g.dense[mid]
                    how += f" {d.other} @ {d.param}{'.T' if d.transpose else ''}"
                out.append(f"  linear m{mid}.{fi} ({how})")
            for mid, fi in g.quadratic:
                out.append(f"  quadratic m{mid}.{fi}")
            for mid in g.lateral:
                out.append(f"  lateral m{mid}")
            for mid in g.coupled:
                out.append(f"  coupled m{mid} (precision)")
        return "\n".join(out) + "\n"


def analyse(ir: ModelIR) -> Plan:
    sink = ErrorSink()
    groups = {name: GroupPlan(name, g.role, g.domain, g.shape, g.categories, k)
              for k, (name, g) in enumerate(ir.groups.items())}
    for m in ir.monomials:
        _classify(m, ir, groups, sink)
    for g in groups.values():
        if g.role != "state":  # a sequence's state is given at every step, never drawn or summed
            _check_real(g, ir, sink)
        if g.lateral:
            _lateral_sweep(g, ir, sink)
        g.summable = not g.lateral and g.role != "state"
        for mid, fi in g.linear:
            d = _dense(ir.monomials[mid], fi, ir)
            if d is not None:
                g.dense[mid] = d
    sink.raise_if_any(_source(ir))
    blocks = _blocks(ir, groups)
    summed = _default_summed(ir, groups)
    over = [n for n in groups if n not in summed]
    plan = Plan(ir, groups, blocks, over, summed, _collapsed_pairs(ir, groups, blocks))
    from .centring import centring  # it reads the plan's dense products

    plan.couplings, plan.centring_refused = centring(plan)
    only = next(iter(groups.values())) if len(groups) == 1 else None
    plan.multispin, plan.multispin_refused = uniform_lattice(ir, only.colouring if only else None)
    return plan


def _collapsed_pairs(ir: ModelIR, groups: dict[str, GroupPlan], blocks) -> list[tuple[str, str]]:
    """(spike, slab) pairs that can be drawn as one block: a binary group and a real group of the
    same shape, each alone in its Gibbs block, without lateral terms, where every monomial holding
    both holds each once at the same subscripts. Given the rest, the pairs (spike[k], slab[k]) are
    then independent, and slab[k] is a Gaussian whose field and precision depend on spike[k] only,
    so it can be summed out of spike[k]'s conditional exactly (Courville et al. 2011)."""
    alone = {b[0] for b in blocks if len(b) == 1}
    pairs, used = [], set()
    for spike in groups.values():
        if spike.domain != "binary" or spike.lateral or spike.name not in alone:
            continue
        for slab in groups.values():
            if (slab.domain != "real" or slab.lateral or slab.name not in alone or slab.name in used
                    or slab.shape != spike.shape):
                continue
            if _diagonal_coupling(ir, spike.name, slab.name):
                pairs.append((spike.name, slab.name))
                used.add(slab.name)
                break
    return pairs


def _diagonal_coupling(ir: ModelIR, a: str, b: str) -> bool:
    """Some monomial holds both a and b, and each that does holds each once at equal subscripts."""
    shared = [m for m in ir.monomials if a in m.groups and b in m.groups]
    if not shared:
        return False
    for m in shared:
        fa = [f for f in m.factors if f.group == a]
        fb = [f for f in m.factors if f.group == b]
        if len(fa) != 1 or len(fb) != 1 or fa[0].power != 1 or fb[0].power not in (1, 2):
            return False
        if tuple(fa[0].index) != tuple(fb[0].index):
            return False
    return True


def _source(ir: ModelIR):
    from ..errors import Source

    return Source("\n".join(ir.source_lines))


def _quoted(ir: ModelIR, span: Span) -> str:
    """The source text of `span`, quoted as in the messages: 'v @ L @ v'."""
    return f"'{excerpt(ir.source_lines, span)}'"


def _classify(m: Monomial, ir: ModelIR, groups: dict[str, GroupPlan], sink: ErrorSink) -> None:
    """Sort each group's occurrences in m into linear, quadratic and lateral. The errors point
    at the product m was expanded from (m.origin), or at the access at fault, and quote them."""
    where = m.origin or m.span
    for name in m.groups:
        g = groups[name]
        occ = m.occurrences(name)
        if len(occ) == 1:
            power = m.factors[occ[0]].power
            if power == 1:
                g.linear.append((m.id, occ[0]))
            elif power == 2 and g.domain == "real":
                g.quadratic.append((m.id, occ[0]))
            else:
                sink.error(f"the {g.domain} variable {name} appears to the power {power} in {_quoted(ir, where)}, "
                           f"but a real variable may appear at most squared", where,
                           "the conditional of a real variable must be Gaussian: use linear and quadratic terms",
                           kind="domain")
            continue
        if g.domain == "real":
            if len(occ) == 2 and all(m.factors[k].power == 1 for k in occ):
                g.coupled.append(m.id)  # x_i x_j: an entry of the precision matrix
                continue
            degree = sum(m.factors[k].power for k in occ)
            sink.error(f"elements of the real variable {name} are multiplied together {degree} at a time in "
                       f"{_quoted(ir, where)}, so its conditional is not Gaussian", where,
                       "a real variable may appear in products of at most two of its elements (x_i x_j or x_i^2)",
                       kind="domain")
        elif g.domain in ONE_HOT:
            sink.error(f"elements of the categorical variable {name} are coupled to each other in "
                       f"{_quoted(ir, where)}", where, "couple categorical variables to other groups only",
                       kind="domain")
        elif len(occ) > 2:
            sink.error(f"the {g.domain} variable {name} appears {len(occ)} times in the product {_quoted(ir, where)}, "
                       f"but at most pairwise interactions within one group are supported", where,
                       "higher-order interactions must involve each group linearly", kind="structure")
        else:
            stuck = _unpinnable(m, occ)
            if stuck is None:
                g.lateral.append(m.id)
                continue
            at = m.factors[stuck].span or where
            sink.error(f"cannot solve the subscripts of {_quoted(ir, at)} in the lateral coupling "
                       f"{_quoted(ir, where)}", at,
                       "subscript each axis of a laterally coupled group with its own index plus a constant",
                       kind="index")


def _unpinnable(m: Monomial, occ: list[int]) -> Optional[int]:
    """The first occurrence whose site its subscripts do not fix, or None if each axis of each
    is `var + offset` with its own var, or has no index at all (x[0], x[n - 1])."""
    names = {r.name for r in m.ranges}
    for k in occ:
        seen = set()
        for p in m.factors[k].index:
            vs = p.symbols() & names
            if not vs:
                continue
            if len(vs) != 1:
                return k
            v = next(iter(vs))
            if p.coefficient(v) != 1 or v in seen or (p - Poly.sym(v)).symbols() & names:
                return k
            seen.add(v)
    return None


def _check_real(g: GroupPlan, ir: ModelIR, sink: ErrorSink) -> None:
    if g.domain != "real" or g.quadratic or g.coupled:
        return
    decl = ir.groups[g.name]
    span = decl.span or Span(decl.line, 1, decl.line, 1)
    sink.error(f"the real variable {g.name} has no quadratic self-term, so its conditional is not a "
               f"normalisable Gaussian", span, f"add a positive term such as sum({g.name}^2) / 2 to the energy",
               kind="domain")


def stencil_offsets(m: Monomial, group: str) -> Optional[tuple[int, ...]]:
    """The constant offset between the two occurrences when they use the same index per axis."""
    a, b = (m.factors[k].index for k in m.occurrences(group))
    diff = []
    for pa, pb in zip(a, b):
        d = pb - pa
        if not d.is_constant():
            return None
        diff.append(d.constant)
    return tuple(diff)


def _lateral_sweep(g: GroupPlan, ir: ModelIR, sink: ErrorSink) -> None:
    offsets = []
    for mid in g.lateral:
        d = stencil_offsets(ir.monomials[mid], g.name)
        if d is None:
            g.sweep = "sequential"
            return
        offsets.append(d)
    ndim = len(g.shape)
    for colours in range(2, MAX_STENCIL_COLOURS + 1):
        for a in itertools.product(range(colours), repeat=ndim):
            if all(sum(x * y for x, y in zip(a, d)) % colours != 0 for d in offsets):
                g.sweep = "stencil"
                g.colouring = (a, colours)
                return
    g.sweep = "sequential"


def _dense(m: Monomial, fi: int, ir: ModelIR) -> Optional[Dense]:
    """Recognise scale * coef * P[a..., x...] * A[a...] * X[x...] over full ranges."""
    if len(m.factors) != 2 or m.guards:
        return None
    other = m.factors[1 - fi]
    mine = m.factors[fi]
    if other.group == mine.group or other.power != 1 or mine.power != 1:
        return None
    names = [r.name for r in m.ranges]
    for r in m.ranges:
        if r.lo != (Poly.const(0),) or len(r.hi) != 1:
            return None
    a_vars = _plain_vars(other.index)
    x_vars = _plain_vars(mine.index)
    if a_vars is None or x_vars is None or set(a_vars) & set(x_vars) or sorted(a_vars + x_vars) != sorted(names):
        return None
    params = [c for c in m.coef if isinstance(c, IAccess) and c.index]
    rest = tuple(c for c in m.coef if not (isinstance(c, IAccess) and c.index))
    if len(params) != 1 or any(iexpr_index_names(c) for c in rest):
        return None
    p = params[0]
    p_vars = _plain_vars(p.index)
    if p_vars is None or len(p_vars) != len(ir.params[p.name].shape):
        return None
    if p_vars == a_vars + x_vars:
        transpose = False
    elif p_vars == x_vars + a_vars:
        transpose = True
    else:
        return None
    if not a_vars or not x_vars:
        return None
    return Dense(other.group, p.name, transpose, rest)


def _plain_vars(index) -> Optional[list[str]]:
    out = []
    for p in index:
        if len(p.terms) != 1 or p.coefficient(next(iter(p.symbols()), "")) != 1 or len(p.symbols()) != 1:
            return None
        out.append(next(iter(p.symbols())))
    return out


def _blocks(ir: ModelIR, groups: dict[str, GroupPlan]) -> list[list[str]]:
    g = group_graph(ir)
    g.remove_edges_from(list(nx.selfloop_edges(g)))
    g.remove_nodes_from([n for n, gp in groups.items() if gp.role == "state"])
    colour = nx.greedy_color(g, strategy="largest_first")
    by_colour: dict[int, list[str]] = {}
    for name in colour:  # declaration order inside a block
        by_colour.setdefault(colour[name], []).append(name)
    return sorted(by_colour.values(), key=lambda b: min(groups[n].index for n in b))


def _default_summed(ir: ModelIR, groups: dict[str, GroupPlan]) -> list[str]:
    """Latent groups summed out by default: a greedy independent set in declaration order."""
    g = group_graph(ir)
    chosen: list[str] = []
    for name, gp in groups.items():
        if gp.role == "latent" and gp.summable and not any(g.has_edge(name, c) for c in chosen):
            chosen.append(name)
    return chosen


def can_sum_out(plan: Plan, summed: list[str]) -> Optional[str]:
    """None if these groups can be summed out together, else why not."""
    g = group_graph(plan.ir)
    for name in summed:
        if not plan.groups[name].summable:
            return f"{name} is coupled to itself (lateral connections), so it cannot be summed out"
    for a, b in itertools.combinations(summed, 2):
        if g.has_edge(a, b):
            return f"{a} and {b} share an energy term, so they cannot be summed out together"
    return None
