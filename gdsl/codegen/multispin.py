"""The multi-spin coded heat bath of a lattice with uniform couplings (plan.multispin).

`gibbs_packed` sweeps the colours of the lattice's stencil colouring like `gibbs`, but on the
packed state of runtime/multispin.py: at every site, the neighbours' words are added into
bit-sliced counters and the site's word is drawn in all 64 lanes at once. The coupling and the
bias are the monomials' coefficients, evaluated once per call, so the table of thresholds
follows the parameters.
"""
from __future__ import annotations

from . import printer as P


class MultispinEmitter:
    """Mixed into codegen.emit.Emitter; uses its helpers (w, kernel, coef, dims, src)."""

    def multispin_kernel(self) -> None:
        lat = self.plan.multispin
        if lat is None:
            return
        from .emit import _colour_start, _invertible

        g = self.plan.groups[lat.group]
        self.kernel("gibbs_packed", "gibbs_packed",
                    f"Run `steps` heat-bath sweeps of {lat.group} over packed chains in place, 64 chains a word "
                    f"(gdsl/runtime/multispin.py): packed is (words, *lattice) uint64, rng one stream per word.")
        monomials = self.plan.monomials
        self.w(f"# bonds {', '.join(f'm{mid}' for mid in lat.bonds)}; biases "
               f"{', '.join(f'm{mid}' for mid in lat.biases) or 'none'}", 1)
        lines = []
        for mid in lat.bonds + lat.biases:
            line = monomials[mid].span.line
            if line not in lines and line <= len(self.ir.source_lines):
                lines.append(line)
                self.w(f"# {self.origin}line {line}: {P.comment_text(self.ir.source_lines[line - 1])}", 1)
        self.w(f"coupling = {P.unwrapped(self.coef(monomials[lat.bonds[0]]))}  # energy coupling * s[x] * s[x + d]", 1)
        bias = " + ".join(self.coef(monomials[mid]) for mid in lat.biases) or "0.0"
        self.w(f"bias = {P.unwrapped(bias)}  # energy bias * s[x]", 1)
        neighbours = 2 * len(lat.offsets)
        self.w(f"table = _k.packed_thresholds(coupling, bias, {neighbours}, {lat.domain == 'spin'})", 1)
        self.w(f"eq = np.empty({neighbours + 1}, np.uint64)", 1)
        self.w("zero = np.uint64(0)", 1)
        dims = self.dims(g.shape)
        ks = [f"k{d}" for d in range(len(dims))]
        a, colours = g.colouring
        self.w("for c in range(packed.shape[0]):", 1)
        self.w("s0 = rng[c, 0]", 2)
        self.w("s1 = rng[c, 1]", 2)
        self.w("for step in range(steps):", 2)
        self.w(f"for colour in range({colours}):  # colour(k) = {a} . k mod {colours}", 3)
        indent = 4
        for d, (k, dim) in enumerate(zip(ks, dims)):
            if d == len(dims) - 1 and _invertible(a[-1], colours):
                self.w(_colour_start(a, ks, colours), indent)
                self.w(f"for {k} in range(start, {dim}, {colours}):", indent)
            else:
                self.w(f"for {k} in range({dim}):", indent)
            indent += 1
        if not _invertible(a[-1], colours):
            total = " + ".join(f"{a[e]} * {ks[e]}" for e in range(len(ks)))
            self.w(f"if ({total}) % {colours} != colour:", indent)
            self.w("continue", indent + 1)
        self.w("c0 = zero", indent)
        self.w("c1 = zero", indent)
        self.w("c2 = zero", indent)
        self.w("c3 = zero", indent)
        self.w("nb = 0", indent)
        for d in lat.offsets:
            for sign in (1, -1):
                self.neighbour(tuple(sign * x for x in d), ks, dims, indent)
        site = ", ".join(["c"] + ks)
        self.w("word, s0, s1 = _k.heat_bath_word(c0, c1, c2, c3, table, nb, eq, s0, s1)", indent)
        self.w(f"packed[{site}] = word", indent)
        self.w("rng[c, 0] = s0", 2)
        self.w("rng[c, 1] = s1", 2)

    def neighbour(self, d: tuple, ks: list, dims: list, indent: int) -> None:
        """Add the word of the neighbour at offset d, where it is on the lattice."""
        inside = []
        for k, dim, x in zip(ks, dims, d):
            if x > 0:
                inside.append(f"{k} + {x} < {dim}")
            elif x < 0:
                inside.append(f"{k} >= {-x}")
        at = ", ".join(["c"] + [k + (f" + {x}" if x > 0 else f" - {-x}" if x < 0 else "") for k, x in zip(ks, d)])
        self.w(f"if {' and '.join(inside)}:  # the neighbour at {d}", indent)
        self.w(f"c0, c1, c2, c3 = _k.count_word(c0, c1, c2, c3, packed[{at}])", indent + 1)
        self.w("nb += 1", indent + 1)
