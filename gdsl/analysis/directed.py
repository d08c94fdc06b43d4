"""The plan of the directed part: conditionals become a straight-line program of array values.

Every sum in an element-level expression becomes a *contraction* value (a product of
accesses summed over index ranges) over its free indices; whatever sits inside a
function or a product becomes a *map* value (an element-wise expression). Identical
values are shared (a guide's `let e = ...` used twice is computed once). A sum over
`j < i + c` whose summand does not depend on `i` is a *prefix* value, a running sum
along one axis: this is how NADE's `W[:, :i] @ x[:i]` costs O(d h) instead of
O(d^2 h). Values that depend on variables carry the sample axis (rows).

One `Program` per mode: "joint" reads every group from the inputs; "reparam" replaces
each latent the guide draws from a normal by mean + std * eps (the reparameterisation),
so gradients flow from the ELBO into the guide's parameters.

A model with a discriminator (a GAN) has two more: "generate" draws every group of the
model as mean + std * eps in ancestral order (its outputs are the drawn groups, so an
adjoint on a drawn x reaches the generator's parameters), and "discriminate" computes the
discriminator's logit per row from the visible groups (its reverse mode reaches both the
discriminator's parameters and the groups it reads).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .. import ops
from ..errors import CompilerBug, ErrorSink, excerpt
from ..ir.directed import CondIR, DirectedIR
from ..ir.model import (Binder, IAccess, IBin, IExpr, INum, ISum, ISym, IUn, iexpr_accesses, iexpr_children,
                        iexpr_index_names, iexpr_rebuild, iexpr_rename, iexpr_replace, iexpr_text)
from ..poly import Poly

LOG_SQRT_2PI = 0.9189385332046727


@dataclass(frozen=True)
class SumIndex:
    name: str
    lo: tuple[Poly, ...]  # start = max(lo, 0)
    hi: tuple[Poly, ...]  # stop = min(hi)


@dataclass
class Value:
    name: str
    kind: str  # "map" | "contract" | "prefix" | "lse"
    idx: tuple[str, ...]  # axis index names (own names a0, a1, ...)
    ranges: tuple[Poly, ...]  # axis lengths (in sizes)
    rows: bool  # carries the sample axis
    expr: Optional[IExpr] = None  # map: the element; contract: the constant scale (INum)
    factors: tuple[IAccess, ...] = ()  # contract: the product
    sums: tuple[SumIndex, ...] = ()  # contract: summation indices
    guards: tuple[tuple[Poly, Poly], ...] = ()  # contract: 0 <= poly < dim, checked per term
    prefix: Optional[tuple] = None  # (source expression at j, axis, summation index name j, hi offset, j's range)
    line: int = 0
    deps: tuple[str, ...] = ()

    def text(self) -> str:
        head = f"{self.name}[{', '.join(('r',) * self.rows + self.idx)}]"
        if self.kind == "map":
            return f"{head} = {iexpr_text(self.expr)}"
        if self.kind == "contract":
            body = " * ".join(([iexpr_text(self.expr)] if self.expr != INum(1.0) else []) +
                              [iexpr_text(f) for f in self.factors]) or "1"
            sums = ", ".join(f"{s.name} in [{_bound(s.lo, 'max', '0')}, {_bound(s.hi, 'min', '?')})"
                             for s in self.sums)
            guards = "".join(f" if 0 <= {p} < {d}" for p, d in self.guards)
            return f"{head} = sum[{sums}]({body}){guards}"
        if self.kind == "prefix":
            src, axis, j, off, _ = self.prefix
            return f"{head} = running sum over {j} < {self.idx[axis]}{_off(off)} of {iexpr_text(src)}"
        if self.kind == "lse":
            return f"{head} = logsumexp over the last axis of {iexpr_text(self.expr)}"
        return head


def _off(c: int) -> str:
    return "" if c == 0 else f" + {c}" if c > 0 else f" - {-c}"


def _bound(bounds, fn, empty) -> str:
    if not bounds:
        return empty
    return str(bounds[0]) if len(bounds) == 1 else f"{fn}(" + ", ".join(str(b) for b in bounds) + ")"


@dataclass
class CondPlan:
    cond: CondIR
    args: dict[str, str]  # argument name -> value over the group's element axes
    reparam: bool = False  # a guide normal, drawn as mean + std * eps in "reparam" mode
    ar_axis_values: dict = field(default_factory=dict)  # autoregressive sampling: value -> phase info


@dataclass
class Program:
    mode: str
    values: list[Value]
    inputs: tuple[str, ...]  # groups read from the state (and eps_<g> in reparam mode)
    eps: tuple[str, ...]  # groups drawn by reparameterisation (their noise is an input)
    logp: str  # per-row value: sum of log p(group | parents) over the model's conditionals
    logq: Optional[str]  # per-row value: log q(latents | visibles), when there is a guide
    reparam_values: dict[str, str]  # latent group -> the value mean + std * eps
    logit: Optional[str] = None  # "discriminate": the per-row value of the discriminator's logit
    # "generate": every group of the model -> its drawn value (mean + std * eps), in ancestral order
    outputs: dict[str, str] = field(default_factory=dict)
    # the step of a sequence ("joint"): each state -> the value of its update (the state after the step)
    states: dict[str, str] = field(default_factory=dict)

    def value(self, name: str) -> Value:
        return self._by_name[name]

    def __post_init__(self):
        self._by_name = {v.name: v for v in self.values}


@dataclass
class DirectedPlan:
    ir: DirectedIR
    shapes: dict[str, tuple[Poly, ...]]  # groups and params
    model: list[CondPlan]
    guide: list[CondPlan]
    programs: dict[str, Program]
    sampling: Program  # the "joint" program, whose argument values the samplers evaluate
    params_p: tuple[str, ...]  # parameters of p (the conditionals)
    params_q: tuple[str, ...]  # parameters of q (the guide)
    params_d: tuple[str, ...] = ()  # parameters of the discriminator

    # a GAN's two programs are in `programs` too (so everything that walks the programs' values
    # sees them), but they compute no log p: their kernels are written on their own
    LOG_DENSITY_MODES = ("joint", "reparam")

    @property
    def generator(self) -> Optional[Program]:
        return self.programs.get("generate")

    @property
    def discriminator(self) -> Optional[Program]:
        return self.programs.get("discriminate")

    def density_programs(self) -> list[Program]:
        return [p for mode, p in self.programs.items() if mode in self.LOG_DENSITY_MODES]

    def schedule(self) -> str:
        seq = self.ir.sequence
        if seq is not None and not self.model:  # an energy at every step: only the states are directed
            return self._time_schedule()
        if seq is not None:
            return self._directed_schedule() + "; " + self._time_schedule()
        return self._directed_schedule()

    def _time_schedule(self) -> str:
        seq = self.ir.sequence
        states = ", ".join(f"{s.name} from {s.start}" for s in seq.states)
        return f"unfolds along {seq.axis}, one step given the past" + (f"; states {states}" if states else "")

    def _directed_schedule(self) -> str:
        conds = self.model
        parts = [f"{len(conds)} directed group{'s' if len(conds) != 1 else ''}, ancestral order "
                 + " -> ".join(c.cond.group + (" (autoregressive)" if c.cond.free else "") for c in conds)]
        running = sum(v.kind == "prefix" for v in self.sampling.values)
        if running:
            parts.append(f"{running} running sum{'s' if running != 1 else ''}")
        if self.guide:
            parts.append("guide " + " -> ".join(c.cond.group + (" (reparameterised)" if c.reparam else "")
                                                for c in self.guide))
        if self.discriminator is not None:
            parts.append("discriminator of " + ", ".join(self.discriminator.inputs))
        d = self.ir.denoiser
        if d is not None:  # (its q conditionals are the chain's corruption and states)
            parts.append(f"denoiser chain {d.visible} -> " + " -> ".join((d.corrupt,) + d.states)
                         + f" -> {d.visible}" + "".join(f" (prev({v}) = {k})" for k, v in d.prev.items()))
        return "; ".join(parts)

    def dump(self) -> str:
        out = ["directed plan", "  " + self.schedule()]
        out.append("  ancestral order: " + " -> ".join(c.cond.group for c in self.model))
        if self.ir.undirected:
            out.append("  chain graph: Gibbs on {" + ", ".join(self.ir.undirected) +
                       "}, then one ancestral pass")
        if self.guide:
            out.append("  guide order: " + " -> ".join(c.cond.group for c in self.guide))
        for prog in self.density_programs():
            mode = prog.mode
            out.append(f"  program {mode}: inputs {', '.join(prog.inputs)}; log p = {prog.logp}"
                       + (f"; log q = {prog.logq}" if prog.logq else "")
                       + "".join(f"; next {g} = {v}" for g, v in prog.states.items()))
            for v in prog.values:
                out.append(f"    {v.text()}")
        if self.generator is not None:
            drawn = ", ".join(f"{g} = {v}" for g, v in self.generator.outputs.items())
            out.append(f"  program generate: noise {', '.join(self.generator.eps)}; draws {drawn}")
            out += [f"    {v.text()}" for v in self.generator.values]
        if self.discriminator is not None:
            d = self.discriminator
            out.append(f"  program discriminate: inputs {', '.join(d.inputs)}; logit = {d.logit}; parameters "
                       f"{', '.join(self.params_d)}")
            out += [f"    {v.text()}" for v in d.values]
        for title, conds in (("directed", self.model), ("guide", self.guide)):
            for c in conds:
                args = ", ".join(f"{k} = {v}" for k, v in c.args.items())
                out.append(f"  {title} {c.cond.group} ~ {c.cond.family}({args})")
        return "\n".join(out) + "\n"


# building ---------------------------------------------------------------------------------
class Builder:
    """Turns element-level expressions into shared values (one builder per program)."""

    def __init__(self, shapes: dict, mode: str, replace: dict[str, str] | None = None):
        self.shapes = shapes  # groups and params -> shape
        self.values: list[Value] = []
        self.memo: dict = {}
        self.replace = replace or {}  # group -> value name (reparameterised latents)
        self.line = 0
        self.keep: set[str] = set()  # values stored even when read once (not inlined into their reader)

    # shapes and rows
    def shape_of(self, a: IAccess) -> tuple[Poly, ...]:
        if a.kind == "value":
            return self.by_name(a.name).ranges
        return self.shapes[a.name]

    def by_name(self, name: str) -> Value:
        for v in reversed(self.values):
            if v.name == name:
                return v
        raise CompilerBug(f"no value {name}")

    def has_rows(self, e: IExpr) -> bool:
        """Whether e depends on the sample: it reads a variable, a noise or a value with rows
        (inside sums too)."""
        return any(a.kind == "group" or a.kind == "eps" or (a.kind == "value" and self.by_name(a.name).rows)
                   for a in iexpr_accesses(e))

    # entry: a value over given axes
    def value_over(self, e: IExpr, idx: tuple[str, ...], ranges: tuple[Poly, ...]) -> str:
        """A map value V[idx] = e (e may use only idx as free indices)."""
        body = self.rewrite(e, dict(zip(idx, ranges)))
        if isinstance(body, IAccess) and body.kind == "value" and body.index == tuple(Poly.sym(n) for n in idx):
            return body.name
        return self.add_map(body, idx, ranges)

    def add_map(self, body: IExpr, idx, ranges) -> str:
        return self.add(Value("", "map", *self.canon(idx, ranges), self.has_rows(body),
                              expr=iexpr_rename(body, self._renaming(idx))))

    def canon(self, idx, ranges):
        return tuple(f"a{k}" for k in range(len(idx))), tuple(ranges)

    def _renaming(self, idx) -> dict[str, str]:
        return {n: f"a{k}" for k, n in enumerate(idx)}

    def add(self, v: Value) -> str:
        key = (v.kind, v.idx, v.ranges, v.rows, v.expr, v.factors, v.sums, v.guards, v.prefix)
        if key in self.memo:
            return self.memo[key]
        v.name = f"v{len(self.values)}"
        v.line = self.line
        v.deps = tuple(sorted(_value_deps(v)))
        self.values.append(v)
        self.memo[key] = v.name
        return v.name

    # rewriting
    def rewrite(self, e: IExpr, ctx: dict[str, Poly]) -> IExpr:
        """e with every sum replaced by an access to a contraction (or prefix) value, top down
        (a sum is planned whole: its body is rewritten by `contraction`, in its binders' scope)."""
        if isinstance(e, ISum):
            return self.contraction(e, ctx)
        if isinstance(e, IAccess):
            if e.kind == "group" and e.name in self.replace:
                return IAccess("value", self.replace[e.name], e.index, e.span)
            return e
        if not isinstance(e, (INum, ISym, IUn, IBin)):
            raise CompilerBug(f"cannot plan {type(e).__name__}")
        children = iexpr_children(e)
        out = iexpr_rebuild(e, (self.rewrite(c, ctx) for c in children)) if children else e
        if isinstance(out, IUn) and out.op == "neg" and isinstance(out.arg, INum):
            return INum(-out.arg.value)
        return out

    def contraction(self, e: ISum, ctx: dict[str, Poly]) -> IExpr:
        inner = dict(ctx)
        binders = []
        for b in e.binders:
            rng = self.index_range(b, e.body)
            inner[b.name] = rng
            his = tuple(b.hi) if b.hi else ()
            # an explicit bound that is provably within the axis makes the axis length redundant
            if not any(_within(h, rng, inner) for h in his):
                his = his + (rng,)
            binders.append(SumIndex(b.name, tuple(lo for lo in b.lo if lo != Poly.const(0)), his))
        total = None
        for sign, factors in _product_terms(e.body):
            term = self.contraction_term(factors, binders, ctx, inner)
            if sign < 0:
                term = IUn("neg", term)
            total = term if total is None else IBin("+", total, term)
        return total if total is not None else INum(0.0)

    def contraction_term(self, factors: list[IExpr], binders: list[SumIndex], ctx, inner) -> IExpr:
        scale, accesses = 1.0, []
        for f in factors:
            if isinstance(f, INum):
                scale *= f.value
                continue
            f = self.rewrite(f, inner)
            if not (isinstance(f, IAccess) or isinstance(f, ISym)):
                used = iexpr_index_names(f)
                idx = tuple(n for n in inner if n in used)
                name = self.add_map(f, idx, tuple(inner[n] for n in idx))
                f = IAccess("value", name, tuple(Poly.sym(n) for n in idx))
            accesses.append(f)
        sum_names = {b.name for b in binders}
        used = set()
        for b in binders:
            for p in b.lo + b.hi:
                used |= p.symbols()
        for f in accesses:
            used |= iexpr_index_names(f)
        free = tuple(n for n in ctx if n in used)
        prefix = self.prefix_candidate(accesses, binders, free, ctx, inner)
        if prefix is not None:
            return prefix
        ren = self._renaming(free)
        sums = []
        for k, b in enumerate(binders):
            ren[b.name] = f"s{k}"
        for b in binders:
            sums.append(SumIndex(ren[b.name], tuple(p.rename(ren) for p in b.lo), tuple(p.rename(ren) for p in b.hi)))
        guards = []
        for f in accesses:
            if isinstance(f, IAccess):
                for p, dim in zip(f.index, self.shape_of(f)):
                    if not _plain(p, sum_names | set(free)):
                        guards.append((p.rename(ren), dim))
        rows = any(self.has_rows(f) for f in accesses)
        v = Value("", "contract", *self.canon(free, tuple(ctx[n] for n in free)), rows,
                  expr=INum(scale), factors=tuple(iexpr_rename(f, ren) for f in accesses),
                  sums=tuple(sums), guards=tuple(dict.fromkeys(guards)))
        name = self.add(v)
        return IAccess("value", name, tuple(Poly.sym(n) for n in free))

    def prefix_candidate(self, accesses, binders: list[SumIndex], free, ctx, inner) -> Optional[IExpr]:
        """sum[j < i + c](B[.., j, ..]) with the summand free of i: a running sum along i."""
        if len(binders) != 1 or binders[0].lo:
            return None
        b = binders[0]
        used = set()
        for f in accesses:
            used |= iexpr_index_names(f)
        for h in b.hi:
            syms = h.symbols()
            if len(syms) != 1:
                continue
            (i,) = syms
            if i not in free or h.coefficient(i) != 1 or i in used or not (h - Poly.sym(i)).is_constant():
                continue
            offset = (h - Poly.sym(i)).constant
            if offset > 0:
                continue
            # the summand as a value over (free without i) + (j)
            src_idx = (b.name,) + tuple(n for n in free if n != i)  # the running axis first: rows of B are slices
            ranges = {**{n: ctx[n] for n in free}, b.name: inner[b.name]}
            body = accesses[0]
            for f in accesses[1:]:
                body = IBin("*", body, f)
            src = self.add_map(body, src_idx, tuple(ranges[n] for n in src_idx))
            axis = free.index(i)
            own = {n: f"a{k}" for k, n in enumerate(free)}
            src_access = IAccess("value", src, (Poly.sym("j"),) + tuple(Poly.sym(own[n]) for n in free if n != i))
            v = Value("", "prefix", *self.canon(free, tuple(ranges[n] for n in free)), self.has_rows(body),
                      prefix=(src_access, axis, "j", offset, ranges[b.name]))
            name = self.add(v)
            return IAccess("value", name, tuple(Poly.sym(n) for n in free))
        return None

    # index ranges
    def index_range(self, b: Binder, body: IExpr) -> Poly:
        """An index runs over an axis it subscripts plainly (x[j], W[i, j]), inside nested sums too."""
        for a in iexpr_accesses(body):
            for p, dim in zip(a.index, self.shape_of(a)):
                if p == Poly.sym(b.name):
                    return dim
        raise NoRange(b)


class NoRange(Exception):
    """A summation index (its Binder) that subscripts no axis plainly, so its range is unknown."""

    def __init__(self, binder: Binder):
        super().__init__(binder.name)
        self.binder = binder


# helpers -------------------------------------------------------------------------------------
def _within(h: Poly, rng: Poly, ctx: dict[str, Poly]) -> bool:
    """h <= rng for every value of the indices in h (each index i in [0, ctx[i]))."""
    if h == rng:
        return True
    syms = h.symbols() & set(ctx)
    if len(syms) != 1:
        return False
    (i,) = syms
    if h.coefficient(i) != 1:
        return False
    rest = h - Poly.sym(i)
    # h <= ctx[i] - 1 + rest <= rng  iff  ctx[i] - 1 + rest - rng <= 0
    gap = ctx[i] - 1 + rest - rng
    return gap.is_constant() and gap.constant <= 0


def _plain(p: Poly, names: set[str]) -> bool:
    syms = p.symbols()
    if not syms:
        return True  # a constant subscript (checked by the checker with the default sizes)
    return len(syms) == 1 and p == Poly.sym(next(iter(syms))) and next(iter(syms)) in names


def _product_terms(e: IExpr) -> list[tuple[int, list[IExpr]]]:
    """e as a signed sum of products (distributing + over *), without entering functions."""
    if isinstance(e, IBin) and e.op in "+-":
        left = _product_terms(e.left)
        right = _product_terms(e.right)
        if e.op == "-":
            right = [(-s, f) for s, f in right]
        return left + right
    if isinstance(e, IUn) and e.op == "neg":
        return [(-s, f) for s, f in _product_terms(e.arg)]
    if isinstance(e, IBin) and e.op == "*":
        out = []
        for s1, f1 in _product_terms(e.left):
            for s2, f2 in _product_terms(e.right):
                out.append((s1 * s2, f1 + f2))
        if len(out) <= 16:
            return out
    return [(1, [e])]


def _value_deps(v: Value) -> set[str]:
    out = set()
    for e in value_exprs(v):
        for a in iexpr_accesses(e):
            if a.kind == "value":
                out.add(a.name)
    return out


# the plan ----------------------------------------------------------------------------------------
def analyse_directed(ir: DirectedIR, params: dict) -> DirectedPlan:
    shapes = {n: g.shape for n, g in ir.groups.items()}
    shapes.update({n: p.shape for n, p in params.items()})
    sink = ErrorSink()
    programs = {"joint": _program(ir, shapes, "joint", sink)}
    reparam = tuple(c.group for c in ir.guide if c.family == "normal" and not _corrupts(ir, c))
    if reparam:
        programs["reparam"] = _program(ir, shapes, "reparam", sink)
    joint = programs["joint"]
    model = [CondPlan(c, joint._args[(c.group, False)]) for c in ir.model]
    guide = [CondPlan(c, joint._args[(c.group, True)], c.family == "normal" and not _corrupts(ir, c))
             for c in ir.guide]
    p_params = _params_of(joint, [c.args for c in model])
    q_params = _params_of(joint, [c.args for c in guide])
    plan = DirectedPlan(ir, shapes, model, guide, programs, joint, p_params, q_params)
    if ir.discriminator is not None:
        programs["generate"] = _generator_program(ir, shapes, sink)
        programs["discriminate"] = _discriminator_program(ir, shapes)
        plan.params_d = ir.discriminator.params
    return plan


def _corrupts(ir: DirectedIR, c: CondIR) -> bool:
    """A denoiser's corruption: drawn by the runtime and read as an input (walk-back training
    corrupts the chain's own samples), never reparameterised."""
    return ir.denoiser is not None and c.in_guide and c.group == ir.denoiser.corrupt


def _params_of(prog: Program, arg_sets) -> tuple[str, ...]:
    seen, stack = set(), [v for args in arg_sets for v in args.values()]
    names = set()
    while stack:
        v = prog.value(stack.pop())
        if v.name in seen:
            continue
        seen.add(v.name)
        stack.extend(v.deps)
        for e in value_exprs(v):
            names |= {a.name for a in iexpr_accesses(e) if a.kind == "param"}
    return tuple(sorted(names))


def _arguments(b: "Builder", ir: DirectedIR, c: CondIR, shape, sink: ErrorSink) -> Optional[dict[str, str]]:
    """The values of a conditional's arguments (None, reported, when a summation index has no range)."""
    try:
        over = shape + ((c.components,) if c.comp else ())  # a mixture's arguments: one more axis
        vals = {}
        for name, e in c.args:  # each argument's values point to its own line (one may span lines)
            b.line = e.span.line if e.span is not None else c.span.line
            vals[name] = b.value_over(e, c.arg_index, over)
        b.line = c.span.line
        return vals
    except NoRange as e:
        at = e.binder.span
        what = f"the summation index '{excerpt(ir.source_lines, at)}'" if at else "a summation index"
        sink.error(f"cannot tell the range of {what} in the conditional of {c.group}", at or c.span,
                   "use it as a plain subscript of some array, as in sum[j < i](W[i, j] * x[j])", kind="index")
        return None


def _program(ir: DirectedIR, shapes, mode: str, sink: ErrorSink) -> Program:
    b = Builder(shapes, mode)
    args: dict = {}
    eps, reparam_values = [], {}
    conds = list(ir.guide) + list(ir.model) if mode == "reparam" else list(ir.model) + list(ir.guide)
    terms_p, terms_q = [], []
    for c in conds:
        b.line = c.span.line
        shape = shapes[c.group]
        vals = _arguments(b, ir, c, shape, sink)
        if vals is None:
            continue
        args[(c.group, c.in_guide)] = vals
        if mode == "reparam" and c.in_guide and c.family == "normal" and not _corrupts(ir, c):
            elem = tuple(Poly.sym(n) for n in c.elem)
            z = IBin("+", IAccess("value", vals["mean"], elem),
                     IBin("*", IAccess("value", vals["std"], elem), IAccess("eps", c.group, elem)))
            reparam_values[c.group] = b.value_over(z, c.elem, shape)
            b.replace[c.group] = reparam_values[c.group]
            eps.append(c.group)
        ld = _log_density(b, c, vals, shape)
        (terms_q if c.in_guide else terms_p).append(ld)
    sink.raise_if_any(None)  # the driver attaches the source
    if not terms_p and ir.sequence is not None:  # an energy at every step: log p of the directed part is 0
        b.line = ir.sequence.line
    logp = _total(b, terms_p)
    logq = _total(b, terms_q) if ir.guide else None
    states = {}
    if ir.sequence is not None and mode == "joint":
        for st in ir.sequence.states:
            b.line = st.span.line
            states[st.name] = b.value_over(st.update, st.elem, shapes[st.name])
    inputs = tuple(n for n in ir.groups if n not in reparam_values)
    keep = ({logp, logq} | {v for vals in args.values() for v in vals.values()} | set(reparam_values.values())
            | set(states.values()) | b.keep)
    values = _inline_single_use(b.values, keep)
    prog = Program(mode, values, inputs, tuple(eps), logp, logq, reparam_values, states=states)
    prog._args = args
    return prog


def _generator_program(ir: DirectedIR, shapes, sink: ErrorSink) -> Program:
    """"generate": every group of the model drawn as mean + std * eps_<group>, parents first (the
    checker made sure each is a normal conditional without free indices), so the drawn values
    are functions of the noise and the parameters, and reverse mode from an adjoint on them
    reaches the generator's parameters."""
    b = Builder(shapes, "generate")
    outputs: dict[str, str] = {}
    for c in ir.model:
        b.line = c.span.line
        shape = shapes[c.group]
        vals = _arguments(b, ir, c, shape, sink)
        if vals is None:
            continue
        elem = tuple(Poly.sym(n) for n in c.elem)
        drawn = IBin("+", IAccess("value", vals["mean"], elem),
                     IBin("*", IAccess("value", vals["std"], elem), IAccess("eps", c.group, elem)))
        outputs[c.group] = b.value_over(drawn, c.elem, shape)
        b.replace[c.group] = outputs[c.group]
    sink.raise_if_any(None)
    values = _inline_single_use(b.values, set(outputs.values()) | b.keep)
    return Program("generate", values, (), tuple(outputs), None, None, dict(outputs), outputs=outputs)


def _discriminator_program(ir: DirectedIR, shapes) -> Program:
    """"discriminate": the discriminator's logit per row, from the visible groups it reads."""
    d = ir.discriminator
    b = Builder(shapes, "discriminate")
    b.line = d.span.line
    logit = b.value_over(d.logit, (), ())
    values = _inline_single_use(b.values, {logit})
    return Program("discriminate", values, d.reads, (), None, None, {}, logit=logit)


def _inline_single_use(values: list[Value], keep: set) -> list[Value]:
    """A map value read once, by a running sum or another map, is written into its reader
    instead of being stored (NADE's W[h, j] * x[j] never becomes a d x nh array). Maps whose
    top is exp/sigmoid/tanh stay: they are computed by the SIMD helpers."""
    uses: dict[str, list] = {}
    for v in values:
        for e in value_exprs(v):
            for a in iexpr_accesses(e):
                if a.kind == "value":
                    uses.setdefault(a.name, []).append((v, a))
    gone = set()
    for v in values:
        readers = uses.get(v.name, [])
        if (v.kind != "map" or v.name in keep or len(readers) != 1 or
                (isinstance(v.expr, IUn) and v.expr.op in ops.VECTORISED)):
            continue
        reader, access = readers[0]
        if reader.kind not in ("map", "prefix") or not all(_is_symbol(p) for p in access.index):
            continue
        body = iexpr_rename(v.expr, {n: str(p) for n, p in zip(v.idx, access.index)})
        if reader.kind == "map":
            reader.expr = iexpr_replace(reader.expr, access, body)
        else:
            src, *rest = reader.prefix
            reader.prefix = (iexpr_replace(src, access, body), *rest)
        reader.deps = tuple(sorted(_value_deps(reader)))
        # the inlined value's own readers are now the reader's
        for e in value_exprs(reader):
            for a in iexpr_accesses(e):
                if a.kind == "value":
                    uses[a.name] = [(r, x) for r, x in uses.get(a.name, []) if r is not v] + [(reader, a)]
        gone.add(v.name)
    return [v for v in values if v.name not in gone]


def value_exprs(v: Value) -> list[IExpr]:
    """The expressions a value reads: its factors, its element expression, its running sum's summand."""
    return list(v.factors) + ([v.expr] if v.expr is not None else []) + ([v.prefix[0]] if v.prefix else [])


def _is_symbol(p: Poly) -> bool:
    return len(p.symbols()) == 1 and p == Poly.sym(next(iter(p.symbols())))


def _total(b: Builder, terms: list[IExpr]) -> str:
    total = None
    for t in terms:
        total = t if total is None else IBin("+", total, t)
    return b.add_map(total if total is not None else INum(0.0), (), ())


def _log_density(b: Builder, c: CondIR, vals: dict[str, str], shape) -> IExpr:
    """Sum over the group's elements of log p(element | its arguments), per row."""
    elem = tuple(Poly.sym(n) for n in c.elem)
    x = b.rewrite(IAccess("group", c.group, elem), {})

    def arg(name):
        return IAccess("value", vals[name], elem)

    if c.family == "bernoulli" and "logits" in vals:
        a = arg("logits")
        ld = IBin("-", IBin("*", x, a), IUn("softplus", a))
    elif c.family == "bernoulli":
        p = arg("probs")
        ld = IBin("+", IBin("*", x, IUn("log", p)),
                  IBin("*", IBin("-", INum(1.0), x), IUn("log", IBin("-", INum(1.0), p))))
    elif c.family == "normal":
        u = IBin("/", IBin("-", x, arg("mean")), arg("std"))
        ld = IBin("-", IBin("-", IBin("*", INum(-0.5), IBin("*", u, u)), IUn("log", arg("std"))), INum(LOG_SQRT_2PI))
    elif c.family == "mixture":
        return _mixture_log_density(b, c, vals, shape, x)
    else:  # categorical: x . a - logsumexp(a) per one-hot row
        a = arg("logits")
        lse = b.add(Value("", "lse", *b.canon(c.elem[:-1], shape[:-1]), b.by_name(vals["logits"]).rows,
                          expr=IAccess("value", vals["logits"], tuple(Poly.sym(f"a{k}") for k in range(len(shape))))))
        dot = _sum_all(b, IBin("*", x, a), c.elem, shape)
        norm = _sum_all(b, IAccess("value", lse, elem[:-1]), c.elem[:-1], shape[:-1])
        return IBin("-", dot, norm)
    return _sum_all(b, ld, c.elem, shape)


def _mixture_log_density(b: Builder, c: CondIR, vals: dict[str, str], shape, x: IExpr) -> IExpr:
    """log sum_k softmax(logits)_k N(x; means_k, stds_k) per element, summed over the group's
    elements. Per component, the standardised residual u_k = (x - means_k) / stds_k,
    w_k = logits_k - log stds_k and w_k - u_k^2 / 2 are values; a log-sum-exp of the last over
    the component axis, minus that of the logits (the weights' normaliser), minus
    log sqrt(2 pi), is the log density of one element. Each step is an ordinary value, so reverse mode needs nothing new
    (the adjoint of a log-sum-exp is the softmax: the components' responsibilities)."""
    full = tuple(Poly.sym(n) for n in c.arg_index)
    over = tuple(shape) + (c.components,)

    def arg(name):
        return IAccess("value", vals[name], full)

    u = b.value_over(IBin("/", IBin("-", x, arg("means")), arg("stds")), c.arg_index, over)
    w = b.value_over(IBin("-", arg("logits"), IUn("log", arg("stds"))), c.arg_index, over)
    ua, wa = IAccess("value", u, full), IAccess("value", w, full)
    per_component = b.value_over(IBin("-", wa, IBin("*", INum(0.5), IBin("*", ua, ua))), c.arg_index, over)
    b.keep |= {u, w, per_component}
    last = tuple(Poly.sym(f"a{k}") for k in range(len(over)))  # the lse value's own axes, then the components

    def lse(name):
        v = b.add(Value("", "lse", *b.canon(c.elem, shape), b.by_name(name).rows, expr=IAccess("value", name, last)))
        return IAccess("value", v, full[:-1])

    ld = IBin("-", IBin("-", lse(per_component), lse(vals["logits"])), INum(LOG_SQRT_2PI))
    return _sum_all(b, ld, c.elem, shape)


def _sum_all(b: Builder, e: IExpr, elem, shape) -> IExpr:
    if not elem:
        return b.rewrite(e, {})
    binders = tuple(Binder(n, (Poly.const(0),), (d,)) for n, d in zip(elem, shape))
    return b.rewrite(ISum(binders, e), {})
