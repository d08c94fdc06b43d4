"""Golden dumps of every pipeline stage for every shipped model.

A change to any stage shows up as a readable diff against tests/golden/.
After an intended change, regenerate with:  GDSL_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py
"""
import ast
import os
from pathlib import Path

import pytest

from gdsl.driver import STAGES, compile_source, dump
from gdsl.errors import Source

ROOT = Path(__file__).resolve().parents[1]
MODELS = sorted((ROOT / "models").glob("*.gdl"))
GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("GDSL_UPDATE_GOLDEN") == "1"


def _compile(path: Path):
    return compile_source(Source(path.read_text(), f"models/{path.name}"))


@pytest.fixture(scope="module", params=MODELS, ids=lambda p: p.stem)
def compiled(request):
    return request.param.stem, _compile(request.param)


@pytest.mark.parametrize("stage", STAGES)
def test_stage_matches_golden(compiled, stage):
    name, c = compiled
    text = dump(c, stage)
    path = GOLDEN / f"{name}.{stage}.golden"
    if UPDATE:
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run with GDSL_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} {stage} differs from {path}"


def test_generated_module_is_valid_python(compiled):
    name, c = compiled
    tree = ast.parse(c.python)
    kernels = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    if c.plan is not None:  # an energy part
        assert {"gibbs", "mean_field", "free_energy"} <= set(kernels)
    if c.directed is not None:
        assert {"joint_forward", "joint_backward", "sample_model"} <= set(kernels)
    assert any(isinstance(n, ast.ClassDef) and n.name == "Model" for n in tree.body)


def test_identical_input_gives_identical_module(compiled, tmp_path):
    name, c = compiled
    text = (ROOT / "models" / f"{name}.gdl").read_text()
    other = compile_source(Source(text, str(tmp_path / "elsewhere.gdl")))
    assert other.python == c.python  # the file's location does not leak into the module


def test_generated_code_points_back_to_source_lines(compiled):
    name, c = compiled
    lines = c.source.text.splitlines()
    for m in c.ir.monomials:
        marker = f"# m{m.id}, line {m.span.line}: "
        assert marker in c.python
        assert lines[m.span.line - 1].strip()[:30] in c.python
    for prog in (c.directed.programs.values() if c.directed is not None else ()):
        for v in prog.values:
            assert f"# {v.name}, line {v.line}: {lines[v.line - 1].strip()[:30]}" in c.python
