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
from .domains import LOW


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
        self._each_block(self._tempered_update(rows), indent=1)
        self.w("return ok", 1)

    def _tempered_update(self, rows: bool):
        """update(g, indent) of a tempered sweep: g's field (computed) moved to beta * f + (1 - beta)
        * base, then g drawn from it."""
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
        return update

    def ais_kernel(self, rows: bool = False) -> None:
        """For each temperature: the weight from the free energies at both ends of the step, then the
        transition. The summed groups' fields are computed once per step and serve three times:
        the free energy at betas[k - 1] and at betas[k], and the draw of those groups at betas[k]
        that opens the transition (then a tempered sweep of the other groups). Drawing them afresh
        from their conditional first makes the transition a kernel on the annealed groups alone,
        as the free-energy weights require; summed groups have no base (their bf is zero)."""
        from .emit import each_energy_term  # (emit imports this module)

        name = "ais_steps_rows" if rows else "ais_steps"
        self.kernel(name, name,
                    "For each k >= 1: logw += F*_{k-1}(x) - F*_{k}(x), then the transition at betas[k]: the "
                    "groups sum_* drawn given the rest, then a tempered sweep of the rest; F*_b = (1 - b) "
                    "E0(x_N) + free energy at b (groups sum_* summed out)."
                    + (" Chain c's base is row c % rows of bf_* and bq_*." if rows else ""))
        first = P.group(next(iter(self.ir.groups)))
        summable = [g for g in self.plan.groups.values() if g.summable and not g.coupled]
        # given states (a sequence's step): the terms of a field that only the states give are the
        # same at every temperature, so they are computed once (held_*) and the sweep is written here
        split = [g for g in self.plan.groups.values() if self._splits(g)]
        self.w(f"n = {first}.shape[0]", 1)
        for buf in ("fa", "fb", "e0", "out"):
            self.w(f"{buf} = np.empty(n)", 1)
        if split:
            self._buffers(1)  # the sweep's fields (f_ holds a summed group's raw field too)
            for g in split:
                self.w(f"held_{g.name} = np.empty_like({P.group(g.name)})", 1)
                self.w(f"field_{g.name}_held({self.args}, held_{g.name})", 1)
        for g in summable:  # the raw field (and quadratic coefficient), and the same at one temperature
            for a in (self._tempered(g) if split else self._raw(g) + self._tempered(g)):
                self.w(f"{a} = np.empty_like({P.group(g.name)})", 1)
        for g in self.plan.groups.values():
            if g.summable and g.coupled:
                self.w(f"if sum_{g.name}:", 1)
                self.w(f'raise ValueError("AIS cannot sum out {g.name}, a real group coupled to itself")', 2)
        for spike, slab in self.plan.collapsed:  # summed one at a time here, never as a pair
            self.w(f"if sum_{spike} and sum_{slab}:", 1)
            self.w(f'raise ValueError("AIS cannot sum out both {spike} and {slab} (a spike-and-slab pair)")', 2)
        for g in self.ir.groups:  # the sweep moves the rest (flags set here: numba takes no control flow
            self.w(f"rest_{g} = free_{g} and not sum_{g}", 1)  # inside a call's arguments)
        self.w("ok = True", 1)
        self.w("for k in range(1, betas.shape[0]):", 1)
        self._base_energy(rows)
        self.w("# the energy of the terms without a summed group, once for both temperatures", 2)
        self.w("out.fill(0.0)", 2)
        held = {mid for g in split for mid, _ in self._held_terms(g)}
        each_energy_term(lambda text="", indent=0: self.w(text, indent + 1), self.plan, self.src,
                         lambda m, indent: self.energy_term(m, indent + 1), skip=held)
        for g in split:  # its held terms' energy: -held . x (their part of -dE/dx times x)
            x = P.group(g.name)
            self.w(f"if not sum_{g.name}:  # the terms of {g.name} with states only: -held_{g.name} . {g.name}", 2)
            self.w(f"xe = {x}.reshape((n, {x}.size // n))", 3)
            self.w(f"he = held_{g.name}.reshape((n, {x}.size // n))", 3)
            self.w("for c in range(n):", 3)
            self.w("for j in range(xe.shape[1]):", 4)
            self.w("out[c] -= he[c, j] * xe[c, j]", 5)
        self.held_fields = bool(split)
        self.w("for c in range(n):", 2)
        self.w("fa[c] = betas[k - 1] * out[c] + (1.0 - betas[k - 1]) * e0[c]", 3)
        self.w("fb[c] = betas[k] * out[c] + (1.0 - betas[k]) * e0[c]", 3)
        for g in summable:
            self.w(f"if sum_{g.name}:  # log-normaliser of {g.name} at both temperatures, from one field", 2)
            self.fields(g, 3)
            if g.domain in LOW:  # two-state units: both temperatures in one pass
                shape = self._rows(g)
                self.w(f"_k.two_state_lognorm_pair(f_{g.name}.reshape({shape}), betas[k - 1], betas[k], fa, fb, "
                       f"t_{g.name}.reshape({shape}){LOW[g.domain]})", 3)
                continue
            for beta, out in (("betas[k - 1]", "fa"), ("betas[k]", "fb")):
                for raw, hot in zip(self._raw(g), self._tempered(g)):
                    self.w(f"_k.scaled_copy({raw}.reshape(-1), {beta}, {hot}.reshape(-1))", 3)
                call = f"_k.{self.domain_kernel('lognorm', g)}({self._views(g, self._tempered(g))}, {out}{LOW.get(g.domain, '')})"
                self.w(f"ok &= {call}" if g.domain == "real" else call, 3)
        self.w("for c in range(n):", 2)
        self.w("logw[c] += fa[c] - fb[c]", 3)
        for g in summable:  # t_ holds betas[k] times the field: their conditional at betas[k]
            arrays = self._tempered(g) + [P.group(g.name), f"m_{g.name}"]
            call = f"_k.{self.domain_kernel('draw', g)}({self._views(g, arrays)}, rng{LOW.get(g.domain, '')})"
            self.w(f"if sum_{g.name} and free_{g.name}:", 2)
            self.w(f"ok &= {call}" if g.domain == "real" else call, 3)
        if split:  # the tempered sweep of the rest, with the held fields
            self.w("beta = betas[k]", 2)
            self._each_block(self._tempered_update(rows), indent=2, flag="rest_")
        else:
            rest = ", ".join(f"rest_{g}" for g in self.ir.groups)
            sweep = "gibbs_tempered_rows" if rows else "gibbs_tempered"
            self.w(f"ok &= {sweep}({self.args}, {self._masks()}, {rest}, {self._bases()}, betas[k], rng)", 2)
        self.held_fields = False
        self.w("return ok", 1)

    @staticmethod
    def _raw(g) -> list[str]:
        return [f"f_{g.name}"] + ([f"q_{g.name}"] if g.domain == "real" else [])

    @staticmethod
    def _tempered(g) -> list[str]:
        return [f"t_{g.name}"] + ([f"tq_{g.name}"] if g.domain == "real" else [])

    def _base_energy(self, rows: bool) -> None:
        self.w("# E0: the base model's energy over the groups that are not summed out", 2)
        self.w("e0.fill(0.0)", 2)
        for g in self.ir.groups:
            x = P.group(g)
            self.w(f"if not sum_{g}:", 2)
            self.w(f"xe = {x}.reshape((n, {x}.size // n))", 3)
            self.w("for c in range(n):", 3)
            if rows:  # bf_ and bq_ may have different numbers of rows
                self.w(f"b = c % bf_{g}.shape[0]", 4)
                self.w(f"bb = c % bq_{g}.shape[0]", 4)
            self.w("for j in range(xe.shape[1]):", 4)
            bf, bq = ("b, j", "bb, j") if rows else ("j", "j")
            self.w(f"e0[c] += xe[c, j] * (bq_{g}[{bq}] * xe[c, j] - bf_{g}[{bf}])", 5)
