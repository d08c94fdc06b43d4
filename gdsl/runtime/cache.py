"""Compiled modules on disk, keyed by the source text and the gdsl version.

The module is written once (atomically) under the cache directory and imported
from there, so numba's own on-disk cache (cache=True) sits beside it and a second
load costs neither our compile nor numba's. The file name also carries a hash of
gdsl's own sources, so editing the compiler invalidates old modules.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import sys
import tempfile
from importlib import resources
from pathlib import Path

from ..codegen.emit import source_hash


def cache_dir() -> Path:
    root = os.environ.get("GDSL_CACHE_DIR")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gdsl"


@functools.lru_cache(maxsize=1)
def compiler_fingerprint() -> str:
    """A hash of gdsl's own sources and grammar: a changed compiler never reuses an old module."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    files = sorted(root.rglob("*.py")) + sorted(root.rglob("*.lark"))
    grammar = resources.files("gdsl.grammars").joinpath("gdl.lark")
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    h.update(grammar.read_bytes())
    return h.hexdigest()


def module_path(name: str, text: str) -> Path:
    key = hashlib.sha256((compiler_fingerprint() + source_hash(text)).encode()).hexdigest()
    return cache_dir() / f"{name}_{key[:20]}.py"


def write_atomic(path: Path, text: str) -> None:
    """Write only if the content differs, via a temp file and rename (safe under concurrency)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text() == text:
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".py")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def import_file(path: Path, module_name: str | None = None):
    module_name = module_name or f"gdsl_compiled_{path.stem}"
    if module_name in sys.modules and getattr(sys.modules[module_name], "__file__", None) == str(path):
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def load_module(path):
    """The compiled module for the .gdl file at `path` (compiling it on a cache miss)."""
    from ..driver import compile_source, read_source

    source = read_source(path)
    from ..frontend.parser import parse

    name = _model_name(source)
    target = module_path(name, source.text)
    if not target.exists():
        compiled = compile_source(source)
        write_atomic(target, compiled.python)
    return import_file(target)


def load_text(text: str, label: str):
    """The compiled module for .gdl source text (compiled on a cache miss, cached like a file)."""
    from ..driver import compile_source
    from ..errors import Source

    source = Source(text, label)
    target = module_path(_model_name(source), text)
    if not target.exists():
        write_atomic(target, compile_source(source).python)
    return import_file(target)


def _model_name(source) -> str:
    """The model's name for the cache file (a cheap regex; full parsing happens on a miss)."""
    import re

    m = re.search(r"\bmodel\s+([A-Za-z_][A-Za-z0-9_]*)", source.text)
    return m.group(1) if m else "model"
