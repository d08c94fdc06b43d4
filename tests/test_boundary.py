"""The one-way boundary: the compiler produces a module, the runtime uses only that module.

Nothing in gdsl.runtime imports the compiler (frontend, ir, analysis, codegen, driver, poly,
cli), at module level or inside a function; a generated module imports only the runtime and
the operator table; and a compiled model trains, greedy layer-wise training included, in a
process that never loads the compiler.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ROOT / "gdsl" / "runtime"
COMPILER = ("gdsl.frontend", "gdsl.ir", "gdsl.analysis", "gdsl.codegen", "gdsl.driver", "gdsl.poly",
            "gdsl.cli")
NEUTRAL = ("gdsl.runtime", "gdsl.ops", "gdsl.abi", "gdsl.errors", "gdsl.cache", "gdsl.picture")  # what a runtime module may import of gdsl


def imported_modules(path: Path, package: str):
    """Every module `path` imports, anywhere in the file, with relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            if node.module is None or node.level and not node.module:
                for alias in node.names:  # `from .. import x`: x may be a module
                    yield f"{stem}.{alias.name}"
            else:
                yield stem


@pytest.mark.parametrize("path", sorted(RUNTIME.glob("*.py")), ids=lambda p: p.name)
def test_runtime_modules_never_import_the_compiler(path):
    for name in imported_modules(path, "gdsl.runtime"):
        if name == "gdsl" or name.startswith("gdsl."):
            assert name.startswith(NEUTRAL), f"{path.name} imports {name}"


def test_the_boundary_check_sees_imports_inside_functions(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from ..driver import compile_source\n    from .. import codegen\n")
    assert set(imported_modules(bad, "gdsl.runtime")) == {"gdsl.driver", "gdsl.codegen"}


@pytest.mark.parametrize("model", ["dbm", "dbn", "rbm"])
def test_generated_modules_import_only_the_runtime(model, tmp_path):
    from gdsl.driver import compile_source, read_source

    code = compile_source(read_source(ROOT / "models" / f"{model}.gdl")).python
    out = tmp_path / "m.py"
    out.write_text(code, encoding="utf-8")
    for name in imported_modules(out, "generated"):
        if name.startswith("gdsl"):
            assert name.startswith(("gdsl.runtime", "gdsl.ops", "gdsl.abi")), name


SCRIPT = r"""
import sys, numpy as np
from gdsl.cache import import_trusted
from pathlib import Path
for path, sizes, kind in [(sys.argv[1], dict(nv=6, n1=4, n2=3), "dbm"), (sys.argv[2], dict(nv=6, n1=4, n2=3, n3=5), "dbn")]:
    Model = import_trusted(Path(path)).Model
    m = Model(seed=0, **sizes)
    data = (np.random.default_rng(0).random((40, 6)) < 0.3).astype(float)
    m.fit({"v": data}, method="greedy", epochs=1, batch_size=20, progress=False)
loaded = sorted(k for k in sys.modules if k.startswith(%r))
print("compiler modules:", loaded)
assert not loaded
"""


def test_greedy_training_runs_without_loading_the_compiler():
    from gdsl.driver import load_module

    # the cached modules (compiled here if missing), so numba's cache serves the subprocess too
    paths = [load_module(ROOT / "models" / f"{model}.gdl").__file__ for model in ("dbm", "dbn")]
    script = SCRIPT % (COMPILER,)
    p = subprocess.run([sys.executable, "-c", script, *paths], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "compiler modules: []" in p.stdout
