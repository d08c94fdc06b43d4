"""Learning kernels: dE/dtheta statistics and a whole training epoch in compiled code.

energy_grad  adds alpha * sum over chains of dE/dP to a buffer per parameter (BLAS for
             dense v (x) h statistics, loops otherwise);
train_epoch  runs every minibatch of an epoch: positive phase (mean-field with the data
             clamped: exact E[h | v] when the posterior factorises), negative phase
             (CD-k chains started at the data, or persistent chains), Rao-Blackwellised
             negative statistics (summable latents replaced by their conditional means),
             then a momentum / weight-decay step and the parameter constraints. It runs as
             `parts` threads at once (one call each, for the whole epoch): rows of every
             minibatch per part, a barrier in compiled code (runtime/sync.py), then each
             part steps its share of every parameter (grad_span / grad_rest), a barrier.
"""
from __future__ import annotations

from ..analysis.gradients import gradient_terms
from ..ir.model import IBin, iexpr_accesses, iexpr_index_names
from . import printer as P
from .domains import DRAW, LOW, MEAN


class LearningEmitter:
    """Mixed into codegen.emit.Emitter; uses its helpers (w, kernel, loop_nest, access...)."""

    def learning_kernels(self) -> None:
        self.grad_kernel()
        self.grad_kernel(weighted=True)
        self.grad_kernel(select="span")
        self.grad_kernel(select="rest")
        if self._rb_fused():
            self.rb_sweep_kernel()
        self.train_epoch_kernel()

    def _rb_fused(self) -> bool:
        """The summable latents all sit in the last block: their means can come from the last sweep."""
        last = set(self.plan.blocks[-1])
        summed = self.plan.default_summed
        return bool(summed) and all(g in last and not self.plan.groups[g].lateral for g in summed)

    # dE/dtheta -----------------------------------------------------------------------------
    def _grads(self) -> str:
        return ", ".join(f"g_{p}" for p in self.ir.params)

    def grad_kernel(self, weighted: bool = False, select: str | None = None) -> None:
        """energy_grad: g_P += alpha * sum over chains; energy_grad_rows: a weight per chain (the
        discriminative gradient weighs each (data, class) row by its posterior). For an epoch cut
        over threads, grad_span adds the statistics of the parameters cut by rows (_span_params)
        on this part's rows of each, grad_rest those of the other parameters, whole."""
        span = self._span_params()
        if weighted:
            self.kernel("energy_grad_rows", "energy_grad_rows",
                        "g_P += sum over chains c of weights[c] * dE/dP(chain c) for every parameter P.")
        elif select == "span":
            self.kernel("grad_span", "grad_span",
                        "energy_grad for the parameters cut by rows over the parts of an epoch ("
                        + (", ".join(span) or "none") + "), on rows [rows * part // parts, rows * (part + 1) "
                        "// parts) of each: the parts write disjoint rows, straight into a shared array.")
        elif select == "rest":
            self.kernel("grad_rest", "grad_rest",
                        "energy_grad for the parameters not cut by rows (each part adds its chains' statistics "
                        "to its own array): " + (", ".join(p for p in self.ir.params if p not in span) or "none")
                        + ".")
        else:
            self.kernel("energy_grad", "energy_grad",
                        "g_P += alpha * (sum over chains of dE/dP) for every parameter P.")
        alpha = [] if weighted else ["alpha"]
        self.w(f"n = {P.group(next(iter(self.ir.groups)))}.shape[0]", 1)
        for name, terms in gradient_terms(self.plan).items():
            if select is not None and (name in span) != (select == "span"):
                continue
            p = self.ir.params[name]
            self.w(f"# dE/d{name}", 1)
            if not terms:
                self.w(f"# ({name} does not appear in the energy: its gradient is 0)", 1)
            for t in terms:
                m = self.plan.monomials[t.monomial]
                self.w(f"# {self.src(m)}", 1)
                if t.dense is not None:
                    self._dense_grad(name, p, m, t, weighted, cut=select == "span")
                    continue
                target = f"g_{name}[" + (", ".join(P.poly(i, self.sizes) for i in t.index) if t.index else "0") + "]"
                # the constant part in the parameter's dtype: a float64 factor would turn a float32
                # loop into float64 (half the SIMD lanes, and conversions)
                self.w(f"coef = g_{name}.dtype.type({P.product(alpha + [P.number(m.scale)])})", 1)
                derivative = P.expr(t.derivative, self.sizes)
                terms = [("coef", frozenset())] + ([("weights[c]", frozenset())] if weighted else [])
                if derivative != "1.0":  # its factors one by one, so each can join a partial sum
                    terms += [(P.expr(d, self.sizes), frozenset(iexpr_index_names(d)) - self.sizes)
                              for d in _factors(t.derivative)]
                terms += [(self.access(f), self.indices_of(f)) for f in m.factors]
                at = frozenset(s for i in t.index for s in i.symbols()) - self.sizes
                if self.contracted(m, terms, at, lambda value: [f"{target} += {value}"]):
                    continue
                parts = ["coef"] + (["weights[c]"] if weighted else []) + ([] if derivative == "1.0" else [derivative])
                skip = self.zero_skip(m, -1)
                parts += [skip[1] if skip and k == skip[3] else self.access(f) for k, f in enumerate(m.factors)]
                self.w("for c in range(n):", 1)
                self.loop_nest(m, [f"{target} += {P.product(parts)}"], 2, skip=skip[:3] if skip else None)

    def _dense_shape(self, m, t) -> tuple[str, str, str, str]:
        """(rows, cols, left, right) of a dense statistic g_P.reshape((rows, cols)) += L^T R."""
        d = t.dense
        mine = next(g for g in m.groups if g != d.other)
        na = self.flat(self.ir.groups[d.other].shape)
        nx = self.flat(self.ir.groups[mine].shape)
        a2 = f"{P.group(d.other)}.reshape((n, {na}))"
        x2 = f"{P.group(mine)}.reshape((n, {nx}))"
        rows, cols = (nx, na) if d.transpose else (na, nx)
        left, right = (x2, a2) if d.transpose else (a2, x2)
        return rows, cols, left, right

    def _span_params(self) -> dict[str, tuple[str, str]]:
        """The parameters an epoch cut over threads updates by rows: every statistic of P a dense
        product L^T R of one (rows, cols) shape, so part q owns rows [rows * q // parts, ...) and
        adds all the minibatch's chains there itself (no per-part copies of P to add up). P -> (rows, cols)."""
        out = {}
        for name, terms in gradient_terms(self.plan).items():
            shapes = {self._dense_shape(self.plan.monomials[t.monomial], t)[:2] for t in terms if t.dense is not None}
            if terms and all(t.dense is not None for t in terms) and len(shapes) == 1:
                out[name] = shapes.pop()
        return out

    def _dense_grad(self, name, p, m, t, weighted: bool = False, cut: bool = False) -> None:
        """g_P += beta * L^T R with L the group on P's first axes: BLAS, or row updates for the
        nonzeros of L when it is mostly 0 (binary data and samples). Weighted: R's rows scaled.
        cut: only rows [lo, hi) of g_P (this part's rows), i.e. L's columns lo:hi."""
        d = t.dense
        rows, cols, left, right = self._dense_shape(m, t)
        scalar = ([] if weighted else ["alpha"]) + [P.number(m.scale)] + [P.expr(c, self.sizes) for c in d.scalar_coef]
        self.w(f"beta = {P.unwrapped(P.product(scalar))}", 1)
        if cut:
            self.w(f"lo = {rows} * part // parts", 1)
            self.w(f"hi = {rows} * (part + 1) // parts", 1)
            self.w(f"g2 = g_{name}.reshape(({rows}, {cols}))[lo:hi]", 1)
            self.w(f"l2 = {left}[:, lo:hi]", 1)
        else:
            self.w(f"g2 = g_{name}.reshape(({rows}, {cols}))", 1)
            self.w(f"l2 = {left}", 1)
        self.w(f"r2 = {right}" + (" * weights.reshape((n, 1))" if weighted else ""), 1)
        self.w(f"if _k.use_loops(l2, {cols}):", 1)
        self.w("_k.sparse_outer(l2, r2, g2, beta)", 2)
        self.w("else:", 1)
        # np.dot takes contiguous arrays only: a part's columns of L are copied (chains x rows/parts)
        self.w("t = np.dot(np.ascontiguousarray(l2).T, r2)" if cut else "t = np.dot(l2.T, r2)", 2)
        self.w("for r in range(g2.shape[0]):", 2)
        self.w(f"for j in range({cols}):", 3)
        self.w("g2[r, j] += beta * t[r, j]", 4)

    def rb_sweep_kernel(self) -> None:
        """One Gibbs sweep that also leaves E[g | rest] in rb_g for the flagged groups of the
        last block, from the field the sweep computes anyway (no second product)."""
        self.kernel("gibbs_rb", "gibbs_rb",
                    "A sweep like gibbs(..., steps=1); groups flagged rbfree_* (all in the last block) "
                    "also get their conditional means, given the final state of the rest, in rb_*.")
        self._sweep_start()
        self.w("ok = True", 1)
        last = set(self.plan.blocks[-1])

        def update(g, indent: int) -> None:
            if g.name in last and not g.lateral:
                self.w(f"if rbfree_{g.name}:", indent)
                self.w(f"rb_{g.name}[...] = {P.group(g.name)}", indent + 1)
                arrays = self._arrays(g)
                arrays[-2] = f"rb_{g.name}"
                self.w(f"_k.{self.domain_kernel('mean', g)}({self._views(g, arrays)}, 0.0{LOW.get(g.domain, '')})", indent + 1)
                if g.domain in LOW:  # draw from the mean just computed: one exp per unit, not two
                    views = self._views(g, [f"rb_{g.name}", P.group(g.name), f"m_{g.name}"])
                    self.w(f"_k.two_state_draw_from_mean({views}, rng{LOW[g.domain]})", indent + 1)
                    self.w("else:", indent)
                    indent += 1
            if g.lateral:
                self.site_sweep(g, indent, draw=True)
                return
            call = f"_k.{self.domain_kernel('draw', g)}({self._views(g, self._arrays(g))}, rng{LOW.get(g.domain, '')})"
            self.w(f"ok &= {call}" if g.domain == "real" else call, indent)

        self._each_block(update, indent=1)
        self.w("return ok", 1)

    # one epoch ------------------------------------------------------------------------------
    def _per_group(self, prefix: str) -> str:
        return ", ".join(f"{prefix}{g}" for g in self.ir.groups)

    def _call_args(self, prefix: str) -> str:
        """The kernel argument list with the group arrays taken from `prefix` arrays."""
        parts = [f"{prefix}{g}" for g in self.ir.groups] + [P.param(p) for p in self.ir.params]
        parts += [P.size(s) for s in self.ir.sizes] + [P.const(k) for k in self.ir.consts]
        return ", ".join(parts)

    def _frees(self, prefix: str) -> str:
        return ", ".join(f"{prefix}{g}" for g in self.ir.groups)

    def train_epoch_kernel(self) -> None:
        self.kernel("train_epoch", "train_epoch",
                    "One epoch of minibatch learning, in place on the parameters, velocities (v_*) and persistent "
                    "chains (chain_*), as part `part` of `parts` threads running this kernel at once: each part "
                    "samples its rows of every minibatch (and its share of the persistent chains), all wait at "
                    "a barrier (sync), each part updates its share of every parameter from the whole "
                    "minibatch, all wait again. Returns False on a non-positive precision.")
        first = next(iter(self.ir.groups))
        span = self._span_params()
        rest = [p for p in self.ir.params if p not in span]
        lean = self._lean()
        rb_fused = self._rb_fused()
        self.w("ok = True", 1)
        self.w("total = order.shape[0]", 1)
        self.w(f"n_chains = chain_{first}.shape[0]", 1)
        self.w("ca = n_chains * part // parts  # this part's persistent chains", 1)
        self.w("ce = n_chains * (part + 1) // parts", 1)
        if lean:
            self.w("# per-epoch buffers, sliced per minibatch: on small models allocations cost as much as a product",
                   1)
            for g in self.ir.groups:
                for buf in ("f", "p"):
                    self.w(f"buf_{buf}_{g} = np.empty((max(batch, n_chains),) + chain_{g}.shape[1:], chain_{g}.dtype)",
                           1)
            self.w("bits = np.empty(_k.BLOCK, np.int64)  # the SIMD sigmoid's scratch", 1)
        for name in rest:
            self.w(f"g_{name} = pg_{name}[part]  # this part's statistics of {name} (added up by the step)", 1)
        self.w("for start in range(0, total, batch):", 1)
        self.w("nb = min(batch, total - start)", 2)
        self.w("ra = nb * part // parts  # this part's rows of the minibatch: [ra, re)", 2)
        self.w("re = nb * (part + 1) // parts", 2)
        self.w("ne = re - ra", 2)
        self.w("# positive phase: the data clamped, the rest by mean-field (exact if it factorises)", 2)
        for g in self.ir.groups:
            self.w(f"pos_{g} = spos_{g}[ra:re]", 2)
            self.w(f"if has_{g}:", 2)
            self.w("for r in range(ne):  # an element loop: numba's row assignment costs 6x more here", 3)
            self.w(f"src = data_{g}[order[start + ra + r]].reshape(-1)", 4)
            self.w(f"dst = pos_{g}[r].reshape(-1)", 4)
            self.w("for j in range(src.shape[0]):", 4)
            self.w("dst[j] = src[j]", 5)
            self.w("else:", 2)
            self.w(f"pos_{g}[:] = init_{g}", 3)
        indent = 2
        if lean:
            self.w("if mf_iters == 1 and mf_damping == 0.0:", 2)
            self.w("# the posterior factorises: one sweep of exact conditional means", 3)
            self._lean_sweep("pos_", "pfree_", "ne", "mean", 3)
            self.w("else:", 2)
            indent = 3
        self.w(f"it, d = mean_field({self._call_args('pos_')}, "
               f"{', '.join(f'pmask_{g}[ra:re]' for g in self.ir.groups)}, {self._frees('pfree_')}, "
               "mf_damping, mf_tol, mf_iters)", indent)
        self.w("if it < 0:", indent)
        self.w("return _k.abort(sync)  # the other parts leave their barrier too", indent + 1)
        self.w("# negative phase: CD-k chains start at the data; PCD chains persist. A chain draws from "
               "its own stream (rng row), whichever part runs it", 2)
        self.w("if persistent:", 2)
        self.w("c0 = ca", 3)
        self.w("c1 = ce", 3)
        self.w("m_all = n_chains", 3)
        for g in self.ir.groups:
            self.w(f"neg_{g} = chain_{g}[c0:c1]", 3)
        self.w("else:", 2)
        self.w("c0 = ra", 3)
        self.w("c1 = re", 3)
        self.w("m_all = nb", 3)
        for g in self.ir.groups:
            self.w(f"neg_{g} = sneg_{g}[ra:re]", 3)
            self.w(f"neg_{g}[...] = pos_{g}", 3)
        self.w("# latents start from a draw given the data", 3)
        if lean:
            self.w("rng_part = rng[c0:c1]", 3)
            self._lean_sweep("neg_", "pfree_", "ne", "draw", 3, rng="rng_part")
        else:
            self.w(f"ok &= gibbs({self._call_args('neg_')}, "
                   f"{', '.join(f'pmask_{g}[ra:re]' for g in self.ir.groups)}, {self._frees('pfree_')}, "
                   "rng[c0:c1], 1)", 3)
        self.w("rng_part = rng[c0:c1]", 2)
        cmasks = ", ".join(f"cmask_{g}[c0:c1]" for g in self.ir.groups)
        self.w("m_rb = c1 - c0", 2)
        for g in self.ir.groups:
            self.w(f"rb_{g} = srb_{g}[c0:c1]", 2)
        if lean:
            self.w("for step in range(k - 1):", 2)
            self._lean_sweep("neg_", "cfree_", "m_rb", "draw", 3, rng="rng_part")
            self.w("# the last sweep also gives E[h | rest] for the summable latents (Rao-Blackwellised)", 2)
            self._lean_sweep("neg_", "cfree_", "m_rb", "rb", 2, rng="rng_part")
            for g in self.ir.groups:
                self.w(f"st_{g} = rb_{g} if rbfree_{g} else neg_{g}", 2)
        elif rb_fused:
            self.w("# the last sweep also gives E[h | rest] for the summable latents (Rao-Blackwellised)", 2)
            self.w("if k > 1:", 2)
            self.w(f"ok &= gibbs({self._call_args('neg_')}, {cmasks}, {self._frees('cfree_')}, rng_part, k - 1)", 3)
            self.w(f"ok &= gibbs_rb({self._call_args('neg_')}, {cmasks}, {self._frees('cfree_')}, "
                   f"{self._per_group('rb_')}, {self._per_group('rbfree_')}, rng_part)", 2)
            for g in self.ir.groups:
                self.w(f"st_{g} = rb_{g} if rbfree_{g} else neg_{g}", 2)
        else:
            self.w(f"ok &= gibbs({self._call_args('neg_')}, {cmasks}, {self._frees('cfree_')}, rng_part, k)", 2)
            self.w("# Rao-Blackwellised statistics: summable latents replaced by E[h | rest]", 2)
            for g in self.ir.groups:
                self.w(f"rb_{g}[...] = neg_{g}", 2)
                self.w(f"st_{g} = rb_{g}", 2)
            self.w(f"it, d = mean_field({self._call_args('st_')}, "
                   f"{', '.join(f'rbmask_{g}[c0:c1]' for g in self.ir.groups)}, {self._frees('rbfree_')}, "
                   "0.0, 0.0, 1)", 2)
        if rest:
            self.w(f"# this part's statistics of {', '.join(rest)}, scaled by the whole minibatch", 2)
            for name in rest:
                self.w(f"g_{name}.fill(0.0)", 2)
            self.w(f"grad_rest({self._call_args('pos_')}, 1.0 / nb, {self._grads()})", 2)
            self.w(f"grad_rest({self._call_args('st_')}, -1.0 / m_all, {self._grads()})", 2)
        self.w("if not _k.barrier(sync, parts):  # every part's rows are in", 2)
        self.w("return False", 3)
        self._whole_batch_gradient(span, rest)
        self.w("return ok", 1)

    def _whole_batch_gradient(self, span: dict, rest: list) -> None:
        """After the first barrier: the statistics of the whole minibatch for the parameters cut
        by rows (each part on its rows), the step on each part's share of every parameter, the
        second barrier, and the constraints (whole parameters: part 0, then a third barrier)."""
        self.w("# the whole minibatch, as every part left it", 2)
        rb_only = self._lean() or self._rb_fused()  # else every group's statistics are in srb_*
        for g in self.ir.groups:
            self.w(f"all_pos_{g} = spos_{g}[:nb]", 2)
            if rb_only:
                self.w(f"all_neg_{g} = chain_{g} if persistent else sneg_{g}[:nb]", 2)
                self.w(f"all_st_{g} = srb_{g}[:m_all] if rbfree_{g} else all_neg_{g}", 2)
            else:
                self.w(f"all_st_{g} = srb_{g}[:m_all]", 2)
        params = ", ".join(P.param(p) for p in self.ir.params)
        direct = self._direct_ok() and bool(span)
        indent = 2
        if span and direct:
            self.w("if momentum == 0.0 and decay == 0.0 and not centered:", 2)
            self.w("# plain SGD: the statistics go straight into the parameters (no derivative reads them)", 3)
            self.w(f"grad_span({self._call_args('all_pos_')}, -lr / nb, {params}, part, parts)", 3)
            self.w(f"grad_span({self._call_args('all_st_')}, lr / m_all, {params}, part, parts)", 3)
            self.w("else:", 2)
            indent = 3
        if span:
            self.w(f"grad_span({self._call_args('all_pos_')}, 1.0 / nb, {self._grads()}, part, parts)", indent)
            self.w(f"grad_span({self._call_args('all_st_')}, -1.0 / m_all, {self._grads()}, part, parts)", indent)
            if not self._direct_ok():
                self.w("# a statistic reads parameters: every part reads them before any part steps", indent)
                self.w("if not _k.barrier(sync, parts):", indent)
                self.w("return False", indent + 1)
        if self.plan.couplings and rest:
            self.w("if centered:  # one part only (its offsets follow each minibatch's means)", 2)
            for name in rest:
                self.w(f"g_{name} = pg_{name}[0]", 3)
        self._centring(2)
        self.w("plain = momentum == 0.0 and decay == 0.0 and not centered", 2)
        for name, p in self.ir.params.items():
            self._part_update(name, p, span.get(name), direct)
        self.w("if not _k.barrier(sync, parts):  # every part's share is stepped", 2)
        self.w("return False", 3)
        if any(p.constraints for p in self.ir.params.values()):
            self.w("# constraints (on whole parameters: one part, then the others wait)", 2)
            self.w("if part == 0:", 2)
            for name, p in self.ir.params.items():
                self._constrain(name, p, 3)
            self.w("if not _k.barrier(sync, parts):", 2)
            self.w("return False", 3)

    def _part_update(self, name, p, rows_cols, direct: bool) -> None:
        """The step on this part's share of P: rows [lo, hi) of a parameter cut by rows (from the shared
        g_P, zeroed after), else elements [lo, hi) of the parts' statistics pg_P added in part order.
        Weight decay on matrices only; plain SGD leaves the velocity alone (nothing reads it)."""
        arr = P.param(name)
        decay = " + decay * pf[j]" if len(p.shape) >= 2 else ""
        self.w(f"pf = {arr}.reshape(-1)", 2)
        self.w(f"vf = v_{name}.reshape(-1)", 2)
        if rows_cols is not None:
            rows, cols = rows_cols
            self.w(f"lo = {rows} * part // parts * {cols}", 2)
            self.w(f"hi = {rows} * (part + 1) // parts * {cols}", 2)
            self.w(f"gf = g_{name}.reshape(-1)", 2)
            at = 2
            if direct:
                self.w("if not plain:  # (plain SGD added the statistics straight in)", 2)
                at = 3
            self.w("for j in range(lo, hi):", at)
            self.w(f"vf[j] = momentum * vf[j] - lr * {f'(gf[j]{decay})' if decay else 'gf[j]'}", at + 1)
            self.w("pf[j] += vf[j]", at + 1)
            self.w("gf[j] = 0.0", at + 1)
            return
        self.w("lo = pf.shape[0] * part // parts", 2)
        self.w("hi = pf.shape[0] * (part + 1) // parts", 2)
        self.w(f"g2 = pg_{name}.reshape((parts, -1))", 2)
        self.w("for j in range(lo, hi):", 2)
        self.w("g = g2[0, j]", 3)
        self.w("for q in range(1, parts):", 3)
        self.w("g += g2[q, j]", 4)
        self.w("if plain:", 3)
        self.w("pf[j] -= lr * g", 4)
        self.w("else:", 3)
        self.w(f"vf[j] = momentum * vf[j] - lr * {f'(g{decay})' if decay else 'g'}", 4)
        self.w("pf[j] += vf[j]", 4)

    def _centring(self, indent: int) -> None:
        """The statistics of the model written in x - mu (analysis/centring.py), then the offsets
        moved towards the minibatch's positive-phase means."""
        couplings = self.plan.couplings
        if not couplings:
            return
        self.w("if centered:", indent)
        i = indent + 1
        self.w("# centring (Montavon & Mueller 2012): the step of the model written in x - mu_x", i)
        size = {g: self.flat(self.ir.groups[g].shape) for g in self.ir.groups}

        def each_pair(c, body: list[str]) -> None:
            """for a, b over the weight's (lower, upper) elements, with gw, gl, gu bound."""
            self.w(f"gw = g_{c.weight}.reshape(({size[c.lower]}, {size[c.upper]}))", i)
            self.w(f"gl = g_{c.lower_bias}.reshape(-1)", i)
            self.w(f"gu = g_{c.upper_bias}.reshape(-1)", i)
            self.w(f"for a in range({size[c.lower]}):", i)
            self.w(f"for b in range({size[c.upper]}):", i + 1)
            for line in body:
                self.w(line, i + 2)

        def times(ratio: float) -> list[str]:
            return [] if ratio == 1.0 else [P.number(ratio)]

        for c in couplings:
            lower = P.product(times(c.upper_ratio) + [f"mu_{c.lower}[a]", "gu[b]"])
            upper = P.product(times(c.lower_ratio) + ["gl[a]", f"mu_{c.upper}[b]"])
            each_pair(c, [f"gw[a, b] -= {lower} + {upper}"])
        self.w("# the biases take the part of the new weight steps the offsets carry", i)
        for c in couplings:
            each_pair(c, [f"gl[a] -= {P.product(times(c.lower_ratio) + ['gw[a, b]', f'mu_{c.upper}[b]'])}",
                          f"gu[b] -= {P.product(times(c.upper_ratio) + ['gw[a, b]', f'mu_{c.lower}[a]'])}"])
        self.w("# offsets: running means of the positive phase (the data, the posterior means)", i)
        for g in dict.fromkeys(x for c in couplings for x in (c.lower, c.upper)):
            self.w(f"p2 = pos_{g}.reshape((nb, {size[g]}))", i)
            self.w(f"for j in range({size[g]}):", i)
            self.w("acc = 0.0", i + 1)
            self.w("for r in range(nb):", i + 1)
            self.w("acc += p2[r, j]", i + 2)
            self.w(f"mu_{g}[j] += offset_rate * (acc / nb - mu_{g}[j])", i + 1)

    def _direct_ok(self) -> bool:
        """No dE/dP reads a parameter, so P can be updated while the statistics are added up."""
        for terms in gradient_terms(self.plan).values():
            for t in terms:
                coef = t.dense.scalar_coef if t.dense is not None else (t.derivative,)
                if any(a.kind == "param" for c in coef for a in iexpr_accesses(c)):
                    return False
        return True

    def _lean(self) -> bool:
        """Every group two-state without lateral couplings, and the summable latents in the last
        block. Training masks are then whole groups (the free_* flags), so the epoch can sweep
        with mask-free kernels on per-epoch buffers: on small models the generic sweeps'
        allocations, masks and change measure cost about as much as the products."""
        return self._rb_fused() and all(g.domain in LOW and not g.lateral for g in self.plan.groups.values())

    def _lean_sweep(self, prefix: str, free: str, rows: str, mode: str, indent: int, rng: str = "rng") -> None:
        """One block sweep over the `rows` chains in `prefix`* arrays, for the groups flagged free:
        mode "mean" writes conditional means, "draw" draws, "rb" draws and leaves the means of the
        rbfree_* groups in rb_*."""
        def two(array: str) -> str:  # the (chains, elements) view the kernels take
            return f"{array}.reshape(({rows}, -1))"

        for b, block in enumerate(self.plan.blocks):
            self.w(f"# block {b + 1}: {{{', '.join(block)}}}", indent)
            for name in block:
                low = LOW[self.plan.groups[name].domain]
                f, x = two(f"f_{name}"), two(f"{prefix}{name}")
                self.w(f"if {free}{name}:", indent)
                self.w(f"f_{name} = buf_f_{name}[:{rows}]", indent + 1)
                self.w(f"field_{name}({self._call_args(prefix)}, f_{name})", indent + 1)
                if mode == "mean":
                    self.w(f"_k.two_state_means_into({f}, {x}, bits{low})", indent + 1)
                    continue
                draw_at = indent + 1
                if mode == "rb":
                    rb = two(f"rb_{name}")
                    self.w(f"if rbfree_{name}:", indent + 1)
                    self.w(f"_k.two_state_means_into({f}, {rb}, bits{low})", indent + 2)
                    self.w(f"_k.two_state_draw_from_means({rb}, {x}, {rng}{low})", indent + 2)
                    self.w("else:", indent + 1)
                    draw_at = indent + 2
                p = two(f"buf_p_{name}[:{rows}]")
                self.w(f"_k.two_state_means_into({f}, {p}, bits{low})", draw_at)
                self.w(f"_k.two_state_draw_from_means({p}, {x}, {rng}{low})", draw_at)

    def _constrain(self, name, p, at: int) -> None:
        arr = P.param(name)
        if "symmetric" in p.constraints:
            self.w(f"for a in range({arr}.shape[0]):", at)
            self.w(f"for b in range(a + 1, {arr}.shape[1]):", at + 1)
            self.w(f"s = 0.5 * ({arr}[a, b] + {arr}[b, a])", at + 2)
            self.w(f"{arr}[a, b] = s", at + 2)
            self.w(f"{arr}[b, a] = s", at + 2)
        if "zero_diag" in p.constraints:
            self.w(f"for a in range({arr}.shape[0]):", at)
            self.w(f"{arr}[a, a] = 0.0", at + 1)
        if "positive" in p.constraints:
            self.w(f"pf = {arr}.reshape(-1)", at)
            self.w("for j in range(pf.shape[0]):", at)
            self.w("pf[j] = max(pf[j], 1e-6)", at + 1)


def _factors(e):
    """The factors of a product expression (a * b * c -> [a, b, c]); anything else is one factor."""
    if isinstance(e, IBin) and e.op == "*":
        return _factors(e.left) + _factors(e.right)
    return [e]
