"""The checks of a model's directed part: conditionals, families, guides and let bindings.

A conditional `x ~ family(args)` (or `x[i] ~ ...`, or `visible x[d] ~ ...` in the
declaration) must name a declared variable of the family's domain, give the family's
arguments with the shapes the variable needs, and bind its free indices to the variable's
leading axes; only an autoregressive conditional (one with free indices) may read its own
variable. A `mixture` of normals takes logits, means and stds, each with the shape the
variable needs plus a last axis of K components (or a scalar); K must agree among them. The conditionals of the model, and those of the `guide` block, must form acyclic
graphs (their topological orders are the sampling orders); the guide must define every
latent variable, and in a directed model a variable with no conditional must appear in an
energy. `let` bindings are typed once (on first use, or else in declaration order) and may
be used in conditionals and other lets only, a guide's bindings in the guide only.

A GAN's `discriminator { let ...  logit = ... }` block is a network from the visible
variables to one logit per row, with its own lets and parameters (shared with no
conditional); a model with one must be directed, every conditional a normal without free
indices, so that its draws are reparameterisable (mean + std * noise).

`DirectedChecks` is a mixin of `checker.Checker`: it uses the checker's state and its
expression checks (`expr`, `error`, `_unknown`, `_kind`).
"""
from __future__ import annotations

import re

import difflib
from contextlib import contextmanager
from dataclasses import fields
from typing import Optional

from ..errors import Span
from ..ops import WRITTEN
from . import ast
from .checked import CondInfo, DenoiserInfo, DiscInfo, GroupInfo, LetInfo, Type, shape_str
from .parser import MAX_NESTING

# directed conditionals: family -> (argument names in positional order, the domain it defines)
FAMILIES = {"bernoulli": (("logits", "probs"), "binary"), "normal": (("mean", "std"), "real"),
            "categorical": (("logits",), "categorical"), "mixture": (("logits", "means", "stds"), "real")}
ARGUMENT_COUNT = {"bernoulli": 1, "normal": 2, "categorical": 1, "mixture": 3}  # bernoulli: logits or probs
EXAMPLES = {"bernoulli": "bernoulli(logits = W @ h + b)", "normal": "normal(mean = m, std = s)",
            "categorical": "categorical(logits = a)",
            "mixture": "mixture(logits = A @ h + a, means = M @ h + m, stds = exp(S @ h + s))"}
# families whose arguments must be named (positions would be easy to mix up)
KEYWORD_ONLY = {"bernoulli": "bernoulli takes a keyword argument: bernoulli(logits = ...) or bernoulli(probs = ...)",
                "mixture": "mixture takes keyword arguments: mixture(logits = ..., means = ..., stds = ...)"}


class DirectedChecks:
    def _start_directed(self) -> None:
        """The state of the directed checks (the expression checks read the first three)."""
        self.in_directed = False  # inside a conditional or let: functions of variables are allowed
        self.in_guide = False
        self.in_discriminator = False  # inside the discriminator block: visible variables only
        self.free_names: set[str] = set()  # free indices of the conditional being checked
        self.lets: dict[str, LetInfo] = {}
        self.let_state: dict[str, str] = {}  # name -> "checking" | "done"
        self.let_depths: dict[str, int] = {}  # name -> nesting depth of the binding with the lets it uses written out
        self.conditionals: list[CondInfo] = []
        self.attempted: set[str] = set()  # groups with a conditional statement (valid or not)
        self.prev_init: dict = {}  # a denoiser's prev group -> (the parameter of prev(h, h0) or None, span)

    @contextmanager
    def _directed_context(self, in_guide: bool, scopes: list, free_names: set[str], in_discriminator: bool = False):
        """Check expressions as the arguments of a conditional, a let binding or a discriminator's logit."""
        saved = (self.in_directed, self.in_guide, self.scopes, self.free_names, self.in_discriminator)
        self.in_directed, self.in_guide, self.scopes, self.free_names = True, in_guide, scopes, free_names
        self.in_discriminator = in_discriminator
        try:
            yield
        finally:
            self.in_directed, self.in_guide, self.scopes, self.free_names, self.in_discriminator = saved

    # let bindings ----------------------------------------------------------------
    def _is_let(self, name: str) -> bool:
        return name in self.let_state or any(d.name == name for d in self.model.lets)

    def _let_use(self, e: ast.Name) -> Optional[Type]:
        """A let binding used in an expression: only in conditionals and lets, and a guide's only in the guide."""
        if not self.in_directed:
            self.error(f"let binding '{e.id}' can be used in conditionals and other lets, not in an energy",
                       e.span, "write the expression out in the energy", kind="directed")
            return None
        decl = self.owner.get(e.id)
        if isinstance(decl, ast.LetDecl) and bool(decl.in_discriminator) != self.in_discriminator:
            if decl.in_discriminator:
                self.error(f"'{e.id}' is defined in the discriminator and cannot be used outside it", e.span,
                           "the discriminator's let bindings are its own; write the expression out here",
                           kind="directed")
            else:
                self.error(f"'{e.id}' is defined outside the discriminator, which may use its own let bindings "
                           f"only", e.span, "define it inside the discriminator block (the discriminator's "
                           "parameters are kept apart from the generator's)", kind="directed")
            return None
        let = self.lets.get(e.id)
        if let is not None and let.decl.in_guide and not self.in_guide:
            self.error(f"'{e.id}' is defined in the guide and cannot be used outside it", e.span,
                       "move the let binding out of the guide block", kind="directed")
            return None
        return self._let(e.id)

    def _let(self, name: str) -> Optional[Type]:
        """The type of a let binding, checked once, on first use or in declaration order."""
        state = self.let_state.get(name)
        if state == "done":
            return self.lets[name].type if name in self.lets else None
        decl = next(d for d in self.model.lets if d.name == name)
        if state == "checking":
            self.error(f"let binding '{name}' is defined in terms of itself", decl.name_span,
                       "a let binding may use earlier bindings, not itself", kind="directed")
            self.let_state[name] = "done"
            return None
        self.let_state[name] = "checking"
        saved, self.statement = self.statement, decl
        try:
            with self._directed_context(decl.in_guide, [], set(), bool(decl.in_discriminator)):
                t = self.expr(decl.expr)
        finally:
            self.statement = saved
        self.let_state[name] = "done"
        depth = self._written_out_depth(decl.expr)
        self.let_depths[name] = depth if depth <= MAX_NESTING else 0  # reported: not again for its users
        if self.owner.get(name) is decl:
            self.lets[name] = LetInfo(name, t, decl)
        return t

    def _let_order(self, m: ast.Model) -> list[str]:
        """The let bindings in an order that checks each after the ones it uses (a depth-first
        search with an explicit stack), so that checking a chain of lets, each using the next,
        needs no recursion; in declaration order if they use each other in a cycle (which
        `_let` reports)."""
        decls: dict[str, ast.LetDecl] = {}
        for d in m.lets:
            decls.setdefault(d.name, d)
        uses = {name: [n.id for n in ast.walk(d.expr) if isinstance(n, ast.Name) and n.id in decls]
                for name, d in decls.items()}
        order: list[str] = []
        state: dict[str, str] = {}
        for root in decls:
            if root in state:
                continue
            state[root] = "open"
            stack = [(root, iter(uses[root]))]
            while stack:
                name, pending = stack[-1]
                used = next(pending, None)
                if used is None:
                    stack.pop()
                    state[name] = "done"
                    order.append(name)
                elif used not in state:
                    state[used] = "open"
                    stack.append((used, iter(uses[used])))
                elif state[used] == "open":
                    return [d.name for d in m.lets]
        return order

    def _written_out_depth(self, e: ast.Expr) -> int:
        """The nesting depth of e with the let bindings it uses written out (as lowering inlines
        them): the depth of each use plus that of its binding. Past parser.MAX_NESTING, the
        deepest use, where the limit is crossed, is reported."""
        deepest, where = 0, None
        for n in ast.walk(e):
            depth = getattr(n, "depth", 0)  # set by the parser on names and numbers
            if isinstance(n, ast.Name) and n.id in self.let_depths:
                depth += self.let_depths[n.id]
            if depth > deepest:
                deepest, where = depth, n
        if deepest <= MAX_NESTING or not isinstance(where, ast.Name):
            return deepest  # (deeper without a let: the parser has reported it)
        self.error(f"with the let bindings it uses written out, this is nested {deepest} levels deep; the "
                   f"limit is {MAX_NESTING}", where.span,
                   f"a let binding is written out where it is used, so a chain of lets that use each other "
                   f"nests like one expression: shorten the chain that ends in '{where.id}'", kind="limit")
        return deepest

    # conditionals ------------------------------------------------------------------
    def _group_from_dist(self, g: ast.GroupDecl, shape) -> None:
        """A variable declared with its conditional (`visible x[d] ~ ...`): its domain is the family's."""
        family = FAMILIES.get(g.dist.family)
        domain = family[1] if family else "binary"
        categories = shape[-1] if domain == "categorical" and shape else None
        if domain == "categorical" and not shape:
            self.error(f"a categorical variable needs a last axis of categories; '{g.name}' is a scalar",
                       g.name_span, f"give it a shape: {g.role} {g.name}[K] ~ categorical(logits = ...)", kind="shape")
        if self.owner.get(g.name) is g:
            self.groups[g.name] = GroupInfo(g.name, g.role, shape, domain, categories, g)

    def _conditionals(self, m: ast.Model) -> None:
        defined: dict[tuple[str, bool], Span] = {}
        for g in m.groups:
            if g.dist is not None and g.name in self.groups:
                self._conditional(g.name, g.dist, None, g.span, False, defined, implicit=True)
        for s in m.samples:
            self.statement = s
            if s.name not in self.groups:
                self._not_a_variable(s)
                continue
            self._conditional(s.name, s.dist, s.indices, s.span, s.in_guide, defined, implicit=False)

    def _not_a_variable(self, s: ast.SampleDecl) -> None:
        if s.name in self.spans:
            self.error(f"'{s.name}' is a {self._kind(s.name)}, not a variable; only variables have "
                       f"conditionals", s.name_span, kind="directed")
        elif s.name not in self.broken:
            self._unknown(s.name, s.name_span, list(self.groups),
                          f"declare the variable first, e.g. 'latent {s.name}[n]: binary'")

    def _conditional(self, name, dist: ast.Dist, indices, span: Span, in_guide: bool, defined,
                     implicit: bool) -> None:
        group = self.groups[name]
        if not self._may_define(name, group, span, in_guide, defined):
            return
        self.statement = dist
        args = self._dist_args(dist)
        if args is None:
            return
        if not implicit and not self._family_fits(name, group, dist):
            return
        free = self._free_indices(name, group, dist, indices, span)
        if free is None:
            return
        parents = self._argument_parents(name, group, dist, args, free, span, in_guide)
        if parents is None:
            return
        if name in parents and not free:
            self.error(f"the conditional of '{name}' depends on '{name}' itself", dist.span,
                       f"an autoregressive conditional needs a free index: {name}[i] ~ ..., reading only "
                       f"earlier elements (sum[j < i](... {name}[j] ...))", kind="directed")
            return
        self.conditionals.append(CondInfo(name, dist.family, args, free, frozenset(parents), span, in_guide))

    def _may_define(self, name, group: GroupInfo, span: Span, in_guide: bool, defined) -> bool:
        """A variable has one conditional in the model and one in the guide, which defines latents only."""
        key = (name, in_guide)
        if key in defined:
            where = "in the guide " if in_guide else ""
            self.error(f"'{name}' has two conditionals {where}(the first at line {defined[key].line})", span,
                       "a variable is defined once; remove one of them", kind="directed")
            return False
        defined[key] = span
        self.attempted.add(name)
        if in_guide and group.role != "latent":
            self.error(f"the guide defines q(latents | visibles), but '{name}' is visible", span,
                       "the guide may define latent variables only", kind="directed")
            return False
        return True

    def _family_fits(self, name, group: GroupInfo, dist: ast.Dist) -> bool:
        want = FAMILIES[dist.family][1]
        if group.domain != want:
            self.error(f"{dist.family}(...) gives {want} values, but '{name}' is {group.domain}", dist.span,
                       f"declare '{name}' as {want}, or use the family of its domain", kind="domain")
            return False
        return True

    def _argument_parents(self, name, group: GroupInfo, dist: ast.Dist, args, free, span: Span,
                          in_guide: bool) -> Optional[set]:
        """The groups the arguments depend on, or None if an argument has an error."""
        scope = {n: span for n in free}
        parents, ok, types = set(), True, {}
        with self._directed_context(in_guide, [scope], set(free)):
            for arg_name, e in args.items():
                t = self.expr(e)
                if t is None or self._written_out_depth(e) > MAX_NESTING:
                    ok = False
                    continue
                parents |= t.groups
                types[arg_name] = t
                ok &= self._arg_shape(name, group, dist.family, arg_name, e, t, len(free))
        if ok and dist.family == "mixture":
            ok = self._components_agree(group, dist, args, types, len(free))
        return parents if ok else None

    # family arguments ----------------------------------------------------------------
    def _dist_args(self, dist: ast.Dist) -> Optional[dict[str, ast.Expr]]:
        """The arguments of `family(...)` by their canonical names, or None if they do not fit."""
        if dist.family not in FAMILIES:
            close = difflib.get_close_matches(dist.family, list(FAMILIES), n=1)
            self.error(f"unknown distribution '{dist.family}'", dist.span,
                       f"did you mean '{close[0]}'?" if close else "the families are " + ", ".join(FAMILIES),
                       kind="name")
            return None
        args = self._named_args(dist)
        if args is None or not self._args_complete(dist, args):
            return None
        return args

    def _named_args(self, dist: ast.Dist) -> Optional[dict[str, ast.Expr]]:
        """Positional arguments named in the family's order; keywords checked against its names."""
        names = FAMILIES[dist.family][0]
        args: dict[str, ast.Expr] = {}
        positional = 0
        for a in dist.args:
            if a.name is None:
                if dist.family in KEYWORD_ONLY:
                    self.error(KEYWORD_ONLY[dist.family], a.span, kind="directed")
                    return None
                if positional >= len(names):
                    self.error(f"{dist.family} takes {len(names)} argument{'s' if len(names) > 1 else ''} "
                               f"({', '.join(names)})", a.span, kind="directed")
                    return None
                key = names[positional]
                positional += 1
            else:
                key = a.name
                if key not in names:
                    weights = (" (the component weights are softmax(logits) over the last axis)"
                               if dist.family == "mixture" else "")
                    self.error(f"{dist.family} has no argument '{key}'", a.span,
                               "its arguments are " + ", ".join(names) + weights, kind="directed")
                    return None
            if key in args:
                self.error(f"argument '{key}' is given twice", a.span, kind="directed")
                return None
            args[key] = a.value
        return args

    def _args_complete(self, dist: ast.Dist, args: dict[str, ast.Expr]) -> bool:
        names = FAMILIES[dist.family][0]
        if dist.family == "bernoulli" and len(args) == 2:
            self.error("bernoulli takes logits or probs, not both", dist.span,
                       "give one of them: bernoulli(logits = a) or bernoulli(probs = sigmoid(a))", kind="directed")
            return False
        if dist.family == "mixture" and len(args) != ARGUMENT_COUNT["mixture"]:
            missing = [n for n in names if n not in args]
            self.error(f"mixture needs logits, means and stds; {' and '.join(missing)} "
                       f"{'is' if len(missing) == 1 else 'are'} missing", dist.span,
                       f"for example {EXAMPLES['mixture']}, each with a last axis of K components",
                       kind="directed")
            return False
        if len(args) != ARGUMENT_COUNT[dist.family]:
            self.error(f"{dist.family} needs {'one of ' if dist.family == 'bernoulli' else ''}"
                       f"{' and '.join(names) if dist.family != 'bernoulli' else 'logits or probs'}", dist.span,
                       f"for example {EXAMPLES[dist.family]}", kind="directed")
            return False
        return True

    def _arg_shape(self, name, group: GroupInfo, family, arg, e, t: Type, nfree: int) -> bool:
        """An argument has the shape of the variable's axes after the free ones (or is a scalar,
        except for categorical logits)."""
        want = group.shape[nfree:]
        if family == "mixture":
            ok = t.is_scalar or (len(t.shape) == len(want) + 1 and t.shape[:-1] == want)
            if not ok:
                self.error(f"'{arg}' has shape {shape_str(t.shape)}, but the mixture conditional of '{name}' "
                           f"needs {_with_components(want)} (or a scalar)", e.span,
                           f"the arguments of a mixture have the shape of '{name}'"
                           f"{' after its free indices' if nfree else ''} ({shape_str(want)}) followed by an "
                           f"axis of K components", kind="shape")
            return ok
        if family == "categorical":
            if not want:
                self.error(f"the free indices of '{name}' cover its last (category) axis", e.span,
                           "leave the category axis out of the free indices", kind="shape")
                return False
            ok = t.shape == want
        else:
            ok = t.is_scalar or t.shape == want
        if not ok:
            self.error(f"'{arg}' has shape {shape_str(t.shape)}, but the conditional of '{name}' needs "
                       f"{shape_str(want)}" + ("" if family == "categorical" else " (or a scalar)"), e.span,
                       kind="shape")
        return ok

    def _components_agree(self, group: GroupInfo, dist: ast.Dist, args, types, nfree: int) -> bool:
        """The arguments of a mixture that are not scalars give the number of components K, their
        last axis; they must agree, and at least one must give it."""
        shaped = [(n, t) for n, t in types.items() if not t.is_scalar]
        if not shaped:
            self.error("a mixture needs a number of components, but logits, means and stds are all scalars",
                       dist.span, f"give one of them the shape {_with_components(group.shape[nfree:])}, "
                                  f"K the number of components", kind="shape")
            return False
        first, t0 = shaped[0]
        for arg, t in shaped[1:]:
            if t.shape[-1] != t0.shape[-1]:
                self.error(f"'{arg}' has shape {shape_str(t.shape)} but '{first}' has {shape_str(t0.shape)}: the "
                           f"arguments of a mixture need the same number of components (the last axis)",
                           args[arg].span, kind="shape")
                return False
        return True

    # free indices of autoregressive conditionals --------------------------------------
    def _free_indices(self, name, group: GroupInfo, dist: ast.Dist, indices, span) -> Optional[tuple]:
        """Explicit (x[i] ~ ...) or implicit (visible x[d] ~ ... b[i] ...): names used only as
        subscripts and not declared anywhere are the free indices of the leading axes."""
        if indices is not None:
            return self._explicit_free_indices(name, group, indices, span)
        return self._implicit_free_indices(name, group, dist, span)

    def _explicit_free_indices(self, name, group: GroupInfo, indices, span) -> Optional[tuple]:
        if len(indices) > len(group.shape):
            self.error(f"'{name}' has {len(group.shape)} axes but {len(indices)} free indices are given", span,
                       kind="shape")
            return None
        for n in indices:
            if n in self.spans:
                self.error(f"free index '{n}' has the name of a declared {self._kind(n)}", span,
                           "use a fresh name for the index", kind="name")
                return None
        if len(set(indices)) != len(indices):
            self.error("a free index is repeated", span, kind="name")
            return None
        return tuple(indices)

    def _implicit_free_indices(self, name, group: GroupInfo, dist: ast.Dist, span) -> Optional[tuple]:
        declared = set(self.spans) | set(WRITTEN) | {"sum"}
        bound = set()
        for a in dist.args:
            bound |= _binder_names(a.value)
        candidates = sorted(n for a in dist.args for n in _subscript_names(a.value)
                            if n not in declared and n not in bound)
        candidates = list(dict.fromkeys(candidates))
        if not candidates:
            return ()
        if len(candidates) > 1 or not group.shape:
            self.error(f"cannot tell which axis of '{name}' the free indices {', '.join(candidates)} run over",
                       span, f"declare the variable with its domain and write the indices on it in a second "
                             f"statement: {name}[{', '.join(candidates)}] ~ {dist.family}(...)", kind="index")
            return None
        return (candidates[0],)

    # the discriminator of a GAN ---------------------------------------------------------
    def _discriminator_may_read(self, e: ast.Name) -> bool:
        """The discriminator sees what the data hold: the visible variables, never a latent."""
        group = self.groups[e.id]
        if group.role == "visible":
            return True
        self.error(f"the discriminator reads the latent variable '{e.id}', but it sees only the data (the "
                   f"visible variables)", e.span, "compute the logit from the visible variables: the data have "
                                                  "no values for latents", kind="directed")
        return False

    def _discriminator(self, m: ast.Model) -> Optional[DiscInfo]:
        """`discriminator { let ...  logit = ... }`: one logit per row, from the visible variables,
        with parameters of its own, in a directed model whose every draw is reparameterisable."""
        if m.discriminator_span is None:
            return None
        span = m.discriminator_span
        logit, named_wrong = None, False
        for s in m.discriminator:
            if not isinstance(s, ast.OutputDecl):
                continue
            if s.name != "logit":
                self.error(f"a discriminator has one output, written 'logit = ...'; '{s.name} = ...' is not it",
                           s.name_span, f"name an intermediate result with let: let {s.name} = ...", kind="directed")
                named_wrong = True
            elif logit is not None:
                self.error(f"the discriminator's logit is defined twice (the first at line {logit.span.line})",
                           s.span, "a discriminator has one output; remove one of them", kind="directed")
            else:
                logit = s
        if not any(g.role == "visible" for g in m.groups):
            self.error(f"a discriminator tells the data from the model's samples, but model '{m.name}' has no "
                       f"visible variable", span, "declare the data as visible and define it by a conditional, "
                                                  "e.g. 'visible x[d] ~ normal(mean = ..., std = s)'", kind="directed")
            return None
        if logit is None:
            if not named_wrong:
                self.error("the discriminator has no output: end it with 'logit = ...', one number per row",
                           span, "for example logit = w @ relu(D @ x + b) + c: the log-odds that a row is data "
                                 "rather than a sample of the model", kind="directed")
            return None
        self.statement = logit
        with self._directed_context(False, [], set(), in_discriminator=True):
            t = self.expr(logit.expr)
            if t is not None and self._written_out_depth(logit.expr) > MAX_NESTING:
                return None
        if t is None:
            return None
        if not t.is_scalar:
            self.error(f"the discriminator's logit must be one number per row (a scalar), but it has shape "
                       f"{shape_str(t.shape)}", logit.expr.span,
                       "reduce it with a last layer such as w @ a + c, w a vector", kind="shape")
            return None
        read = {n.id for n in self._names_through_lets(logit.expr) if n.id in self.groups}
        if not read:  # (Type.groups does not see through functions: relu(D @ x) has none)
            self.error("the discriminator's logit does not depend on the data: it reads no visible variable",
                       logit.expr.span, "compute it from the visible variables, e.g. logit = w @ relu(D @ x + b) + c",
                       kind="directed")
            return None
        fits = self._generator_fits(m, span)
        if not self._parameters_apart(m, logit) or not fits:
            return None
        reads = tuple(g.name for g in m.groups if g.name in read)
        params = tuple(p for p in self.params if p in self._params_used(logit.expr))
        return DiscInfo(logit.expr, reads, params, span, logit.span)

    def _generator_fits(self, m: ast.Model, span: Span) -> bool:
        """The generator is trained through its draws (x = mean + std * noise), so every variable
        of the model must be a normal conditional, drawn whole (not element by element)."""
        ok = True
        if m.energies:
            self.error(f"a model with a discriminator must be directed (its samples are drawn, as mean + std * "
                       f"noise, for the discriminator), but it has an energy (line {m.energies[0].span.line})",
                       span, "define every variable by a normal conditional, x ~ normal(mean = ..., std = ...)",
                       kind="directed")
            return False
        if not any(not c.in_guide for c in self.conditionals) and not self.attempted:
            self.error("a discriminator needs a generator, but no variable of this model is defined by a "
                       "conditional", span, "define the data by the generator, e.g. 'visible x[d] ~ normal(mean = "
                                            "W @ z + b, std = s)' with 'latent z[nz] ~ normal(0, 1)'", kind="directed")
            return False
        for c in self.conditionals:
            if c.in_guide:
                continue
            if c.family != "normal":
                self.error(f"a model with a discriminator is trained through its draws, so '{c.group}' must be "
                           f"normal (drawn as mean + std * noise); {c.family} draws have no gradient", c.span,
                           f"use {c.group} ~ normal(mean = ..., std = ...), with a small std for a nearly "
                           f"deterministic output", kind="directed")
                ok = False
            elif c.free:
                self.error(f"a model with a discriminator draws each variable whole, but '{c.group}' is "
                           f"autoregressive (free index {', '.join(c.free)})", c.span,
                           "define it from other variables, without free indices", kind="directed")
                ok = False
        return ok

    def _parameters_apart(self, m: ast.Model, logit: ast.OutputDecl) -> bool:
        """The discriminator and the generator (and guide) are trained against each other: no
        parameter may be used by both."""
        theirs: dict[str, str] = {}
        for c in self.conditionals:
            for e in c.args.values():
                for name in self._params_used(e):
                    theirs.setdefault(name, "guide" if c.in_guide else "generator")
        ok = True
        seen = set()
        for node in self._names_through_lets(logit.expr):
            if node.id in theirs and node.id not in seen:
                seen.add(node.id)
                self.error(f"parameter '{node.id}' is used by the discriminator and by the {theirs[node.id]}; "
                           f"the two are trained against each other, so they cannot share parameters", node.span,
                           "declare a separate parameter for the discriminator", kind="directed")
                ok = False
        return ok

    def _params_used(self, e: ast.Expr) -> set[str]:
        return {n.id for n in self._names_through_lets(e) if n.id in self.params}

    def _names_through_lets(self, e: ast.Expr):
        """The names e uses, and those of the let bindings it uses (each binding walked once)."""
        stack, done = [e], set()
        while stack:
            for node in ast.walk(stack.pop()):
                if not isinstance(node, ast.Name):
                    continue
                yield node
                decl = self.owner.get(node.id)
                if isinstance(decl, ast.LetDecl) and node.id not in done:
                    done.add(node.id)
                    stack.append(decl.expr)

    # the chain of a denoising autoencoder (and a GSN) ------------------------------------
    def _denoiser_prev(self, m: ast.Model) -> dict:
        """`prev(h)` (h one chain step back) becomes a read of an implicit latent group `prev_h`
        of h's shape, declared here (before the declarations are checked); `prev` anywhere but
        in a denoiser block is an error. Returns {implicit group: h}."""
        out: dict[str, str] = {}
        if not re.search(r"\bprev\b", self.source.text):  # the walk below visits every node: skip it
            return out
        inside = {id(s) for s in m.denoiser}
        decls = {g.name: g for g in m.groups}
        roots = [(s, id(s) in inside) for s in list(m.lets) + list(m.samples) + list(m.energies)]
        roots += [(s, False) for s in m.discriminator] + [(g, False) for g in m.groups]
        roots += [(p, False) for p in m.params]
        for root, ok in roots:
            stack = [root]
            while stack:
                node = stack.pop()
                for f in fields(node):
                    value = getattr(node, f.name)
                    items = value if isinstance(value, list) else [value]
                    for k, x in enumerate(items):
                        if not isinstance(x, ast.Node):
                            continue
                        if isinstance(x, ast.Call) and x.fn == "prev":
                            x = self._prev_call(x, ok, decls, m, out)
                            if isinstance(value, list):
                                value[k] = x
                            else:
                                setattr(node, f.name, x)
                        stack.append(x)
        return out

    def _prev_call(self, e: ast.Call, ok: bool, decls: dict, m: ast.Model, out: dict) -> ast.Node:
        """The node that stands for `prev(...)`: a name of the implicit group, or (reported) its argument."""
        stand_in = e.args[0] if e.args else ast.Num(e.span, 0.0, "0")
        if not ok:
            self.error("prev(...) is the value of a state one step back along a denoiser's chain, so it can be "
                       "used only inside a denoiser block", e.span,
                       "read the previous step's state in the denoiser: let h = tanh(W @ xt + U @ prev(h) + c)",
                       kind="directed")
            return stand_in
        states = [s.name for s in m.denoiser if isinstance(s, ast.SampleDecl)][1:-1]
        if len(e.args) not in (1, 2) or not isinstance(e.args[0], ast.Name):
            self.error("prev takes the name of a state drawn in the denoiser, and optionally its value before "
                       "the first step", e.span, "write prev(h), or prev(h, h0) with h0 a parameter of h's shape",
                       kind="directed")
            return stand_in
        params = {p.name for p in m.params}
        if len(e.args) == 2 and not (isinstance(e.args[1], ast.Name) and e.args[1].id in params):
            self.error("the value before the first step, in prev(h, h0), must be a parameter", e.args[1].span,
                       "declare one of h's shape, 'param h0[n]', and write prev(h, h0) (without it, h starts at "
                       "zero)", kind="directed")
            return stand_in
        name = e.args[0].id
        if name not in states or name not in decls:
            self.error(f"prev({name}) reads '{name}' one chain step back, but '{name}' is not a state the "
                       f"denoiser draws", e.span,
                       "prev reads a latent drawn between the corruption (the first ~) and the reconstruction "
                       "(the last ~): latent h[n]: real, then h ~ normal(mean = ..., std = ...) in the block",
                       kind="directed")
            return stand_in
        implicit = f"prev_{name}"
        init = e.args[1].id if len(e.args) == 2 else None
        inits = self.prev_init
        if implicit in inits and inits[implicit][0] != init:
            self.error(f"prev({name}) is given two different values before the first step (the first at line "
                       f"{inits[implicit][1].line})", e.span,
                       f"write the same prev({name}{', ' + inits[implicit][0] if inits[implicit][0] else ''}) "
                       f"everywhere", kind="directed")
            return stand_in
        inits.setdefault(implicit, (init, e.span))
        if implicit not in out:
            h = decls[name]
            domain = h.domain if h.domain is not None else ast.Domain(e.span, "real", [])
            m.groups.append(ast.GroupDecl(e.span, "latent", implicit, e.span, list(h.shape), domain))
            out[implicit] = name
            self.attempted.add(implicit)
        return ast.Name(e.span, implicit)

    def _denoiser(self, m: ast.Model, prev: dict) -> Optional[DenoiserInfo]:
        """`denoiser { xt ~ C(x)  [h ~ ...]  let ...  x ~ p(x | ...) }`: the corruption of a
        visible group into a latent, any latent states (normal: trained through their draws),
        and the reconstruction of that visible group; nothing else defines the model. A broken
        block is taken out of the model (its statements are not checked further)."""
        if m.denoiser_span is None:
            return None
        span = m.denoiser_span
        samples = [s for s in m.denoiser if isinstance(s, ast.SampleDecl)]
        ok = self._denoiser_alone(m, span)
        if len(samples) < 2:
            self.error("a denoiser needs a corruption and a reconstruction: its first '~' draws the corrupted "
                       "data, its last '~' reconstructs the data", samples[0].span if samples else span,
                       "for example: xt ~ normal(mean = x, std = s)  let h = tanh(W @ xt + c)  "
                       "x ~ normal(mean = V @ h + b, std = s)", kind="directed")
            ok = False
        for s in samples:
            if s.name not in self.groups:
                ok = False  # reported by _conditionals
        if ok:
            ok = self._denoiser_roles(samples)
        if not ok:
            dropped = {id(s) for s in samples}
            m.samples[:] = [s for s in m.samples if id(s) not in dropped]
            self.attempted |= {s.name for s in samples}
            return None
        first, last = samples[0], samples[-1]
        init = {}
        for implicit, (param, at) in self.prev_init.items():
            if param is None or implicit not in prev or param not in self.params:
                continue
            want, got = self.groups[prev[implicit]].shape, self.params[param].shape
            if tuple(want) != tuple(got):
                self.error(f"'{param}' has shape {shape_str(got)}, but it is the value of '{prev[implicit]}' "
                           f"before the first step, of shape {shape_str(want)}", at,
                           f"declare {param} with the shape of {prev[implicit]}", kind="shape")
                return None
            init[implicit] = param
        return DenoiserInfo(last.name, first.name, tuple(s.name for s in samples[1:-1]), dict(prev), span, init)

    def _denoiser_alone(self, m: ast.Model, span: Span) -> bool:
        """A model with a denoiser is defined by it alone: no energy, no other conditional or block."""
        if m.energies:
            self.error(f"a model with a denoiser is defined by its chain, but it has an energy (line "
                       f"{m.energies[0].span.line})", span,
                       "remove the energy: the denoiser's corruption and reconstruction define the model",
                       kind="directed")
            return False
        for what, at in (("guide", m.guide_span), ("discriminator", m.discriminator_span)):
            if at is not None:
                self.error(f"a model with a denoiser cannot have a {what} block as well", at,
                           "a denoiser's chain is trained by fit(method=\"denoising\" or \"walkback\")",
                           kind="directed")
                return False
        other = [s for s in m.samples if not s.in_denoiser] + [g for g in m.groups if g.dist is not None]
        if other:
            s = other[0]
            self.error(f"a model with a denoiser is defined by its chain, so '{s.name}' cannot have a conditional "
                       f"outside the denoiser block", s.span,
                       "declare the variable (visible x[d]: real) and define it in the block", kind="directed")
            return False
        return True

    def _denoiser_roles(self, samples: list) -> bool:
        first, last = samples[0], samples[-1]
        ok = True
        if self.groups[last.name].role != "visible":
            self.error(f"the reconstruction (the denoiser's last '~') must define the data, a visible variable, "
                       f"but '{last.name}' is latent", last.name_span,
                       "end the block with the reconstruction of the visible variable: x ~ ...", kind="directed")
            return False
        if self.groups[first.name].role != "latent":
            self.error(f"the corruption (the denoiser's first '~') draws a corrupted copy of the data, so "
                       f"'{first.name}' must be latent, not visible", first.name_span,
                       f"declare it 'latent {first.name}[...]: {self.groups[first.name].domain}'; the data is the "
                       f"visible variable the last '~' reconstructs", kind="directed")
            return False
        read = {n.id for a in first.dist.args for n in self._names_through_lets(a.value)
                if n.id in self.groups and self.groups[n.id].role == "visible"}
        if not read:
            self.error(f"the corruption of '{first.name}' reads no visible variable: it must corrupt the data",
                       first.span, f"for example {first.name} ~ normal(mean = {last.name}, std = s), or "
                                   f"bernoulli(probs = {last.name} * (1 - p) + (1 - {last.name}) * p)",
                       kind="directed")
            return False
        if read != {last.name}:
            other = sorted(read - {last.name}) or sorted(read)
            self.error(f"the denoiser reconstructs '{last.name}', but its corruption corrupts "
                       f"'{other[0]}'", first.span, "corrupt the variable the last '~' reconstructs",
                       kind="directed")
            return False
        for s in samples[1:-1]:
            if self.groups[s.name].role != "latent" or s.dist.family != "normal":
                self.error(f"a state drawn inside the denoiser (between the corruption and the reconstruction) "
                           f"must be a latent with a normal conditional; '{s.name}' is "
                           f"{self.groups[s.name].role} and drawn from {s.dist.family}", s.span,
                           "the chain is trained through its draws, h = mean + std * noise: "
                           "h ~ normal(mean = ..., std = s)", kind="directed")
                ok = False
        return ok

    # the graph of conditionals ----------------------------------------------------------
    def _directed_structure(self, m: ast.Model):
        """Group-level acyclicity, the guide's coverage, and topological orders."""
        model = [c for c in self.conditionals if not c.in_guide]
        guide = [c for c in self.conditionals if c.in_guide]
        model_order = self._topological(model, "model", m)
        guide_order = self._topological(guide, "guide", m)
        if model:
            self._check_every_group_defined(model, m)
        if guide and m.denoiser_span is None:  # (a denoiser's q conditionals are its chain's)
            self._check_guide_covers_latents(guide, m)
        return model_order, guide_order

    def _topological(self, conds: list[CondInfo], what: str, m: ast.Model) -> list[CondInfo]:
        """conds with parents first (ties in declaration order); a cycle is reported, and conds kept as they are."""
        import networkx as nx

        graph = nx.DiGraph()
        by_group = {c.group: c for c in conds}
        graph.add_nodes_from(by_group)
        for c in conds:
            for p in c.parents:
                if p != c.group and p in by_group:
                    graph.add_edge(p, c.group)
        try:
            cycle = nx.find_cycle(graph)
        except nx.NetworkXNoCycle:
            cycle = None
        if cycle:
            names = [u for u, _ in cycle] + [cycle[0][0]]
            c = by_group[cycle[0][1]]
            self.error(f"the {'conditionals' if what == 'model' else 'guide'} form a cycle: "
                       f"{' -> '.join(names)}", c.span,
                       "a directed model must be acyclic; make one of these depend on the others only", kind="directed")
            return conds
        position = {g.name: k for k, g in enumerate(m.groups)}
        order = list(nx.lexicographical_topological_sort(graph, key=lambda n: position.get(n, 0)))
        return [by_group[n] for n in order]

    def _check_every_group_defined(self, model: list[CondInfo], m: ast.Model) -> None:
        """In a directed model, a variable without a conditional must appear in an energy."""
        directed = {c.group for c in model}
        in_energy = set()
        for e in m.energies:
            t = getattr(e.expr, "type", None)
            if t is not None:
                in_energy |= t.groups
        for g in m.groups:
            if g.name in self.groups and g.name not in directed | self.attempted and g.name not in in_energy:
                self.error(f"'{g.name}' has no distribution: it has no conditional and is in no energy",
                           g.name_span, f"define it, e.g. '{g.name} ~ bernoulli(logits = ...)'", kind="directed")

    def _check_guide_covers_latents(self, guide: list[CondInfo], m: ast.Model) -> None:
        covered = {c.group for c in guide}
        for g in m.groups:
            if g.role == "latent" and g.name in self.groups and g.name not in covered:
                self.error(f"the guide does not define latent '{g.name}'", self.model.guide_span or g.span,
                           f"add '{g.name} ~ ...' to the guide: q must cover every latent variable", kind="directed")


def _with_components(shape) -> str:
    """A mixture argument's shape as a message shows it: the element's axes, then K."""
    return "[" + ", ".join([str(d) for d in shape] + ["K"]) + "]"


def _binder_names(e) -> set[str]:
    if not isinstance(e, ast.Node):
        return set()
    return {b.name for n in ast.walk(e) if isinstance(n, ast.SumIndex) for b in n.binders}


def _subscript_names(e, inside: bool = False) -> list[str]:
    """Names used in subscripts, slice bounds and summation bounds, in order of appearance
    (walked with an explicit stack)."""
    out = []
    stack = [(e, inside)]
    while stack:
        node, inside = stack.pop()
        if isinstance(node, ast.Name):
            if inside:
                out.append(node.id)
            continue
        if isinstance(node, ast.Index):
            below = [(node.base, inside)] + [(sub, True) for sub in node.subscripts]
        elif isinstance(node, ast.Binder):
            below = [(node.bound, True)] if node.bound is not None else []
        elif isinstance(node, ast.Node):
            below = [(x, inside) for x in ast.children(node)]
        else:
            continue
        stack.extend(reversed(below))
    return out
