"""The directed part of the IR: conditionals at element level, in topological order.

Each conditional `x ~ family(arg = e, ...)` becomes, for one element x[a0, a1, ...]
(the index names `elem`), one scalar index-notation expression per argument, with
let bindings inlined and matrix notation elaborated (so `W @ h + b` reads
`sum[t](W[a0, t] * h[t]) + b[a0]`). The leading `free` indices are the
user's free indices of an autoregressive definition; the element-level check
that such a definition reads only earlier elements of itself happens here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ErrorSink, Span, excerpt
from ..poly import Poly
from .model import Binder, GroupIR, IAccess, IBin, IExpr, INum, ISum, ISym, IUn, iexpr_scoped_walk, iexpr_text


@dataclass(frozen=True)
class CondIR:
    group: str
    family: str  # bernoulli | normal | categorical | mixture
    args: tuple[tuple[str, IExpr], ...]  # (argument name, expression at element `elem`); nodes carry spans
    elem: tuple[str, ...]  # index names of one element, one per axis of the group
    free: int  # how many leading axes are autoregressive (free indices)
    span: Span  # the whole `x ~ family(...)` statement
    in_guide: bool
    free_names: tuple[str, ...] = ()  # the free indices as the user named them (elem[:free] in the IR)
    comp: str = ""  # mixture: the index of the component axis, which follows `elem` in every argument
    components: Poly | None = None  # mixture: K, the number of components

    def arg(self, name: str) -> IExpr | None:
        return dict(self.args).get(name)

    @property
    def arg_index(self) -> tuple[str, ...]:
        """The index names the arguments are written at: one element, and a mixture's component."""
        return self.elem + ((self.comp,) if self.comp else ())


@dataclass(frozen=True)
class DiscIR:
    """A GAN's discriminator: its logit, one scalar per row, in index notation (lets inlined)."""
    logit: IExpr
    reads: tuple[str, ...]  # the visible groups it reads
    params: tuple[str, ...]  # its parameters (used by no conditional)
    span: Span  # the `logit = ...` statement


@dataclass(frozen=True)
class StateIR:
    """A state along the time axis: u[t] = update(step's values, u[t - 1]), u[-1] = start."""
    name: str
    start: str  # the parameter it starts from
    update: IExpr  # at element `elem` of the state, reading the group `name` as the state before the step
    elem: tuple[str, ...]
    span: Span  # the `let u[t] = ... from ...` statement


@dataclass(frozen=True)
class SequenceIR:
    axis: str  # the time index as written
    steps: tuple[str, ...]  # the groups along the axis, one frame per step
    states: tuple[StateIR, ...]
    line: int = 0  # the `time t` statement

    def dump(self) -> str:
        out = [f"  time axis {self.axis}: steps of {', '.join(self.steps)}"]
        for s in self.states:
            out.append(f"  state {s.name}[{', '.join(s.elem)}] (line {s.span.line}), from {s.start}")
            out.append(f"    next = {iexpr_text(s.update)}")
        return "\n".join(out)


@dataclass
class DirectedIR:
    groups: dict[str, GroupIR]  # every group of the model, directed or not
    model: list[CondIR]  # p's conditionals, parents first
    guide: list[CondIR]  # q's conditionals, parents first
    undirected: tuple[str, ...]  # groups of the energy part (the top of a chain graph)
    source_lines: list[str] = field(default_factory=list)  # the .gdl text, for quoting it in messages
    discriminator: DiscIR | None = None
    denoiser: object = None  # frontend.checked.DenoiserInfo: a denoising autoencoder's chain
    sequence: SequenceIR | None = None  # `time t`: this is the step model of a sequence

    def dump(self) -> str:
        out = []
        for title, conds in (("directed", self.model), ("guide", self.guide)):
            for c in conds:
                idx = ", ".join(c.elem)
                free = f" (autoregressive over {', '.join(c.elem[:c.free])})" if c.free else ""
                comp = f" of {c.components} normals over {c.comp}" if c.comp else ""
                out.append(f"  {title} {c.group}[{idx}] ~ {c.family}{comp}{free} (line {c.span.line})")
                for name, e in c.args:
                    out.append(f"    {name} = {iexpr_text(e)}")
        d = self.discriminator
        if d is not None:
            out.append(f"  discriminator of {', '.join(d.reads)} (line {d.span.line}), parameters "
                       f"{', '.join(d.params)}")
            out.append(f"    logit = {iexpr_text(d.logit)}")
        if self.denoiser is not None:
            out.append(_denoiser_text(self.denoiser))
        if self.sequence is not None:
            out.append(self.sequence.dump())
        return "\n".join(out) + ("\n" if out else "")


def lower_directed(checked, el) -> DirectedIR:
    from .lower import group_ir

    sink = ErrorSink()
    lines = checked.source.text.split("\n")
    groups = {name: group_ir(g) for name, g in checked.groups.items()}
    model = [_lower_cond(checked, el, c, sink, lines) for c in checked.conditionals]
    guide = [_lower_cond(checked, el, c, sink, lines) for c in checked.guide]
    disc = None
    if checked.discriminator is not None:
        d = checked.discriminator
        el.index_scopes = []
        disc = DiscIR(el.elab(d.logit, ()), d.reads, d.params, d.logit_span)
    seq = _lower_sequence(checked, el, sink) if checked.sequence is not None else None
    sink.raise_if_any(checked.source)
    undirected = tuple(n for n in groups if n not in checked.directed)
    return DirectedIR(groups, model, guide, undirected, lines, disc, checked.denoiser, seq)


def _lower_sequence(checked, el, sink) -> SequenceIR:
    info = checked.sequence
    states = []
    for name, start in info.states.items():
        if name in info.windows:
            update = _window_update(checked, el, name, info.windows[name], info.state_spans[name], sink)
            if update is not None:
                states.append(StateIR(name, start, *update, info.state_spans[name]))
            continue
        let = checked.lets.get(info.update_let(name))
        if let is None:  # its update was not checked (reported)
            continue
        elem = tuple(el.fresh() for _ in checked.groups[name].shape)
        el.index_scopes = []
        update = el.elab(let.decl.expr, tuple(Poly.sym(n) for n in elem) if let.type.shape else ())
        states.append(StateIR(name, start, update, elem, info.state_spans[name]))
    return SequenceIR(info.axis, info.steps, tuple(states), info.span.line)


def _denoiser_text(d) -> str:
    states = f", states {', '.join(d.states)}" if d.states else ""
    prev = "".join(f", {k} = {v} one step back" + (f" ({d.init[k]} before the first)" if k in d.init else "")
                   for k, v in d.prev.items())
    return f"  denoiser of {d.visible} (line {d.span.line}): corruption {d.corrupt}{states}{prev}"


def _lower_cond(checked, el, c, sink: ErrorSink, lines) -> CondIR:
    shape = checked.groups[c.group].shape
    elem = tuple(el.fresh() for _ in shape)
    nfree = len(c.free)
    out = tuple(Poly.sym(n) for n in elem[nfree:])
    comp, components = "", None
    if c.family == "mixture":  # the arguments have one more axis, the components (checked to agree)
        comp = el.fresh()
        out += (Poly.sym(comp),)
        components = next(e.type.shape[-1] for e in c.args.values() if e.type.shape)
    el.index_scopes = [dict(zip(c.free, elem))]
    try:
        args = tuple((name, el.elab(e, out if e.type.shape else ())) for name, e in c.args.items())
    finally:
        el.index_scopes = []
    cond = CondIR(c.group, c.family, args, elem, nfree, c.span, c.in_guide, tuple(c.free), comp, components)
    if nfree:
        for name, e in args:
            _check_earlier(cond, e, sink, lines)
    return cond


def _check_earlier(c: CondIR, e: IExpr, sink: ErrorSink, lines) -> None:
    """An autoregressive conditional of x[i, ...] may read x only at elements before i along
    the first free axis: x[i - k] with k >= 1, or x[j] with j bounded by sum[j < i - k], k >= 0.
    Reported at each read that breaks this, quoting it as written."""
    i = c.free_names[0] if c.free_names else "i"
    j = "k" if i == "j" else "j"
    for node, binders in iexpr_scoped_walk(e):
        if isinstance(node, IAccess) and node.kind == "group" and node.name == c.group:
            if not _before(node.index[0], c.elem[0], {b.name: b.hi for b in binders}):
                shown = f"'{excerpt(lines, node.span)}'" if node.span else c.group
                sink.error(f"the conditional of {c.group}[{i}] reads {shown}, which is not an earlier element",
                           node.span or c.span, f"an autoregressive definition may read only earlier elements: "
                                                f"sum[{j} < {i}](... {c.group}[{j}] ...) or {c.group}[{i} - 1]",
                           kind="directed")


def _before(p: Poly, i: str, bounds: dict[str, tuple]) -> bool:
    """Whether p < i for every value of the summation indices in p (their exclusive upper bounds)."""
    rest = p - Poly.sym(i) if p.coefficient(i) == 1 else None
    if rest is not None and rest.is_constant():
        return rest.constant <= -1
    syms = [s for s in p.symbols() if s in bounds]
    if len(syms) != 1 or p.coefficient(syms[0]) != 1:
        return False
    j = syms[0]
    offset = p - Poly.sym(j)
    if offset.symbols():
        return False
    for hi in bounds[j]:  # j <= hi - 1, so p <= hi - 1 + offset, which must be <= i - 1
        gap = hi + offset - Poly.sym(i)
        if gap.is_constant() and gap.constant <= 0:
            return True
    return False


def _window_update(checked, el, name: str, frame: str, span, sink):
    """(update, elem) of a window state w[n, ...] over the sequence `frame`: the newest frame first,
    w_new[0] = frame and w_new[k] = w[k - 1], written with index arithmetic that the planner and
    reverse mode already take (relu(1 - k) is 1 at k = 0 only, and relu(k - j) relu(j + 2 - k) is 1 at
    j = k - 1 only), so no new kind of value is needed."""
    shape, inner = checked.groups[name].shape, checked.groups[frame].shape
    if len(shape) != len(inner) + 1 or tuple(shape[1:]) != tuple(inner):
        dims = ", ".join(str(d) for d in inner)
        sink.error(f"the window '{name}' starts from a parameter of shape [{', '.join(str(d) for d in shape)}], but "
                   f"it holds frames of '{frame}', of shape [{dims}]", span,
                   f"give the start parameter the shape [n, {dims}]: n frames, newest first", kind="sequence")
        return None
    elem = tuple(el.fresh() for _ in shape)
    j = el.fresh()
    k = ISym("index", elem[0])
    rest = tuple(Poly.sym(x) for x in elem[1:])
    newest = IBin("*", IAccess("group", frame, rest), IUn("relu", IBin("-", INum(1.0), k)))
    at_j = IBin("*", IUn("relu", IBin("-", k, ISym("index", j))),
                IUn("relu", IBin("-", IBin("+", ISym("index", j), INum(2.0)), k)))
    older = ISum((Binder(j, (), ()),), IBin("*", IAccess("group", name, (Poly.sym(j),) + rest), at_j))
    return IBin("+", newest, older), elem

