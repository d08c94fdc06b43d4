"""Fuzzing the compiler: generated .gdl inputs against the promise every input must keep.

    python bench/fuzz.py --inputs 100000 --seed 1 --workers 2 --out /tmp/fuzz_campaign
    python bench/fuzz.py --inputs 2000 --seed 7 --workers 1           # a quick look
    python bench/fuzz.py --replay 1:4242                             # input 4242 of seed 1, checked again
    python bench/fuzz.py --replay 1:4242 --show                      # ... and printed
    python bench/fuzz.py --locale 40 --seed 1                        # a sample through `gdsl check`
                                                                     # under LC_ALL=C PYTHONUTF8=0

The promise (`check`): for any text, `driver.compile_source(Source(text), until="py")`
either raises a GdslError (a ModelErrors) whose every error has a span that lies in the text
and a kind of `errors.KINDS`, and whose report formats; or returns a model whose generated
Python passes `compile()`. Never a CompilerBug, another exception, or more than LIMIT
seconds.

The inputs (`generate(seed, index)`: input `index` of a campaign depends on nothing else, so
`--replay` regenerates any of them) come from these strategies:

    grammar     a random derivation of grammars/gdl.lark's rules (as lark compiled them):
                well-formed text, names and numbers drawn from pools; mostly checker errors
    model       a plausible model of a shipped kind built from templates: energies (biases,
                couplings, lateral and lattice terms, three-way sums, real quadratics,
                functions of parameters, slices, bounded and guarded index sums), directed
                conditionals (belief nets, FVSBN/NADE-style autoregressive definitions,
                normal and categorical variables), lets and guides; sometimes with one
                semantic slip (an undeclared name, a wrong size, a cube)
    mutant      a shipped model (models/*.gdl) or a generated one after 1-4 edits: byte and
                character flips, token deletions, duplications, swaps and replacements,
                splices of other models, extreme numbers, deep nesting, Unicode, line ends
    numbers     huge integers (4,000-10,000 digits), 1e99999, tiny and subnormal floats,
                digits of other scripts (U+0663, fullwidth), malformed literals, in every
                place a number goes
    unicode     non-ASCII identifiers, comments, white space, controls, a BOM, surrogates
    names       names of 65 to 5,000 characters, declared and used
    large       20 KB - 200 KB inputs of one error kind each (misread names, unbalanced
                brackets, flat sums, comments, many statements, deep nesting, long lines);
                the 1 MB versions are in tests/test_fuzz.py, with their time budgets

Failing inputs are written to --out/<outcome>/ (the text, and a .txt with the seed, index,
strategy and what went wrong); --out/summary.json holds the counts.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gdsl.driver import compile_source  # noqa: E402
from gdsl.errors import KINDS, CompilerBug, GdslError, Source  # noqa: E402

LIMIT = 5.0  # seconds per input
MODELS = {p.stem: p.read_text(encoding="utf-8") for p in sorted((ROOT / "models").glob("*.gdl"))}
STRATEGIES = {  # name -> weight in a campaign
    "grammar": 14,
    "model": 24,
    "mutant": 40,
    "numbers": 8,
    "unicode": 6,
    "names": 4,
    "large": 0.4,
}
OUTCOMES = ("accepted", "errors", "bug", "exception", "bad-error", "bad-python", "slow")
FAILURES = ("bug", "exception", "bad-error", "bad-python", "slow")


# --- the promise -------------------------------------------------------------------------
class Timeout(BaseException):
    """Raised by the alarm in the middle of a check (a BaseException: the driver turns every
    Exception into a CompilerBug)."""


def check(text: str, limit: float | None = LIMIT) -> dict:
    """Compile `text` and judge the result: {"outcome", "seconds", "kinds", "detail"}.
    With `limit`, an alarm stops a check after `limit` seconds (main thread only); the time
    includes formatting the error report, which the command line prints.

    Seconds are this process's CPU time, not the wall clock: the compiler does no I/O, and
    other work on the machine (a second test worker, a compile in the background) must not
    make a linear check look slow."""
    armed = limit is not None and _can_alarm()
    if armed:
        previous = signal.signal(signal.SIGPROF, _alarm)
        signal.setitimer(signal.ITIMER_PROF, limit)
    start = time.process_time()
    try:
        outcome, kinds, detail = _compile_and_judge(text)
    except Timeout as e:
        outcome, kinds, detail = "slow", [], f"stopped after {limit} s in\n" + _trace(e)
    finally:
        if armed:
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.signal(signal.SIGPROF, previous)
    seconds = time.process_time() - start
    if limit is not None and seconds > limit and outcome != "slow":
        outcome, detail = "slow", f"took {seconds:.1f} s (then: {outcome} {detail})".strip()
    return {"outcome": outcome, "seconds": seconds, "kinds": kinds, "detail": detail}


def _compile_and_judge(text: str) -> tuple[str, list, str]:
    try:
        compiled = compile_source(Source(text, "fuzz.gdl"), until="py")
    except Timeout:
        raise
    except GdslError as e:
        errors = getattr(e, "errors", None) or [e]
        kinds = [getattr(err, "kind", None) for err in errors]
        return "errors", kinds, _judge_errors(e, errors, text)
    except CompilerBug as e:
        return "bug", [], _trace(e)
    except Exception as e:  # noqa: BLE001 - anything else breaks the promise
        return "exception", [], _trace(e)
    outcome, detail = _judge_python(compiled.python)
    return outcome, [], detail


def _judge_python(python) -> tuple[str, str]:
    if not isinstance(python, str) or not python:
        return "bad-python", f"no generated source ({type(python).__name__})"
    try:
        compile(python, "fuzz_model.py", "exec")
    except Exception as e:  # noqa: BLE001 - SyntaxError, ValueError (NUL), UnicodeEncodeError ...
        return "bad-python", f"{type(e).__name__}: {e}"
    return "accepted", ""


def _judge_errors(e: GdslError, errors, text: str) -> str:
    """'' if every error is well formed: a span inside the text, a known kind; and the
    report formats (the command line prints it)."""
    lines = text.replace("\r\n", "\n").split("\n")
    problems = []
    for err in errors:
        span, kind = getattr(err, "span", None), getattr(err, "kind", None)
        if kind not in KINDS:
            problems.append(f"unknown kind {kind!r}: {err.message}")
        if span is None:
            problems.append(f"no span: {err.message}")
        elif not (1 <= span.line <= len(lines) and span.column >= 1 and span.end_line >= span.line
                  and span.column <= len(lines[span.line - 1]) + 1):
            problems.append(f"span {span.line}:{span.column}-{span.end_line}:{span.end_column} outside "
                            f"the text ({len(lines)} lines): {err.message}")
    if not errors:
        problems.append("a ModelErrors without errors")
    try:
        report = e.format()
        if not isinstance(report, str) or "fuzz.gdl" not in report:
            problems.append("the report does not name the file")
    except Exception as exc:  # noqa: BLE001
        problems.append(f"the report does not format: {type(exc).__name__}: {exc}")
    if problems:
        return "bad-error: " + "; ".join(problems[:5])
    return ""


def _trace(e: BaseException) -> str:
    cause = e.__cause__ or e
    frames = traceback.extract_tb(cause.__traceback__)[-8:]
    where = "".join(traceback.format_list(frames))
    return f"{type(e).__name__}: {str(e)[:2000]}\n{where}{type(cause).__name__}: {str(cause)[:2000]}"


def _alarm(signum, frame):
    raise Timeout()


def _can_alarm() -> bool:
    import threading

    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def outcome_of(result: dict) -> str:
    """The outcome, with error results that broke the promise moved to 'bad-error'."""
    if result["outcome"] == "errors" and result["detail"].startswith("bad-error"):
        return "bad-error"
    return result["outcome"]


# --- pools ---------------------------------------------------------------------------------
FUNCTIONS = ("exp", "log", "sqrt", "tanh", "sigmoid", "softplus", "relu", "log_sigmoid")
NAME_POOL = ("v", "h", "x", "y", "z", "s", "r", "W", "b", "c", "L", "J", "a", "i", "j", "k", "n", "m",
             "nv", "nh", "sigma", "binary", "spin", "real", "categorical", "bernoulli", "normal",
             "uniform", "logits", "probs", "mean", "std", "symmetric", "zero_diag", "positive", "mask",
             "exp", "log", "tanh", "sigmoid", "softplus", "relu", "step", "e", "h1", "h2", "W1", "d",
             "visible_bias", "summary", "energy_scale", "_", "__import__", "self", "np", "numba", "None")
SMALL_NUMBERS = ("0", "1", "2", "3", "4", "10", "0.5", "1.0", "0.01", ".5", "1.", "1e-3", "2.5E4", "100",
                 "0.0", "784", "1e3", "7")
VOCABULARY = ("(", ")", "[", "]", "{", "}", ",", ":", "~", "=", "+", "-", "*", "/", "@", "^", "<", "<=",
              "sum", "sum[i]", "sum[i, j < i]", "exp", "v", "h", "i", "j", "0", "2.5", "1e999", "energy ",
              "param ", "visible ", "latent ", "let ", "guide {", "model", "binary", "real", "spin",
              "categorical(2)", "#", "\n", "$", "**", ";", "'", "\"", "`", "\u2028", "\r", "\x00", "\t",
              "symmetric", "normal(0, 1)", "^3", "^2", "^-1", "0.0", "99999999999999999999", "[:-1]",
              "[1:]", "[i + 1]", "[:, :i]", "bernoulli(logits = ", "~ normal(mean = 0, std = 1)", "x[i] ~ ",
              " @ W @ ", "sqrt(", "log(0)", "/ 0", "1 / 0.0", "nan", "inf", "-", "--", "+-", ":::", ",,")
EXTREME_NUMBERS = ("1e99999", "1e-99999", "1e308", "1.8e308", "1e309", "2e-324", "4.9e-324", "2.4e-324",
                   "5e-324", "1e-323", "9223372036854775807", "9223372036854775808", "18446744073709551616",
                   "0" * 500 + "1", "0." + "0" * 400 + "1", "9" * 309 + ".0", "1" + "0" * 308,
                   "1." + "9" * 2000, "0e0", "00", "007", "1e0000000000000000000001", "123456789.123456789e-5")
UNICODE_CHARS = ("\u00e9", "\u03a9", "\u4e2d", "\u0663", "\uff15", "\u0967", "\u00b2", "\u2167", "\u00a0",
                 "\u2028", "\u2029", "\u3000", "\u200b", "\u200d", "\ufeff", "\u0301", "\u202e", "\u2066",
                 "\x00", "\x1b", "\x7f", "\x85", "\x0b", "\x0c", "\x1c", "\r", "\ud800", "\udfff",
                 "\U0001f600", "\U00010000", "\u212a", "\ufb01", "\u0130", "\u017f", "\u2212", "\uff08",
                 "\uff0b", "\u00b7", "\ufffd", "\uffff", "\U0010ffff", "\u0660", "\u06f3", "\u1040", "\u0e51")


def _number(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.8:
        return rng.choice(SMALL_NUMBERS)
    if r < 0.95:
        return rng.choice(EXTREME_NUMBERS)
    return _huge_number(rng)


def _huge_number(rng: random.Random) -> str:
    digits = "".join(rng.choice("0123456789") for _ in range(8)) * (rng.randint(4000, 10000) // 8)
    digits = str(rng.randint(1, 9)) + digits
    form = rng.randrange(5)
    if form == 0:
        return digits
    if form == 1:
        return digits + ".0"
    if form == 2:
        return "0." + digits
    if form == 3:
        return "1e" + digits
    return "1e-" + digits


# --- 1. grammar walk -----------------------------------------------------------------------
class GrammarWalk:
    """Random derivations of the grammar lark compiled from grammars/gdl.lark (the parser's own
    rules, so a change of the grammar changes what is generated)."""

    def __init__(self):
        from gdsl.frontend.parser import _parser

        lark_parser = _parser()
        self.rules: dict[str, list[list]] = {}
        for rule in lark_parser.rules:
            self.rules.setdefault(rule.origin.name, []).append([(s.name, s.is_term) for s in rule.expansion])
        self.literal = {t.name: t.pattern.value for t in lark_parser.terminals if t.pattern.type == "str"}
        self.patterns = {t.name: re.compile(t.pattern.to_regexp()) for t in lark_parser.terminals}
        self.height = self._heights()

    def _heights(self) -> dict[str, int]:
        height: dict[str, float] = {name: float("inf") for name in self.rules}
        changed = True
        while changed:
            changed = False
            for name, expansions in self.rules.items():
                for expansion in expansions:
                    h = 1 + max((0 if term else height[sym] for sym, term in expansion), default=0)
                    if h < height[name]:
                        height[name], changed = h, True
        return height

    def expansion_height(self, expansion) -> float:
        return 1 + max((0 if term else self.height[sym] for sym, term in expansion), default=0)

    def derive(self, rng: random.Random, budget: int) -> str:
        out: list[str] = []
        stack: list[tuple[str, bool, int]] = [("start", False, 0)]
        while stack:
            sym, term, depth = stack.pop()
            if term:
                out.append(self.terminal(sym, rng))
                continue
            expansions = self.rules[sym]
            if depth >= budget:
                low = min(self.expansion_height(e) for e in expansions)
                expansions = [e for e in expansions if self.expansion_height(e) == low]
            expansion = rng.choice(expansions)
            for s, t in reversed(expansion):
                stack.append((s, t, depth + 1))
        return _join(out, rng)

    def terminal(self, name: str, rng: random.Random) -> str:
        if name in self.literal:
            return self.literal[name]
        if name == "NAME":
            return rng.choice(NAME_POOL)
        if name == "NUMBER":
            return _number(rng)
        if name == "ROLE":
            return rng.choice(("visible", "latent"))
        if name == "BOUND_OP":
            return rng.choice(("<", "<="))
        pattern = self.patterns.get(name)
        for candidate in ("x", "1", "-", "<", "visible"):
            if pattern is not None and pattern.fullmatch(candidate):
                return candidate
        return "x"


def _join(tokens: list[str], rng: random.Random) -> str:
    out = []
    for tok in tokens:
        r = rng.random()
        out.append("\n" if r < 0.08 else "  " if r < 0.1 else " ")
        out.append(tok)
    return "".join(out).strip() + "\n"


_WALK: GrammarWalk | None = None


def gen_grammar(rng: random.Random) -> str:
    global _WALK
    if _WALK is None:
        _WALK = GrammarWalk()
    return _WALK.derive(rng, rng.randint(4, 14))


# --- 2. plausible models ---------------------------------------------------------------------
class ModelBuilder:
    """A model of one of the shipped kinds, from templates, with declarations kept consistent."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.sizes: dict[str, int] = {}
        self.consts: dict[str, str] = {}
        self.groups: dict[str, tuple] = {}  # name -> (role, domain, shape)
        self.params: dict[str, tuple] = {}  # name -> (shape, extra)
        self.statements: list[str] = []
        self.guide: list[str] = []
        self.counter = 0

    # declarations
    def size(self) -> str:
        rng = self.rng
        if self.sizes and rng.random() < 0.6:
            return rng.choice(list(self.sizes))
        name = rng.choice(("n", "m", "k", "d", "nv", "nh", "n1", "n2", "nz", "rows"))
        while name in self.sizes:
            name += "x"
        self.sizes[name] = rng.choice((1, 2, 3, 3, 4, 5, 6))
        return name

    def const(self) -> str:
        rng = self.rng
        name = rng.choice(("sigma", "beta", "scale", "temp"))
        if name not in self.consts:
            self.consts[name] = rng.choice(("1.0", "0.5", "2.0", "0.01", "-0.5", "1e3"))
        return name

    def fresh(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}{self.counter}"

    def group(self, domain: str | None = None, rank: int | None = None, role: str | None = None,
              shape: tuple | None = None) -> str:
        rng = self.rng
        name = self.fresh(rng.choice(("v", "h", "x", "y", "s", "r", "g")))
        domain = domain or rng.choice(("binary", "binary", "binary", "spin", "real", "categorical"))
        if shape is None:
            rank = rank if rank is not None else rng.choice((0, 1, 1, 1, 2))
            shape = tuple(self.size() for _ in range(rank))
        if domain == "categorical":
            if not shape:
                shape = (self.size(),)
            domain = f"categorical({shape[-1]})"
        role = role or rng.choice(("visible", "latent"))
        self.groups[name] = (role, domain, shape)
        return name

    def param(self, shape: tuple, stem: str = "W", constraints: str = "") -> str:
        name = self.fresh(stem)
        self.params[name] = (shape, constraints)
        return name

    def dims(self, shape: tuple) -> str:
        return f"[{', '.join(shape)}]" if shape else ""

    def init(self) -> str:
        rng = self.rng
        return rng.choice(("", "", " ~ normal(0, 0.01)", " ~ normal(0, 1)", " ~ uniform(-1, 1)", " = 0.5",
                           " = -1", f" ~ normal(0, 1 / sqrt({self.size()}))", " = 1e-3"))

    def text(self, name: str | None = None) -> str:
        rng = self.rng
        args = [f"{k} = {v}" for k, v in self.sizes.items()] + [f"{k} = {v}" for k, v in self.consts.items()]
        rng.shuffle(args)
        lines = []
        for g, (role, domain, shape) in self.groups.items():
            lines.append(f"{role} {g}{self.dims(shape)}: {domain}")
        for p, (shape, constraints) in self.params.items():
            init = self.init() if "positive" not in constraints else " = 2.0"
            lines.append(f"param {p}{self.dims(shape)}{constraints}{init}")
        lines += self.statements
        if rng.random() < 0.5:
            rng.shuffle(lines)
        if self.guide:
            lines.append("guide {\n        " + "\n        ".join(self.guide) + "\n    }")
        body = "\n    ".join(lines)
        comma = "," if args and rng.random() < 0.1 else ""
        head = f"# generated\nmodel {name or self.fresh('m')}({', '.join(args)}{comma}) {{\n    "
        return head + body + "\n}\n"


def _energy_terms(b: ModelBuilder) -> list[str]:
    """Energy terms over fresh groups and parameters, chosen from the shipped kinds."""
    rng = b.rng
    terms = []
    kind = rng.choice(("rbm", "rbm", "bm", "ising", "grbm", "softmax", "threeway", "chain", "functions",
                       "slices", "index", "scalar", "dbm"))
    if kind in ("rbm", "bm", "grbm", "dbm"):
        v = b.group("real" if kind == "grbm" else rng.choice(("binary", "binary", "spin")), 1, "visible")
        layers = [v] + [b.group("binary", 1, "latent") for _ in range(2 if kind == "dbm" else 1)]
        for lower, upper in zip(layers, layers[1:]):
            w = b.param((b.groups[lower][2][0], b.groups[upper][2][0]), "W", rng.choice(("", "", " ~ normal(0, 0.01)")))
            terms.append(rng.choice((f"-({lower} @ {w} @ {upper})", f"-sum[i, j]({lower}[i] * {w}[i, j] * {upper}[j])",
                                     f"-{lower} @ {w} @ {upper}")))
        for g in layers:
            bias = b.param(b.groups[g][2], "b")
            terms.append(f"-{bias} @ {g}")
        if kind == "bm":
            n = b.groups[v][2][0]
            lat = b.param((n, n), "L", rng.choice((": symmetric, zero_diag", ": symmetric", "")))
            terms.append(f"-0.5 * ({v} @ {lat} @ {v})")
        if kind == "grbm":
            terms.append(rng.choice((f"sum(({v} - {b.param(b.groups[v][2], 'mu')})^2) / (2 * {b.const()}^2)",
                                     f"sum({v}^2) / 2", f"sum(exp({b.param(b.groups[v][2], 'lp')}) * {v}^2) / 2")))
    elif kind == "ising":
        s = b.group(rng.choice(("spin", "binary")), 2)
        j = b.param((), "J")
        terms.append(f"-{j} * sum[i, j]({s}[i, j] * {s}[i + 1, j]) - {j} * sum[i, j]({s}[i, j] * {s}[i, j + 1])")
        if rng.random() < 0.3:
            terms.append(f"-{j} * sum[i, j]({s}[i, j] * {s}[i + 1, j + 1])")
        terms.append(f"-{b.param((), 'f')} * sum({s})")
    elif kind == "softmax":
        v = b.group("binary", 1, "visible")
        y = b.group("categorical", 1, "visible")
        h = b.group("binary", 1, "latent")
        u = b.param((b.groups[y][2][0], b.groups[h][2][0]), "U")
        w = b.param((b.groups[v][2][0], b.groups[h][2][0]), "W")
        terms.append(f"-({v} @ {w} @ {h}) - ({y} @ {u} @ {h}) - {b.param(b.groups[y][2], 'd')} @ {y}")
    elif kind == "threeway":
        x, y, h = (b.group("binary", 1) for _ in range(3))
        w = b.param(tuple(b.groups[g][2][0] for g in (x, y, h)), "W")
        terms.append(f"-sum[i, j, k]({w}[i, j, k] * {x}[i] * {y}[j] * {h}[k])")
    elif kind == "chain":
        x = b.group(rng.choice(("binary", "spin")), 1)
        terms.append(rng.choice((f"-sum({x}[1:] * {x}[:-1])", f"-{b.param((), 'J')} * sum[i]({x}[i] * {x}[i + 1])",
                                 f"-sum[i]({x}[i] * {x}[i + 2])", f"-{x}[0] * {x}[-1]")))
    elif kind == "functions":
        r = b.group("real", 1)
        h = b.group("binary", (1 if rng.random() < 0.8 else 0), shape=b.groups[r][2])
        lp, a = b.param(b.groups[r][2], "lp"), b.param((), "a")
        terms.append(f"sum(exp({lp}) * {r}^2) / 2 - sum(sigmoid({b.param(b.groups[h][2], 'b')}) * {h})")
        terms.append(f"-{rng.choice(FUNCTIONS)}({a}) * {rng.choice(('sqrt(2.0)', '1', b.size()))} * sum({r} * {h})")
    elif kind == "slices":
        v = b.group("binary", 1)
        h = b.group("binary", 1)
        n, k = b.groups[v][2][0], b.groups[h][2][0]
        w = b.param((n, k), "W")
        terms.append(rng.choice((f"-sum({w}[:, 0] * {v})", f"-{v}[0] * {h}[{k} - 1]",
                                 f"-{v}[:{n} - 1] @ {w}[1:, :] @ {h}", f"-sum({v}[1:] * {v}[:-1])")))
    elif kind == "index":
        x = b.group("binary", 1)
        h = b.group("binary", 1)
        n, k = b.groups[x][2][0], b.groups[h][2][0]
        terms.append(rng.choice((f"-sum[i, j]({x}[i] * {b.param((n, k), 'W')}[i, j] * {h}[j])",
                                 f"-sum[i, j < i]({b.param((n, n), 'L')}[i, j] * {x}[i] * {x}[j])",
                                 f"-sum[i <= 2]({x}[i])", f"-sum[i](i * {x}[i]) / {n}",
                                 f"-sum[i]({h}[i] * {x}[2 * i])",
                                 f"-sum[i]({x}[i] * sum[j]({b.param((n, k), 'W')}[i, j] * {h}[j]))",
                                 f"-sum[i]({x}[i] * ({b.param((n, k), 'W')}[i] @ {h}))")))
    else:  # scalar
        g = b.group("binary", 0)
        h = b.group("binary", 1)
        terms.append(f"-{g} * sum({h}) - {b.param((), 'c')} * {g}")
    for g, (role, domain, shape) in b.groups.items():  # real groups need a quadratic self-term
        if domain == "real" and not any(f"{g}^2" in t or f"{g} - " in t for t in terms) and rng.random() < 0.9:
            terms.append(f"sum({g}^2) / 2" if shape else f"{g}^2 / 2")
    return terms


def _directed(b: ModelBuilder) -> None:
    """Conditionals of a directed kind (b.statements), with a guide sometimes."""
    rng = b.rng
    kind = rng.choice(("sbn", "fvsbn", "nade", "vae", "dbn", "categorical", "let"))
    if kind in ("sbn", "dbn", "let"):
        top = b.group("binary", 1, "latent")
        if kind == "dbn":
            other = b.group("binary", 1, "latent")
            w = b.param((b.groups[top][2][0], b.groups[other][2][0]), "W")
            b.statements.append(f"energy -({top} @ {w} @ {other}) - {b.param(b.groups[top][2], 'c')} @ {top}")
        else:
            b.statements.append(f"{top} ~ bernoulli(logits = {b.param(b.groups[top][2], 'c')})")
        v = b.group("binary", 1, "visible")
        w = b.param((b.groups[v][2][0], b.groups[top][2][0]), "W")
        logits = f"{w} @ {top} + {b.param(b.groups[v][2], 'b')}"
        if kind == "let":
            e = b.fresh("e")
            b.statements.append(f"let {e} = {rng.choice(FUNCTIONS)}({logits})")
            logits = e
        b.statements.append(f"{v} ~ bernoulli({rng.choice(('logits', 'logits', 'probs'))} = {logits})")
        if kind == "sbn" and rng.random() < 0.7:
            r = b.param((b.groups[top][2][0], b.groups[v][2][0]), "R")
            b.guide.append(f"{top} ~ bernoulli(logits = {r} @ {v} + {b.param(b.groups[top][2], 'd')})")
    elif kind in ("fvsbn", "nade"):
        x = b.group("binary", 1, "visible")
        d = b.groups[x][2][0]
        if kind == "fvsbn":
            w = b.param((d, d), "W")
            body = rng.choice((f"sum[j < i]({w}[i, j] * {x}[j])", f"{w}[i, :i] @ {x}[:i]", f"{x}[i - 1]"))
        else:
            nh = b.size()
            w, v = b.param((nh, d), "W"), b.param((d, nh), "V")
            body = f"{v}[i] @ {rng.choice(FUNCTIONS)}({b.param((nh,), 'c')} + {w}[:, :i] @ {x}[:i])"
        b.statements.append(f"{x}[i] ~ bernoulli(logits = {b.param((d,), 'b')}[i] + {body})")
    elif kind == "vae":
        z = b.group("real", 1, "latent")
        x = b.group("binary", 1, "visible")
        nz, d, nh = b.groups[z][2][0], b.groups[x][2][0], b.size()
        b.statements.append(f"{z} ~ normal({rng.choice(('0, 1', 'mean = 0, std = 1', '0.0, exp(0.5)'))})")
        wh, wo = b.param((nh, nz), "Wh"), b.param((d, nh), "Wo")
        b.statements.append(f"{x} ~ bernoulli(logits = {wo} @ {rng.choice(FUNCTIONS)}({wh} @ {z} + "
                            f"{b.param((nh,), 'bh')}) + {b.param((d,), 'bo')})")
        if rng.random() < 0.8:
            e = b.fresh("e")
            b.guide.append(f"let {e} = tanh({b.param((nh, d), 'Ex')} @ {x} + {b.param((nh,), 'be')})")
            b.guide.append(f"{z} ~ normal(mean = {b.param((nz, nh), 'Em')} @ {e} + {b.param((nz,), 'bm')}, "
                           f"std = exp({b.param((nz, nh), 'Es')} @ {e} + {b.param((nz,), 'bs')}))")
    else:  # categorical
        h = b.group("binary", 1, "latent")
        y = b.group("categorical", 1, "visible")
        b.statements.append(f"{h} ~ bernoulli(logits = {b.param(b.groups[h][2], 'c')})")
        u = b.param((b.groups[y][2][0], b.groups[h][2][0]), "U")
        b.statements.append(f"{y} ~ categorical(logits = {u} @ {h} + {b.param(b.groups[y][2], 'd')})")
    # declarations written as `visible x[d] ~ ...` in one statement, sometimes
    for k, stmt in enumerate(b.statements):
        m = re.match(r"([A-Za-z_]\w*) ~ (.*)$", stmt)
        if m and m.group(1) in b.groups and rng.random() < 0.5:
            role, domain, shape = b.groups.pop(m.group(1))
            b.statements[k] = f"{role} {m.group(1)}{b.dims(shape)} ~ {m.group(2)}"


def _slip(text: str, b: ModelBuilder) -> str:
    """One semantic mistake: an undeclared or misspelt name, a cube, a wrong size, a duplicate."""
    rng = b.rng
    names = [n for n in list(b.groups) + list(b.params) if re.search(rf"\b{n}\b", text)]
    r = rng.random()
    if names and r < 0.3:
        name = rng.choice(names)
        spots = [m.start() for m in re.finditer(rf"\b{name}\b", text)]
        k = rng.choice(spots)
        return text[:k] + rng.choice((name + "q", "undeclared", name.upper(), "exp", "i")) + text[k + len(name):]
    if r < 0.45:
        return re.sub(r"\^2", rng.choice(("^3", "^2.5", "^0", "^-1", "^9")), text, count=1)
    if r < 0.6:
        return re.sub(r"= (\d+)", lambda m: "= " + rng.choice(("0", "-1", "1.0", "100000", "2")), text, count=1)
    if r < 0.75:
        lines = text.split("\n")
        k = rng.randrange(2, max(3, len(lines) - 1))
        return "\n".join(lines[:k] + [lines[min(k, len(lines) - 2)]] + lines[k:])
    if r < 0.9:
        return re.sub(r"\b(binary|spin)\b", rng.choice(("real", "categorical(2)", "spin", "binary", "bool")), text,
                      count=1)
    return re.sub(r"\bsum\[i\]", "sum[i, i]", text, count=1)


def gen_model(rng: random.Random) -> str:
    b = ModelBuilder(rng)
    if rng.random() < 0.62:
        for _ in range(rng.choice((1, 1, 1, 2))):
            for term in _energy_terms(b):
                b.statements.append(f"energy {term}")
        if rng.random() < 0.3:  # merge them into one statement
            energies = [s[7:] for s in b.statements if s.startswith("energy ")]
            b.statements = [s for s in b.statements if not s.startswith("energy ")]
            b.statements.append("energy " + " + ".join(f"({e})" if rng.random() < 0.3 else e for e in energies))
    else:
        _directed(b)
    text = b.text()
    if rng.random() < 0.2:
        text = _slip(text, b)
    return text


# --- 3. mutants --------------------------------------------------------------------------
def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+|\s+|#[^\n]*|.", text, re.S)


def _base(rng: random.Random) -> str:
    return rng.choice(list(MODELS.values())) if rng.random() < 0.6 else gen_model(rng)


def _mutate_once(text: str, rng: random.Random) -> str:
    op = rng.choice(("flip_byte", "flip_char", "delete", "duplicate", "swap", "replace", "insert", "splice",
                     "number", "nest", "unicode", "line_ends", "truncate", "delete_line", "duplicate_line"))
    if not text:
        return rng.choice(VOCABULARY)
    if op == "flip_byte":
        data = bytearray(text.encode("utf-8", "surrogatepass"))
        k = rng.randrange(len(data))
        data[k] ^= 1 << rng.randrange(8)
        return data.decode("utf-8", rng.choice(("replace", "surrogateescape", "ignore")))
    if op == "flip_char":
        k = rng.randrange(len(text))
        ch = chr(rng.randrange(0x20, 0x7f) if rng.random() < 0.7 else rng.randrange(1, 0x3000))
        return text[:k] + ch + text[k + 1:]
    if op == "truncate":
        return text[:rng.randrange(len(text))]
    if op in ("delete_line", "duplicate_line"):
        lines = text.split("\n")
        k = rng.randrange(len(lines))
        if op == "delete_line":
            del lines[k]
        else:
            lines.insert(k, lines[k])
        return "\n".join(lines)
    if op == "line_ends":
        return text.replace("\n", rng.choice(("\r\n", "\r", "\u2028", "\n\n", "\x0c\n", "\n\r")))
    parts = _tokens(text)
    k = rng.randrange(len(parts))
    if op == "delete":
        del parts[k:k + rng.choice((1, 1, 2, 5))]
    elif op == "duplicate":
        parts.insert(k, parts[k])
    elif op == "swap" and k + 2 < len(parts):
        parts[k], parts[k + 2] = parts[k + 2], parts[k]
    elif op == "replace":
        parts[k] = rng.choice(VOCABULARY)
    elif op == "insert":
        parts.insert(k, rng.choice(VOCABULARY))
    elif op == "splice":
        other = _tokens(rng.choice(list(MODELS.values())))
        a = rng.randrange(len(other))
        parts[k:k + rng.randrange(0, 12)] = other[a:a + rng.randrange(1, 40)]
    elif op == "number":
        spots = [j for j, p in enumerate(parts) if re.fullmatch(r"\d+(\.\d*)?", p)] or [k]
        j = rng.choice(spots)
        parts[j] = rng.choice(EXTREME_NUMBERS) if rng.random() < 0.7 else _huge_number(rng)
    elif op == "nest":
        spots = [j for j, p in enumerate(parts) if re.fullmatch(r"[A-Za-z_]\w*", p)] or [k]
        j = rng.choice(spots)
        parts[j] = _nested(parts[j], rng)
    elif op == "unicode":
        parts.insert(k, "".join(rng.choice(UNICODE_CHARS) for _ in range(rng.randint(1, 3))))
    return "".join(parts)


def _nested(core: str, rng: random.Random, depth: int | None = None) -> str:
    depth = depth or rng.choice((rng.randint(200, 300), rng.randint(250, 262), rng.randint(1000, 5000)))
    form = rng.choice(("paren", "neg", "call", "sum", "power", "index", "mixed"))
    if form == "paren":
        return "(" * depth + core + ")" * depth
    if form == "neg":
        return "-" * depth + core
    if form == "call":
        f = rng.choice(FUNCTIONS)
        return f"{f}(" * depth + core + ")" * depth
    if form == "sum":
        return "sum(" * depth + core + ")" * depth
    if form == "power":
        return core + "^2" * depth
    if form == "index":
        return core + "[0]" * depth
    out = core
    for _ in range(depth):
        out = rng.choice(("({})", "-{}", "exp({})", "{} * 2", "sum({})", "1 + {}")).format(out)
    return out


def gen_mutant(rng: random.Random) -> str:
    text = _base(rng)
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
        text = _mutate_once(text, rng)
    return text


# --- 4. targeted generators ------------------------------------------------------------------------
def gen_numbers(rng: random.Random) -> str:
    """A model with one odd number in one of the places numbers go."""
    special = rng.choice((
        _huge_number(rng), rng.choice(EXTREME_NUMBERS), "\u0663", "1\u0663", "\u0663.5", "\uff15", "1_000",
        "0x10", "1e", ".e5", "1e+", "1..2", "1.2.3", "1e5e5", "\u0661\u0660", "\u00b2", "5\u0301", "-0", "-0.0",
        "1" + "0" * rng.randint(18, 30), "0." + "0" * rng.randint(300, 400) + "1", "9" * rng.randint(300, 320),
        "1e" + str(rng.randint(300, 330)), "1e-" + str(rng.randint(300, 330)), "nan", "inf", "Infinity",
    ))
    place = rng.randrange(9)
    if place == 0:
        return f"model m(n = {special}) {{\n    visible v[n]: binary\n    param b[n]\n    energy -b @ v\n}}\n"
    if place == 1:
        return f"model m(n = 3, c = {special}) {{\n    visible v[n]: binary\n    energy -c * sum(v)\n}}\n"
    if place == 2:
        return f"model m(n = 3) {{\n    visible v[{special}]: binary\n    param b[{special}]\n    energy -b @ v\n}}\n"
    if place == 3:
        return f"model m(n = 3) {{\n    visible v[n]: binary\n    energy -{special} * sum(v)\n}}\n"
    if place == 4:
        return f"model m(n = 3) {{\n    visible v[n]: binary\n    param b[n] = {special}\n    energy -b @ v\n}}\n"
    if place == 5:
        return (f"model m(n = 3) {{\n    visible v[n]: binary\n    param b[n] ~ normal(0, {special})\n"
                f"    energy -b @ v\n}}\n")
    if place == 6:
        return f"model m(n = 3) {{\n    visible v[n]: binary\n    energy -sum(v[{special}] * v)\n}}\n"
    if place == 7:
        return f"model m(n = 3) {{\n    visible r[n]: real\n    energy sum(r^{special}) + sum(r^2)\n}}\n"
    return (f"model m(n = 3) {{\n    visible x[n] ~ bernoulli(logits = {special} / (1 + x[i - 1]))\n"
            f"}}\n").replace("x[n] ~", "x[n]: binary\n    x[i] ~")


def gen_unicode(rng: random.Random) -> str:
    base = rng.choice(list(MODELS.values()))
    ch = rng.choice(UNICODE_CHARS)
    r = rng.randrange(6)
    if r == 0:  # a non-ASCII identifier
        name = rng.choice(("v\u00e9", "\u03b8", "\u4e2d", "x\u0301", "\u212a", "\ufb01", "h\u200b", "W\u0663"))
        return re.sub(r"\bv\b|\bx\b|\bW\b", name, base, count=rng.choice((0, 1, 2)))
    if r == 1:  # a comment holding anything
        text = "".join(rng.choice(UNICODE_CHARS) for _ in range(rng.randint(1, 40)))
        lines = base.split("\n")
        k = rng.randrange(len(lines))
        lines[k] += " # " + text
        return "\n".join(lines)
    if r == 2:
        return "\ufeff" + base if rng.random() < 0.5 else "\ufeff\ufeff" + base
    if r == 3:  # odd white space between tokens
        return re.sub(r" ", lambda m: ch if rng.random() < 0.1 else " ", base)
    if r == 4:
        return base.replace("\n", ch, rng.randint(1, 3))
    k = rng.randrange(len(base))
    return base[:k] + ch * rng.randint(1, 5) + base[k:]


def gen_names(rng: random.Random) -> str:
    n = rng.choice((65, 200, 201, 1000, 5000))
    long = "a" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz_0123456789") for _ in range(n - 1))
    r = rng.randrange(5)
    if r == 0:
        return f"model {long}(n = 3) {{\n    visible v[n]: binary\n    energy -sum(v)\n}}\n"
    if r == 1:
        return f"model m({long} = 3) {{\n    visible v[{long}]: binary\n    energy -sum(v)\n}}\n"
    if r == 2:
        return f"model m(n = 3) {{\n    visible {long}[n]: binary\n    param b[n]\n    energy -b @ {long}\n}}\n"
    if r == 3:
        return f"model m(n = 3) {{\n    visible v[n]: binary\n    param {long}[n]\n    energy -{long} @ v\n}}\n"
    return f"model m(n = 3) {{\n    visible v[n]: binary\n    energy -sum[{long}](v[{long}])\n}}\n"


HEADER = "model big(n = 4) {\n    visible v[n]: binary\n    param b[n]\n"
LARGE_KINDS = ("misread", "misread_one", "misread_spread", "open_brackets", "close_brackets", "bracket_statements",
               "flat_sum", "flat_sum_error", "flat_sum_unknown", "comment", "comment_error", "statements_error", "deep",
               "long_line", "long_name", "bad_characters")


def large_input(kind: str, size: int) -> str:
    """About `size` characters of one error kind (tests/test_fuzz.py uses 1 MB)."""
    if kind == "misread":  # `energy -x  y(1)`, over and over: a name read as a statement
        return HEADER + "    energy -b @ v  y(1)\n" * (size // 24) + "}\n"
    if kind == "misread_one":  # one statement: the audit's quadratic case (a long name, then the error)
        return HEADER + "    energy -b @ v * " + "a" * (size // 2) + " + v  y(1)" + " y" * (size // 4) + "\n}\n"
    if kind == "misread_spread":  # complete statements with a misread name every 25 KB
        block = "    energy -b @ v\n" * 1400 + "    energy -b @ v  y(1)\n"
        return HEADER + block * max(1, size // len(block)) + "}\n"
    if kind == "open_brackets":
        return HEADER + "    energy -b @ v * " + "(" * size + "\n}\n"
    if kind == "close_brackets":
        return HEADER + "    energy -b @ v" + ")" * size + "\n}\n"
    if kind == "bracket_statements":  # statements that each leave a bracket open
        return HEADER + "    energy -sum(b * (v\n    energy -(b[0] @ v\n" * (size // 40) + "}\n"
    if kind == "flat_sum":  # one flat sum of identical terms: a correct model
        return HEADER + "    energy " + " + ".join(["b @ v"] * (size // 8)) + "\n}\n"
    if kind == "flat_sum_error":  # one flat sum, then a syntax error at its end
        return HEADER + "    energy " + " + ".join(["b @ v"] * (size // 8)) + " +\n}\n"
    if kind == "flat_sum_unknown":  # a flat sum of undeclared names
        return HEADER + "    energy " + " + ".join(f"u{k}" for k in range(size // 9)) + "\n}\n"
    if kind == "comment":  # a huge comment in a correct model
        return HEADER + "    # " + "comment " * (size // 8) + "\n    energy -b @ v\n}\n"
    if kind == "comment_error":  # a huge comment, and an error after it
        return HEADER + "    # " + "comment " * (size // 8) + "\n    energy -b @ w\n}\n"
    if kind == "statements_error":  # many correct statements, then errors of several kinds at the end
        return (HEADER + "    energy -b @ v\n" * (size // 17) +
                "    energy -b @ v +\n    param q[n\n    energy (b @ v\n    let = 3\n}\n")
    if kind == "deep":
        return HEADER + "    energy -b @ v * " + "(" * (size // 2) + "1" + ")" * (size // 2) + "\n}\n"
    if kind == "long_line":  # everything on one line, errors in it
        return HEADER.replace("\n", " ") + " energy -b @ v  y(1)" * (size // 20) + " }"
    if kind == "long_name":
        return HEADER + "    energy -b @ v * " + "a" * size + "\n}\n"
    if kind == "bad_characters":
        return HEADER + "    energy -b @ v $ ; ' \u0663\n" * (size // 28) + "}\n"
    raise ValueError(f"unknown large input kind {kind!r}; the kinds are {', '.join(LARGE_KINDS)}")


def gen_large(rng: random.Random) -> str:
    return large_input(rng.choice(LARGE_KINDS), rng.choice((20_000, 50_000, 100_000, 200_000)))


GENERATORS = {
    "grammar": gen_grammar,
    "model": gen_model,
    "mutant": gen_mutant,
    "numbers": gen_numbers,
    "unicode": gen_unicode,
    "names": gen_names,
    "large": gen_large,
}


def generate(seed: int, index: int, strategies: dict[str, float] | None = None) -> tuple[str, str]:
    """(strategy, text) of input `index` of the campaign with `seed`."""
    strategies = strategies or STRATEGIES
    rng = random.Random(f"gdsl-fuzz:{seed}:{index}")
    names = list(strategies)
    strategy = rng.choices(names, weights=[strategies[n] for n in names])[0]
    return strategy, GENERATORS[strategy](rng)


# --- running -----------------------------------------------------------------------------------
class Tally:
    """Counts of a run: outcomes, error kinds, strategies, time, and the failures themselves."""

    def __init__(self):
        self.outcomes: Counter = Counter()
        self.kinds: Counter = Counter()  # errors of each kind (every error of every input)
        self.first_kinds: Counter = Counter()  # inputs, by the kind of their first error
        self.strategies: Counter = Counter()
        self.by_strategy: Counter = Counter()  # (strategy, outcome)
        self.failures: list[dict] = []
        self.seconds = 0.0
        self.slowest = (0.0, None)

    def add(self, seed: int, index: int, strategy: str, result: dict, text: str | None = None) -> None:
        outcome = outcome_of(result)
        self.outcomes[outcome] += 1
        self.strategies[strategy] += 1
        self.by_strategy[(strategy, outcome)] += 1
        self.seconds += result["seconds"]
        if result["seconds"] > self.slowest[0]:
            self.slowest = (result["seconds"], f"{seed}:{index} ({strategy})")
        if result["kinds"]:
            self.first_kinds[result["kinds"][0]] += 1
            self.kinds.update(result["kinds"])
        if outcome in FAILURES:
            self.failures.append({"seed": seed, "index": index, "strategy": strategy, "outcome": outcome,
                                  "detail": result["detail"], "seconds": round(result["seconds"], 3),
                                  "text": text})

    def merge(self, other: dict) -> None:
        for field in ("outcomes", "kinds", "first_kinds", "strategies"):
            getattr(self, field).update(other[field])
        self.by_strategy.update({tuple(k.split("|")): v for k, v in other["by_strategy"].items()})
        self.seconds += other["seconds"]
        if other["slowest"][0] > self.slowest[0]:
            self.slowest = tuple(other["slowest"])

    def as_dict(self) -> dict:
        return {"outcomes": dict(self.outcomes), "kinds": dict(self.kinds), "first_kinds": dict(self.first_kinds),
                "strategies": dict(self.strategies),
                "by_strategy": {f"{s}|{o}": n for (s, o), n in self.by_strategy.items()},
                "seconds": self.seconds, "slowest": list(self.slowest)}

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())

    def report(self, wall: float | None = None, limit: float = LIMIT) -> str:
        n = self.total
        lines = [f"inputs: {n}"]
        for outcome in OUTCOMES:
            lines.append(f"  {outcome:<11} {self.outcomes.get(outcome, 0):>8}")
        lines.append("  user errors by kind (inputs, by their first error / all errors):")
        for kind in KINDS:
            if self.kinds.get(kind):
                lines.append(f"    {kind:<11} {self.first_kinds.get(kind, 0):>8} / {self.kinds[kind]}")
        lines.append("  by strategy: " + ", ".join(
            f"{s} {self.strategies[s]} ({self.by_strategy.get((s, 'accepted'), 0)} accepted)"
            for s in sorted(self.strategies)))
        lines.append(f"  CompilerBug (exit 3): {self.outcomes.get('bug', 0)}; other exceptions: "
                     f"{self.outcomes.get('exception', 0)}; slow (> {limit:g} s): {self.outcomes.get('slow', 0)}")
        if self.slowest[1]:
            lines.append(f"  slowest: {self.slowest[0]:.2f} s, input {self.slowest[1]}")
        if wall:
            lines.append(f"  rate: {n / wall:.1f} inputs/s ({wall:.0f} s wall, {self.seconds:.0f} s checking)")
        return "\n".join(lines)


def run_inputs(seed: int, count: int, start: int = 0, step: int = 1, strategies=None,
               limit: float | None = LIMIT, tally: Tally | None = None, on_failure=None) -> Tally:
    """Generate and check inputs start, start + step, ... (count of them) in this process."""
    tally = tally or Tally()
    for index in range(start, start + count * step, step):
        strategy, text = generate(seed, index, strategies)
        result = check(text, limit)
        tally.add(seed, index, strategy, result, text if outcome_of(result) in FAILURES else None)
        if on_failure is not None and outcome_of(result) in FAILURES:
            on_failure(tally.failures[-1])
    return tally


def signature(failure: dict) -> str:
    """What a failure is, without the particulars of its input: its outcome and the first line
    of what went wrong, numbers and quoted text replaced (for grouping the failures of a run)."""
    first = (failure.get("detail") or "").strip().splitlines()
    line = first[0] if first else ""
    if failure.get("outcome") == "slow" and len(first) > 1:  # where it was stopped: the last gdsl frame
        frames = [x.strip() for x in first if x.strip().startswith('File "') and "/gdsl/" in x]
        line = (frames[-1].split("/gdsl/")[-1] if frames else line)
    line = re.sub(r"'[^'\s]*'|\"[^\"\s]*\"", "'...'", line)
    line = re.sub(r"\d+", "N", line)
    return f"{failure.get('outcome')}: {line[:160]}"


def write_failure(out: Path, failure: dict) -> None:
    folder = out / failure["outcome"]
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{failure['seed']}_{failure['index']}_{failure['strategy']}"
    text = failure.get("text")
    if text is not None:
        (folder / f"{stem}.gdl").write_bytes(text.encode("utf-8", "surrogatepass"))
    note = {k: v for k, v in failure.items() if k != "text"}
    (folder / f"{stem}.txt").write_text(json.dumps(note, indent=1) + "\n\n" + failure["detail"] + "\n",
                                        encoding="utf-8")


# worker processes ------------------------------------------------------------------------------
def _worker(wid: int, seed: int, indices: tuple[int, int, int], strategies, limit, results, progress):
    """Check inputs range(*indices); report each failure, and a tally every 5 inputs. After a
    timed-out input the process exits (the alarm may have left state half-updated): the parent
    starts a new one from the next index."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    start, stop, step = indices
    tally = Tally()
    for k, index in enumerate(range(start, stop, step)):
        progress[wid * 2] = index
        progress[wid * 2 + 1] = time.time()
        try:
            strategy, text = generate(seed, index, strategies)
        except Exception as e:  # noqa: BLE001 - a bug of this script, not of gdsl: say so, go on
            results.put(("generator", wid, f"{seed}:{index}: {type(e).__name__}: {e}"))
            continue
        result = check(text, limit)
        outcome = outcome_of(result)
        tally.add(seed, index, strategy, result, None)
        if outcome in FAILURES:
            results.put(("failure", wid, {"seed": seed, "index": index, "strategy": strategy, "outcome": outcome,
                                          "detail": result["detail"], "seconds": round(result["seconds"], 3),
                                          "text": text}))
        if outcome == "slow" or k % 5 == 4 or index + step >= stop:
            results.put(("tally", wid, tally.as_dict()))
            tally = Tally()
        if outcome == "slow" and index + step < stop:
            results.put(("restart", wid, (index + step, stop, step)))
            return
    progress[wid * 2 + 1] = 0.0
    results.put(("done", wid, None))


def campaign(seed: int, inputs: int, workers: int, out: Path, strategies=None, limit: float = LIMIT,
             log=print) -> Tally:
    """Run `inputs` inputs over `workers` processes (worker w takes indices w, w + workers, ...),
    with a watchdog that kills a worker stuck on one input for 3 x limit + 10 s (an alarm that
    never fired: a long C call)."""
    out.mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("fork") if hasattr(os, "fork") else mp.get_context()
    results = ctx.Queue()
    progress = ctx.Array("d", [0.0] * (2 * workers), lock=False)
    procs: dict[int, mp.Process] = {}

    def start(wid, indices):
        p = ctx.Process(target=_worker, args=(wid, seed, indices, strategies, limit, results, progress), daemon=True)
        progress[wid * 2 + 1] = time.time()
        p.start()
        procs[wid] = p

    for wid in range(workers):
        start(wid, (wid, inputs, workers))
    tally = Tally()
    t0 = time.time()
    last_log = t0
    hard = 3 * limit + 10
    live = set(procs)
    failures_written = Counter()
    while live:
        try:
            kind, wid, payload = results.get(timeout=0.5)
        except Exception:  # queue.Empty
            kind = None
        if kind == "tally":
            tally.merge(payload)
        elif kind == "failure":
            tally.failures.append({k: v for k, v in payload.items() if k != "text"})
            failures_written[payload["outcome"]] += 1
            if failures_written[payload["outcome"]] <= 500:
                write_failure(out, payload)
            log(f"FAIL {payload['outcome']} {payload['seed']}:{payload['index']} ({payload['strategy']}): "
                f"{payload['detail'].splitlines()[0][:200] if payload['detail'] else ''}")
        elif kind == "generator":
            log(f"generator error (a bug in bench/fuzz.py, the input is skipped): {payload}")
        elif kind == "restart":
            procs[wid].join(5)
            start(wid, payload)
        elif kind == "done":
            procs[wid].join(5)
            live.discard(wid)
        now = time.time()
        for w in list(live):  # the watchdog
            began = progress[w * 2 + 1]
            if began and now - began > hard:
                index = int(progress[w * 2])
                procs[w].kill()
                procs[w].join(5)
                strategy, text = generate(seed, index, strategies)
                failure = {"seed": seed, "index": index, "strategy": strategy, "outcome": "slow",
                           "detail": f"killed after {now - began:.0f} s (the alarm did not stop it)",
                           "seconds": round(now - began, 1), "text": text}
                tally.outcomes["slow"] += 1
                tally.strategies[strategy] += 1
                tally.failures.append({k: v for k, v in failure.items() if k != "text"})
                write_failure(out, failure)
                log(f"FAIL slow {seed}:{index} ({strategy}): {failure['detail']}")
                if index + workers < inputs:
                    start(w, (index + workers, inputs, workers))
                else:
                    live.discard(w)
            elif not procs[w].is_alive() and procs[w].exitcode not in (0, None) and w in live:
                index = int(progress[w * 2])
                log(f"worker {w} died (exit {procs[w].exitcode}) at input {seed}:{index}; restarting after it")
                strategy, text = generate(seed, index, strategies)
                failure = {"seed": seed, "index": index, "strategy": strategy, "outcome": "exception",
                           "detail": f"the worker process died (exit {procs[w].exitcode})", "seconds": 0.0,
                           "text": text}
                tally.outcomes["exception"] += 1
                tally.failures.append({k: v for k, v in failure.items() if k != "text"})
                write_failure(out, failure)
                if index + workers < inputs:
                    start(w, (index + workers, inputs, workers))
                else:
                    live.discard(w)
        if now - last_log > 60:
            last_log = now
            done = tally.total
            log(f"[{now - t0:6.0f} s] {done} inputs, {done / (now - t0):.1f} inputs/s; " +
                ", ".join(f"{o} {tally.outcomes[o]}" for o in OUTCOMES if tally.outcomes.get(o)))
    wall = time.time() - t0
    groups: dict[str, list] = {}
    for f in tally.failures:
        groups.setdefault(signature(f), []).append(f"{f['seed']}:{f['index']}")
    summary = {"seed": seed, "inputs": inputs, "checked": tally.total, "workers": workers, "wall_seconds": wall,
               "rate": tally.total / wall if wall else None, **tally.as_dict(),
               "signatures": {sig: {"count": len(ids), "examples": ids[:10]}
                              for sig, ids in sorted(groups.items(), key=lambda kv: -len(kv[1]))},
               "failures": tally.failures[:2000]}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    log(tally.report(wall, limit))
    if groups:
        log("failures by signature (count, examples to --replay):")
        for sig, ids in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            log(f"  {len(ids):>6}  {sig}   e.g. {', '.join(ids[:3])}")
    if tally.total < inputs:
        log(f"  ({inputs - tally.total} inputs not counted: checked by a worker that was killed before reporting)")
    return tally


# --- the command line, under another locale ------------------------------------------------------------
def locale_sample(seed: int, count: int, strategies=None, timeout: float = 60.0,
                  command: tuple[str, ...] = ("check",)) -> list[dict]:
    """Check `count` inputs through `python -m gdsl check FILE` (or another `command`) under
    LC_ALL=C PYTHONUTF8=0, an ASCII locale: the exit status must be 0 or 2, with no traceback.
    Returns the failures."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "PYTHONIOENCODING", "PYTHONUTF8"))}
    env.update(LC_ALL="C", LANG="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(count):
            strategy, text = generate(seed, index, strategies)
            path = Path(tmp) / f"in{index}.gdl"
            path.write_bytes(_file_bytes(text))
            p = subprocess.run([sys.executable, "-m", "gdsl", *command, str(path)], env=env, capture_output=True,
                               timeout=timeout)
            stderr = p.stderr.decode("ascii", "replace")
            if p.returncode not in (0, 2) or "Traceback" in stderr:
                failures.append({"seed": seed, "index": index, "strategy": strategy, "status": p.returncode,
                                 "stderr": stderr[-2000:], "text": text})
    return failures


def _file_bytes(text: str) -> bytes:
    """The bytes of a file holding `text`: UTF-8, with surrogate escapes (from a byte flip)
    written back as the bytes they stand for, so the file is not UTF-8 (other surrogates
    become '?')."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("fuzz_out"))
    ap.add_argument("--limit", type=float, default=LIMIT, help="seconds per input (default %(default)s)")
    ap.add_argument("--only", help="comma-separated strategies to run (default: all, weighted)")
    ap.add_argument("--replay", help="SEED:INDEX: regenerate one input and check it")
    ap.add_argument("--show", action="store_true", help="with --replay: print the input")
    ap.add_argument("--locale", type=int, default=0, metavar="N",
                    help="check N inputs through `gdsl check` under LC_ALL=C PYTHONUTF8=0 instead")
    ap.add_argument("--locale-command", default="check", metavar="CMD",
                    help="with --locale: the gdsl command to run, such as 'dump --stage py' (default: check)")
    args = ap.parse_args(argv)
    strategies = None
    if args.only:
        strategies = {name: STRATEGIES[name] or 1 for name in args.only.split(",")}
    if args.replay:
        seed, index = (int(x) for x in args.replay.split(":"))
        strategy, text = generate(seed, index, strategies)
        if args.show:
            sys.stdout.write(text if len(text) < 20000 else text[:20000] + f"\n... ({len(text)} characters)\n")
        result = check(text, args.limit)
        print(f"input {seed}:{index} ({strategy}, {len(text)} characters): {outcome_of(result)} "
              f"in {result['seconds']:.3f} s {result['kinds'] or ''}")
        if result["detail"]:
            print(result["detail"])
        return 1 if outcome_of(result) in FAILURES else 0
    if args.locale:
        t0 = time.time()
        failures = locale_sample(args.seed, args.locale, strategies, command=tuple(args.locale_command.split()))
        print(f"{args.locale} inputs through `gdsl {args.locale_command}` under LC_ALL=C PYTHONUTF8=0 in "
              f"{time.time() - t0:.0f} s: "
              f"{len(failures)} failures")
        for f in failures:
            print(f"  {f['seed']}:{f['index']} ({f['strategy']}): exit {f['status']}\n{f['stderr']}")
        return 1 if failures else 0
    print(f"fuzzing: {args.inputs} inputs, seed {args.seed}, {args.workers} workers, limit {args.limit:g} s, "
          f"failures to {args.out}", flush=True)
    tally = campaign(args.seed, args.inputs, args.workers, args.out, strategies, args.limit,
                     log=lambda s: print(s, flush=True))
    return 1 if any(tally.outcomes.get(o) for o in FAILURES) else 0


if __name__ == "__main__":
    sys.exit(main())
