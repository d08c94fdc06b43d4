"""The pipeline, stage by stage: parse -> check -> lower -> analyse -> emit."""
from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from .errors import CompilerBug, GdslError, ModelErrors, Source, Span

if TYPE_CHECKING:
    from .analysis.plan import Plan
    from .frontend import ast as ast_mod
    from .frontend.checker import CheckedModel
    from .ir.model import ModelIR

STAGES = ("ast", "ir", "plan", "py")

# The stages are imported on the first compile, not with this module: loading a cached model
# needs none of them (they and networkx and lark are a fifth of a second of start-up).
_COMPILER_NAMES = ("analyse_directed", "DBN_LAYER_TEXT", "dbn_stack", "greedy_plan", "analyse", "emit", "ast_mod",
                   "check", "_collector_paused", "parse", "lower")


def _load_compiler() -> None:
    """Bind the stages' entry points as this module's globals (once; a name already bound, e.g.
    by a test's monkeypatch, is kept)."""
    g = globals()
    if all(name in g for name in _COMPILER_NAMES):
        return
    from .analysis.directed import analyse_directed
    from .analysis.layers import DBN_LAYER_TEXT, dbn_stack, greedy_plan
    from .analysis.plan import analyse
    from .codegen.emit import emit
    from .frontend import ast as ast_mod
    from .frontend.checker import check
    from .frontend.parser import _collector_paused, parse
    from .ir.lower import lower

    found = locals()
    for name in _COMPILER_NAMES:
        g.setdefault(name, found[name])


def __getattr__(name: str):
    if name in _COMPILER_NAMES:
        _load_compiler()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class Compiled:
    source: Source
    ast: ast_mod.Model
    checked: CheckedModel
    ir: ModelIR
    plan: Plan | None  # the energy part (None for a purely directed model)
    python: str | None = None
    directed: object = None  # DirectedPlan, when the model has conditionals
    greedy: object = None  # GreedyPlan of an energy model (analysis.layers)
    dbn: object = None  # (stack, why refused, layer plan) of a directed model

    def schedule(self) -> str:
        """One line on what was derived: the Gibbs schedule and/or the directed part's order."""
        if self.directed is None:
            return self.plan.schedule()
        directed = self.directed.schedule()
        if self.plan is None:
            return f"{self.ir.name}: {directed}"
        if self.directed.ir.sequence is not None and not self.directed.model:  # an energy at every step
            return f"{self.plan.schedule()}; {directed}"
        return f"{self.plan.schedule()}; then {directed}"


def shipped_models() -> list[str]:
    """The names of the models installed with gdsl (models/*.gdl)."""
    from importlib import resources

    return sorted(p.name[:-4] for p in resources.files("gdsl.models").iterdir() if p.name.endswith(".gdl"))


def shipped_model_path(name: str):
    """The installed file of shipped model `name` ("rbm" or "rbm.gdl"), or None."""
    from importlib import resources

    stem = name[:-4] if name.endswith(".gdl") else name
    if not stem or not stem.replace("_", "").isalnum() or stem not in shipped_models():
        return None
    return resources.files("gdsl.models").joinpath(f"{stem}.gdl")


def read_source(path) -> Source:
    """Read a .gdl file as UTF-8 (a byte-order mark is allowed); errors name the file. A name
    that is not a file but a shipped model's ("rbm") reads the installed model."""
    path = Path(path)
    if not path.exists() and len(path.parts) == 1:
        shipped = shipped_model_path(str(path))
        if shipped is not None:
            path = Path(str(shipped))
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise _file_error(path, "is a directory, not a .gdl file") from None
    except FileNotFoundError:
        hint = f"; the shipped models, usable by name, are: {', '.join(shipped_models())}" \
            if len(path.parts) == 1 else ""
        raise _file_error(path, "no such file" + hint) from None
    except OSError as e:
        raise _file_error(path, f"cannot read it: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        start = e.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        before = data[:start].decode("utf-8", errors="replace")
        line = before.count("\n") + 1
        column = len(before) - (before.rfind("\n") + 1) + 1
        err = GdslError(f"the file is not UTF-8 text: byte 0x{data[start]:02x} cannot be decoded",
                        Span(line, column, line, column + 1), "save the file as UTF-8", kind="file")
        err.source = Source(data.decode("utf-8", errors="replace"), str(path))
        raise ModelErrors([err], err.source) from None
    return Source(text, str(path))


def _file_error(path: Path, what: str) -> GdslError:
    err = GdslError(what, kind="file")
    err.source = Source("", str(path))
    return err


def normalise(source: Source) -> Source:
    """Windows line ends become '\\n'; other characters that some tools treat as line breaks
    (a lone '\\r', form feed, U+2028 ...) become spaces where the grammar ignores them anyway
    (in comments, and '\\r'/form feed everywhere), so every stage agrees on the line numbers."""
    text = source.text.replace("\r\n", "\n")
    if not _ODD_BREAKS.search(text):
        return source if text == source.text else Source(text, source.filename)
    out, in_comment = [], False
    for ch in text:
        if ch == "#":
            in_comment = True
        elif ch == "\n":
            in_comment = False
        elif ch in _ODD_BREAK_CHARS and (in_comment or ch in "\r\x0c"):
            ch = " "
        out.append(ch)
    return Source("".join(out), source.filename)


_SURROGATE = re.compile("[\ud800-\udfff]")
_ODD_BREAK_CHARS = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_ODD_BREAKS = re.compile("[" + _ODD_BREAK_CHARS + "]")


def compile_source(source: Source, until: str = "py") -> Compiled:
    """Run the stages in order up to `until`; user errors raise ModelErrors, our own bugs CompilerBug."""
    if until not in STAGES:
        raise ValueError(f"unknown stage {until!r}; the stages are {', '.join(STAGES)}")
    _load_compiler()
    from .frontend.parser import MAX_SOURCE_CHARS

    if len(source.text) > MAX_SOURCE_CHARS:  # refused before any stage reads the text
        err = GdslError(f"the file is too large to compile: {len(source.text):,} characters (the limit is "
                        f"{MAX_SOURCE_CHARS:,})", Span(1, 1, 1, 2),
                        "write repeated terms as sums over indices, sum[i](...), rather than one term per "
                        "element", kind="limit")
        raise ModelErrors([err], source)
    surrogate = _SURROGATE.search(source.text)
    if surrogate:  # only text passed as a str can hold one (a file is decoded as strict UTF-8)
        before = source.text[:surrogate.start()]
        line = before.count("\n") + 1
        column = surrogate.start() - (before.rfind("\n") + 1) + 1
        err = GdslError(f"the text contains an unpaired surrogate U+{ord(surrogate.group()):04X}, which is not a "
                        "character", Span(line, column, line, column + 1),
                        "pass the model as valid Unicode (decode files as UTF-8)", kind="syntax")
        raise ModelErrors([err], Source(source.text.encode("utf-8", "replace").decode("utf-8"),
                                        source.filename))
    original = source
    source = normalise(source)
    with _collector_paused():  # every stage builds acyclic structures; see frontend/parser.py
        return _run_stages(source, original, until)


def _run_stages(source: Source, original: Source, until: str) -> Compiled:
    try:
        tree = parse(source)
        checked = check(tree, source)
        ir = lower(checked)
        plan = analyse(ir) if ir.groups or ir.directed is None else None
        directed = analyse_directed(ir.directed, ir.params) if ir.directed is not None else None
        out = Compiled(source, tree, checked, ir, plan, directed=directed)
        out.greedy = greedy_plan(ir) if directed is None else None
        out.dbn = _dbn_plan(ir) if directed is not None else None
        if until == "py":
            out.python = emit(plan, original.text, directed, ir, greedy=out.greedy, dbn=out.dbn)
            _check_python(out.python, source)
        return out
    except GdslError as e:
        _attach(e, source)
        raise
    except RecursionError:
        err = GdslError("the model is too deeply nested to compile", Span(1, 1, 1, 2),
                        "split long expressions into several energy statements", kind="limit")
        raise ModelErrors([err], source) from None
    except CompilerBug:
        raise
    except Exception as e:  # anything else is our fault, not the user's
        raise CompilerBug(f"{type(e).__name__}: {e}") from e


def _check_python(python: str, source: Source) -> None:
    """The generated module must be valid Python. Python's parser allows 200 nested brackets,
    fewer than an expression within gdsl's nesting limit can need once printed: that is the
    user's nesting, reported as such; any other failure is our bug."""
    try:
        compile(python, "<generated module>", "exec", dont_inherit=True)
    except (SyntaxError, MemoryError, RecursionError) as e:
        if isinstance(e, SyntaxError) and "too many nested" not in str(e):
            raise CompilerBug(f"the generated module is not valid Python: {e}") from e
        line = _generated_line_origin(python, getattr(e, "lineno", None))
        err = GdslError("an expression is nested too deeply for the generated Python module (Python "
                        "allows 200 levels of brackets)", Span(line, 1, line, 2),
                        "nest less deeply: bind inner parts with `let` (directed) or split the term",
                        kind="limit")
        raise ModelErrors([err], source) from None


def _generated_line_origin(python: str, lineno) -> int:
    """The .gdl line the comment above generated line `lineno` points to (1 if none)."""
    lines = python.split("\n")
    for text in reversed(lines[:lineno or 0]):
        m = re.match(r"\s*# [mv]\d+, line (\d+)", text)
        if m:
            return int(m.group(1))
    return 1


def _dbn_plan(ir: ModelIR):
    """(stack, why refused, plan of the layer RBM) for greedy training of a directed model."""
    visible = [n for n, g in ir.directed.groups.items() if g.role == "visible"]
    stack, refused = dbn_stack(ir.directed, visible)
    if refused:
        return stack, refused, None
    return stack, None, compile_source(Source(DBN_LAYER_TEXT, "<dbn layer>"), until="plan").plan


def _attach(e: GdslError, source: Source) -> None:
    """Report errors under the file they come from (later stages do not know its name)."""
    e.source = source
    for sub in getattr(e, "errors", ()):
        sub.source = source


def dump(compiled: Compiled, stage: str) -> str:
    _load_compiler()
    if stage == "ast":
        return ast_mod.dump(compiled.ast) + "\n"
    if stage == "ir":
        ir = compiled.ir
        return ir.dump() + (ir.directed.dump() if ir.directed is not None else "")
    if stage == "plan":
        from .analysis.gradients import dump as dump_gradients

        out = ""
        if compiled.plan is not None:
            out = compiled.plan.dump() + dump_gradients(compiled.plan)
        if compiled.directed is not None:
            out += compiled.directed.dump()
        if compiled.greedy is not None:
            out += compiled.greedy.dump()
        return out
    if stage == "py":
        return compiled.python or emit(compiled.plan, compiled.source.text, compiled.directed, compiled.ir,
                                       greedy=compiled.greedy, dbn=compiled.dbn)
    raise ValueError(f"unknown stage {stage!r}; the stages are {', '.join(STAGES)}")


# --- compile on a cache miss: the only place that both compiles and fills the cache ---

DIGEST_PREFIX = "# gdsl-digest: "


def load_module(path):
    """The compiled module for the .gdl file at `path` (compiled and cached on a miss)."""
    source = read_source(path)
    return load_cached(_model_name(source.text), source.text, lambda: compile_source(source).python)


def load_text(text: str, label: str):
    """The compiled module for .gdl source text (compiled on a miss, cached like a file)."""
    source = Source(text, label)
    return load_cached(_model_name(text), text, lambda: compile_source(source).python)


def load_cached(name: str, key_text: str, build):
    """Import the cached module keyed by `key_text`, building it with `build()` on a miss.

    An entry that is not what gdsl wrote (truncated, edited, emptied: its digest does not match)
    is rebuilt with a warning; one another user could have written is never imported: the
    module is built into a private directory instead."""
    import warnings

    from . import cache

    target = cache.module_path(name, key_text)
    try:
        if _entry_intact(target):
            try:
                return cache.import_trusted(target)
            except cache.UntrustedFile:
                raise
            except Exception as e:  # intact but not importable (stale numba files, ...): rebuilt once
                warnings.warn(f"gdsl: the cached module {target} failed to import ({type(e).__name__}: {e}); "
                              "rebuilding it", cache.CacheRepairWarning, stacklevel=3)
                cache.discard_numba_files(target)
                sys.modules.pop(f"gdsl_compiled_{target.stem}", None)
        elif target.exists():
            warnings.warn(f"gdsl: the cached module {target} was damaged or changed; rebuilding it",
                          cache.CacheRepairWarning, stacklevel=3)
        cache.write_atomic(target, _with_digest(build()))
        return cache.import_trusted(target)
    except cache.UntrustedFile as e:
        private = cache.private_dir() / target.name
        warnings.warn(f"gdsl: not importing {e} ; compiling into the private directory "
                      f"{private.parent} instead", cache.UntrustedCacheWarning, stacklevel=3)
        cache.write_atomic(private, _with_digest(build()))
        return cache.import_trusted(private, module_name=f"gdsl_private_{target.stem}")


def _with_digest(python: str) -> str:
    if not python.endswith("\n"):
        python += "\n"
    return python + DIGEST_PREFIX + hashlib.sha256(python.encode("utf-8")).hexdigest() + "\n"


def _entry_intact(path: Path) -> bool:
    """True if `path` holds exactly what gdsl wrote (its last line is the digest of the rest)."""
    from . import cache

    try:
        data = cache.read_trusted(path)
    except FileNotFoundError:
        return False
    except OSError:
        return False
    body, sep, last = data.rstrip(b"\n").rpartition(b"\n")
    if not sep or not last.startswith(DIGEST_PREFIX.encode()):
        return False
    return hashlib.sha256(body + b"\n").hexdigest() == last[len(DIGEST_PREFIX):].decode("ascii", "replace")


def _model_name(text: str) -> str:
    """The model's name for the cache file (a cheap regex; full parsing happens on a miss)."""
    m = re.search(r"\bmodel\s+([A-Za-z_][A-Za-z0-9_]*)", text)
    return m.group(1) if m else "model"
