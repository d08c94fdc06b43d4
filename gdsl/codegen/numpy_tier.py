"""Plan -> the numpy tier: the sampling kernels again, as vectorised numpy, in the same module.

numba compiles a kernel on its first call, seconds for a new model; these functions answer at
once and the runtime uses them until the numba kernels are ready (gdsl.load(..., jit=...)).
They have the numba kernels' names with an `np_` prefix and the same arguments (abi.SPECS), and
draw from the same streams through runtime/npkernels.py, so for a seed both tiers give the
same samples (up to rounding; see npkernels).

Every energy term becomes one `np.einsum` over its index ranges (or, for a dense product of two
groups, one matrix product): an index is a letter, the chains are `z`. The tier covers terms
whose subscripts are plain indices or constants over ranges fixed by the sizes; anything else
(shifted or strided subscripts, guards, triangular sums, lateral couplings, coupled Gaussian
blocks, collapsed spike-and-slab blocks) leaves the model on numba alone, and the module says
why (`NUMPY_REFUSED`).
"""
from __future__ import annotations

from .. import abi
from ..abi import ONE_HOT
from ..analysis.plan import GroupPlan, Plan
from ..ir.model import IAccess, ISum, ISym, Monomial, iexpr_walk
from ..poly import Poly
from . import printer as P
from .tidy import docstring
from .domains import DRAW, LOGNORM, LOW, MEAN  # the domain kernels, as runtime/npkernels.py names them too

LETTERS = "abcdefghijklmnopqrstuvwxy"  # index labels; `z` is the chains


class Unsupported(Exception):
    """A term or block the numpy tier does not write; the message says which and why."""


class NumpyTierEmitter:
    def __init__(self, plan: Plan, sizes: set, orders: dict, src):
        self.plan = plan
        self.ir = plan.ir
        self.sizes = sizes
        self.orders = orders
        self.src = src  # monomial -> its comment (the numba emitter's)
        self.lines: list[str] = []
        self.names: list[str] = []

    def w(self, text: str = "", indent: int = 0) -> None:
        self.lines.append("    " * indent + text if text else "")

    # what the tier covers -----------------------------------------------------------------
    def refusal(self) -> str | None:
        """Why this model's kernels are numba only, or None."""
        for g in self.plan.groups.values():
            if g.role == "state":
                return "its steps are normalised given states (a time axis)"
            if g.lateral and g.sweep != "stencil":
                return f"{g.name} is coupled to itself and swept site by site"
            if g.coupled:
                return f"{g.name} is drawn as one multivariate Gaussian"
        if self.plan.collapsed:
            return "a spike-and-slab pair is drawn as one block"
        if not self.plan.groups:
            return "it has no variables"
        for m in self.plan.monomials:
            try:
                self.term(m, None, ())
            except Unsupported as e:
                return f"m{m.id} (line {m.span.line}): {e}"
        return None

    # one term as an einsum ----------------------------------------------------------------------
    def labels(self, m: Monomial) -> dict[str, str]:
        if len(m.ranges) > len(LETTERS):
            raise Unsupported("more indices than einsum has letters")
        if m.guards:
            raise Unsupported("a subscript needs a bounds check")
        for r in m.ranges:
            if any(set(b.symbols()) - self.sizes for b in r.lo + r.hi):
                raise Unsupported(f"the range of {r.name} depends on another index")
        return {r.name: LETTERS[k] for k, r in enumerate(m.ranges)}

    def _range(self, m: Monomial, var: str):
        return next(r for r in m.ranges if r.name == var)

    def axis(self, m: Monomial, p: Poly, dim: Poly, labels: dict):
        """(slice text, label or None) of one subscript: a plain index over its range (sliced
        when the range is not the whole axis), or a constant."""
        names = set(p.symbols()) & set(labels)
        if not names:
            if set(p.symbols()) - self.sizes:
                raise Unsupported(f"subscript {p} is not an index or a constant")
            return P.poly(p, self.sizes), None
        var = next(iter(names))
        shift = p - Poly.sym(var)
        if len(names) != 1 or set(shift.symbols()) & set(labels):
            raise Unsupported(f"subscript {p} is not an index plus a constant (the numpy tier takes i or "
                              "i + 1, not 2 * i or i + j)")
        r = self._range(m, var)
        lo, hi = (r.lo or (Poly.const(0),)), r.hi
        if len(lo) == 1 and len(hi) == 1 and lo[0] + shift == Poly.const(0) and hi[0] + shift == dim:
            return ":", labels[var]
        bounds = [P.bound(tuple(b + shift for b in bs), fn, self.sizes) for bs, fn in ((lo, "max"), (hi, "min"))]
        return f"{bounds[0]}:{bounds[1]}", labels[var]

    def array(self, m: Monomial, name: str, index, shape, labels: dict, chains: bool):
        """(text, labels) of an access as a whole array: x_v[:, 0:s_n] -> 'za'."""
        parts = [":"] if chains else []
        out = "z" if chains else ""
        for p, dim in zip(index, shape):
            text, label = self.axis(m, p, dim, labels)
            parts.append(text)
            out += label or ""
        if all(t == ":" for t in parts):
            return name, out
        return f"{name}[{', '.join(parts)}]", out

    def coefficient(self, m: Monomial, c, labels: dict):
        """(text, labels) of a coefficient: a scalar, or an elementwise expression of parameters
        that all carry the same subscripts."""
        seen = []
        for node in iexpr_walk(c):
            if isinstance(node, ISum):
                raise Unsupported("a sum inside a coefficient")
            if isinstance(node, ISym) and node.kind == "index":
                raise Unsupported(f"the index {node.name} used as a number")
            if isinstance(node, IAccess) and node.index:
                seen.append(node.index)
        if not seen:
            return P.expr(c, self.sizes, numpy=True), ""
        if any(ix != seen[0] for ix in seen):
            raise Unsupported("parameters with different subscripts in one coefficient")
        out = ""

        def whole_array(e) -> str:  # the parameter over its subscripts' ranges, labelled
            nonlocal out
            text, out = self.array(m, P.param(e.name), e.index, self.ir.params[e.name].shape, labels, False)
            return text

        t = P.expr(c, self.sizes, numpy=True, access=whole_array)
        if len(set(out)) != len(out):
            raise Unsupported("a parameter's diagonal in an expression")
        return t, out

    def factor(self, m: Monomial, k: int, labels: dict):
        f = m.factors[k]
        text, lab = self.array(m, P.group(f.group), f.index, self.ir.groups[f.group].shape, labels, True)
        if f.power == 2:
            text = f"np.square({text})"
        return text, lab

    def term(self, m: Monomial, keep: int | None, leave_out, negate: bool = False):
        """(scalar, einsum text or None, output labels present, all output labels) of m's
        contribution: with `keep` the factor whose elements it is indexed by (a field: that
        factor left out), else per chain (an energy)."""
        labels = self.labels(m)
        scalars = [P.number(-m.scale if negate else m.scale)]
        operands = []
        for c in m.coef:
            t, lab = self.coefficient(m, c, labels)
            if lab:
                operands.append((t, lab))
            else:
                scalars.append(t)
        for k in range(len(m.factors)):
            if k in leave_out:
                continue
            operands.append(self.factor(m, k, labels))
        if keep is None:
            want = "z"
        else:
            f = m.factors[keep]
            _, want = self.array(m, "", f.index, self.ir.groups[f.group].shape, labels, True)
            if len(set(want)) != len(want):
                raise Unsupported(f"the diagonal of {f.group} in a term")
        held = "".join(lab for _, lab in operands)
        for r in m.ranges:  # an index nothing depends on counts its range
            if labels[r.name] not in held and labels[r.name] not in want:
                lo = P.bound(r.lo, "max", self.sizes) if r.lo else "0"
                scalars.append(f"({P.bound(r.hi, 'min', self.sizes)} - {lo})")
        present = "".join(ch for ch in want if ch in held)
        if not operands:
            return P.product(scalars), None, present, want
        spec = ",".join(lab for _, lab in operands) + "->" + present
        args = ", ".join(t for t, _ in operands)
        if len(operands) == 1 and operands[0][1] == present:
            return P.product(scalars), args, present, want
        return P.product(scalars), f"np.einsum({spec!r}, {args}, optimize=True)", present, want

    def accumulate(self, target: str, m: Monomial, keep, leave_out, negate, indent: int) -> None:
        """target[slices] += the term (its missing axes broadcast)."""
        scalar, value, present, want = self.term(m, keep, leave_out, negate)
        if keep is not None:
            f = m.factors[keep]
            labels = self.labels(m)
            target, _ = self.array(m, target, f.index, self.ir.groups[f.group].shape, labels, True)
        if "[" not in target:
            target = f"{target}[...]"
        if value is None:
            self.w(f"{target} += {scalar}", indent)
            return
        if present != want:
            value = f"{value}[{', '.join(':' if ch in present else 'None' for ch in want)}]"
        self.w(f"{target} += {P.product([scalar, value])}" if scalar != "1.0" else f"{target} += {value}", indent)

    # kernels ------------------------------------------------------------------------------
    def open(self, name: str, spec: str, doc: str, listed: bool = True) -> None:
        """Start np_<name> with the arguments of abi.SPECS[spec]; `listed`: a twin of numba's
        kernel <name> (in NUMPY_KERNELS), else a helper of the tier's own."""
        if listed:
            self.names.append(name)
        self.w()
        self.w()
        self.w(f"def {abi.signature('np_' + name, abi.SPECS[spec], self.orders)}:")
        self.lines.extend(docstring(doc, 1))

    def lateral(self, g: GroupPlan) -> None:
        """np_lateral_<g>: a += the lateral terms' -dE/dg at every site, from each occurrence of g
        (a site's neighbours as they are now: a colour's sites do not couple to each other)."""
        self.open(f"lateral_{g.name}", "field", f"f += the lateral terms of -dE/d{g.name} at every site.", listed=False)
        for mid in g.lateral:
            m = self.plan.monomials[mid]
            for k in m.occurrences(g.name):
                self.w(f"# {self.src(m)}  ({g.name} occurrence {k + 1} at the site)", 1)
                self.accumulate("f", m, k, (k,), True, 1)

    def site_update(self, g: GroupPlan, indent: int, kernel: str, extra: str) -> None:
        """A coloured group, one colour at a time: its field with the lateral terms, then
        `kernel` on the colour's sites (numba's site sweep, vectorised per colour)."""
        colours = g.colouring[1]
        self.w(f"for colour in range({colours}):  # colour(k) = {g.colouring[0]} . k mod {colours}", indent)
        self.w(f"a_{g.name} = f_{g.name}.astype(np.float64)", indent + 1)
        self.w(f"np_lateral_{g.name}({self.args}, a_{g.name})", indent + 1)
        views = self._views(g, [f"a_{g.name}", P.group(g.name), f"m_{g.name}"])
        call = f"_nk.{kernel}({views}, (colour_{g.name} == colour).reshape(-1){extra}{LOW[g.domain]})"
        if kernel == "site_mean":
            self.w(f"d = {call}", indent + 1)
            self.w("delta = max(delta, d)", indent + 1)
        else:
            self.w(call, indent + 1)

    @property
    def args(self) -> str:
        return ", ".join(abi.parameter_names(abi.MODEL, self.orders))

    def field(self, g: GroupPlan) -> None:
        real = g.domain == "real"
        self.open(f"field_{g.name}", "field_real" if real else "field", f"field_{g.name} in numpy.")
        self.w("n = f.shape[0]", 1)
        self.w("f[...] = 0.0", 1)
        if real:
            self.w("q[...] = 0.0", 1)
        for mid, fi in g.linear:
            m = self.plan.monomials[mid]
            self.w(f"# {self.src(m)}", 1)
            if mid in g.dense:
                self.dense(g, m)
            else:
                self.accumulate("f", m, fi, (fi,), True, 1)
        for mid, fi in g.quadratic:
            m = self.plan.monomials[mid]
            self.w(f"# {self.src(m)}  (quadratic)", 1)
            self.accumulate("q", m, fi, (fi,), False, 1)

    def dense(self, g: GroupPlan, m: Monomial) -> None:
        d = g.dense[m.id]
        a = P.group(d.other)
        mat = (f"{P.param(d.param)}.reshape((-1, {a}.size // n)).T" if d.transpose
               else f"{P.param(d.param)}.reshape(({a}.size // n, -1))")
        scalar = P.product([P.number(-m.scale)] + [P.expr(c, self.sizes, numpy=True) for c in d.scalar_coef])
        value = f"({a}.reshape((n, -1)) @ {mat})"
        self.w(f"f.reshape((n, -1))[...] += {P.product([scalar, value]) if scalar != '1.0' else value}", 1)

    def _rows(self, g: GroupPlan) -> str:
        x = P.group(g.name)
        if g.domain in ONE_HOT:
            k = P.poly(g.categories, self.sizes)
            return f"(n, {x}.size // (n * {k}), {k})"
        return f"(n, {x}.size // n)"

    def _views(self, g: GroupPlan, names) -> str:
        return ", ".join(f"{a}.reshape(rows_{g.name})" for a in names)

    def _arrays(self, g: GroupPlan) -> list[str]:
        return [f"f_{g.name}"] + ([f"q_{g.name}"] if g.domain == "real" else []) + [P.group(g.name), f"m_{g.name}"]

    def _start(self) -> None:
        self.w(f"n = {P.group(next(iter(self.ir.groups)))}.shape[0]", 1)
        for g in self.plan.groups.values():
            self.w(f"f_{g.name} = np.empty_like({P.group(g.name)})", 1)
            if g.domain == "real":
                self.w(f"q_{g.name} = np.empty_like({P.group(g.name)})", 1)
            self.w(f"rows_{g.name} = {self._rows(g)}", 1)
            if g.lateral:
                a, colours = g.colouring
                self.w(f"colour_{g.name} = _nk.colours({P.group(g.name)}.shape[1:], {tuple(a)!r}, {colours})", 1)

    def _field_call(self, g: GroupPlan) -> str:
        q = f", q_{g.name}" if g.domain == "real" else ""
        return f"np_field_{g.name}({self.args}, f_{g.name}{q})"

    def _blocks(self, update, indent: int) -> None:
        for b, block in enumerate(self.plan.blocks):
            self.w(f"# block {b + 1}: {{{', '.join(block)}}}", indent)
            for name in block:
                g = self.plan.groups[name]
                self.w(f"if free_{name}:", indent)
                self.w(self._field_call(g), indent + 1)
                update(g, indent + 1)

    def gibbs(self) -> None:
        self.open("gibbs", "gibbs", "gibbs in numpy: the same sweeps, the same streams.")
        self._start()
        self.w("ok = True", 1)
        self.w("for step in range(steps):", 1)

        def draw(g: GroupPlan, indent: int) -> None:
            if g.lateral:
                self.site_update(g, indent, "site_draw", ", rng")
                return
            call = f"_nk.{DRAW[g.domain]}({self._views(g, self._arrays(g))}, rng{LOW.get(g.domain, '')})"
            self.w(f"ok &= {call}" if g.domain == "real" else call, indent)

        self._blocks(draw, 2)
        self.w("return ok", 1)

    def mean_field(self) -> None:
        self.open("mean_field", "mean_field", "mean_field in numpy.")
        from .emit import mean_field_loop  # (emit imports this module)

        self._start()
        mean_field_loop(self.w, self.plan)

        def update(g: GroupPlan, indent: int) -> None:
            if g.lateral:
                self.site_update(g, indent, "site_mean", ", damping")
                return
            self.w(f"d = _nk.{MEAN[g.domain]}({self._views(g, self._arrays(g))}, damping{LOW.get(g.domain, '')})",
                   indent)
            self.w("if d < 0.0:", indent)
            self.w("return -1, delta", indent + 1)
            self.w("delta = max(delta, d)", indent)

        self._blocks(update, 2)
        self.w("if delta <= tol or one_sweep:", 2)
        self.w("return it + 1, delta", 3)
        self.w("return max_iter, delta", 1)

    def free_energy(self) -> None:
        from .emit import each_energy_term  # (emit imports this module)

        self.open("free_energy", "free_energy", "free_energy in numpy (float64 sums).")
        self.w("n = out.shape[0]", 1)
        self.w("out[...] = 0.0", 1)
        self.w("ok = True", 1)
        each_energy_term(self.w, self.plan, self.src,
                         lambda m, indent: self.accumulate("out", m, None, (), False, indent))
        self.w("if beta != 1.0:", 1)
        self.w("out *= beta", 2)
        for g in self.plan.groups.values():
            if not g.summable:
                continue
            self.w(f"if sum_{g.name}:  # log-normaliser of {g.name}: {g.conditional}", 1)
            self.w(f"f_{g.name} = np.empty_like({P.group(g.name)})", 2)
            if g.domain == "real":
                self.w(f"q_{g.name} = np.empty_like({P.group(g.name)})", 2)
            self.w(self._field_call(g), 2)
            self.w(f"rows_{g.name} = {self._rows(g)}", 2)
            arrays = [f"f_{g.name}"] + ([f"q_{g.name}"] if g.domain == "real" else [])
            self.w("if beta != 1.0:", 2)
            for a in arrays:
                self.w(f"{a} *= beta", 3)
            call = f"_nk.{LOGNORM[g.domain]}({self._views(g, arrays)}, out{LOW.get(g.domain, '')})"
            self.w(f"ok &= {call}" if g.domain == "real" else call, 2)
        self.w("return ok", 1)

    # the section of the module ---------------------------------------------------------------
    def section(self) -> tuple[list[str], list[str]]:
        """(module lines, class attribute lines) of the tier, or of why there is none."""
        why = self.refusal()
        if why is not None:
            return [], [f"NUMPY_REFUSED = {('numba only: ' + why)!r}"]
        self.lines += ["", "", "# ---- the numpy tier: the kernels above that sampling, mean field and free energies "
                       "call,", "# as vectorised numpy on the same streams; the runtime uses them while numba compiles"]
        for g in self.plan.groups.values():
            self.field(g)
            if g.lateral:
                self.lateral(g)
        self.gibbs()
        self.mean_field()
        self.free_energy()
        table = "NUMPY_KERNELS = {" + ", ".join(f"{n!r}: np_{n}" for n in self.names) + "}"
        return self.lines, [table]
