"""Models that unfold in time: `time t` turns a model into one step of a sequence.

A model with a time axis describes one step given the past. This pass, run by the checker
before anything is declared, rewrites such a model into its *step model*, an ordinary model
the rest of the pipeline compiles as it compiles any other:

    time t                                     (the axis; its length is each sequence's own)
    visible v[t, nv]: binary                   ->  visible v[nv]: binary   (the step's frame)
    let u[t] = tanh(... v[t] ... u[t - 1]) from u0
                                               ->  an input group u[nu] (the state before the
                                                   step, u0 at the first) and the state's
                                                   update, computed from the step's values
    let b_t[t] = bv + Wuv @ u[t - 1]           ->  let b_t = bv + Wuv @ u
    v[t, i] ~ bernoulli(logits = b_t[t, i] ...) ->  v[i] ~ bernoulli(logits = b_t[i] ...)

Reads are checked here, with spans: a sequence read at `[t]` is this step; a state read at
`[t - 1]` is the state before it; anything else (the future, a frame further back, a sequence
without its time subscript, the axis used as a number) is an error that says what to write.
The runtime (gdsl/runtime/sequence.py) runs the step's kernels along each sequence inside one
compiled loop (gdsl/codegen/sequence.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Callable, Optional

from ..errors import Span
from . import ast

NEXT = "next:"  # the update of state u is checked as the let binding "next:u" (no user name has a colon)


@dataclass
class SequenceInfo:
    axis: str  # the time index, as written (`time t`)
    span: Span  # the `time t` statement
    steps: tuple[str, ...]  # groups along the axis (one frame per step), in declaration order
    states: dict[str, str] = field(default_factory=dict)  # state -> the parameter it starts from
    state_spans: dict[str, Span] = field(default_factory=dict)  # state -> its `let` statement
    # window states (`let past[t] = window(v[t]) from v0`): state -> the sequence whose last frames
    # it holds, newest first (past[t - 1, k] is v[t - 1 - k]); their update is made in the IR
    windows: dict[str, str] = field(default_factory=dict)

    def update_let(self, state: str) -> str:
        return NEXT + state


def unfold_time(m: ast.Model, error: Callable[..., None], params: dict) -> Optional[SequenceInfo]:
    """Rewrite `m` (in place) into its step model; None for a model without a time axis, whose
    indexed lets are reported. `error(message, span, hint)` records an error of kind "sequence"."""
    if m.time is None:
        for d in m.lets:
            if d.index is not None or d.start is not None:
                error(f"'let {d.name}[{d.index or 't'}] = ...' defines a value along a time axis, but the model "
                      f"declares none", d.span, "declare the axis first: 'time t' (see docs/sequences.md)")
        return None
    t = m.time.name
    info = SequenceInfo(t, m.time.span, ())
    timed: set[str] = set()
    steps = []
    for g in m.groups:
        if g.shape and _is_name(g.shape[0], t):
            g.shape = g.shape[1:]
            timed.add(g.name)
            steps.append(g.name)
        for k, s in enumerate(g.shape):
            if any(_is_name(n, t) for n in ast.walk(s)):
                error(f"the time axis '{t}' can only be the first axis of '{g.name}'", s.span,
                      f"write it first: {g.role} {g.name}[{t}, ...]")
                g.shape[k] = ast.Num(s.span, 1, "1")  # read on with a stand-in size
    info.steps = tuple(steps)
    if not steps:
        error(f"the model unfolds along '{t}' but no variable has that axis", m.time.span,
              f"give the sequence's variables the time axis first: visible v[{t}, n]: binary")
    visible = [g.name for g in m.groups if g.name in steps and g.role == "visible"]
    _one_kind_of_step(m, timed, error)
    lets = []
    for d in m.lets:
        if d.index is None:
            if d.start is not None:
                error(f"'{d.name}' has a start value but no time index", d.span,
                      f"a state is written let {d.name}[{t}] = ... from start")
            lets.append(d)
            continue
        if d.index != t:
            error(f"'{d.name}' is indexed by '{d.index}', but the time axis is '{t}'", d.span,
                  f"write let {d.name}[{t}] = ...")
            continue
        timed.add(d.name)
        if d.start is None:
            lets.append(d)  # a per-step value; reading its own past is reported below
            continue
        start = d.start
        if not (isinstance(start, ast.Name) and start.id in params):
            error(f"the state '{d.name}' must start from a parameter", start.span,
                  f"declare one with the state's shape and write 'from' it: param {d.name}0[n], then "
                  f"let {d.name}[{t}] = ... from {d.name}0")
            continue
        p = params[start.id]
        frame = _window_of(d.expr, t, visible, error)
        info.states[d.name] = start.id
        info.state_spans[d.name] = d.span
        shape = [_copy(s) for s in p.shape]
        m.groups.append(ast.GroupDecl(d.name_span, "state", d.name, d.name_span, shape,
                                      ast.Domain(d.name_span, "real", [])))
        if frame is not None:  # a window (False: a refused one, declared so that its reads raise nothing more)
            if frame:
                info.windows[d.name] = frame
            continue
        lets.append(ast.LetDecl(d.span, NEXT + d.name, d.name_span, d.expr))
    m.lets = lets
    states = set(info.states)
    rewrite = _Rewriter(t, timed, states, error, visible, set(info.windows))
    for d in m.lets:
        d.expr = rewrite(d.expr, d.name[len(NEXT):] if d.name.startswith(NEXT) else d.name)
    for s in m.samples + [g for g in m.groups if g.dist is not None]:
        dist = s.dist
        for a in dist.args:
            a.value = rewrite(a.value, None)
        if isinstance(s, ast.SampleDecl) and s.name in timed and s.indices:
            if s.indices[0] == t:
                s.indices = s.indices[1:] or None
            else:
                error(f"the definition of '{s.name}' must name the time axis first", s.name_span,
                      f"write {s.name}[{t}, ...] ~ ...")
    for e in m.energies:
        e.expr = rewrite(e.expr, None)
    return info


def _one_kind_of_step(m: ast.Model, timed: set, error) -> None:
    """A step is normalised either by its energy or by its conditionals, not both: with an energy,
    log p of the step is computed from the energy's groups alone, so a conditional of a group
    along the axis would be left out of it."""
    if not m.energies:
        return
    for s in m.samples + [g for g in m.groups if g.dist is not None]:
        if s.name in timed:
            error(f"'{s.name}' has a conditional ('~') in a step that also has an energy: a model that unfolds "
                  f"in time normalises each step either by its energy or by its conditionals", s.name_span,
                  f"put {s.name} in the energy, or write the step with conditionals only")


def _window_of(e, t: str, steps: list, error):
    """For `window(v[t])`, v one of the visible sequences: v; None for any other expression; False
    after reporting a window of something else (a latent's frames are not known before it is drawn)."""
    if not (isinstance(e, ast.Call) and e.fn == "window"):
        return None
    arg = e.args[0] if len(e.args) == 1 else None
    if (isinstance(arg, ast.Index) and isinstance(arg.base, ast.Name) and arg.base.id in steps
            and len(arg.subscripts) == 1 and _is_name(arg.subscripts[0], t)):
        return arg.base.id
    error("window(...) keeps the last frames of one visible sequence: it takes a read of the sequence at this "
          "step", e.span, f"write let past[{t}] = window(v[{t}]) from v0, with param v0[n, ...] the n frames before the "
          f"first")
    return False


def _is_name(e, name: str) -> bool:
    return isinstance(e, ast.Name) and e.id == name


def _lag(e) -> Optional[int]:
    """k for `t - k` (an integer literal k), 0 for `t`, None otherwise; the caller checked the name."""
    if isinstance(e, ast.Name):
        return 0
    if (isinstance(e, ast.BinOp) and e.op in "+-" and isinstance(e.left, ast.Name)
            and isinstance(e.right, ast.Num) and float(e.right.value).is_integer()):
        k = int(e.right.value)
        return k if e.op == "-" else -k
    return None


def _copy(e):
    """A copy of an expression tree (a state's group takes its start parameter's shape)."""
    import copy

    return copy.deepcopy(e)


class _Rewriter:
    """Rewrites the time subscripts of one expression in place (iteratively: chains of
    operators may be long) and reports the reads the step model cannot make."""

    def __init__(self, t: str, timed: set, states: set, error, visible=(), windows=frozenset()):
        self.t, self.timed, self.states, self.error = t, timed, states, error
        self.visible, self.windows = set(visible), set(windows)

    def __call__(self, e, own: Optional[str]):
        self.own = own
        holder = _Holder(e)
        done: set[int] = set()
        stack = [holder]
        while stack:
            node = stack.pop()
            for f in fields(node):
                value = getattr(node, f.name)
                if isinstance(value, list):
                    new = [self.one(x, done) if isinstance(x, ast.Node) and id(x) not in done else x for x in value]
                    setattr(node, f.name, new)
                    stack.extend(x for x in new if isinstance(x, ast.Node))
                elif isinstance(value, ast.Node) and f.name != "span":
                    new = self.one(value, done) if id(value) not in done else value
                    setattr(node, f.name, new)
                    stack.append(new)
        return holder.e

    def one(self, e, done: set):
        out = self._one(e, done)
        if out is e and isinstance(e, ast.Index) and isinstance(e.base, ast.Name) and e.base.id in self.timed:
            # reported: read on as this step's value, so that no error about shapes or the
            # index name follows from it
            done.add(id(e.base))
            first = e.subscripts[0] if e.subscripts else None
            timed = first is not None and not isinstance(first, ast.Slice) and any(
                _is_name(n, self.t) for n in ast.walk(first))
            if not timed:  # `v[i]`: read as this step's v[i]
                return ast.Index(e.span, e.base, e.subscripts)
            if len(e.subscripts) <= 1:
                out = ast.Name(e.span, e.base.id)
                done.add(id(out))
                return out
            return ast.Index(e.span, e.base, e.subscripts[1:])
        if out is e and isinstance(e, ast.Name) and e.id == self.t:
            out = ast.Num(e.span, 0, "0")
        return out

    def _one(self, e, done: set):
        t = self.t
        if isinstance(e, ast.Index) and isinstance(e.base, ast.Name) and e.base.id in self.timed:
            name = e.base.id
            first = e.subscripts[0] if e.subscripts else None
            lag = _lag(first) if first is not None and not isinstance(first, ast.Slice) else None
            if lag is not None and not _is_name(first if isinstance(first, ast.Name) else first.left, t):
                lag = None
            rest = e.subscripts[1:]
            if lag is None:
                self.error(f"'{name}' unfolds along '{t}': its first subscript must be '{t}' (this step)"
                           + (f" or '{t} - 1' (the state before it)" if name in self.states else ""), e.span,
                           f"write {name}[{t}{', ...' if rest else ''}]")
                return e
            if name == self.own and name not in self.states and lag != 0:
                self.error(f"'{_text(name, t, lag)}' reads the past of '{name}' itself, so '{name}' is a state, "
                           f"and a state needs a start value", e.span,
                           f"write let {name}[{t}] = ... from {name}0, with a parameter {name}0 of {name}'s shape")
                return e
            if lag < 0:
                self.error(f"'{_text(name, t, lag)}' reads the future: a step sees only the past", e.span,
                           f"read {name}[{t}] or an earlier state")
                return e
            if name in self.states:
                if lag != 1:
                    what = ("the state after this step: the step is modelled before it is known"
                            if lag == 0 else "a state more than one step back")
                    further = (f"the window holds the frames before it: {name}[{t} - 1, k] is k + 1 frames back "
                               f"(give its start more rows to see further)" if name in self.windows
                               else "to look further back, carry the older value in a state of its own")
                    self.error(f"'{_text(name, t, lag)}' is {what}", e.span,
                               f"a step reads the state before it, {name}[{t} - 1]; {further}")
                    return e
            elif lag != 0:
                hint = (f"keep its last frames in a window: let past[{t}] = window({name}[{t}]) from {name}0 "
                        f"(with a parameter {name}0[n, ...]), then read past[{t} - 1, k] for {name}[{t} - 1 - k]"
                        if name in self.visible else
                        f"carry it in a state: let prev_{name}[{t}] = {name}[{t}] from {name}0 (with a "
                        f"parameter {name}0), then read prev_{name}[{t} - 1]")
                self.error(f"'{_text(name, t, lag)}' reads an earlier step of '{name}', which a step cannot "
                           f"see directly", e.span, hint)
                return e
            if name == self.own and name not in self.states:
                self.error(f"'{name}' is defined in terms of itself", e.span,
                           f"a value along '{t}' that reads its own past is a state: let {name}[{t}] = ... "
                           f"from start")
                return e
            done.add(id(e.base))
            if not rest:
                out = ast.Name(e.span, name)
                done.add(id(out))
                return out
            return ast.Index(e.span, e.base, rest)
        if isinstance(e, ast.Name):
            if e.id == t:
                self.error(f"the time axis '{t}' can be used only as the first subscript of a sequence",
                           e.span, f"write v[{t}] for this step's v")
            elif e.id in self.timed:
                self.error(f"'{e.id}' unfolds along '{t}': read it at a step", e.span,
                           f"write {e.id}[{t}]" + (f" or {e.id}[{t} - 1]" if e.id in self.states else ""))
        return e


@dataclass(eq=False)
class _Holder:
    e: object


def _text(name: str, t: str, lag: int) -> str:
    return f"{name}[{t}]" if lag == 0 else f"{name}[{t} - {lag}]" if lag > 0 else f"{name}[{t} + {-lag}]"
