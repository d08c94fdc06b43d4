"""The multi-spin coded heat bath of a lattice with uniform couplings (plan.multispin).

`gibbs_packed` sweeps the colours of the lattice's stencil colouring like `gibbs`, but on the
packed state of runtime/multispin.py: at every site, the neighbours' words are added into
bit-sliced counters and the site's word is drawn in all 64 lanes at once. The couplings (one, or
two classes of bonds, each counted on its own) and the bias are the monomials'
coefficients, evaluated once per call, so the table of thresholds follows the parameters.
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
        classes = lat.class_count
        for c in range(classes):  # each class's coupling: the coefficient of its first bond
            first = lat.bonds[lat.classes.index(c)]
            self.w(f"coupling{c} = {P.unwrapped(self.coef(monomials[first]))}  # energy coupling{c} * s[x] * s[x + d] "
                   f"for d in {', '.join(str(d) for d, k in zip(lat.offsets, lat.classes) if k == c)}", 1)
        bias = " + ".join(self.coef(monomials[mid]) for mid in lat.biases) or "0.0"
        self.w(f"bias = {P.unwrapped(bias)}  # energy bias * s[x]", 1)
        spin = lat.domain == "spin"
        counts = [lat.neighbours(c) for c in range(classes)]
        if classes == 1:
            self.w(f"table = _k.packed_thresholds(coupling0, bias, {counts[0]}, {spin})", 1)
        else:
            self.w(f"table = _k.packed_thresholds2(coupling0, coupling1, bias, {counts[0]}, {counts[1]}, {spin})", 1)
        combos = 1
        for n in counts:
            combos *= n + 1
        self.w(f"eq = np.empty({combos}, np.uint64)  # the lanes of each count (of each class)", 1)
        if classes == 2:
            self.w(f"thr = np.empty({combos}, np.uint64)  # and their thresholds", 1)
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
        counters = ("c", "d")[:classes]  # the bit-sliced counts of each class: c0..c3, d0..d3
        for x in counters:
            for bit in range(4):
                self.w(f"{x}{bit} = zero", indent)
        for cls in range(classes):
            self.w(f"nb{cls} = 0", indent)
        for d, cls in zip(lat.offsets, lat.classes):
            for sign in (1, -1):
                self.neighbour(tuple(sign * x for x in d), ks, dims, indent, counters[cls], f"nb{cls}")
        site = ", ".join(["c"] + ks)
        if classes == 1:
            self.w("word, s0, s1 = _k.heat_bath_word(c0, c1, c2, c3, table, nb0, eq, s0, s1)", indent)
        else:
            self.w("word, s0, s1 = _k.heat_bath_word2(c0, c1, c2, c3, d0, d1, d2, d3, table, nb0, nb1, eq, thr, "
                   "s0, s1)", indent)
        self.w(f"packed[{site}] = word", indent)
        self.w("rng[c, 0] = s0", 2)
        self.w("rng[c, 1] = s1", 2)

    def neighbour(self, d: tuple, ks: list, dims: list, indent: int, counter: str, nb: str) -> None:
        """Add the word of the neighbour at offset d, where it is on the lattice, to the counter of
        its class (`counter`0..3) and count it in `nb`."""
        inside = []
        for k, dim, x in zip(ks, dims, d):
            if x > 0:
                inside.append(f"{k} + {x} < {dim}")
            elif x < 0:
                inside.append(f"{k} >= {-x}")
        at = ", ".join(["c"] + [k + (f" + {x}" if x > 0 else f" - {-x}" if x < 0 else "") for k, x in zip(ks, d)])
        self.w(f"if {' and '.join(inside)}:  # the neighbour at {d}", indent)
        x = counter
        self.w(f"{x}0, {x}1, {x}2, {x}3 = _k.count_word({x}0, {x}1, {x}2, {x}3, packed[{at}])", indent + 1)
        self.w(f"{nb} += 1", indent + 1)
