"""Plan -> Python source of numba kernels plus a `Model` class.

Kernels take the model's arrays and scalars as plain arguments in one fixed
order (groups, parameters, sizes, constants), so every kernel has the same
calling convention and shapes stay run-time values: one compile serves all
sizes of a model. Dense two-group products become BLAS calls (np.dot); other
terms become explicit loops over their index ranges.
"""
from __future__ import annotations

import hashlib

from .. import __version__, abi, ops
from ..abi import ONE_HOT
from ..analysis.layers import DBN_LAYER_TEXT
from ..analysis.plan import GroupPlan, Plan, stencil_offsets
from ..ir.model import Factor, Monomial, iexpr_index_names, iexpr_text
from . import printer as P
from .annealing import AnnealingEmitter
from . import contract
from .companions import companion_source, dbn_attributes, greedy_attributes
from .tidy import docstring, tidy
from .learning import LearningEmitter
from .multispin import MultispinEmitter
from .numpy_tier import NumpyTierEmitter
from .domains import DRAW, LOGNORM, LOW, MEAN

SITE_DRAW = {"binary": "_k.draw_binary", "spin": "_k.draw_spin"}
SITE_MEAN = {"binary": "_k.sigmoid", "spin": "math.tanh"}
HIT_VALUE = {"binary": "1.0", "spin": "0.0"}  # x_k * x_k = x_k for bits, = 1 (no x_k left) for spins


def add(product: str) -> str:
    """`+= product`, or `-= rest` for a product printed with a leading minus (P.product)."""
    return f"-= {product[1:]}" if product.startswith("-") else f"+= {product}"


def accumulate(alpha: str, value: str) -> str:
    """The right-hand side of `target += alpha * value`, without a factor of 1 or -1."""
    if alpha == "1.0":
        return f"+= {value}"
    if alpha == "-1.0":
        return f"-= {value}"
    return f"+= {alpha} * {value}"


def energy_orders(ir) -> dict[str, list[str]]:
    """The orders the energy kernels' argument families run over (abi.ORDER_NAMES)."""
    return {"groups": list(ir.groups), "params": list(ir.params), "sizes": list(ir.sizes),
            "consts": list(ir.consts)}


def kernel_table(specs: dict, orders: dict) -> list[str]:
    """The class attributes that publish a module's kernels and their calling convention."""
    out = ["KERNELS = {" + ", ".join(f"{n!r}: {n}" for n in specs) + "}",
           "KERNEL_SPEC = {  # each kernel's argument families (gdsl.abi), assembled by name at run time"]
    out += [f"    {n!r}: {tuple(spec)!r}," for n, spec in specs.items()]
    out += ["}", "ORDERS = {  # the items a per-group / per-parameter family runs over"]
    out += [f"    {k!r}: {tuple(v)!r}," for k, v in orders.items()]
    out.append("}")
    return out


def source_hash(text: str) -> str:
    return hashlib.sha256((__version__ + "\0" + text).encode()).hexdigest()


class Emitter(LearningEmitter, AnnealingEmitter, MultispinEmitter):
    def __init__(self, plan: Plan, source_text: str):
        self.plan = plan
        self.ir = plan.ir
        self.sizes = set(self.ir.sizes)
        self.source_text = source_text
        self.orders = energy_orders(self.ir)
        self.args = ", ".join(abi.parameter_names(abi.MODEL, self.orders))
        self.specs: dict[str, tuple] = {}  # kernel name -> its abi spec, in the order written
        self.origin = ""  # "" for the model's own file; else what the comments' line numbers refer to
        self.lines: list[str] = []

    # helpers ----------------------------------------------------------------------
    def w(self, text: str = "", indent: int = 0) -> None:
        self.lines.append("    " * indent + text if text else "")

    def src(self, m: Monomial) -> str:
        line = self.ir.source_lines[m.span.line - 1] if m.span.line <= len(self.ir.source_lines) else ""
        return f"m{m.id}, {self.origin}line {m.span.line}: {P.comment_text(line)}"

    def coef(self, m: Monomial, negate: bool = False, skip_params=False) -> str:
        scale = -m.scale if negate else m.scale
        return P.product([P.number(scale)] + [P.expr(c, self.sizes) for c in m.coef])

    def scalar(self, name: str, parts, indent: int) -> str:
        """A scalar factor of a kernel: a literal when it folds to a number, else bound to `name`."""
        value = P.product(parts)
        if P.is_number(value):
            return value
        self.w(f"{name} = {P.unwrapped(value)}", indent)
        return name

    def access(self, f: Factor, chain: str = "c") -> str:
        idx = ", ".join([chain] + [P.poly(p, self.sizes) for p in f.index])
        a = f"{P.group(f.group)}[{idx}]"
        if f.power == 1:
            return a
        return "(" + " * ".join([a] * f.power) + ")"

    def dims(self, shape) -> list[str]:
        return [P.poly(d, self.sizes) for d in shape]

    def flat(self, shape) -> str:
        d = self.dims(shape)
        return " * ".join(d) if d else "1"

    def loop_nest(self, m: Monomial, body: list[str], indent: int, pinned: dict | None = None,
                  implied: frozenset = frozenset(), skip: tuple | None = None) -> None:
        """Loops over the monomial's index ranges; `pinned` indices are fixed by a site instead
        (their range is checked unless `implied`, i.e. the site loop already guarantees it).
        `skip` = (depth, name, access): after the loop at `depth`, bind `name = access` and run
        the inner loops only where it is not zero."""
        pinned = pinned or {}
        for depth, r in enumerate(m.ranges):
            lo = P.bound(r.lo, "max", self.sizes)
            hi = P.bound(r.hi, "min", self.sizes)
            if r.name in pinned:
                self.w(f"{r.name} = {pinned[r.name]}", indent)
                if r.name in implied:
                    continue
                self.w(f"if {lo} <= {r.name} < {hi}:", indent)
            else:
                self.w(f"for {r.name} in range({lo}, {hi}):", indent)
            indent += 1
            if skip is not None and skip[0] == depth:
                self.w(f"{skip[1]} = {skip[2]}", indent)
                self.w(f"if {skip[1]} != 0.0:", indent)
                indent += 1
        if m.guards:
            cond = " and ".join(f"0 <= {P.poly(g.expr, self.sizes)} < {P.poly(g.dim, self.sizes)}"
                                for g in m.guards)
            self.w(f"if {cond}:", indent)
            indent += 1
        for b in body:
            self.w(b, indent)

    def indices_of(self, f: Factor) -> frozenset:
        return frozenset(s for p in f.index for s in p.symbols()) - self.sizes

    def contracted(self, m: Monomial, terms: list, target: frozenset, write, indent: int = 1) -> bool:
        """Emit the chain loop of monomial m with indices summed out early where that saves work
        (codegen/contract.py): `terms` are (text, index names) of the product, `write(product)`
        gives the body lines of the main nest. False, with nothing emitted, if m's nest is not
        rectangular or no partial sum helps: the caller writes the plain nest."""
        names = {r.name for r in m.ranges}
        if m.guards or any(b.symbols() & names for r in m.ranges for b in r.lo + r.hi):
            return False
        order = [r.name for r in m.ranges]
        c = contract.plan([idx for _, idx in terms], order, target, prefix=f"t{self.nests + 1}_")
        if not c.partials:
            return False
        self.nests += 1  # partial names are unique in a kernel: numba types each name once
        ranges = {r.name: r for r in m.ranges}
        lo = {n: P.bound(ranges[n].lo, "max", self.sizes) for n in names}
        hi = {n: P.bound(ranges[n].hi, "min", self.sizes) for n in names}
        texts = {k: t for k, (t, _) in enumerate(terms)}
        for k, p in enumerate(c.partials):  # partial k is term len(terms) + k
            at = ", ".join(n if lo[n] == "0" else f"{n} - ({lo[n]})" for n in p.interface)
            texts[len(terms) + k] = f"{p.name}[{at}]" if p.interface else p.name
            if p.interface:
                extent = ", ".join(hi[n] if lo[n] == "0" else f"{hi[n]} - ({lo[n]})" for n in p.interface)
                self.w(f"{p.name} = np.empty(({extent},))  # a partial sum (codegen/contract.py)", indent)
        self.w("for c in range(n):", indent)
        for k, p in enumerate(c.partials):
            self.w(f"{p.name}{'.fill(0.0)' if p.interface else ' = 0.0'}", indent + 1)
            inner = self.loops([n for n in order if n in p.interface or n in p.summed], lo, hi, indent + 1)
            value = P.product([texts[j] for j in p.members])
            self.w(f"{texts[len(terms) + k]} += {P.unwrapped(value)}", inner)
        # the main nest: the result's indices outside, the rest summed into a scalar inside (one
        # write per result element, and an inner loop numba can vectorise)
        outer = self.loops([n for n in c.main if n in target], lo, hi, indent + 1)
        product = P.product([texts[j] for j in c.remaining])
        inside = [n for n in c.main if n not in target]
        if inside:
            self.w("acc = 0.0", outer)
            inner = self.loops(inside, lo, hi, outer)
            self.w(f"acc += {P.unwrapped(product)}", inner)
            product = "acc"
        for line in write(product):
            self.w(line, outer)
        return True

    def loops(self, names: list, lo: dict, hi: dict, indent: int) -> int:
        for n in names:
            self.w(f"for {n} in range({lo[n]}, {hi[n]}):", indent)
            indent += 1
        return indent

    def kernel(self, name: str, spec: str, doc: str) -> None:
        """Open kernel `name` with the parameters of abi.SPECS[spec] (recorded for KERNEL_SPEC)."""
        self.specs[name] = abi.SPECS[spec]
        self.w()
        self.w()
        self.w("@numba.njit(cache=True, nogil=True)")
        self.w(f"def {abi.signature(name, abi.SPECS[spec], self.orders)}:")
        self.lines += docstring(doc, 1)
        self.bound_rows = set()  # groups whose (chains, elements) shape is bound in this kernel
        self.nests = 0  # contracted loop nests so far in this kernel

    # module -------------------------------------------------------------------------
    def module(self, greedy=None, finish: bool = True) -> str:
        """The module's text; `finish=False` leaves the last pass (tidy) to an enclosing module."""
        digest = source_hash(self.source_text)
        self.header(self.lines, self.ir, self.source_text, "ModelBase", self.plan.schedule())
        self.energy_kernels()
        tier = self.numpy_tier() if finish else []  # a layer model inside a module runs on numba
        classes = self.layer_models(greedy)
        self.model_class(digest, extra=greedy_attributes(greedy, classes) + tier)
        return "\n".join(tidy(self.lines) if finish else self.lines) + "\n"

    def numpy_tier(self) -> list[str]:
        """Write the numpy tier's kernels (codegen/numpy_tier.py); return its class attributes."""
        lines, attributes = NumpyTierEmitter(self.plan, self.sizes, self.orders, self.src).section()
        if lines:
            at = self.lines.index("from gdsl.runtime import kernels as _k") + 1
            self.lines.insert(at, "from gdsl.runtime import npkernels as _nk")
            self.lines += lines
        return attributes

    def layer_models(self, greedy) -> list:
        """The layer RBMs of greedy pretraining as companion classes (None: the model itself)."""
        if greedy is None or greedy.refused:
            return []
        classes = []
        for k, level in enumerate(greedy.levels):
            if level.plan is None:
                classes.append(None)
                continue
            name = f"Layer{k + 1}Model"
            self.lines += ["", "", f"# ---- greedy pretraining, layer RBM {k + 1}: {', '.join(level.lower)} -> "
                           f"{', '.join(level.upper)} (the model's own terms; see `gdsl dump --stage plan`)"]
            text = Emitter(level.plan, self.source_text).module(finish=False)
            self.lines += companion_source(text, f"layer{k + 1}_", name)
            classes.append(name)
        return classes

    @staticmethod
    def header(lines: list, ir, source_text: str, base: str, schedule: str | None) -> None:
        digest = source_hash(source_text)
        lines.append(f"# Generated by gdsl {__version__} from model '{ir.name}' (source sha256 {digest[:16]}).")
        lines.append("# Do not edit: regenerate with `gdsl compile`. Comments 'mN, line L' point to the")
        lines.append("# energy monomial N (see `gdsl dump --stage ir`) and the .gdl line it comes from;")
        lines.append("# 'vN, line L' to value N of the directed plan (`gdsl dump --stage plan`).")
        if schedule is not None:
            lines.append(f"# Schedule: {P.comment_text(schedule)}")
        lines += ["import math", "", "import numba", "import numpy as np", "",
                  "from gdsl.runtime import kernels as _k"]
        if _initialisers_call_functions(ir):
            lines.append("from gdsl.ops import PY as _py  # Python versions of the functions, for initialisers")
        module = {"ModelBase": "model", "SequenceModel": "sequence"}.get(base, "directed")
        lines.append(f"from gdsl.runtime.{module} import {base}")

    def energy_kernels(self) -> None:
        for g in self.plan.groups.values():
            self.field_kernel(g)
            if g.coupled:
                self.precision_kernel(g)
            if self._splits(g):
                self.field_part_kernel(g, held=True)
                self.field_part_kernel(g, held=False)
        self.gibbs_kernel()
        self.multispin_kernel()
        self.mean_field_kernel()
        self.free_energy_kernel()
        self.learning_kernels()
        self.annealing_kernels()

    # field ----------------------------------------------------------------------------
    def field_kernel(self, g: GroupPlan) -> None:
        real = g.domain == "real"
        self.kernel(f"field_{g.name}", "field_real" if real else "field", f"f = -dE/d{g.name} from the terms where {g.name} appears once"
                    + (f"; q = coefficient of {g.name}^2" if real else "")
                    + (" (lateral terms are added per site)." if g.lateral else "."))
        self.w("n = f.shape[0]", 1)
        first = g.linear[0][0] if g.linear else None
        if first is None or first not in g.dense:
            self.w("f.fill(0.0)", 1)
        if real:
            self.w("q.fill(0.0)", 1)
        self.linear_terms(g, g.linear, first)
        for mid, fi in g.quadratic:
            m = self.plan.monomials[mid]
            self.w(f"# {self.src(m)}  (quadratic)", 1)
            self.scatter(m, fi, "q", negate=False)

    # a field in two parts, where a model has groups Gibbs never moves (a sequence's states)
    def _held_terms(self, g: GroupPlan) -> list[tuple[int, int]]:
        """The linear terms of g's field whose other factors are all states (or none): they do
        not change during a Gibbs call."""
        states = {n for n, gp in self.plan.groups.items() if gp.role == "state"}
        return [(mid, fi) for mid, fi in g.linear
                if all(f.group in states for k, f in enumerate(self.plan.monomials[mid].factors) if k != fi)]

    def _splits(self, g: GroupPlan) -> bool:
        """Whether Gibbs computes g's field as a held part (once per call) plus a moving part
        (every sweep): only in models with states, for a group with terms of each kind."""
        if (g.role == "state" or g.domain == "real" or g.coupled or g.lateral or g.name not in self.blocked
                or not any(gp.role == "state" for gp in self.plan.groups.values())):
            return False
        held = self._held_terms(g)
        return bool(held) and len(held) < len(g.linear)

    @property
    def blocked(self) -> set:
        return {n for b in self.plan.blocks for n in b}

    def field_part_kernel(self, g: GroupPlan, held: bool) -> None:
        part = "held" if held else "moving"
        self.kernel(f"field_{g.name}_{part}", "field",
                    f"f = the terms of -dE/d{g.name} whose other groups are all states (held during a Gibbs call)"
                    if held else f"f = the other terms of -dE/d{g.name} (those with a group Gibbs moves).")
        self.w("n = f.shape[0]", 1)
        terms = set(self._held_terms(g))
        chosen = [(mid, fi) for mid, fi in g.linear if ((mid, fi) in terms) == held]
        first = chosen[0][0] if chosen[0][0] in g.dense else None
        if first is None:
            self.w("f.fill(0.0)", 1)
        self.linear_terms(g, chosen, first)

    def linear_terms(self, g: GroupPlan, terms, first) -> None:
        """f += each term's -dE/dg; the dense term `first` writes its product in place."""
        for mid, fi in terms:
            m = self.plan.monomials[mid]
            self.w(f"# {self.src(m)}", 1)
            if mid in g.dense:
                self.dense_field(g, m, fi, overwrite=mid == first)
            else:
                self.scatter(m, fi, "f", negate=True)

    def precision_kernel(self, g: GroupPlan) -> None:
        """pp[c, a, b] += d2E / dx_a dx_b from the monomials holding two elements of x (both orders,
        so a term t x_a x_b gives pp[a, b] = pp[b, a] = t, and t x_a x_a gives pp[a, a] = 2t)."""
        self.kernel(f"precision_{g.name}", "precision",
                    f"pp[c] = the coupling part of the precision matrix of {g.name} given the rest, over its "
                    f"flattened elements (the squared terms add 2q on the diagonal in the samplers).")
        self.w("n = pp.shape[0]", 1)
        self.w("pp.fill(0.0)", 1)
        dims = self.dims(g.shape)
        for mid in g.coupled:
            m = self.plan.monomials[mid]
            self.w(f"# {self.src(m)}", 1)
            first, second = m.occurrences(g.name)
            flat = [self.flat_index(m.factors[k].index, dims) for k in (first, second)]

            def body(value: str) -> list[str]:
                return [f"t = {P.unwrapped(value)}", f"pp[c, {flat[0]}, {flat[1]}] += t",
                        f"pp[c, {flat[1]}, {flat[0]}] += t"]

            target = self.indices_of(m.factors[first]) | self.indices_of(m.factors[second])
            if self.contracted(m, self.product_terms(m, leave_out=(first, second)), target, body):
                continue
            others = [self.access(o) for k, o in enumerate(m.factors) if k not in (first, second)]
            self.w("for c in range(n):", 1)
            self.loop_nest(m, body(P.product([self.coef(m, negate=False)] + others)), 2)

    def flat_index(self, index, dims: list[str]) -> str:
        """The row-major flat position of a subscript (i, j, ...) in an array of shape dims."""
        parts = [P.poly(p, self.sizes) for p in index]
        out = parts[0]
        for part, dim in zip(parts[1:], dims[1:]):
            out = f"({out}) * {dim} + {part}"
        return out

    def dense_field(self, g: GroupPlan, m: Monomial, fi: int, overwrite: bool) -> None:
        """f += alpha * A @ P: BLAS, or rows of P for the nonzeros of A when A is mostly 0
        (binary data and samples); the first term of a field writes the product in place."""
        d = g.dense[m.id]
        other = self.ir.groups[d.other]
        na, nx = self.flat(other.shape), self.flat(g.shape)
        rows, cols = (nx, na) if d.transpose else (na, nx)
        mat = f"{P.param(d.param)}.reshape(({rows}, {cols}))" + (".T" if d.transpose else "")
        scalar = [P.number(-m.scale)] + [P.expr(c, self.sizes) for c in d.scalar_coef]
        self.w(f"a2 = {P.group(d.other)}.reshape((n, {na}))", 1)
        self.w(f"f2 = f.reshape((n, {nx}))", 1)
        alpha = self.scalar("alpha", scalar, 1)
        p2 = f"{P.param(d.param)}.reshape(({rows}, {cols}))"
        if not d.transpose:  # rows of P are contiguous: skipping zeros of A pays
            self.w(f"if _k.use_loops(a2, {nx}):", 1)
            if overwrite:
                self.w("f2.fill(0.0)", 2)
            self.w(f"_k.sparse_dot(a2, {p2}, f2, {alpha})", 2)
        else:  # small products: row dot products, no BLAS call overhead
            self.w(f"if a2.shape[0] * {na} * {nx} < _k.SMALL_PRODUCT:", 1)
            if overwrite:
                self.w("f2.fill(0.0)", 2)
            self.w(f"_k.dot_t(a2, {p2}, f2, {alpha})", 2)
            # binary units mostly on (a trained RNN-RBM's hidden units): the row sums of P less its
            # columns at A's zeros
            self.w("elif _k.mostly_ones(a2):", 1)
            if overwrite:
                self.w("f2.fill(0.0)", 2)
            self.w(f"_k.complement_dot_t(a2, {p2}, f2, {alpha})", 2)
        self.w("else:", 1)
        indent = 2
        if overwrite:
            self.w(f"np.dot(a2, {mat}, f2)", indent)
            if alpha != "1.0":
                self.w("for c in range(n):", indent)
                self.w(f"for j in range({nx}):", indent + 1)
                self.w(f"f2[c, j] *= {alpha}", indent + 2)
            return
        self.w(f"t = np.dot(a2, {mat})", indent)
        self.w("for c in range(n):", indent)
        self.w(f"for j in range({nx}):", indent + 1)
        self.w(f"f2[c, j] {accumulate(alpha, 't[c, j]')}", indent + 2)

    def product_terms(self, m: Monomial, negate: bool = False, leave_out=()) -> list:
        """(text, index names) of m's scale, coefficient expressions and factors (but `leave_out`)."""
        scale = -m.scale if negate else m.scale
        terms = [(P.number(scale), frozenset())]
        terms += [(P.expr(c, self.sizes), frozenset(iexpr_index_names(c)) - self.sizes) for c in m.coef]
        return terms + [(self.access(o), self.indices_of(o)) for k, o in enumerate(m.factors) if k not in leave_out]

    def scatter(self, m: Monomial, fi: int, target: str, negate: bool) -> None:
        f = m.factors[fi]
        idx = ", ".join(["c"] + [P.poly(p, self.sizes) for p in f.index])
        if self.contracted(m, self.product_terms(m, negate, (fi,)), self.indices_of(f),
                           lambda value: [f"{target}[{idx}] {add(value)}"]):
            return
        skip = self.zero_skip(m, fi)
        others = [skip[1] if skip and k == skip[3] else self.access(o) for k, o in enumerate(m.factors) if k != fi]
        value = P.product([self.coef(m, negate)] + others)
        self.w("for c in range(n):", 1)
        self.loop_nest(m, [f"{target}[{idx}] {add(value)}"], 2, skip=skip[:3] if skip else None)

    def zero_skip(self, m: Monomial, fi: int):
        """(depth, name, access, factor) for a factor of a binary or one-hot group (mostly zeros in
        samples) that outer loops already fix while inner loops remain: the inner loops run only
        where it is one (a convolution's back-projection from sparse detector units). None if
        there is none, or if the monomial has guards (the access could be out of range before them)."""
        if m.guards or len(m.ranges) < 2:
            return None
        depth_of = {r.name: d for d, r in enumerate(m.ranges)}
        for k, o in enumerate(m.factors):
            if k == fi or o.power != 1 or self.ir.groups[o.group].domain not in ("binary",) + ONE_HOT:
                continue
            names = set().union(*(p.symbols() for p in o.index)) - self.sizes
            if not names <= set(depth_of):
                continue
            depth = max((depth_of[v] for v in names), default=-1)
            if 0 <= depth < len(m.ranges) - 1:
                return depth, f"z{k}", self.access(o), k
        return None

    # lateral couplings: the field at one site --------------------------------------------------
    def site_field(self, g: GroupPlan, indent: int) -> None:
        """Emit code leaving the lateral part of -dE/dx at site (k0, k1, ...) of chain c in `acc`.

        Written inline in the sweep: a numba call per site costs more than the update itself."""
        ks = [f"k{d}" for d in range(len(g.shape))]
        self.w("acc = 0.0", indent)
        for mid in g.lateral:
            m = self.plan.monomials[mid]
            occ = m.occurrences(g.name)
            same_site_possible = stencil_offsets(m, g.name) is None
            for p_pos, p in enumerate(occ):
                self.w(f"# {self.src(m)}  ({g.name} occurrence {p_pos + 1} at the site)", indent)
                pinned, implied, fixed = {}, set(), []
                ranges = {r.name: r for r in m.ranges}
                for k, ix, dim in zip(ks, m.factors[p].index, g.shape):
                    if not ix.symbols() - self.sizes:  # a fixed subscript: only that site takes part
                        fixed.append(f"{k} == {P.poly(ix, self.sizes)}")
                        continue
                    var = next(iter(ix.symbols() - self.sizes))
                    rest = ix - _sym(var)
                    pinned[var] = k if rest == 0 else f"{k} - ({P.poly(rest, self.sizes)})"
                    r = ranges[var]
                    if rest == 0 and r.lo == (_zero(),) and r.hi == (dim,):
                        implied.add(var)  # k runs over [0, dim) already
                body = []
                factors = []
                for k_f, fac in enumerate(m.factors):
                    if k_f == p:
                        continue
                    if fac.group == g.name and same_site_possible:
                        hit = self.hits(fac, ks)
                        factors.append(f"({HIT_VALUE[g.domain]} if {hit} else {self.access(fac)})")
                    else:
                        factors.append(self.access(fac))
                value = P.product([self.coef(m, negate=True)] + factors)
                if p_pos > 0 and same_site_possible:
                    body.append(f"if not ({self.hits(m.factors[occ[0]], ks)}):")
                    body.append(f"    acc {add(value)}")
                else:
                    body.append(f"acc {add(value)}")
                if fixed:
                    self.w(f"if {' and '.join(fixed)}:", indent)
                self.loop_nest(m, body, indent + bool(fixed), pinned, frozenset(implied))

    def hits(self, f: Factor, ks) -> str:
        return " and ".join(f"{P.poly(p, self.sizes)} == {k}" for p, k in zip(f.index, ks))

    # sweeps ---------------------------------------------------------------------------------------
    def _masks(self) -> str:
        return ", ".join(f"m_{g}" for g in self.ir.groups)

    def _free(self) -> str:
        return ", ".join(f"free_{g}" for g in self.ir.groups)

    def _sweep_start(self) -> None:
        """The opening of every sweep kernel: the number of chains and a field buffer per group."""
        self.w(f"n = {P.group(next(iter(self.ir.groups)))}.shape[0]", 1)
        self._buffers(1)
        for g in self.plan.groups.values():
            if not g.lateral:  # the (chains, elements) views the domain kernels take, shaped once
                self.w(f"rows_{g.name} = {self._rows(g)}", 1)
                self.bound_rows.add(g.name)

    def _buffers(self, indent: int) -> None:
        for g in self.plan.groups.values():
            self.w(f"f_{g.name} = np.empty_like({P.group(g.name)})", indent)
            if g.domain == "real":
                self.w(f"q_{g.name} = np.empty_like({P.group(g.name)})", indent)
            if g.coupled:
                self.precision_buffer(g, indent)

    def precision_buffer(self, g: GroupPlan, indent: int) -> None:
        x = P.group(g.name)
        self.w(f"pp_{g.name} = np.empty((n, {x}.size // n, {x}.size // n), {x}.dtype)", indent)

    def _field_call(self, g: GroupPlan) -> str:
        extra = f", q_{g.name}" if g.domain == "real" else ""
        return f"field_{g.name}({self.args}, f_{g.name}{extra})"

    def fields(self, g: GroupPlan, indent: int) -> None:
        """The field of g (and, for a coupled real group, the coupling part of its precision);
        in Gibbs, a split field is its held part (computed once per call) plus its moving part."""
        if getattr(self, "held_fields", False) and self._splits(g):
            # the moving part's first product writes f in place (no temporary), then the held part is added
            self.w(f"field_{g.name}_moving({self.args}, f_{g.name})", indent)
            self.w(f"f_{g.name} += held_{g.name}", indent)
            return
        self.w(self._field_call(g), indent)
        if g.coupled:
            self.w(f"precision_{g.name}({self.args}, pp_{g.name})", indent)

    def domain_kernel(self, kind: str, g: GroupPlan) -> str:
        """The runtime kernel that draws ("draw"), averages ("mean") or sums out ("lognorm") g."""
        if g.coupled:
            return f"gaussian_block_{kind}"
        return {"draw": DRAW, "mean": MEAN, "lognorm": LOGNORM}[kind][g.domain]

    def _rows(self, g: GroupPlan) -> str:
        if g.domain in ONE_HOT:
            k = P.poly(g.categories, self.sizes)
            return f"(n, {P.group(g.name)}.size // (n * {k}), {k})"
        return f"(n, {P.group(g.name)}.size // n)"

    def _views(self, g: GroupPlan, names) -> str:
        shape = f"rows_{g.name}" if g.name in self.bound_rows else self._rows(g)
        return ", ".join(a if a.startswith("pp_") else f"{a}.reshape({shape})" for a in names)

    def _arrays(self, g: GroupPlan) -> list[str]:
        """field, (quadratic coefficient, coupling precision,) values, mask: the arguments of the
        domain kernels."""
        q = [f"q_{g.name}"] if g.domain == "real" else []
        pp = [f"pp_{g.name}"] if g.coupled else []
        return [f"f_{g.name}"] + q + pp + [P.group(g.name), f"m_{g.name}"]

    def _each_block(self, update, indent: int = 2, collapse: bool = False, flag: str = "free_") -> None:
        """For every Gibbs block in order: the field of each free group, then `update(group, indent)`.
        With `collapse`, a (spike, slab) pair of the plan is drawn as one block where the spike's
        block stands, unless the slab is clamped somewhere (then the two updates in turn). `flag`
        names the per-group flags that say which groups move (AIS moves its `rest_` groups)."""
        pairs = dict(self.plan.collapsed) if collapse else {}
        slabs = set(pairs.values())
        for b, block in enumerate(self.plan.blocks):
            self.w(f"# block {b + 1}: {{{', '.join(block)}}}", indent)
            if block[0] in slabs:
                self.w(f"# (drawn with its spike {next(k for k, v in pairs.items() if v == block[0])})", indent)
                continue
            if block[0] in pairs:
                self.collapsed_update(block[0], pairs[block[0]], update, indent)
                continue
            for name in block:
                g = self.plan.groups[name]
                self.w(f"if {flag}{name}:", indent)
                self.fields(g, indent + 1)
                update(g, indent + 1)

    def collapsed_update(self, spike: str, slab: str, update, indent: int) -> None:
        """Draw the spike with the slab summed out, then the slab given the spike: the slab's field
        and precision are computed with every spike off and on, and the spike's logit gains the
        difference of the slab's log-normalisers (its own field is taken with the slab at 0)."""
        h, s = self.plan.groups[spike], self.plan.groups[slab]
        xh, xs = P.group(spike), P.group(slab)
        self.w(f"if free_{spike} and free_{slab} and not _k.any_clamped(m_{slab}):", indent)
        i = indent + 1
        self.w(f"# {spike} with {slab} summed out, then {slab} given {spike} (one block)", i)
        self.w(f"kept_{spike}[...] = {xh}", i)
        self.w(f"{xs}.fill(0.0)", i)
        self.fields(h, i)
        for state, suffix in (("0.0", "0"), ("1.0", "1")):
            self.w(f"{xh}.fill({state})", i)
            self.w(f"field_{slab}({self.args}, f{suffix}_{slab}, q{suffix}_{slab})", i)
        self.w(f"{xh}[...] = kept_{spike}", i)
        rows = self._rows(h)
        views = ", ".join(f"{a}.reshape({rows})" for a in
                          (f"f_{spike}", f"f0_{slab}", f"q0_{slab}", f"f1_{slab}", f"q1_{slab}"))
        self.w(f"ok &= _k.add_slab_integral({views})", i)
        update(h, i)
        self.fields(s, i)
        update(s, i)
        self.w("else:", indent)
        for g in (h, s):
            self.w(f"if free_{g.name}:", indent + 1)
            self.fields(g, indent + 2)
            update(g, indent + 2)

    def gibbs_kernel(self) -> None:
        self.kernel("gibbs", "gibbs",
                    "Run `steps` block-Gibbs sweeps over all chains in place; mask != 0 keeps an element. "
                    "Returns False if a Gaussian conditional had a non-positive precision.")
        self._sweep_start()
        for spike, slab in self.plan.collapsed:  # the collapsed block's buffers, once per call
            self.w(f"kept_{spike} = np.empty_like({P.group(spike)})", 1)
            for a in (f"f0_{slab}", f"q0_{slab}", f"f1_{slab}", f"q1_{slab}"):
                self.w(f"{a} = np.empty_like({P.group(slab)})", 1)
        for g in self.plan.groups.values():
            if self._splits(g):  # the states' terms do not change during the sweeps
                self.w(f"held_{g.name} = np.empty_like({P.group(g.name)})", 1)
                self.w(f"field_{g.name}_held({self.args}, held_{g.name})", 1)
        self.w("ok = True", 1)
        self.w("for step in range(steps):", 1)

        def draw(g: GroupPlan, indent: int) -> None:
            if g.lateral:
                self.site_sweep(g, indent, draw=True)
                return
            call = f"_k.{self.domain_kernel('draw', g)}({self._views(g, self._arrays(g))}, rng{LOW.get(g.domain, '')})"
            self.w(f"ok &= {call}" if g.domain == "real" else call, indent)

        self.held_fields = True
        try:
            self._each_block(draw, collapse=True)
        finally:
            self.held_fields = False
        self.w("return ok", 1)

    def site_sweep(self, g: GroupPlan, indent: int, draw: bool, lateral_scale: str = "") -> None:
        if draw and self._rows_of_a_colour(g):
            self.stencil_row_sweep(g, indent, lateral_scale)
            return
        dims = self.dims(g.shape)
        ks = [f"k{d}" for d in range(len(dims))]
        x = P.group(g.name)
        self.w("for c in range(n):", indent)
        indent += 1
        if g.sweep == "stencil":
            a, colours = g.colouring
            self.w(f"for colour in range({colours}):  # colour(k) = {a} . k mod {colours}", indent)
            indent += 1
        for d, (k, dim) in enumerate(zip(ks, dims)):
            last = d == len(dims) - 1
            if g.sweep == "stencil" and last and _invertible(a[-1], colours):
                self.w(_colour_start(a, ks, colours), indent)
                self.w(f"for {k} in range(start, {dim}, {colours}):", indent)
            else:
                self.w(f"for {k} in range({dim}):", indent)
            indent += 1
        if g.sweep == "stencil" and not _invertible(a[-1], colours):
            total = " + ".join(f"{a[e]} * {ks[e]}" for e in range(len(ks)))
            self.w(f"if ({total}) % {colours} != colour:", indent)
            self.w("continue", indent + 1)
        site = ", ".join(["c"] + ks)
        self.w(f"if m_{g.name}[{site}] == 0:", indent)
        self.site_field(g, indent + 1)
        self.w(f"a = f_{g.name}[{site}] + {lateral_scale}acc", indent + 1)
        if draw:
            self.w(f"{x}[{site}] = {SITE_DRAW[g.domain]}(a, rng, c)", indent + 1)
        else:
            self.w(f"new = damping * {x}[{site}] + (1.0 - damping) * {SITE_MEAN[g.domain]}(a)", indent + 1)
            self.w(f"delta = max(delta, abs(new - {x}[{site}]))", indent + 1)
            self.w(f"{x}[{site}] = new", indent + 1)

    @staticmethod
    def _rows_of_a_colour(g: GroupPlan) -> bool:
        """Whether a Gibbs sweep of g can go a row of one colour at a time: a coloured lattice of
        two-state units whose last subscript steps through each colour with a fixed stride."""
        if g.sweep != "stencil" or g.domain not in SITE_DRAW:
            return False
        a, colours = g.colouring
        return _invertible(a[-1], colours)

    def stencil_row_sweep(self, g: GroupPlan, indent: int, lateral_scale: str) -> None:
        """A coloured lattice swept a row of one colour at a time: the fields of the row's sites
        (coupled only to the other colours, so none of them moves while the row is read), then
        exp over the row in SIMD blocks, then the draws with the chain's stream held in
        registers. One uniform per free site, in site order: the draws of the site-by-site sweep,
        about twice as fast (math.exp was most of a site's time)."""
        dims = self.dims(g.shape)
        ks = [f"k{d}" for d in range(len(dims))]
        x = P.group(g.name)
        a, colours = g.colouring
        low = LOW[g.domain].lstrip(", ")
        self.w(f"row_{g.name} = np.empty({dims[-1]} // {colours} + 1, {x}.dtype)  # one row of one colour: "
               f"exp(-gap a)", indent)
        self.w(f"bits_{g.name} = np.empty(_k.BLOCK, np.int64)", indent)
        self.w("for c in range(n):", indent)
        indent += 1
        self.w("s0 = rng[c, 0]", indent)
        self.w("s1 = rng[c, 1]", indent)
        self.w(f"for colour in range({colours}):  # colour(k) = {a} . k mod {colours}", indent)
        indent += 1
        for k, dim in zip(ks[:-1], dims[:-1]):
            self.w(f"for {k} in range({dim}):", indent)
            indent += 1
        self.w(_colour_start(a, ks, colours), indent)
        site = ", ".join(["c"] + ks)
        self.w("j = 0", indent)
        self.w(f"for {ks[-1]} in range(start, {dims[-1]}, {colours}):", indent)
        self.site_field(g, indent + 1)  # masked sites too: their draw is skipped below
        self.w(f"row_{g.name}[j] = f_{g.name}[{site}] + {lateral_scale}acc", indent + 1)
        self.w("j += 1", indent + 1)
        self.w(f"_k.vexp_scaled_inplace(row_{g.name}[:j], {P.number(-(1.0 - float(low)))}, bits_{g.name})", indent)
        self.w("j = 0", indent)
        self.w(f"for {ks[-1]} in range(start, {dims[-1]}, {colours}):", indent)
        self.w(f"if m_{g.name}[{site}] == 0:", indent + 1)
        self.w("u, s0, s1 = _k.next_uniform(s0, s1)", indent + 2)
        self.w(f"{x}[{site}] = 1.0 if u * (1.0 + row_{g.name}[j]) < 1.0 else {low}", indent + 2)
        self.w("j += 1", indent + 1)
        indent -= len(ks)
        self.w("rng[c, 0] = s0", indent)
        self.w("rng[c, 1] = s1", indent)

    def mean_field_kernel(self) -> None:
        self.kernel("mean_field", "mean_field",
                    "Mean-field fixed point, block by block; the group arrays hold the means. "
                    "Returns (iterations, last max change); iterations = -1 on a non-positive precision.")
        self._sweep_start()
        mean_field_loop(self.w, self.plan)

        def update(g: GroupPlan, indent: int) -> None:
            if g.lateral:
                self.site_sweep(g, indent, draw=False)
                return
            self.w(f"d = _k.{self.domain_kernel('mean', g)}({self._views(g, self._arrays(g))}, damping{LOW.get(g.domain, '')})",
                   indent)
            self.w("if d < 0.0:", indent)
            self.w("return -1, delta", indent + 1)
            self.w("delta = max(delta, d)", indent)

        self._each_block(update)
        self.w("if delta <= tol or one_sweep:", 2)
        self.w("return it + 1, delta", 3)
        self.w("return max_iter, delta", 1)

    # energy and free energy ---------------------------------------------------------------------
    def free_energy_kernel(self) -> None:
        flags = ", ".join(f"sum_{g}" for g in self.ir.groups)
        self.kernel("free_energy", "free_energy",
                    "out[c] = free energy of chain c at inverse temperature beta (beta * E), with the groups "
                    "flagged sum_* summed out analytically (they must not share a term). Returns False on a "
                    "non-positive Gaussian precision.")
        self.w("n = out.shape[0]", 1)
        self.w("out.fill(0.0)", 1)
        self.w("ok = True", 1)
        each_energy_term(self.w, self.plan, self.src, self.energy_term)
        self.w("if beta != 1.0:", 1)
        self.w("for c in range(n):", 2)
        self.w("out[c] *= beta", 3)
        partner = {a: b for pair in self.plan.collapsed for a, b in (pair, pair[::-1])}
        for spike, slab in self.plan.collapsed:
            self.pair_lognorm(spike, slab)
        for g in self.plan.groups.values():
            if not g.summable:
                continue
            alone = f" and not sum_{partner[g.name]}" if g.name in partner else ""
            self.w(f"if sum_{g.name}{alone}:  # log-normaliser of {g.name}: {g.conditional}", 1)
            self.w(f"f_{g.name} = np.empty_like({P.group(g.name)})", 2)
            if g.domain == "real":
                self.w(f"q_{g.name} = np.empty_like({P.group(g.name)})", 2)
            if g.coupled:
                self.precision_buffer(g, 2)
            self.fields(g, 2)
            self.w("if beta != 1.0:", 2)
            self.w(f"_k.scale(f_{g.name}.reshape(-1), beta)", 3)
            if g.domain == "real":
                self.w(f"_k.scale(q_{g.name}.reshape(-1), beta)", 3)
            if g.coupled:
                self.w(f"_k.scale(pp_{g.name}.reshape(-1), beta)", 3)
            arrays = [f"f_{g.name}"] + ([f"q_{g.name}"] if g.domain == "real" else [])
            arrays += [f"pp_{g.name}"] if g.coupled else []
            call = f"_k.{self.domain_kernel('lognorm', g)}({self._views(g, arrays)}, out{LOW.get(g.domain, '')})"
            self.w(f"ok &= {call}" if g.domain == "real" else call, 2)
        self.w("return ok", 1)

    def pair_lognorm(self, spike: str, slab: str) -> None:
        """Both of a (spike, slab) pair summed out: per element, log sum over the spike's two values
        of exp(beta f_spike) times the slab's Gaussian integral given that value. The fields are
        computed on zeroed copies of the pair (the caller's state is not touched)."""
        self.w(f"if sum_{spike} and sum_{slab}:  # {spike} and {slab} summed out together (a spike-and-slab pair)", 1)
        local = {spike: f"pair_{spike}", slab: f"pair_{slab}"}
        args = ", ".join(local.get(name[2:], name) if name.startswith("x_") else name
                         for name in abi.parameter_names(abi.MODEL, self.orders))
        for name, var in local.items():
            self.w(f"{var} = np.zeros_like({P.group(name)})", 2)
        self.w(f"f_{spike} = np.empty_like({P.group(spike)})", 2)
        self.w(f"field_{spike}({args}, f_{spike})", 2)
        for state, suffix in (("0.0", "0"), ("1.0", "1")):
            self.w(f"pair_{spike}.fill({state})", 2)
            self.w(f"f{suffix}_{slab} = np.empty_like({P.group(slab)})", 2)
            self.w(f"q{suffix}_{slab} = np.empty_like({P.group(slab)})", 2)
            self.w(f"field_{slab}({args}, f{suffix}_{slab}, q{suffix}_{slab})", 2)
        self.w("if beta != 1.0:", 2)
        for a in (f"f_{spike}", f"f0_{slab}", f"q0_{slab}", f"f1_{slab}", f"q1_{slab}"):
            self.w(f"_k.scale({a}.reshape(-1), beta)", 3)
        rows = self._rows(self.plan.groups[spike])
        views = ", ".join(f"{a}.reshape({rows})" for a in
                          (f"f_{spike}", f"f0_{slab}", f"q0_{slab}", f"f1_{slab}", f"q1_{slab}"))
        self.w(f"ok &= _k.spike_slab_lognorm({views}, out)", 2)

    def energy_term(self, m: Monomial, indent: int) -> None:
        dense = None
        for name in m.groups:
            gp = self.plan.groups[name]
            if m.id in gp.dense:
                dense = (gp, m.factors.index(next(f for f in m.factors if f.group == name)))
                break
        if dense is not None:
            gp, fi = dense
            d = gp.dense[m.id]
            other = self.ir.groups[d.other]
            na, nx = self.flat(other.shape), self.flat(gp.shape)
            rows, cols = (nx, na) if d.transpose else (na, nx)
            mat = f"{P.param(d.param)}.reshape(({rows}, {cols}))" + (".T" if d.transpose else "")
            scalar = [P.number(m.scale)] + [P.expr(c, self.sizes) for c in d.scalar_coef]
            self.w(f"t = np.dot({P.group(d.other)}.reshape((n, {na})), {mat})", indent)
            self.w(f"x2 = {P.group(gp.name)}.reshape((n, {nx}))", indent)
            alpha = self.scalar("alpha", scalar, indent)
            self.w("for c in range(n):", indent)
            self.w("acc = 0.0", indent + 1)
            self.w(f"for j in range({nx}):", indent + 1)
            self.w("acc += t[c, j] * x2[c, j]", indent + 2)
            self.w(f"out[c] {accumulate(alpha, 'acc')}", indent + 1)
            return
        if self.contracted(m, self.product_terms(m), frozenset(), lambda value: [f"out[c] {add(value)}"], indent):
            return
        skip = self.zero_skip(m, -1)
        value = P.product([self.coef(m)] + [skip[1] if skip and k == skip[3] else self.access(f)
                                            for k, f in enumerate(m.factors)])
        self.w("for c in range(n):", indent)
        self.loop_nest(m, [f"out[c] {add(value)}"], indent + 1, skip=skip[:3] if skip else None)

    # the Model class ------------------------------------------------------------------------------
    def model_class(self, digest: str, base: str = "ModelBase", groups=None, extra=(), extra_specs=None,
                    extra_orders=None) -> None:
        ir, plan = self.ir, self.plan
        write_class_header(self.w, ir, self.source_text, digest, base, groups or ir.groups)
        self.w(f"BLOCKS = {tuple(tuple(b) for b in plan.blocks)!r}", 1)
        self.w(f"SUMMABLE = {tuple(n for n, g in plan.groups.items() if g.summable)!r}", 1)
        self.w(f"DEFAULT_SUMMED = {tuple(plan.default_summed)!r}", 1)
        from ..ir.graph import group_graph

        edges = tuple(sorted((a, b) for a, b in group_graph(ir).edges() if a != b))
        self.w(f"COUPLED = {edges!r}", 1)
        self.w(f"CENTRING = {tuple((c.weight, c.lower, c.upper) for c in plan.couplings)!r}", 1)
        self.w(f"CENTRING_REFUSED = {plan.centring_refused!r}", 1)
        coupled = tuple(n for n, g in plan.groups.items() if g.coupled)
        if coupled:
            self.w(f"COUPLED_REAL = {coupled!r}", 1)
        if plan.collapsed:  # pairs that may be summed out together although they share terms
            self.w(f"COLLAPSED = {tuple(plan.collapsed)!r}", 1)
        if plan.multispin is not None:
            self.w(f"MULTISPIN = {(plan.multispin.group, plan.multispin.domain)!r}", 1)
        elif plan.multispin_refused:
            self.w(f"MULTISPIN_REFUSED = {plan.multispin_refused!r}", 1)
        self.w(f"SCHEDULE = {plan.schedule()!r}", 1)
        for line in extra:
            self.w(line, 1)
        self.w()
        for line in kernel_table(dict(self.specs, **(extra_specs or {})), dict(self.orders, **(extra_orders or {}))):
            self.w(line, 1)


def each_energy_term(w, plan: Plan, src, term, skip=frozenset()) -> None:
    """Every monomial's energy, written by term(m, indent) where none of its groups is summed out
    (a summed group's terms are in its log-normaliser): the opening of both free-energy kernels.
    The monomials in `skip` are left to the caller."""
    for m in plan.monomials:
        if m.id in skip:
            continue
        w(f"# {src(m)}", 1)
        groups = m.groups
        indent = 1
        if groups:
            flags = " or ".join(f"sum_{g}" for g in groups)
            w(f"if not ({flags}):" if len(groups) > 1 else f"if not {flags}:", 1)
            indent = 2
        term(m, indent)


def mean_field_loop(w, plan: Plan) -> None:
    """The opening of a mean-field kernel's iterations (numba's and the numpy tier's): whether
    one sweep is the fixed point, and the loop."""
    # one sweep is the fixed point when every free group sits in one block without lateral
    # couplings (an RBM's hidden units given the data): their updates read clamped groups only
    blocks = []
    for block in plan.blocks:
        flags = " or ".join(f"free_{n}" for n in block)
        blocks.append(f"({flags})" if len(block) > 1 else flags)
    if any(g.lateral for g in plan.groups.values()):  # a site sweep is never exact in one pass
        w("one_sweep = False", 1)
    else:
        w(f"one_sweep = damping == 0.0 and {' + '.join(blocks)} <= 1", 1)
    w("delta = 0.0", 1)
    w("for it in range(max_iter):", 1)
    w("delta = 0.0", 2)


def _graph_dot(ir) -> str:
    from ..ir.graph import to_dot

    graph = getattr(ir, "graph", None)
    return to_dot(graph) if graph is not None else ""


def write_class_header(w, ir, source_text: str, digest: str, base: str, groups) -> None:
    """The part of the Model class every compiled model has: identity, sizes, groups, parameters,
    shapes and initialisers. `groups` are the ones whose arrays the model holds (all of them)."""
    w()
    w()
    w(f"class Model({base}):")
    w(f'"""The compiled model {ir.name!r}: see gdsl.runtime.model.ModelBase for its methods."""', 1)
    w()
    w(f"NAME = {ir.name!r}", 1)
    w(f"SOURCE_SHA256 = {digest!r}", 1)
    w(f"MODEL_SHA256 = {hashlib.sha256(source_text.encode()).hexdigest()!r}  # the .gdl text alone", 1)
    w(f"SOURCE_TEXT = {source_text!r}", 1)
    w(f"GRAPH_DOT = {_graph_dot(ir)!r}  # the factor graph (m.graph())", 1)
    w(f"GDSL_VERSION = {__version__!r}", 1)
    w(f"SIZES = {dict(ir.sizes)!r}", 1)
    w(f"CONSTS = {dict(ir.consts)!r}", 1)
    w(f"GROUPS = {tuple((g.name, g.role, g.domain) for g in ir.groups.values())!r}", 1)
    w(f"PARAMS = {tuple((p.name, p.constraints) for p in ir.params.values())!r}", 1)
    _const_requirements(w, ir)
    w()
    w("@staticmethod", 1)
    w("def shapes(sizes):", 1)
    w('"""Array shapes of groups and parameters (without the sample axis), from the sizes."""', 2)
    w("return {", 2)
    env = {s: f"sizes[{s!r}]" for s in ir.sizes}
    for g in groups.values():
        w(f"{g.name!r}: {_shape_py(g.shape, env)},", 3)
    for p in ir.params.values():
        w(f"{p.name!r}: {_shape_py(p.shape, env)},", 3)
    w("}", 2)
    w()
    w("@staticmethod", 1)
    w("def categories(sizes):", 1)
    w("return {", 2)
    for g in groups.values():
        if g.categories is not None:
            w(f"{g.name!r}: {g.categories.to_str(name=lambda s: env[s])},", 3)
    w("}", 2)
    w()
    w("@staticmethod", 1)
    w("def initial_params(sizes, consts, rng, shapes):", 1)
    w('"""Draw the initial parameters from their initialisers (float64; cast by the caller)."""', 2)
    w("p = {}", 2)
    for p in ir.params.values():
        _init_line(w, p)
    w("return p", 2)
    w()


def _const_requirements(w, ir) -> None:
    """What the model's arithmetic needs of its sizes and constants (analysis/constants.py), checked
    by the runtime constructor before anything is allocated."""
    from ..analysis.constants import const_requirements

    req = const_requirements(ir)
    w(f"NONZERO_CONSTS = {req.nonzero!r}  # constants that are a factor of a denominator", 1)
    w(f"POSITIVE_CONSTS = {req.positive!r}  # constants whose sign is that of a std, log argument or precision", 1)
    if not req.checks:
        w("CONST_CHECKS = ()", 1)
        return
    w("CONST_CHECKS = (  # (kind, postfix expression, as written, line, what it is): gdsl/analysis/constants.py", 1)
    for check in req.checks:
        w(f"{check.as_tuple()!r},", 2)
    w(")", 1)


def _shape_py(shape, env) -> str:
    items = [d.to_str(name=lambda s: env[s]) for d in shape]
    return "(" + "".join(f"{i}, " for i in items) + ")"


def _init_line(w, p) -> None:
    shape = f"shapes[{p.name!r}]"
    if p.init is None:
        w(f"p[{p.name!r}] = np.zeros({shape})", 2)
        return
    kind, args = p.init
    a = [_py_const(x) for x in args]
    if kind == "value":
        w(f"p[{p.name!r}] = np.full({shape}, float({a[0]}))", 2)
    elif kind == "normal":
        w(f"p[{p.name!r}] = rng.normal({a[0]}, {a[1]}, size={shape})", 2)
    else:
        w(f"p[{p.name!r}] = rng.uniform({a[0]}, {a[1]}, size={shape})", 2)


def _initialisers_call_functions(ir) -> bool:
    from ..ir.model import IUn, iexpr_walk

    return any(isinstance(node, IUn) and node.op != "neg"
               for p in ir.params.values() if p.init is not None
               for arg in p.init[1] for node in iexpr_walk(arg))


def _py_const(e) -> str:
    """An initialiser argument as Python over `sizes` and `consts` (evaluated at instantiation)."""
    from ..ir.model import IBin, INum, ISym, IUn

    if isinstance(e, INum):
        return P.number(e.value)
    if isinstance(e, ISym):
        table = "sizes" if e.kind == "size" else "consts"
        return f"{table}[{P.ident(e.name)!r}]"
    if isinstance(e, IUn):
        if e.op == "neg":
            return f"(-{_py_const(e.arg)})"
        return f"_py.{ops.lookup(e.op).name}({_py_const(e.arg)})"
    if isinstance(e, IBin):
        op = "**" if e.op == "^" else e.op
        return f"({_py_const(e.left)} {op} {_py_const(e.right)})"
    from ..errors import CompilerBug

    raise CompilerBug(f"cannot print initialiser {iexpr_text(e)}")


def _sym(name):
    from ..poly import Poly

    return Poly.sym(name)


def _zero():
    from ..poly import Poly

    return Poly.const(0)


def _invertible(a: int, m: int) -> bool:
    import math

    return math.gcd(a, m) == 1


def emit(plan: Plan | None, source_text: str, directed=None, ir=None, greedy=None, dbn=None) -> str:
    """The module of a model: energy kernels (when it has an energy), directed kernels (when it
    has conditionals), the layer models greedy training uses, and the Model class.

    greedy: the GreedyPlan of an energy model; dbn: (stack, why refused, layer RBM plan) of a
    directed one (analysis.layers)."""
    if directed is None:
        return Emitter(plan, source_text).module(greedy)
    from .directed import DirectedEmitter

    ir = ir if ir is not None else plan.ir
    digest = source_hash(source_text)
    dem = DirectedEmitter(directed, ir.sizes, ir.consts, ir.params, ir.source_lines)
    lines: list[str] = []
    base = "SequenceModel" if directed.ir.sequence is not None else "DirectedModel"
    Emitter.header(lines, ir, source_text, base, plan.schedule() if plan else None)
    lines += ["", "# directed kernels may reassociate sums (so reductions vectorise), and divide by zero as numpy",
              "# does (inf, nan: caught by the learners' finite checks) instead of branching on it",
              "FAST = {'reassoc', 'contract', 'nsz'}"]
    dem.kernels()
    extra = dem.class_attributes()
    if dbn is not None:
        stack, refused, layer_plan = dbn
        layer_class = None
        if not refused:
            layer_class = "DbnLayerModel"
            dem.lines += ["", "", "# ---- greedy training: the binary RBM each (child, parent) layer is trained as"]
            layer = Emitter(layer_plan, DBN_LAYER_TEXT)
            layer.origin = "gdsl's layer RBM (analysis/layers.py) "
            dem.lines += companion_source(layer.module(finish=False), "dbn_layer_", layer_class)
            lines.insert(lines.index("from gdsl.runtime.directed import DirectedModel"),
                         "from gdsl.runtime.model import ModelBase")
        extra = extra + dbn_attributes(stack, refused, layer_class)
    if plan is not None:
        em = Emitter(plan, source_text)
        em.lines = lines
        em.energy_kernels()
        lines.extend(dem.lines)
        em.model_class(digest, base, directed.ir.groups, extra, dem.specs, dem.orders)
    else:
        lines.extend(dem.lines)
        w = _writer(lines)
        write_class_header(w, ir, source_text, digest, base, directed.ir.groups)
        for line in extra + [""] + kernel_table(dem.specs, dem.orders):
            w(line, 1)
    return "\n".join(tidy(lines)) + "\n"


def _writer(lines: list[str]):
    def w(text: str = "", indent: int = 0) -> None:
        lines.append("    " * indent + text if text else "")

    return w


def _colour_start(a, ks, colours: int) -> str:
    """`start = ...`: the first last subscript of the colour in the row the outer subscripts fix
    (colour(k) = a . k mod colours, a's last coefficient invertible mod colours)."""
    partial = " + ".join(f"{a[e]} * {ks[e]}" for e in range(len(ks) - 1) if a[e]) or "0"
    return f"start = ((colour - ({partial})) * {pow(a[-1], -1, colours)}) % {colours}"
