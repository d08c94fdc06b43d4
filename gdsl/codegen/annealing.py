"""Annealed importance sampling kernels.

The intermediate distributions are p_beta(x) ~ exp(-(1 - beta) E0(x_N) - beta E(x)),
where E0 is a base model of independent units over the groups N that are not summed
out (base fields bf_*, and bq_* for real units), and the summed groups S are summed
analytically in the weights (the free energy at beta). A transition at beta is one
block-Gibbs sweep of the tempered joint: fields beta * f + (1 - beta) * bf.
"""
from __future__ import annotations

from . import printer as P


class AnnealingEmitter:
    """Mixed into codegen.emit.Emitter."""

    def annealing_kernels(self) -> None:
        self.tempered_gibbs_kernel()
        self.ais_kernel()

    def _bases(self) -> str:
        return ", ".join(f"bf_{g}, bq_{g}" for g in self.ir.groups)

    def tempered_gibbs_kernel(self) -> None:
        from .emit import DRAW, LOW

        self.kernel("gibbs_tempered", "gibbs_tempered",
                    "One block-Gibbs sweep of the tempered joint exp(-(1 - beta) E0 - beta E): every field is "
                    "beta * f + (1 - beta) * bf (and q likewise), lateral terms are scaled by beta.")
        self._sweep_start()
        self.w("ok = True", 1)

        def update(g, indent: int) -> None:
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

    def ais_kernel(self) -> None:
        flags = ", ".join(f"sum_{g}" for g in self.ir.groups)
        self.kernel("ais_steps", "ais_steps",
                    "For each k >= 1: logw += F*_{k-1}(x) - F*_{k}(x), then a tempered sweep at betas[k]; "
                    "F*_b = (1 - b) E0(x_N) + free energy at b (groups sum_* summed out).")
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
            self.w("for j in range(x2.shape[1]):", 4)
            self.w(f"e0[c] += x2[c, j] * (bq_{g}[j] * x2[c, j] - bf_{g}[j])", 5)
        self.w(f"ok &= free_energy({self.args}, {flags}, betas[k - 1], fa)", 2)
        self.w(f"ok &= free_energy({self.args}, {flags}, betas[k], fb)", 2)
        self.w("for c in range(n):", 2)
        self.w("logw[c] += (fa[c] + (1.0 - betas[k - 1]) * e0[c]) - (fb[c] + (1.0 - betas[k]) * e0[c])", 3)
        self.w(f"ok &= gibbs_tempered({self.args}, {self._masks()}, {self._free()}, {self._bases()}, "
               "betas[k], rng)", 2)
        self.w("return ok", 1)
