"""The checker: names, shapes and domains of a parsed model; every error of the file is collected.

This module checks the declarations (model arguments, variables, parameters and their
initialisers) and the expressions of the energy; the directed part (conditionals, guides,
let bindings) is checked by the `DirectedChecks` mixin of directed_checks.py. Shapes are
tuples of `Poly`s in the size arguments, so `v @ W` is checked as `nv == nv` for every
instance of the model, not only for the default sizes. The checker annotates each
expression node with `.type` (checked.py) for the lowering stage.
"""
from __future__ import annotations

import difflib
from typing import Optional

from ..errors import ErrorSink, Source, Span
from .. import ops
from ..ops import WRITTEN
from ..poly import Poly
from . import ast
from .checked import CheckedModel, CondInfo, GroupInfo, LetInfo, ParamInfo, Type, shape_str
from .directed_checks import FAMILIES, DirectedChecks
from .sequence import unfold_time

__all__ = ["check", "Checker", "CheckedModel", "CondInfo", "GroupInfo", "LetInfo", "ParamInfo", "Type",
           "shape_str", "index_poly_of", "DOMAINS", "CONSTRAINTS", "FUNCTIONS", "FAMILIES", "DISTRIBUTIONS",
           "MAX_VARIABLE_POWER", "MAX_NAME_LENGTH", "DOMAIN_ALIASES", "DISTRIBUTION_ALIASES", "FUNCTION_HINTS"]

DOMAINS = ("binary", "spin", "real", "categorical")
CONSTRAINTS = ("symmetric", "zero_diag", "positive")
FUNCTIONS = WRITTEN  # the names of the operator table a model may call
DISTRIBUTIONS = {"normal": ("mean", "std"), "uniform": ("low", "high")}
MAX_VARIABLE_POWER = 8
MAX_NAME_LENGTH = 64  # names become parts of Python identifiers and of numba's cache file names
# names people reach for, and what gdl calls them
DOMAIN_ALIASES = {"gaussian": "real", "normal": "real", "continuous": "real", "float": "real",
                  "bernoulli": "binary", "bool": "binary", "bit": "binary", "ising": "spin",
                  "softmax": "categorical(K)", "onehot": "categorical(K)", "one_hot": "categorical(K)",
                  "multinomial": "categorical(K)", "discrete": "categorical(K)"}
DISTRIBUTION_ALIASES = {"gaussian": "normal", "randn": "normal", "rand": "uniform", "zeros": "= 0",
                        "zero": "= 0", "constant": "= value"}
FUNCTION_HINTS = {"sigm": "did you mean 'sigmoid'?", "logistic": "did you mean 'sigmoid'?",
                  "ln": "did you mean 'log'?", "pow": "write powers with '^', as in x^2",
                  "softmax": "for softmax units declare a categorical(K) variable",
                  "logsumexp": "for softmax units declare a categorical(K) variable",
                  "window": "window(v[t]) is the whole right side of a state along the time axis: "
                            "let past[t] = window(v[t]) from v0"}


class Checker(DirectedChecks):
    """Checks a model's declarations and energy; DirectedChecks adds its conditionals and lets."""

    def __init__(self, model: ast.Model, source: Source):
        self.model = model
        self.source = source
        self.sink = ErrorSink()
        self.sizes: dict[str, int] = {}
        self.consts: dict[str, float] = {}
        self.groups: dict[str, GroupInfo] = {}
        self.params: dict[str, ParamInfo] = {}
        self.spans: dict[str, Span] = {}
        self.scopes: list[dict[str, Span]] = []
        self.broken: set[str] = set()  # declarations with errors: their uses are not re-reported
        self.owner: dict[str, object] = {}  # name -> the declaration that owns it (the first one)
        self.statement: object = None  # the declaration being checked
        self.reported: set = set()  # (statement, name) of unknown names already reported
        self.context = "expr"  # "expr" | "subscript": where a name is used (for the hint of an unknown one)
        self._start_directed()

    def error(self, message: str, span: Span, hint: str | None = None, *, kind: str) -> None:
        """Record an error of one of `errors.KINDS` (required: every checker error says its kind)."""
        self.sink.error(message, span, hint, kind=kind)

    def _text(self, span: Span) -> str:
        """The source text of a one-line span (for hints that quote the user's code)."""
        if span.end_line != span.line:
            return "..."
        return self.source.line_text(span.line)[span.column - 1:span.end_column - 1]

    # entry ------------------------------------------------------------------
    def run(self) -> CheckedModel:
        m = self.model
        self._check_length(m.name, m.name_span, "model")
        self._arguments(m)
        prev = self._denoiser_prev(m)  # implicit groups for prev(h), declared with the others
        seq = unfold_time(m, self._sequence_error, {p.name: p for p in m.params})  # the step model
        if seq is not None:
            self.attempted |= set(seq.states)  # a state is an input of the step, given, not modelled
        self._declare_in_order(m)
        for g in m.groups:
            self.statement = g
            self._group(g)
        for p in m.params:
            self.statement = p
            self._param(p)
        if not m.groups:
            self.error(f"model '{m.name}' declares no variables", m.name_span,
                       "declare at least one group, e.g. 'visible v[n]: binary'", kind="model")
        for name in self._let_order(m):
            self._let(name)
        if seq is not None:
            self._state_shapes(seq)
        den = self._denoiser(m, prev)
        self._conditionals(m)
        for e in m.energies:
            self.statement = e
            self._energy(e)
        disc = self._discriminator(m)
        model_conds, guide_conds = self._directed_structure(m)
        self.sink.raise_if_any(self.source)
        return CheckedModel(m.name, self.sizes, self.consts, self.groups, self.params,
                            list(m.energies), m, self.source, dict(self.spans), dict(self.lets),
                            model_conds, guide_conds, disc, den, seq)

    def _state_shapes(self, seq) -> None:
        """A state's update has the shape of the parameter it starts from."""
        for name, start in seq.states.items():
            let, g = self.lets.get(seq.update_let(name)), self.groups.get(name)
            if let is None or g is None or let.type is None or tuple(let.type.shape) == tuple(g.shape):
                continue
            self.error(f"the state '{name}' starts from {start}, of shape {shape_str(g.shape)}, but its update "
                       f"has shape {shape_str(let.type.shape)}", seq.state_spans[name],
                       f"give {start} the update's shape, or change the update", kind="sequence")

    def _sequence_error(self, message: str, span, hint: str) -> None:
        self.error(message, span, hint, kind="sequence")

    def _arguments(self, m: ast.Model) -> None:
        """The model header: integer arguments are sizes, real ones constants."""
        for arg in m.args:
            if self._declare(arg.name, arg.span, "model argument", arg):
                if arg.is_size:
                    if arg.value < 1:
                        self.error(f"size '{arg.name}' must be at least 1, not {arg.value}", arg.span,
                                   "sizes are positive whole numbers", kind="shape")
                    self.sizes[arg.name] = int(arg.value)
                else:
                    self.consts[arg.name] = float(arg.value)

    def _declare_in_order(self, m: ast.Model) -> None:
        """Variables, parameters and let bindings, in source order (the first of two takes the name)."""
        decls = [(g.name_span, g, "variable") for g in m.groups] + [(p.name_span, p, "parameter") for p in m.params]
        decls += [(d.name_span, d, "let binding") for d in m.lets]
        for span, d, what in sorted(decls, key=lambda x: (x[0].line, x[0].column)):
            self._declare(d.name, span, what, d)

    def _declare(self, name: str, span: Span, what: str, decl) -> bool:
        self._check_length(name, span, what)
        if name in self.spans:
            first = self.spans[name]
            self.error(f"'{name}' is declared twice (first at line {first.line})", span,
                       "give each variable, parameter and argument its own name", kind="name")
            return False
        if name in FUNCTIONS or name == "sum":
            self.error(f"'{name}' is a built-in function and cannot name a {what}", span,
                       f"rename the {what}", kind="name")
            self.broken.add(name)
            return False
        self.spans[name] = span
        self.owner[name] = decl
        return True

    def _kind(self, name: str) -> str:
        """What a declared name is, for messages."""
        if name in self.groups:
            return "variable"
        if name in self.params:
            return "parameter"
        return "model argument"

    def _check_length(self, name: str, span: Span, what: str) -> None:
        if len(name) > MAX_NAME_LENGTH:
            shown = name[:12] + "..." + name[-4:]
            self.error(f"the name of this {what} is too long ({len(name)} characters; at most "
                       f"{MAX_NAME_LENGTH})", Span(span.line, span.column, span.line, span.column + len(name)),
                       f"shorten '{shown}'", kind="name")

    # declarations -------------------------------------------------------------
    def _shape(self, exprs: list[ast.Expr], owner: str, name: str) -> tuple[Poly, ...]:
        dims = []
        for e in exprs:
            p = self._size_expr(e, f"a dimension of {owner}")
            if p is None or not self._positive(p, e.span, f"a dimension of {owner}"):
                self.broken.add(name)
            dims.append(p if p is not None else Poly.const(1))
        return tuple(dims)

    def _positive(self, p: Poly, span: Span, what: str) -> bool:
        """A size expression must be at least 1 with the default sizes (other sizes are checked
        when the model is instantiated)."""
        if not p.symbols() <= set(self.sizes) or any(self.sizes[n] < 1 for n in p.symbols()):
            return True  # unknown or already reported
        value = p.evaluate(self.sizes)
        if value >= 1:
            return True
        how = f"{p} = {value} with the default sizes" if p.symbols() else str(value)
        self.error(f"{what} must be at least 1, but it is {how}", span, kind="shape")
        return False

    def _size_expr(self, e: ast.Expr, what: str) -> Optional[Poly]:
        """An integer expression of sizes and literals (no index variables), evaluated with an
        explicit stack (a long chain such as 1 + 1 + ... needs no recursion); every operand
        that is not a size or a whole number is reported, left to right."""
        return integer_poly(e, lambda leaf: self._size_operand(leaf, what))

    def _size_operand(self, e: ast.Expr, what: str) -> Optional[Poly]:
        """A size expression's operand: a whole number or a size."""
        if isinstance(e, ast.Num):
            if isinstance(e.value, int):
                return Poly.const(e.value)
            self.error(f"{what} must be a whole number, not {e.text}", e.span, kind="shape")
            return None
        if isinstance(e, ast.Name):
            if e.id in self.sizes:
                return Poly.sym(e.id)
            if e.id in self.spans:
                self.error(f"{what} must be built from integer sizes; '{e.id}' is not a size", e.span,
                           "integer model arguments (n = 10) are sizes; real ones (s = 1.0) are constants",
                           kind="shape")
            else:
                self._unknown(e.id, e.span, list(self.sizes),
                              f"declare it as a size in the model header: model {self.model.name}(..., {e.id} = 10)")
            return None
        self.error(f"{what} must be an integer expression of sizes (+, - and * only)", e.span, kind="shape")
        return None

    def _group(self, g: ast.GroupDecl) -> None:
        shape = self._shape(g.shape, f"'{g.name}'", g.name)
        if g.domain is None:
            self._group_from_dist(g, shape)
            return
        d = g.domain
        domain = d.name
        categories = None
        if d.name not in DOMAINS:
            alias = DOMAIN_ALIASES.get(d.name.lower())
            close = difflib.get_close_matches(d.name, DOMAINS, n=1)
            hint = (f"use '{alias}'" + (" (with a positive quadratic term in the energy)" if alias == "real" else "")
                    if alias else f"did you mean '{close[0]}'?" if close else
                    "the domains are binary, spin, real and categorical(K)")
            self.error(f"unknown domain '{d.name}' for '{g.name}'", d.span, hint, kind="name")
        elif d.name == "categorical":
            domain = self._categorical_variant(d)
            if domain is None:
                self.error("categorical takes the number of categories, and `off` for rows that may also be all "
                           "zero: categorical(K) or categorical(K, off)", d.span, kind="domain")
            else:
                categories = self._size_expr(d.args[0], "the number of categories")
                if categories is not None and not self._positive(categories, d.args[0].span,
                                                                 "the number of categories"):
                    categories = None
                if categories is not None and (not shape or shape[-1] != categories):
                    axes = [str(x) for x in shape]
                    if str(categories) in axes:
                        axes.remove(str(categories))
                    axes.append(str(categories))
                    self.error(
                        f"categorical({categories}) is one-hot along the last axis, so the last axis of "
                        f"'{g.name}' must be {categories}; it is {shape_str(shape)}", d.span,
                        f"put the categories last: {g.role} {g.name}[{', '.join(axes)}]: categorical({categories})",
                        kind="shape")
        elif d.args:
            self.error(f"domain '{d.name}' takes no arguments", d.span, kind="domain")
        if self.owner.get(g.name) is g:  # a duplicate does not replace the first declaration
            self.groups[g.name] = GroupInfo(g.name, g.role, shape, domain, categories, g)

    @staticmethod
    def _categorical_variant(d: ast.Domain):
        """categorical(K) is one-hot; categorical(K, off) may also be all zero (K + 1 states, the
        pooling units of probabilistic max pooling). None if the arguments are neither."""
        if len(d.args) == 1:
            return "categorical"
        if len(d.args) == 2 and isinstance(d.args[1], ast.Name) and d.args[1].id == "off":
            return "categorical_off"
        return None

    def _param(self, p: ast.ParamDecl) -> None:
        shape = self._shape(p.shape, f"'{p.name}'", p.name)
        names = []
        for c in p.constraints:
            if c.name not in CONSTRAINTS:
                close = difflib.get_close_matches(c.name, CONSTRAINTS, n=1)
                self.error(f"unknown constraint '{c.name}' on '{p.name}'", c.span,
                           f"did you mean '{close[0]}'?" if close else "the constraints are " + ", ".join(CONSTRAINTS),
                           kind="name")
                continue
            if c.name in ("symmetric", "zero_diag") and (len(shape) != 2 or shape[0] != shape[1]):
                self.error(f"'{c.name}' needs a square matrix; '{p.name}' is {shape_str(shape)}", c.span, kind="shape")
            names.append(c.name)
        if p.init is not None:
            self._init(p)
        if "positive" in names and (p.init is None or _nonpositive_literal(p.init)):
            start = "0" if p.init is None else "a value <= 0"
            self.error(f"'{p.name}' is declared positive but starts at {start}", p.name_span,
                       "give it a positive initialiser, e.g. '= 1' or '~ uniform(0.5, 1.5)'", kind="domain")
        if self.owner.get(p.name) is p:  # a duplicate does not replace the first declaration
            self.params[p.name] = ParamInfo(p.name, shape, tuple(names), p.init, p)

    def _init(self, p: ast.ParamDecl) -> None:
        init = p.init
        if init.kind == "dist":
            if init.dist not in DISTRIBUTIONS:
                alias = DISTRIBUTION_ALIASES.get(init.dist.lower())
                close = difflib.get_close_matches(init.dist, list(DISTRIBUTIONS), n=1)
                hint = (f"did you mean '{alias}'?" if alias else f"did you mean '{close[0]}'?" if close else
                        "use normal(mean, std), uniform(low, high), or '= value'")
                self.error(f"unknown initialiser '{init.dist}' for '{p.name}'", init.span, hint, kind="name")
                return
            want = DISTRIBUTIONS[init.dist]
            if len(init.args) != len(want):
                example = "normal(0, 0.01)" if init.dist == "normal" else "uniform(-0.1, 0.1)"
                self.error(f"{init.dist} takes {len(want)} arguments ({', '.join(want)}), "
                           f"got {len(init.args)}", init.span, f"for example ~ {example}", kind="domain")
        for a in init.args:
            self._constant_expr(a)

    def _constant_expr(self, e: ast.Expr) -> None:
        """Initialiser arguments: numbers, sizes, constants and arithmetic on them (walked with
        an explicit stack, left to right)."""
        stack = [e]
        while stack:
            e = stack.pop()
            e.type = Type()  # scalar, no variables: what lowering needs to know
            if isinstance(e, ast.Num):
                continue
            if isinstance(e, ast.Name):
                if e.id in self.sizes or e.id in self.consts:
                    continue
                if e.id in self.spans:
                    self.error(f"an initialiser can use numbers, sizes and constants, not '{e.id}'", e.span,
                               kind="domain")
                else:
                    self._unknown(e.id, e.span, list(self.sizes) + list(self.consts),
                                  "an initialiser can use numbers, sizes and constants of the model header")
            elif isinstance(e, ast.BinOp) and e.op != "@":
                stack += [e.right, e.left]
            elif isinstance(e, ast.Neg):
                stack.append(e.operand)
            elif isinstance(e, ast.Call) and e.fn in FUNCTIONS and len(e.args) == 1:
                stack.append(e.args[0])
            else:
                self.error("an initialiser must be a constant expression", e.span, kind="domain")

    # energy -----------------------------------------------------------------
    def _energy(self, e: ast.EnergyDecl) -> None:
        t = self.expr(e.expr)
        if t is not None and not t.is_scalar:
            self.error(f"an energy term must be a scalar, but this one has shape {shape_str(t.shape)}",
                       e.expr.span, "wrap it in sum(...) to add up its elements", kind="shape")
        directed = sorted((t.groups if t is not None else set()) & {c.group for c in self.conditionals})
        if directed:
            names = ", ".join(f"'{n}'" for n in directed)
            self.error(f"{names} {'is' if len(directed) == 1 else 'are'} defined by a conditional (~) and cannot "
                       f"appear in an energy", e.expr.span,
                       "a variable is either in the undirected part (energy) or directed (~), not both",
                       kind="directed")

    def expr(self, e: ast.Expr) -> Optional[Type]:
        t = getattr(self, "_" + type(e).__name__.lower())(e)
        e.type = t
        return t

    def _num(self, e: ast.Num) -> Type:
        return Type((), frozenset(), isinstance(e.value, int))

    def _lookup_index(self, name: str) -> bool:
        return any(name in scope for scope in self.scopes)

    def _name(self, e: ast.Name) -> Optional[Type]:
        if e.id in self.broken:
            return None
        if self._lookup_index(e.id):
            return Type((), frozenset(), True)
        if e.id in self.sizes:
            return Type((), frozenset(), True)
        if e.id in self.consts:
            return Type()
        if e.id in self.groups:
            if self.in_discriminator and not self._discriminator_may_read(e):
                return None
            return Type(self.groups[e.id].shape, frozenset([e.id]))
        if e.id in self.params:
            return Type(self.params[e.id].shape)
        if self._is_let(e.id):
            return self._let_use(e)
        self._unknown(e.id, e.span)
        return None

    def _unknown(self, name: str, span: Span, candidates: list[str] | None = None,
                 fallback: str | None = None) -> None:
        """Report an undeclared name once per statement, with the most useful hint for where
        it is used: a size in a shape, an index in a subscript, anything in an expression."""
        key = (id(self.statement), name)
        if key in self.reported:
            return
        self.reported.add(key)
        index_names = [n for s in self.scopes for n in s]
        if candidates is None:
            if self.context == "subscript":
                candidates = index_names + list(self.sizes)
            else:
                candidates = list(self.spans) + index_names
        close = difflib.get_close_matches(name, candidates, n=1)
        if close:
            hint = f"did you mean '{close[0]}'?"
        elif fallback:
            hint = fallback
        elif self.context == "subscript":
            if index_names:
                hint = f"add it to the enclosing sum: sum[{', '.join(index_names)}, {name}](...)"
            else:
                hint = f"bind it as a summation index, as in sum[{name}](...), or declare it as a size"
        else:
            hint = (f"declare it: as a variable (visible {name}[n]: binary), a parameter "
                    f"(param {name}[n]) or a model argument ({name} = 1.0)")
        self.error(f"unknown name '{name}'", span, hint, kind="name")

    def _call(self, e: ast.Call) -> Optional[Type]:
        if e.fn not in FUNCTIONS:
            close = difflib.get_close_matches(e.fn, FUNCTIONS, n=1)
            hint = FUNCTION_HINTS.get(e.fn.lower()) or (
                f"did you mean '{close[0]}'?" if close else "the functions are " + ", ".join(FUNCTIONS))
            self.error(f"unknown function '{e.fn}'", e.span, hint, kind="name")
            for a in e.args:
                self.expr(a)
            return None
        fn = ops.FUNCTIONS[e.fn]
        if len(e.args) != fn.arity:
            self.error(f"{e.fn} takes one argument, got {len(e.args)}", e.span, kind="structure")
            return None
        if not self.in_directed and not fn.in_energy:
            self.error(f"{e.fn} cannot appear in an energy", e.span,
                       "use it in a directed conditional (x ~ ...) or an initialiser", kind="structure")
            return None
        t = self.expr(e.args[0])
        if t is None:
            return None
        if t.groups and not self.in_directed:
            names = ", ".join(sorted(t.groups))
            verb = "appears" if len(t.groups) == 1 else "appear"
            self.error(f"the energy must be a polynomial in the variables, but {names} {verb} inside "
                       f"{e.fn}(...)", e.span,
                       "functions may be applied to parameters and constants only", kind="structure")
            return None
        return Type(t.shape, frozenset())

    def _neg(self, e: ast.Neg) -> Optional[Type]:
        return self.expr(e.operand)

    def _binop(self, e: ast.BinOp) -> Optional[Type]:
        """A binary operation; a chain (a - b - c ...) is typed along its left spine with a loop,
        innermost operation first, each BinOp of it annotated with its type."""
        if e.op not in ast.CHAIN_OPS:
            return self._operation(e, self.expr(e.left), self.expr(e.right))
        first, spine = ast.left_spine(e)
        t = self.expr(first)
        for node in spine:
            t = self._operation(node, t, self.expr(node.right))
            node.type = t
        return t

    def _operation(self, e: ast.BinOp, a: Optional[Type], b: Optional[Type]) -> Optional[Type]:
        """The type of `e` from its operands' types (None: an error was reported)."""
        if a is None or b is None:
            return None
        groups = a.groups | b.groups
        if e.op == "@":
            return self._matmul(e, a, b)
        if e.op == "^":
            return self._pow(e, a, b)
        if e.op == "/" and b.groups and not self.in_directed:
            self.error(f"cannot divide by an expression of the variables ({', '.join(sorted(b.groups))})",
                       e.right.span, "the energy must be a polynomial in the variables", kind="structure")
            return None
        if a.shape and b.shape and a.shape != b.shape:
            self.error(f"shapes do not match for '{e.op}': {shape_str(a.shape)} and {shape_str(b.shape)}",
                       e.span, "element-wise operations need equal shapes, or a scalar on one side", kind="shape")
            return None
        return Type(a.shape or b.shape, groups, a.is_int and b.is_int and e.op != "/")

    def _matmul(self, e: ast.BinOp, a: Type, b: Type) -> Optional[Type]:
        if a.is_scalar or b.is_scalar:
            self.error("'@' contracts two arrays, but one side is a scalar", e.span, "use '*' to scale", kind="shape")
            return None
        if a.shape[-1] != b.shape[0]:
            self.error(f"cannot contract {shape_str(a.shape)} with {shape_str(b.shape)}: the last axis on "
                       f"the left ({a.shape[-1]}) must equal the first axis on the right ({b.shape[0]})",
                       e.span, kind="shape")
            return None
        return Type(a.shape[:-1] + b.shape[1:], a.groups | b.groups)

    def _pow(self, e: ast.BinOp, a: Type, b: Type) -> Optional[Type]:
        if not b.is_scalar or b.groups:
            self.error("an exponent must be a scalar without variables", e.right.span, kind="structure")
            return None
        if a.groups and not self.in_directed:
            k = e.right
            ok = isinstance(k, ast.Num) and isinstance(k.value, int) and 1 <= k.value <= MAX_VARIABLE_POWER
            if not ok:
                self.error("a power of variables needs a whole-number exponent from 1 to "
                           f"{MAX_VARIABLE_POWER}", e.right.span,
                           "the energy must be a polynomial in the variables", kind="structure")
                return None
        return Type(a.shape, a.groups, a.is_int and b.is_int)

    def _index(self, e: ast.Index) -> Optional[Type]:
        base = self.expr(e.base)
        for s in e.subscripts:
            if isinstance(s, ast.Slice):
                for bound in (s.lo, s.hi):
                    if bound is None:
                        continue
                    inside = sorted(_names_in(bound) & (self._all_index_names() - self.free_names))
                    if inside:
                        j = inside[0]
                        self.error(f"a slice bound cannot use the summation index '{j}' (not supported yet)",
                                   bound.span, f"sum over a bounded index instead, as in sum[k < {j}](x[k])",
                                   kind="index")
                        return None
                    self.index_poly(bound)
            else:
                self.index_poly(s)
        if base is None:
            return None
        for s, dim in zip(e.subscripts, base.shape):
            if not isinstance(s, ast.Slice):
                self._check_constant_subscript(s, dim)
        if len(e.subscripts) > len(base.shape):
            what = f"'{e.base.id}'" if isinstance(e.base, ast.Name) else "this expression"
            axes = len(base.shape)
            self.error(f"too many subscripts: {what} has {axes} ax{'i' if axes == 1 else 'e'}s "
                       f"(shape {shape_str(base.shape)}) but is given {len(e.subscripts)} subscripts", e.span,
                       kind="shape")
            return None
        shape = []
        for s, dim in zip(e.subscripts, base.shape):
            if isinstance(s, ast.Slice):
                lo = self.slice_bound(s.lo, dim, 0)
                hi = self.slice_bound(s.hi, dim, dim)
                if lo is not None and hi is not None:
                    shape.append(hi - lo)
        shape.extend(base.shape[len(e.subscripts):])
        return Type(tuple(shape), base.groups)

    def _check_constant_subscript(self, s: ast.Expr, dim: Poly) -> None:
        """A whole-number subscript (negative counts from the end) must fit the default sizes."""
        p = index_poly_of(s, self.sizes, self._all_index_names())
        if p is None or not p.is_constant():
            return
        size = dim.evaluate(self.sizes) if dim.symbols() <= set(self.sizes) else None
        if size is None:
            return
        k = p.constant
        if not -size <= k < size:
            self.error(f"subscript {k} is out of range for an axis of size {dim} ({size} with the default sizes)",
                       s.span, f"use 0 to {size - 1}, or -1 for the last element", kind="index")

    def slice_bound(self, bound: Optional[ast.Expr], dim: Poly, default: Poly) -> Optional[Poly]:
        """A slice bound; a negative literal counts from the end, as in Python."""
        if bound is None:
            return default if isinstance(default, Poly) else Poly.const(default)
        p = index_poly_of(bound, self.sizes, self._all_index_names())
        if p is None:
            return None
        if p.is_constant() and p.constant < 0:
            return dim + p
        return p

    def _all_index_names(self) -> set[str]:
        return {n for s in self.scopes for n in s}

    def index_poly(self, e: ast.Expr) -> Optional[Poly]:
        outer, self.context = self.context, "subscript"
        try:
            t = self.expr(e)
        finally:
            self.context = outer
        if t is None:
            return None
        p = index_poly_of(e, self.sizes, self._all_index_names())
        if p is None or not p.is_affine():
            self.error("a subscript must be an integer expression of index variables, sizes and whole "
                       "numbers, such as i + 1", e.span, kind="index")
            return None
        return p

    def _slice(self, e):  # only reached through _index
        return None

    def _sumall(self, e: ast.SumAll) -> Optional[Type]:
        t = self.expr(e.body)
        return Type((), t.groups) if t is not None else None

    def _sumindex(self, e: ast.SumIndex) -> Optional[Type]:
        scope: dict[str, Span] = {}
        for k, b in enumerate(e.binders):
            self._check_length(b.name, b.span, "index")
            if b.name in self.spans:
                self.error(f"index '{b.name}' has the name of a declared {self._kind(b.name)}", b.span,
                           "use a fresh name for the index", kind="name")
            elif b.name in scope or self._lookup_index(b.name):
                self.error(f"index '{b.name}' is bound twice", b.span,
                           "an inner sum needs its own index names" if b.name not in scope else None, kind="name")
            later = [x.name for x in e.binders[k:]] if b.bound is not None else []
            early = sorted((_names_in(b.bound) & set(later)) - set(scope) - self._all_index_names()) if later else []
            if early:
                j = early[0]
                if j == b.name:
                    self.error(f"the bound of index '{j}' uses '{j}' itself", b.bound.span,
                               f"bound it by a size or an earlier index, as in sum[{j} < n]", kind="index")
                else:
                    self.error(f"index '{j}' is used in the bound of '{b.name}' before it is bound", b.bound.span,
                               f"bind '{j}' first: sum[{j}, {b.name} {b.op} {self._text(b.bound.span)}](...)",
                               kind="index")
            elif b.bound is not None:
                self.scopes.append(scope)
                self.index_poly(b.bound)
                self.scopes.pop()
            scope[b.name] = b.span
        self.scopes.append(scope)
        t = self.expr(e.body)
        self.scopes.pop()
        used = _names_in(e.body)
        for b in e.binders:
            if b.name not in used:
                self.error(f"index '{b.name}' is not used in the sum", b.span,
                           "use it in the body, or remove it from sum[...]", kind="index")
        if t is None:
            return None
        if not t.is_scalar:
            self.error(f"the body of sum[...] must be a scalar, but it has shape {shape_str(t.shape)}",
                       e.body.span, "subscript every array with the summation indices", kind="shape")
            return None
        return Type((), t.groups)


def _nonpositive_literal(init: ast.Init) -> bool:
    """`= 0` or `= -1`: a constant start that a positive parameter cannot take."""
    if init.kind != "value":
        return False
    e = init.args[0]
    if isinstance(e, ast.Neg) and isinstance(e.operand, ast.Num):
        return True
    return isinstance(e, ast.Num) and e.value <= 0


def _names_in(e) -> set[str]:
    if not isinstance(e, ast.Node):
        return set()
    return {n.id for n in ast.walk(e) if isinstance(n, ast.Name)}


def integer_poly(e: ast.Expr, leaf) -> Optional[Poly]:
    """The polynomial of +, - and * over `e`'s leaves (leaf(node) -> Poly or None; None
    anywhere gives None), evaluated with an explicit stack so a long chain needs no recursion.
    Every leaf is visited, left to right (leaf may report errors)."""
    values: list = []
    stack: list = [(e, False)]
    while stack:
        node, done = stack.pop()
        if done:
            if isinstance(node, ast.Neg):
                a = values.pop()
                values.append(-a if a is not None else None)
            else:
                b, a = values.pop(), values.pop()
                values.append(None if a is None or b is None else
                              a + b if node.op == "+" else a - b if node.op == "-" else a * b)
        elif isinstance(node, ast.BinOp) and node.op in ("+", "-", "*"):
            stack += [(node, True), (node.right, False), (node.left, False)]
        elif isinstance(node, ast.Neg):
            stack += [(node, True), (node.operand, False)]
        else:
            values.append(leaf(node))
    return values[0]


def index_poly_of(e: ast.Expr, sizes, index_names) -> Optional[Poly]:
    """The integer polynomial an index/size expression denotes, or None."""
    def leaf(node):
        if isinstance(node, ast.Num):
            return Poly.const(node.value) if isinstance(node.value, int) else None
        if isinstance(node, ast.Name) and (node.id in index_names or node.id in sizes):
            return Poly.sym(node.id)
        return None

    return integer_poly(e, leaf)


def check(model: ast.Model, source: Source) -> CheckedModel:
    return Checker(model, source).run()
