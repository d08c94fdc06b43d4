"""Directed plan -> numba kernels: values, reverse-mode gradients, ancestral samplers.

Every kernel takes the same leading arguments (`ARGS`): the number of rows, every
group's array (rows first), the reparameterisation noise of the guide's normal
latents, the parameters, sizes and constants. For each program mode M ("joint",
"reparam") the module has
  M_values(ARGS)                      every value of the program, in order
  M_forward(ARGS, logp, logq)         per-row log p and log q
  M_backward(ARGS, seed_p, seed_q, logp, logq, grads...)
                                      reverse mode: grads += d(sum_r seed_p[r] log p_r +
                                      seed_q[r] log q_r)/d params
and `sample_model` / `sample_guide` draw the directed groups in topological order
(autoregressive groups element by element, with running sums carried along).

A model with a discriminator (a GAN) adds
  generate_values / generate_forward(GEN)   draw every group as mean + std * e_<group> into x_<group>
  generate_backward(GEN, dx..., grads...)   grads += d(sum dx_<g> * drawn g)/d params (the generator's)
  discriminate_values / discriminate_forward(ARGS, logit)
  discriminate_backward(ARGS, seed, logit, grads..., dx...)
                                      grads and dx_<g> += d(sum_r seed[r] logit_r)/d params and /d x_<g>
where GEN is ARGS with the noise of every group (`e_<group>`) in place of the guide's.
"""
from __future__ import annotations

from .. import abi, ops
from ..analysis.directed import CondPlan, DirectedPlan, Program, Value, value_exprs
from ..analysis.gradients import diff
from ..errors import CompilerBug
from ..ir.model import IAccess, IBin, IExpr, INum, ISym, IUn, iexpr_replace
from ..ir.model import iexpr_accesses as _accesses
from ..poly import Poly
from . import printer as P
from .tidy import docstring

VECTORISED = ops.VECTORISED  # map values f(u) computed over whole arrays by the SIMD helpers


class DirectedEmitter:
    def __init__(self, plan: DirectedPlan, sizes, consts, params, source_lines):
        self.plan = plan
        self.sizes = set(sizes)
        self.size_list = list(sizes)
        self.consts = list(consts)
        self.params = list(params)  # name -> ParamIR
        self.param_shapes = {n: p.shape for n, p in params.items()}
        self.groups = list(plan.ir.groups)
        self.eps = list(plan.programs["reparam"].eps) if "reparam" in plan.programs else []
        self.source_lines = source_lines
        self.orders = {"all_groups": self.groups, "directed": [c.cond.group for c in plan.model],
                       "guide": [c.cond.group for c in plan.guide], "eps": self.eps, "params": self.params,
                       "sizes": self.size_list, "consts": self.consts}
        for order in self.orders.values():  # every name reaches the module as a checked identifier
            for name in order:
                P.ident(name)
        self.args = ", ".join(abi.parameter_names(abi.DIRECTED_MODEL, self.orders))
        self.gen_args = ", ".join(abi.parameter_names(abi.GENERATOR, self.orders))
        self.wrt: set[str] = set()  # groups whose adjoints (dx_<group>) the backward being written computes
        self.specs: dict[str, tuple] = {}  # kernel name -> its abi spec, in the order written
        self.lines: list[str] = []

    def _size_order(self, s: str) -> int:
        return self.size_list.index(s)

    # printing -------------------------------------------------------------------------------
    def w(self, text: str = "", indent: int = 0) -> None:
        self.lines.append("    " * indent + text if text else "")

    def poly(self, p: Poly) -> str:
        return P.poly(p, self.sizes)

    def dims(self, ranges) -> list[str]:
        return [self.poly(d) for d in ranges]

    def access(self, a: IAccess, prog: Program, prefix: str = "") -> str:
        idx = [self.poly(p) for p in a.index]
        if a.kind == "group":
            return f"{prefix}{P.group(a.name)}[" + ", ".join(["r"] + idx) + "]"
        if a.kind == "eps":
            return f"e_{P.ident(a.name)}[" + ", ".join(["r"] + idx) + "]"
        if a.kind == "run":  # the running sum carried by a fused loop (indices filled in by the caller)
            return "run[0]"
        if a.kind == "param":
            name = prefix + P.param(a.name) if prefix else P.param(a.name)
            return f"{name}[" + (", ".join(idx) if idx else "0") + "]"
        v = prog.value(a.name)
        parts = (["r"] if v.rows else []) + idx
        return f"{prefix}{a.name}[" + (", ".join(parts) if parts else "0") + "]"

    def expr(self, e: IExpr, prog: Program) -> str:
        if isinstance(e, INum):
            return P.number(e.value)
        if isinstance(e, ISym):
            if e.kind == "size":
                return P.size(e.name)
            if e.kind == "const":
                return P.const(e.name)
            return P.ident(e.name)
        if isinstance(e, IAccess):
            return self.access(e, prog)
        if isinstance(e, IUn):
            inner = self.expr(e.arg, prog)
            return f"(-{inner})" if e.op == "neg" else f"{ops.lookup(e.op).numba}({inner})"
        if isinstance(e, IBin):
            op = "**" if e.op == "^" else e.op
            return f"({self.expr(e.left, prog)} {op} {self.expr(e.right, prog)})"
        raise CompilerBug(f"cannot print {type(e).__name__}")

    def comment(self, v: Value) -> str:
        line = self.source_lines[v.line - 1] if 0 < v.line <= len(self.source_lines) else ""
        return f"# {v.name}, line {v.line}: {P.comment_text(line)}"

    def shape_of(self, v: Value) -> str:
        dims = (["n_rows"] if v.rows else []) + self.dims(v.ranges)
        return "(" + ", ".join(dims or ["1"]) + ("," if len(dims) <= 1 else "") + ")"

    def kernel(self, name: str, spec: str, doc: str) -> None:
        """Open kernel `name` with the parameters of abi.SPECS[spec] (recorded for KERNEL_SPEC)."""
        self.specs[name] = abi.SPECS[spec]
        self.w()
        self.w()
        self.w("@numba.njit(cache=True, nogil=True, fastmath=FAST, error_model=\"numpy\")")
        self.w(f"def {abi.signature(name, abi.SPECS[spec], self.orders)}:")
        self.lines += docstring(doc, 1)

    # loops ----------------------------------------------------------------------------------
    def open_loops(self, v: Value, indent: int, pinned: dict | None = None, skip=()) -> int:
        pinned = pinned or {}
        if v.rows:
            self.w("for r in range(n_rows):", indent)
            indent += 1
        for k, (name, d) in enumerate(zip(v.idx, v.ranges)):
            if k in skip:
                continue
            if k in pinned:
                self.w(f"{name} = {pinned[k]}", indent)
            else:
                self.w(f"for {name} in range({self.poly(d)}):", indent)
                indent += 1
        return indent

    def axis_loops(self, axes, indent: int) -> int:
        """`for name in range(length):` for each (name, length); returns the inner indent."""
        for name, length in axes:
            self.w(f"for {name} in range({self.poly(length)}):", indent)
            indent += 1
        return indent

    def sum_loops(self, v: Value, indent: int) -> int:
        for s in v.sums:
            lo = ["0"] + [self.poly(p) for p in s.lo]
            hi = [self.poly(p) for p in s.hi]
            start = lo[0] if len(lo) == 1 else "max(" + ", ".join(lo) + ")"
            stop = hi[0] if len(hi) == 1 else "min(" + ", ".join(hi) + ")"
            self.w(f"for {s.name} in range({start}, {stop}):", indent)
            indent += 1
        if v.guards:
            conds = " and ".join(f"0 <= {self.poly(p)} < {self.poly(d)}" for p, d in v.guards)
            self.w(f"if {conds}:", indent)
            indent += 1
        return indent

    # forward -------------------------------------------------------------------------------
    def compute(self, v: Value, prog: Program, indent: int, pinned: dict | None = None) -> None:
        """Fill value v (all of it, or the slice where axis k = pinned[k])."""
        self.w(self.comment(v), indent)
        if v.kind == "contract" and not pinned and self.blas(v, prog) is not None:
            self.blas_forward(v, prog, indent)
            return
        if v.kind == "prefix":
            self.prefix_forward(v, prog, indent, pinned)
            return
        if v.kind == "lse":
            self.lse_forward(v, prog, indent, pinned)
            return
        inner = self.open_loops(v, indent, pinned)
        target = self.access(IAccess("value", v.name, tuple(Poly.sym(n) for n in v.idx)), prog)
        if v.kind == "map" and not pinned and isinstance(v.expr, IUn) and v.expr.op in VECTORISED:
            # the argument first, then the function over the whole array in SIMD blocks
            self.w(f"{target} = {self.expr(v.expr.arg, prog)}", inner)
            self.w(f"_k.{ops.lookup(v.expr.op).vector}({v.name})", indent)
            return
        if v.kind == "map":
            self.w(f"{target} = {self.expr(v.expr, prog)}", inner)
            return
        self.w("acc = 0.0", inner)
        body = self.sum_loops(v, inner)
        self.w(f"acc += {self.product(v, prog)}", body)
        self.w(f"{target} = acc", inner)

    def product(self, v: Value, prog: Program, skip: int = -1) -> str:
        parts = [self.expr(f, prog) for k, f in enumerate(v.factors) if k != skip]
        if v.expr != INum(1.0) or not parts:
            parts.insert(0, self.expr(v.expr, prog))
        return P.product(parts)

    def prefix_forward(self, v: Value, prog: Program, indent: int, pinned) -> None:
        """T[.., i, ..] = sum over j < i + off of B[j, ..] (off <= 0), one step per i:
        T[0] = 0 and T[i] = T[i - 1] + B[i - 1 + off] (when that row of B exists)."""
        src, axis, j, off, j_range = v.prefix
        n_j = self.poly(j_range)
        i = v.idx[axis]
        here = self.access(IAccess("value", v.name, tuple(Poly.sym(n) for n in v.idx)), prog)
        prev = self.access(IAccess("value", v.name, tuple(Poly.sym(n) - (1 if k == axis else 0)
                                                          for k, n in enumerate(v.idx))), prog)
        term = self.expr(src, prog)
        if v.rows:
            self.w("for r in range(n_rows):", indent)
            indent += 1
        if pinned and axis in pinned:  # sampling: only the current position
            self.w(f"{i} = {pinned[axis]}", indent)
            self.w(f"if {i} > 0:", indent)
            indent += 1
        else:
            self.w(f"for {i} in range(1, {self.poly(v.ranges[axis])}):", indent)
            indent += 1
        self.w(f"{j} = {P.offset(i, off - 1)}", indent)
        self.w(f"ok = 0 <= {j} < {n_j}", indent)
        for k, (name, d) in enumerate(zip(v.idx, v.ranges)):
            if k != axis:
                if pinned and k in pinned:
                    self.w(f"{name} = {pinned[k]}", indent)
                else:
                    self.w(f"for {name} in range({self.poly(d)}):", indent)
                    indent += 1
        self.w(f"{here} = {prev} + ({term} if ok else 0.0)", indent)

    def lse_forward(self, v: Value, prog: Program, indent: int, pinned) -> None:
        src = v.expr
        k_range = self.poly(prog.value(src.name).ranges[-1])
        inner = self.open_loops(v, indent, pinned)
        term = self.expr(src, prog).replace(f"a{len(v.idx)}]", "k]")
        here = self.access(IAccess("value", v.name, tuple(Poly.sym(n) for n in v.idx)), prog)
        self.max_and_total("k", k_range, term, inner)
        self.w(f"{here} = top + math.log(total)", inner)

    def max_and_total(self, k: str, k_range: str, term: str, indent: int) -> None:
        """top = max_k term, total = sum_k exp(term - top): a stable softmax normaliser."""
        self.w("top = -np.inf", indent)
        self.w(f"for {k} in range({k_range}):", indent)
        self.w(f"top = max(top, {term})", indent + 1)
        self.w("total = 0.0", indent)
        self.w(f"for {k} in range({k_range}):", indent)
        self.w(f"total += math.exp({term} - top)", indent + 1)

    # dense contractions as BLAS ----------------------------------------------------------------
    def blas(self, v: Value, prog: Program):
        """V[r, a0] = scale * sum_s P[a0, s] X[r, s] (or P[s, a0]): (X, P, transposed) or None."""
        if not v.rows or len(v.idx) != 1 or len(v.sums) != 1 or v.guards or len(v.factors) != 2:
            return None
        s = v.sums[0]
        if s.lo or len(s.hi) != 1:
            return None
        a, b = v.factors
        params = [f for f in (a, b) if isinstance(f, IAccess) and f.kind == "param"]
        rows = [f for f in (a, b) if isinstance(f, IAccess) and f.kind != "param"]
        if len(params) != 1 or len(rows) != 1:
            return None
        p, x = params[0], rows[0]
        if x.kind == "value" and not prog.value(x.name).rows:
            return None
        a0, s0 = Poly.sym(v.idx[0]), Poly.sym(s.name)
        if len(x.index) != 1 or x.index[0] != s0 or len(p.index) != 2:
            return None
        shape = self.param_shapes[p.name]
        if p.index == (a0, s0) and s.hi[0] == shape[1]:
            return x, p, True
        if p.index == (s0, a0) and s.hi[0] == shape[0]:
            return x, p, False
        return None

    def _array(self, a: IAccess, prefix: str = "") -> str:
        if a.kind == "group":
            return prefix + P.group(a.name)
        if a.kind == "eps":
            return "e_" + P.ident(a.name)
        if a.kind == "param":
            return prefix + P.param(a.name)
        return prefix + a.name

    def blas_forward(self, v: Value, prog: Program, indent: int) -> None:
        x, p, trans = self.blas(v, prog)
        mat = self._array(p) + (".T" if trans else "")
        scale = "" if v.expr == INum(1.0) else f"{self.expr(v.expr, prog)} * "
        self.w(f"{v.name}[:, :] = {scale}np.dot({self._array(x)}, {mat})", indent)

    # programs --------------------------------------------------------------------------------
    def values_kernel(self, prog: Program, spec: str = "values") -> None:
        names = [v.name for v in prog.values]
        self.kernel(f"{prog.mode}_values", spec,
                    f"Every value of the {prog.mode!r} program (see `gdsl dump --stage plan`).")
        fused = self.fusions(prog)  # reader -> running sum computed inside the reader's loop
        hidden = set(fused.values())
        for v in prog.values:
            shape = "(1,)" if v.name in hidden else self.shape_of(v)
            note = "  # carried inside the loop of its reader" if v.name in hidden else ""
            self.w(f"{v.name} = np.zeros({shape}){note}", 1)
        for v in prog.values:
            if v.name in hidden:
                continue
            if v.name in fused:
                self.fused_prefix(prog.value(fused[v.name]), v, prog, 1)
            else:
                self.compute(v, prog, 1)
        self.w("return (" + ", ".join(names) + ("," if len(names) == 1 else "") + ")", 1)

    def fusions(self, prog: Program) -> dict[str, str]:
        """Running sums read by exactly one element-wise map at the same element (NADE's
        sigmoid(c + T)): the map's loop carries the sum along, so T is never stored. Only when
        the map's derivative does not need T itself (the backward pass has no T then)."""
        out = {}
        for t in prog.values:
            if t.kind != "prefix" or t.prefix[1] != 0:
                continue
            readers = [v for v in prog.values if t.name in v.deps]
            if len(readers) != 1:
                continue
            r = readers[0]
            own = tuple(Poly.sym(n) for n in r.idx)
            uses = [a for a in _accesses(r.expr) if a.kind == "value" and a.name == t.name] if r.kind == "map" else []
            if (not uses or r.ranges != t.ranges or r.rows != t.rows or any(a.index != own for a in uses)
                    or r.name in (prog.logp, prog.logq)):
                continue
            here = IAccess("value", r.name, own)
            needs_t = False
            for a in dict.fromkeys(_accesses(r.expr)):
                d = diff(r.expr, a)
                if d is not None and any(x.kind == "value" and x.name == t.name
                                         for x in _accesses(iexpr_replace(d, r.expr, here))):
                    needs_t = True
            if not needs_t:
                out[r.name] = t.name
        return out

    def fused_prefix(self, t: Value, v: Value, prog: Program, indent: int) -> None:
        """v = f(T) with T[i] = sum over j < i + off of B[j]: one pass over i with T's current
        row kept in `run` (T[0] = 0; after row i, add B[i + off])."""
        self.w(self.comment(v) + f" (with the running sum {t.name})", indent)
        src, axis, j, off, j_range = t.prefix
        others = [(n, d) for k, (n, d) in enumerate(zip(t.idx, t.ranges)) if k != axis]
        shape = ", ".join(self.poly(d) for _, d in others) or "1"
        at = ", ".join(n for n, _ in others) or "0"
        vec = isinstance(v.expr, IUn) and v.expr.op in VECTORISED
        body = v.expr.arg if vec else v.expr
        own = tuple(Poly.sym(n) for n in v.idx)
        body = iexpr_replace(body, IAccess("value", t.name, own), IAccess("run", "", ()))
        i = v.idx[axis]
        if v.rows:
            self.w("for r in range(n_rows):", indent)
            indent += 1
        self.w(f"run = np.zeros(({shape},))", indent)
        self.w(f"for {i} in range({self.poly(v.ranges[axis])}):", indent)
        inner = indent + 1
        inner = self.axis_loops(others, inner)
        target = self.access(IAccess("value", v.name, own), prog)
        self.w(f"{target} = {self.expr(body, prog).replace('run[0]', f'run[{at}]')}", inner)
        self.w(f"{j} = {P.offset(i, off)}", indent + 1)
        self.w(f"if 0 <= {j} < {self.poly(j_range)}:", indent + 1)
        inner = indent + 2
        inner = self.axis_loops(others, inner)
        self.w(f"run[{at}] += {self.expr(src, prog)}", inner)
        if vec:
            self.w(f"_k.{ops.lookup(v.expr.op).vector}({v.name})", indent - (1 if v.rows else 0))

    def forward_kernel(self, prog: Program) -> None:
        self.kernel(f"{prog.mode}_forward", "forward", "Per-row log p and log q.")
        self.unpack(prog, 1)
        self.w(f"logp[:] = {self.row_vector(prog, prog.logp)}", 1)
        if prog.logq:
            self.w(f"logq[:] = {self.row_vector(prog, prog.logq)}", 1)

    def row_vector(self, prog: Program, name: str) -> str:
        return name if prog.value(name).rows else f"np.full(n_rows, {name}[0])"

    def unpack(self, prog: Program, indent: int) -> None:
        names = [v.name for v in prog.values]
        args = self.gen_args if prog.mode == "generate" else self.args
        self.w(f"values = {prog.mode}_values({args})", indent)
        self.w("(" + ", ".join(names) + ("," if len(names) == 1 else "") + ") = values", indent)

    # reverse mode --------------------------------------------------------------------------------
    def needs_grad(self, prog: Program) -> set[str]:
        """Values that depend on parameters, or on the groups in `self.wrt` (only they carry adjoints)."""
        out = set()
        for v in prog.values:
            for e in value_exprs(v):
                for a in _accesses(e):
                    if (a.kind == "param" or (a.kind == "value" and a.name in out)
                            or (a.kind == "group" and a.name in self.wrt)):
                        out.add(v.name)
        return out

    def backward_kernel(self, prog: Program) -> None:
        self.kernel(f"{prog.mode}_backward", "backward",
                    "Reverse mode: g_<param> += d/dparam of sum_r (seed_p[r] log p_r + seed_q[r] log q_r).")
        self.unpack(prog, 1)
        need = self.needs_grad(prog)
        self.w(f"logp[:] = {self.row_vector(prog, prog.logp)}", 1)
        if prog.logq:
            self.w(f"logq[:] = {self.row_vector(prog, prog.logq)}", 1)
        for v in prog.values:
            if v.name in need:
                self.w(f"d_{v.name} = np.zeros({self.shape_of(v)})", 1)
        for root, seed in ((prog.logp, "seed_p"), (prog.logq, "seed_q")):
            if root and root in need:
                rv = prog.value(root)
                self.w(f"d_{root}[:] += {seed}" if rv.rows else f"d_{root}[0] += np.sum({seed})", 1)
        for v in reversed(prog.values):
            if v.name in need:
                self.adjoint(v, prog, need)

    def grad_target(self, a: IAccess, prog: Program, need: set[str]) -> str | None:
        if a.kind == "group" and a.name in self.wrt:  # the adjoint of a group read from the state
            return f"dx_{P.ident(a.name)}[" + ", ".join(["r"] + [self.poly(p) for p in a.index]) + "]"
        if a.kind == "param":
            return self.access(a, prog).replace(P.param(a.name) + "[", f"g_{P.ident(a.name)}[", 1)
        if a.kind == "value" and a.name in need:
            return "d_" + self.access(a, prog)
        return None

    def adjoint(self, v: Value, prog: Program, need: set[str]) -> None:
        self.w(self.comment(v).replace("# ", "# adjoint of ", 1), 1)
        here = IAccess("value", v.name, tuple(Poly.sym(n) for n in v.idx))
        dv = "d_" + self.access(here, prog)
        if v.kind == "map":
            targets = [a for a in dict.fromkeys(_accesses(v.expr)) if self.grad_target(a, prog, need)]
            if not targets:
                return
            inner = self.open_loops(v, 1)
            self.w(f"g = {dv}", inner)
            for a in targets:
                d = diff(v.expr, a)
                if d is not None:  # sigmoid' = s (1 - s) etc.: reuse the value instead of recomputing it
                    d = iexpr_replace(d, v.expr, here)
                    self.w(f"{self.grad_target(a, prog, need)} += {P.product(['g', self.expr(d, prog)])}", inner)
            return
        if v.kind == "contract":
            if self.blas(v, prog) is not None:
                self.blas_backward(v, prog, need)
                return
            targets = [k for k, f in enumerate(v.factors)
                       if isinstance(f, IAccess) and self.grad_target(f, prog, need)]
            if not targets:
                return
            inner = self.open_loops(v, 1)
            self.w(f"g = {dv}", inner)
            body = self.sum_loops(v, inner)
            for k in targets:
                self.w(f"{self.grad_target(v.factors[k], prog, need)} += "
                       f"{P.product(['g', self.product(v, prog, skip=k)])}", body)
            return
        if v.kind == "prefix":
            self.prefix_backward(v, prog, need)
            return
        if v.kind == "lse":
            src = v.expr
            target = self.grad_target(src, prog, need)
            if target is None:
                return
            k_range = self.poly(prog.value(src.name).ranges[-1])
            inner = self.open_loops(v, 1)
            term = self.expr(src, prog).replace(f"a{len(v.idx)}]", "k]")
            here_s = self.access(here, prog)
            self.w(f"for k in range({k_range}):", inner)
            self.w(f"{target.replace(f'a{len(v.idx)}]', 'k]')} += {dv} * math.exp({term} - {here_s})", inner + 1)
            return
        raise CompilerBug(f"no adjoint for {v.kind}")

    def blas_backward(self, v: Value, prog: Program, need: set[str]) -> None:
        x, p, trans = self.blas(v, prog)
        scale = "" if v.expr == INum(1.0) else f"{self.expr(v.expr, prog)} * "
        gp = f"g_{P.ident(p.name)}"
        if trans:  # V = X @ P.T: dP += dV.T @ X, dX += dV @ P
            self.w(f"{gp} += {scale}np.dot(d_{v.name}.T, {self._array(x)})", 1)
        else:  # V = X @ P: dP += X.T @ dV, dX += dV @ P.T
            self.w(f"{gp} += {scale}np.dot({self._array(x)}.T, d_{v.name})", 1)
        if x.kind == "value" and x.name in need:
            mat = self._array(p) + ("" if trans else ".T")
            self.w(f"d_{x.name} += {scale}np.dot(d_{v.name}, {mat})", 1)
        elif x.kind == "group" and x.name in self.wrt:
            mat = self._array(p) + ("" if trans else ".T")
            self.w(f"dx_{P.ident(x.name)} += {scale}np.dot(d_{v.name}, {mat})", 1)

    def prefix_backward(self, v: Value, prog: Program, need: set[str]) -> None:
        src, axis, j, off, j_range = v.prefix
        targets = [a for a in dict.fromkeys(_accesses(src)) if self.grad_target(a, prog, need)]
        if not targets:
            return
        n_i = self.poly(v.ranges[axis])
        n_j = self.poly(j_range)
        i = v.idx[axis]
        here = IAccess("value", v.name, tuple(Poly.sym(n) for n in v.idx))
        dv = "d_" + self.access(here, prog)
        # dB[j] += sum over i > j - off of dT[i]: a suffix sum S over i, added to B's row j = i - 1 + off
        others = [(n, d) for k, (n, d) in enumerate(zip(v.idx, v.ranges)) if k != axis]
        shape = ", ".join(self.poly(d) for _, d in others) or "1"
        at = ", ".join(n for n, _ in others) or "0"
        indent = 1
        if v.rows:
            self.w("for r in range(n_rows):", indent)
            indent += 1
        self.w(f"suffix = np.zeros(({shape},))", indent)
        self.w(f"for {i} in range({n_i} - 1, -1, -1):", indent)
        self.w(f"{j} = {P.offset(i, off - 1)}", indent + 1)
        inner = indent + 1
        inner = self.axis_loops(others, inner)
        self.w(f"suffix[{at}] += {dv}", inner)
        self.w(f"if 0 <= {j} < {n_j}:", inner)
        for a in targets:
            d = diff(src, a)
            if d is not None:
                self.w(f"{self.grad_target(a, prog, need)} += suffix[{at}] * {self.expr(d, prog)}", inner + 1)

    # samplers ---------------------------------------------------------------------------------
    def sampler_kernel(self, name: str, conds: list[CondPlan]) -> None:
        prog = self.plan.sampling
        self.kernel(name, name,
                    "Draw each group given its parents, in topological order; where the mask is set the "
                    "value is kept (clamped).")
        for v in prog.values:
            self.w(f"{v.name} = np.zeros({self.shape_of(v)})", 1)
        done: set[str] = set()
        for c in conds:
            needed = _closure(prog, list(c.args.values())) - done
            self.w(f"# {c.cond.group} ~ {c.cond.family} (line {c.cond.span.line})", 1)
            if c.cond.free:
                self.autoregressive(c, prog, needed)
            else:
                for v in prog.values:
                    if v.name in needed:
                        self.compute(v, prog, 1)
                self.draw(c, prog, 1, None)
            done |= needed

    def draw(self, c: CondPlan, prog: Program, indent: int, position: str | None) -> None:
        cond = c.cond
        g = P.group(cond.group)
        m = f"m_{P.ident(cond.group)}"
        axes = list(cond.elem)
        ranges = self.plan.shapes[cond.group]
        loop_axes = axes[:-1] if cond.family == "categorical" else axes
        self.w("for r in range(n_rows):", indent)
        ind = indent + 1
        for k, (a, d) in enumerate(zip(loop_axes, ranges)):
            if k == 0 and position is not None:
                self.w(f"{a} = {position}", ind)
            else:
                self.w(f"for {a} in range({self.poly(d)}):", ind)
                ind += 1

        def arg(name, idx=axes):
            v = prog.value(c.args[name])
            parts = (["r"] if v.rows else []) + list(idx)
            return f"{v.name}[" + (", ".join(parts) if parts else "0") + "]"

        at = "[" + ", ".join(["r"] + axes) + "]"
        if cond.family == "categorical":
            head = ", ".join(["r"] + axes[:-1])
            k, kd = axes[-1], self.poly(ranges[-1])
            self.w(f"if {m}[{head}, 0]:", ind)
            self.w("continue", ind + 1)
            self.max_and_total(k, kd, arg("logits"), ind)
            self.w("u = _k.uniform(rng, r) * total", ind)
            self.w("pick = " + kd + " - 1", ind)
            self.w(f"for {k} in range({kd}):", ind)
            self.w(f"u -= math.exp({arg('logits')} - top)", ind + 1)
            self.w("if u < 0.0:", ind + 1)
            self.w(f"pick = {k}", ind + 2)
            self.w("break", ind + 2)
            self.w(f"for {k} in range({kd}):", ind)
            self.w(f"{g}[{head}, {k}] = 1.0 if {k} == pick else 0.0", ind + 1)
            return
        self.w(f"if {m}{at}:", ind)
        self.w("continue", ind + 1)
        if cond.family == "mixture":  # a component k with probability softmax(logits)_k, then its normal
            kd = self.poly(prog.value(c.args["logits"]).ranges[-1])
            logits = arg("logits", axes + ["k"])
            self.max_and_total("k", kd, logits, ind)
            self.w("u = _k.uniform(rng, r) * total", ind)
            self.w(f"pick = {kd} - 1", ind)
            self.w(f"for k in range({kd}):", ind)
            self.w(f"u -= math.exp({logits} - top)", ind + 1)
            self.w("if u < 0.0:", ind + 1)
            self.w("pick = k", ind + 2)
            self.w("break", ind + 2)
            chosen = axes + ["pick"]
            self.w(f"{g}{at} = {arg('means', chosen)} + {arg('stds', chosen)} * _k.normal(rng, r)", ind)
            return
        if cond.family == "bernoulli":
            p = f"_k.sigmoid({arg('logits')})" if "logits" in c.args else arg("probs")
            self.w(f"{g}{at} = 1.0 if _k.uniform(rng, r) < {p} else 0.0", ind)
        else:
            self.w(f"{g}{at} = {arg('mean')} + {arg('std')} * _k.normal(rng, r)", ind)

    def autoregressive(self, c: CondPlan, prog: Program, needed: set[str]) -> None:
        """Element by element along the first free axis: values aligned with the element being
        drawn are computed one slice at a time ('pre' before the draw, 'post' after it)."""
        phases = _phases(prog, c, needed)
        for v in prog.values:  # values that do not depend on the group itself
            if v.name in needed and phases.get(v.name) is None:
                self.compute(v, prog, 1)
        n = self.poly(self.plan.shapes[c.cond.group][0])
        self.w(f"for pos in range({n}):", 1)
        for kind in ("full", "pre"):
            for v in prog.values:
                ph = phases.get(v.name)
                if ph is not None and ph[0] == kind:
                    self.compute(v, prog, 2, None if kind == "full" else {ph[1]: "pos"})
        self.draw(c, prog, 2, "pos")
        for v in prog.values:
            ph = phases.get(v.name)
            if ph is not None and ph[0] == "post":
                self.compute(v, prog, 2, {ph[1]: "pos"})

    # a GAN: the generator's draws and the discriminator's logit, with their reverse modes --------
    def _draw_into_groups(self, prog: Program) -> None:
        """The generator's forward program, its drawn values stored into the state's groups."""
        self.unpack(prog, 1)
        for g, name in prog.outputs.items():
            self.w(f"{P.group(g)}[:] = {name}", 1)

    def generate_kernels(self, prog: Program) -> None:
        self.values_kernel(prog, "generate_values")
        self.kernel("generate_forward", "generate_forward",
                    "Draw every group of the model from its noise, x = mean + std * e_x, parents first "
                    "(the reparameterised ancestral draw), into x_<group>.")
        self._draw_into_groups(prog)
        self.kernel("generate_backward", "generate_backward",
                    "Reverse mode of the draw: g_<param> += d/dparam of sum (dx_<group> * drawn group), the "
                    "adjoints dx given (from the discriminator), the noise fixed.")
        self._draw_into_groups(prog)  # the backward pass needs the forward values
        need = self.needs_grad(prog)
        self.zero_adjoints(prog, need)
        for g, name in prog.outputs.items():
            if name in need:
                self.w(f"d_{name} += dx_{P.ident(g)}", 1)
        for v in reversed(prog.values):
            if v.name in need:
                self.adjoint(v, prog, need)

    def zero_adjoints(self, prog: Program, need: set[str]) -> None:
        for v in prog.values:
            if v.name in need:
                self.w(f"d_{v.name} = np.zeros({self.shape_of(v)})", 1)

    def discriminate_kernels(self, prog: Program) -> None:
        self.values_kernel(prog)
        self.kernel("discriminate_forward", "discriminate_forward",
                    "The discriminator's logit per row (log D / (1 - D), D the probability that a row is data).")
        self.unpack(prog, 1)
        self.w(f"logit[:] = {self.row_vector(prog, prog.logit)}", 1)
        self.kernel("discriminate_backward", "discriminate_backward",
                    "Reverse mode: g_<param> += d/dparam and dx_<group> += d/dgroup of sum_r seed[r] logit_r, "
                    "for the discriminator's parameters and the groups it reads.")
        self.unpack(prog, 1)
        self.w(f"logit[:] = {self.row_vector(prog, prog.logit)}", 1)
        self.reverse(prog, set(prog.inputs), {prog.logit: "seed"}, {})

    def reverse(self, prog: Program, wrt: set, seeds: dict, adjoints: dict) -> None:
        """The reverse pass of `prog` (its values unpacked): adjoints zeroed, then seeded, per row,
        from `seeds` (value -> a vector of per-row seeds, summed for a value without rows) and
        `adjoints` (value -> an array of its shape), then propagated back to the parameters and
        to the groups in `wrt` (dx_<group>)."""
        self.wrt = set(wrt)
        try:
            need = self.needs_grad(prog)
            self.zero_adjoints(prog, need)
            for name, seed in seeds.items():
                if name in need:
                    rows = prog.value(name).rows
                    self.w(f"d_{name}[:] += {seed}" if rows else f"d_{name}[0] += np.sum({seed})", 1)
            for name, adjoint in adjoints.items():
                if name in need:
                    self.w(f"d_{name} += {adjoint}", 1)
            for v in reversed(prog.values):
                if v.name in need:
                    self.adjoint(v, prog, need)
        finally:
            self.wrt = set()

    # a denoiser's chain with latent states (a GSN) --------------------------------------------------
    def chain_kernels(self, prog: Program) -> None:
        """On the "reparam" program, whose states are drawn as mean + std * eps: the draws into
        the state, and the reverse mode through one chain step (back-propagation through the
        unrolled chain: an adjoint on the drawn state in, an adjoint on its prev group out)."""
        d = self.plan.ir.denoiser
        self.kernel("chain_forward", "chain_forward",
                    "One step of the chain's states: each drawn as mean + std * e_<state> into x_<state>.")
        self.unpack(prog, 1)
        for g in d.states:
            self.w(f"{P.group(g)}[:] = {prog.reparam_values[g]}", 1)
        self.kernel("chain_backward", "chain_backward",
                    "Reverse mode of one chain step: g_<param> += d/dparam and dx_<prev group> += d/d(prev group) "
                    "of sum_r seed_p[r] log p_r + sum dx_<state> * drawn state (the states' adjoints from the "
                    "later steps).")
        self.unpack(prog, 1)
        self.w(f"logp[:] = {self.row_vector(prog, prog.logp)}", 1)
        self.reverse(prog, set(d.prev), {prog.logp: "seed_p"},
                     {prog.reparam_values[g]: f"dx_{P.ident(g)}" for g in d.states})

    # module ------------------------------------------------------------------------------------
    def kernels(self) -> list[str]:
        for prog in self.plan.density_programs():
            self.values_kernel(prog)
            self.forward_kernel(prog)
            self.backward_kernel(prog)
        self.sampler_kernel("sample_model", self.plan.model)
        if self.plan.guide:
            self.sampler_kernel("sample_guide", self.plan.guide)
        if self.plan.generator is not None:
            self.generate_kernels(self.plan.generator)
            self.discriminate_kernels(self.plan.discriminator)
        d = self.plan.ir.denoiser
        if d is not None and d.states:
            self.chain_kernels(self.plan.programs["reparam"])
        if self.plan.ir.sequence is not None:
            from .sequence import SequenceEmitter

            self.sequence = SequenceEmitter(self)
            self.sequence.kernels()
        return self.lines

    def class_attributes(self) -> list[str]:
        plan = self.plan
        groups = tuple((g.name, g.role, g.domain) for g in plan.ir.groups.values())
        return [
            f"ALL_GROUPS = {groups!r}",
            f"DIRECTED = {tuple(c.cond.group for c in plan.model)!r}  # ancestral order",
            f"GUIDE = {tuple(c.cond.group for c in plan.guide)!r}",
            f"UNDIRECTED = {tuple(plan.ir.undirected)!r}",
            f"FAMILIES = {({c.cond.group: c.cond.family for c in plan.model})!r}",
            f"GUIDE_FAMILIES = {({c.cond.group: c.cond.family for c in plan.guide})!r}",
            f"AUTOREGRESSIVE = {tuple(c.cond.group for c in plan.model if c.cond.free)!r}",
            f"REPARAM = {tuple(self.eps)!r}",
            f"PARENTS = {self.parents()!r}  # groups the model's conditionals read",
            f"PARAMS_P = {plan.params_p!r}",
            f"PARAMS_Q = {plan.params_q!r}",
        ] + ([
            f"DISCRIMINATOR = {tuple(plan.discriminator.inputs)!r}  # the groups the discriminator reads",
            f"PARAMS_D = {plan.params_d!r}",
        ] if plan.discriminator is not None else []) + self.denoiser_attributes() + (
            self.sequence.class_attributes() if getattr(self, "sequence", None) is not None else []) + [
            "",
            "@staticmethod",
            "def row_floats(sizes):",
            '    """Floats of the per-row values of the largest program (to size row chunks)."""',
            f"    return max({', '.join(self.row_floats(p) for p in self.all_programs())}, 1)",
        ]

    def denoiser_attributes(self) -> list[str]:
        """A denoising autoencoder's chain (runtime/denoising.py): which group is the data, which
        the corruption draws, the states between, and prev groups -> the state they hold."""
        d = self.plan.ir.denoiser
        if d is None:
            return []
        chain = {"visible": d.visible, "corrupt": d.corrupt, "states": tuple(d.states), "prev": dict(d.prev)}
        if d.init:
            chain["init"] = dict(d.init)  # prev group -> the parameter it holds before the first step
        rec = next(c for c in self.plan.model if c.cond.group == d.visible)
        if not rec.cond.free and rec.cond.family in ("bernoulli", "normal"):
            # where joint_values returns the reconstruction's arguments (its mean, for the runtime)
            names = [v.name for v in self.plan.programs["joint"].values]
            chain["mean"] = (rec.cond.family, {a: names.index(v) for a, v in rec.args.items()})
        return [f"DENOISER = {chain!r}  # the denoiser's chain"]

    def all_programs(self) -> list[Program]:
        return list(self.plan.programs.values())

    def row_floats(self, prog: Program) -> str:
        total = Poly.const(0)
        for v in prog.values:
            if v.rows:
                size = Poly.const(1)
                for d in v.ranges:
                    size = size * d
                total = total + size
        return total.to_str(name=lambda s: f"sizes[{s!r}]")

    def parents(self) -> tuple:
        from ..ir.model import iexpr_accesses

        found = {a.name for c in self.plan.ir.model for _, e in c.args for a in iexpr_accesses(e)
                 if a.kind == "group"}
        return tuple(g for g in self.groups if g in found)

# analysis helpers used by the emitter ----------------------------------------------------------
def _closure(prog: Program, roots: list[str]) -> set[str]:
    out, stack = set(), list(roots)
    while stack:
        n = stack.pop()
        if n in out:
            continue
        out.add(n)
        stack.extend(prog.value(n).deps)
    return out


def _reads_group(prog: Program, v: Value, group: str, memo: dict) -> bool:
    if v.name in memo:
        return memo[v.name]
    hit = any(a.kind == "group" and a.name == group for e in value_exprs(v) for a in _accesses(e))
    hit = hit or any(_reads_group(prog, prog.value(d), group, memo) for d in v.deps)
    memo[v.name] = hit
    return hit


def _phases(prog: Program, c: CondPlan, needed: set[str]) -> dict:
    """For an autoregressive group x: which values depend on x, and how each is computed per
    step: ('pre', axis) the slice at the current position before the draw, ('post', axis)
    after it, ('full', None) all of it at every step (correct, but slower)."""
    memo: dict = {}
    dep = {n for n in needed if _reads_group(prog, prog.value(n), c.cond.group, memo)}
    phase: dict = {}

    def assign(name, ph):
        if name not in dep:
            return
        old = phase.get(name)
        if old is not None and old != ph:
            ph = ("full", None)
            if old == ph:
                return
        if old == ph:
            return
        phase[name] = ph
        v = prog.value(name)
        if ph[0] == "full":
            for d in v.deps:
                assign(d, ("full", None))
            return
        axis_name = v.idx[ph[1]]
        if v.kind == "prefix":
            src, axis, j, _, _ = v.prefix
            for a in _accesses(src):
                if a.kind != "value":
                    continue
                if axis == ph[1] and ph[0] == "pre" and a.index and a.index[0] == Poly.sym(j):
                    assign(a.name, ("post", 0))  # the summand's row j: computed once x[j] is drawn
                else:
                    assign(a.name, ("full", None))
            return
        exprs = list(v.factors) + ([v.expr] if v.expr is not None else [])
        for d in v.deps:  # (a prefix's summand is handled above)
            axes = {k for e in exprs for a in _accesses(e) if a.kind == "value" and a.name == d
                    for k, p in enumerate(a.index) if p == Poly.sym(axis_name)}
            uses = [a for e in exprs for a in _accesses(e) if a.kind == "value" and a.name == d]
            if len(axes) == 1 and all(Poly.sym(axis_name) in a.index for a in uses):
                assign(d, (ph[0], axes.pop()))
            else:
                assign(d, ("full", None))

    for name in c.args.values():
        assign(name, ("pre", 0))
    return phase
