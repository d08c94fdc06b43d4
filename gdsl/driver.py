"""The pipeline, stage by stage: parse -> check -> lower -> analyse -> emit."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .analysis.plan import Plan, analyse
from .codegen.emit import emit
from .errors import CompilerBug, GdslError, Source
from .frontend import ast as ast_mod
from .frontend.checker import CheckedModel, check
from .frontend.parser import parse
from .ir.lower import lower
from .ir.model import ModelIR

STAGES = ("ast", "ir", "plan", "py")


@dataclass
class Compiled:
    source: Source
    ast: ast_mod.Model
    checked: CheckedModel
    ir: ModelIR
    plan: Plan
    python: str | None = None


def read_source(path) -> Source:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise GdslError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise GdslError(f"{path} is not UTF-8 text (byte {e.start})") from None
    return Source(text, str(path))


def compile_source(source: Source, until: str = "py") -> Compiled:
    """Run the stages in order up to `until`; user errors raise ModelErrors, our own bugs CompilerBug."""
    try:
        tree = parse(source)
        checked = check(tree, source)
        ir = lower(checked)
        plan = analyse(ir)
        out = Compiled(source, tree, checked, ir, plan)
        if until == "py":
            out.python = emit(plan, source.text)
        return out
    except GdslError as e:
        if e.source is None:
            e.source = source
        raise
    except RecursionError:
        raise GdslError("the model is nested too deeply to compile") from None
    except CompilerBug:
        raise
    except Exception as e:  # anything else is our fault, not the user's
        raise CompilerBug(f"{type(e).__name__}: {e}") from e


def dump(compiled: Compiled, stage: str) -> str:
    if stage == "ast":
        return ast_mod.dump(compiled.ast) + "\n"
    if stage == "ir":
        return compiled.ir.dump()
    if stage == "plan":
        return compiled.plan.dump()
    if stage == "py":
        return compiled.python or emit(compiled.plan, compiled.source.text)
    raise ValueError(f"unknown stage {stage!r}; the stages are {', '.join(STAGES)}")
