"""Annealed importance sampling kernels.

The intermediate distributions are p_beta(x) ~ exp(-(1 - beta) E0(x_N) - beta E(x)),
where E0 is a base model of independent units over the groups N that are not summed
out (base fields bf_*, and bq_* for real units), and the summed groups S are summed
analytically in the weights (the free energy at beta). A transition at beta is one
block-Gibbs sweep of the tempered joint: fields beta * f + (1 - beta) * bf.

A model whose energy is conditioned on given groups (the states of a model that unfolds in
time: every chain anneals its own step, with its own biases) also gets `gibbs_tempered_rows`
and `ais_steps_rows`: the same with a base per chain (the `row_bases` family, `(rows,
elements)` per group and per prefix, chain c using row c % rows of each: one row per chain,
or one row per frame shared by the runs laid out frame-fastest, or a single row for all).
"""
from __future__ import annotations

from . import printer as P
from .domains import DRAW, LOW


class AnnealingEmitter:
    """Mixed into codegen.emit.Emitter."""

    def annealing_kernels(self) -> None:
        self.tempered_gibbs_kernel()
        self.ais_kernel()
        if any(g.role == "state" for g in self.plan.groups.values()):  # a base per chain
            self.tempered_gibbs_kernel(rows=True)
            self.ais_kernel(rows=True)

    def _bases(self) -> str:
        return ", ".join(f"bf_{g}, bq_{g}" for g in self.ir.groups)

    def _temper_rows(self, f: str, base: str, group: str, indent: int) -> None:
        """f[c] = beta * f[c] + (1 - beta) * base[c % rows], in place, over (chains, elements)."""
        self.w("if beta != 1.0:", indent)
        self.w(f"t2 = {f}.reshape((n, {P.group(group)}.size // n))", indent + 1)
        self.w("for c in range(n):", indent + 1)
        self.w(f"b = c % {base}.shape[0]", indent + 2)
        self.w("for j in range(t2.shape[1]):", indent + 2)
        self.w(f"t2[c, j] = beta * t2[c, j] + (1.0 - beta) * {base}[b, j]", indent + 3)

    def tempered_gibbs_kernel(self, rows: bool = False) -> None:
        name = "gibbs_tempered_rows" if rows else "gibbs_tempered"
        self.kernel(name, name,
                    "One block-Gibbs sweep of the tempered joint exp(-(1 - beta) E0 - beta E): every field is "
                    "beta * f + (1 - beta) * bf (and q likewise), lateral terms are scaled by beta."
                    + (" Chain c's base is row c % rows of bf_* and bq_*." if rows else ""))
        self._sweep_start()
        self.w("ok = True", 1)

        def update(g, indent: int) -> None:
            if rows:
                self._temper_rows(f"f_{g.name}", f"bf_{g.name}", g.name, indent)
                if g.domain == "real":
                    self._temper_rows(f"q_{g.name}", f"bq_{g.name}", g.name, indent)
            else:
                flat = f"(n, {P.group(g.name)}.size // n)"  # the base is one flat row per group
                self.w(f"_k.temper(f_{g.name}.reshape({flat}), bf_{g.name}, beta)", indent)
                if g.domain == "real":
                    self.w(f"_k.temper(q_{g.name}.reshape({flat}), bq_{g.name}, beta)", indent)
            if g.coupled:  # the base model has no couplings: they are only scaled
                self.w(f"_k.scale(pp_{g.name}.reshape(-1), beta)", indent)
            if g.lateral:
                self.site_sweep(g, indent, draw=True, lateral_scale="beta * ")
                return
            call = f"_k.{self.domain_kernel('draw', g)}({self._views(g, self._arrays(g))}, rng{LOW.get(g.domain, '')})"
            self.w(f"ok &= {call}" if g.domain == "real" else call, indent)

        self._each_block(update, indent=1)
        self.w("return ok", 1)

    def ais_kernel(self, rows: bool = False) -> None:
        flags = ", ".join(f"sum_{g}" for g in self.ir.groups)
        name = "ais_steps_rows" if rows else "ais_steps"
        self.kernel(name, name,
                    "For each k >= 1: logw += F*_{k-1}(x) - F*_{k}(x), then a tempered sweep at betas[k]; "
                    "F*_b = (1 - b) E0(x_N) + free energy at b (groups sum_* summed out)."
                    + (" Chain c's base is row c % rows of bf_* and bq_*." if rows else ""))
        first = P.group(next(iter(self.ir.groups)))
        self.w(f"n = {first}.shape[0]", 1)
        self.w("fa = np.empty(n)", 1)
        self.w("fb = np.empty(n)", 1)
        self.w("e0 = np.empty(n)", 1)
        self.w("ok = True", 1)
        self.w("for k in range(1, betas.shape[0]):", 1)
        self.w("# E0: the base model's energy over the groups that are not summed out", 2)
        self.w("e0.fill(0.0)", 2)
        for g in self.ir.groups:
            x = P.group(g)
            self.w(f"if not sum_{g}:", 2)
            self.w(f"x2 = {x}.reshape((n, {x}.size // n))", 3)
            self.w("for c in range(n):", 3)
            if rows:  # bf_ and bq_ may have different numbers of rows
                self.w(f"b = c % bf_{g}.shape[0]", 4)
                self.w(f"bb = c % bq_{g}.shape[0]", 4)
            self.w("for j in range(x2.shape[1]):", 4)
            bf, bq = ("b, j", "bb, j") if rows else ("j", "j")
            self.w(f"e0[c] += x2[c, j] * (bq_{g}[{bq}] * x2[c, j] - bf_{g}[{bf}])", 5)
        self.w(f"ok &= free_energy({self.args}, {flags}, betas[k - 1], fa)", 2)
        self.w(f"ok &= free_energy({self.args}, {flags}, betas[k], fb)", 2)
        self.w("for c in range(n):", 2)
        self.w("logw[c] += (fa[c] + (1.0 - betas[k - 1]) * e0[c]) - (fb[c] + (1.0 - betas[k]) * e0[c])", 3)
        sweep = "gibbs_tempered_rows" if rows else "gibbs_tempered"
        self.w(f"ok &= {sweep}({self.args}, {self._masks()}, {self._free()}, {self._bases()}, betas[k], rng)", 2)
        self.w("return ok", 1)
