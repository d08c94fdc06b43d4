"""Golden dumps of every pipeline stage for every shipped model.

A change to any stage shows up as a readable diff against tests/golden/.
After an intended change, regenerate with:  GDSL_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py

The comparison is exact, comments included: the generated module's comments ('mN, line L: ...'
and 'vN, line L: ...') point back to the .gdl lines and are part of the product. Nothing in a
dump varies between runs, machines or file locations (the header's version and source hash
are fixed by the gdsl version and the .gdl text), so no tolerance is needed; a version bump is
an intended change and is regenerated like any other.
"""
import ast
import difflib
import io
import os
import re
import tokenize
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


def golden_difference(text: str, golden: str, label: str = "golden") -> str:
    """A unified diff of `golden` against `text`, or "" if they are identical, character for
    character (comments, blank lines and trailing newline included)."""
    if text == golden:
        return ""
    diff = "".join(difflib.unified_diff(golden.splitlines(keepends=True), text.splitlines(keepends=True),
                                        label, "generated"))
    return diff or f"{label}: the texts differ only in line endings or the final newline"


def comments(python: str) -> list[tuple[int, str]]:
    """(line number, text) of every comment in a Python module: real comment tokens only, so a
    string literal that contains '#' (such as the embedded SOURCE_TEXT) does not count."""
    return [(tok.start[0], tok.string) for tok in tokenize.generate_tokens(io.StringIO(python).readline)
            if tok.type == tokenize.COMMENT]


POINTER = re.compile(r"# (?P<name>[mv]\d+), line (?P<line>\d+): (?P<text>.*)")


def pointer_errors(source_text: str, monomials, values, python: str) -> list[str]:
    """What is wrong with the module's comments that point back to .gdl lines.

    `monomials`: (id, line) of the energy monomials; `values`: (name, line) of the directed
    plan's values (names repeat across the plan's programs). Each must have a comment
    '# mN, line L: <.gdl line L>' (resp. '# vN, ...'), and every such comment must name a
    monomial or value of that line and quote the line. Checked against the comment tokens
    alone: the module also embeds the whole .gdl text in SOURCE_TEXT, so a plain substring
    search would find every source line even with no comments at all."""
    lines = source_text.splitlines()
    expected = {(f"m{i}", line) for i, line in monomials} | set(values)
    seen, errors = set(), []
    for at, comment in comments(python):
        m = POINTER.fullmatch(comment)
        if m is None:
            continue
        key = (m["name"], int(m["line"]))
        if key not in expected:
            errors.append(f"module line {at}: {comment!r}: there is no {key[0]} at .gdl line {key[1]}")
            continue
        quoted = lines[key[1] - 1].strip()
        if not quoted or not m["text"].startswith(quoted):
            errors.append(f"module line {at}: {comment!r} does not quote .gdl line {key[1]}: {quoted!r}")
            continue
        seen.add(key)
    errors += [f"no comment points {name} back to .gdl line {line}" for name, line in sorted(expected - seen)]
    return errors


def _pointers(c):
    monomials = [(m.id, m.span.line) for m in c.ir.monomials]
    values = [(v.name, v.line) for prog in (c.directed.programs.values() if c.directed is not None else ())
              for v in prog.values]
    return monomials, values


@pytest.mark.parametrize("stage", STAGES)
def test_stage_matches_golden(compiled, stage):
    name, c = compiled
    text = dump(c, stage)
    path = GOLDEN / f"{name}.{stage}.golden"
    if UPDATE:
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run with GDSL_UPDATE_GOLDEN=1"
    diff = golden_difference(text, path.read_text(), str(path))
    assert not diff, f"{name} {stage} differs from {path}:\n{diff}"


def test_generated_module_is_valid_python(compiled):
    name, c = compiled
    compile(c.python, f"{name}_model.py", "exec")  # what ast.parse misses: duplicate arguments, ...
    tree = ast.parse(c.python)
    kernels = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    if c.plan is not None:  # an energy part
        assert {"gibbs", "mean_field", "free_energy"} <= set(kernels)
    if c.directed is not None:
        assert {"joint_forward", "joint_backward", "sample_model"} <= set(kernels)
    assert any(isinstance(n, ast.ClassDef) and n.name == "Model" for n in tree.body)
    lines = c.python.split("\n")
    long = [line for line in lines if len(line) > 120 and not line.lstrip().startswith("#")]
    assert not long, f"code lines over 120 characters: {long[:3]}"
    for noise in ("* 1.0)", " * 1.0\n", "-1.0 * ", "+ 0.0 * ", " + 0\n"):
        assert noise not in c.python, f"unfolded constant {noise!r} in the generated module"


def test_identical_input_gives_identical_module(compiled, tmp_path):
    name, c = compiled
    text = (ROOT / "models" / f"{name}.gdl").read_text()
    other = compile_source(Source(text, str(tmp_path / "elsewhere.gdl")))
    assert other.python == c.python  # the file's location does not leak into the module


def test_generated_code_points_back_to_source_lines(compiled):
    name, c = compiled
    monomials, values = _pointers(c)
    assert monomials or values
    errors = pointer_errors(c.source.text, monomials, values, c.python)
    assert not errors, "\n".join(errors)


def _edit_comments(python: str, edit) -> str:
    """The module with each comment replaced by edit(comment); "" removes it (and the spaces
    before it). Code and string literals are untouched."""
    lines = python.splitlines(keepends=True)
    for (at, col), comment in reversed([(tok.start, tok.string) for tok in
                                        tokenize.generate_tokens(io.StringIO(python).readline)
                                        if tok.type == tokenize.COMMENT]):
        line = lines[at - 1]
        head, tail = line[:col], line[col + len(comment):]
        new = edit(comment)
        lines[at - 1] = head + new + tail if new else head.rstrip() + tail
    return "".join(lines)


def _edit_pointers(rewrite):
    """A mutation rewriting each 'xN, line L: text' comment with rewrite(name, line, text)."""
    def edit(comment):
        m = POINTER.fullmatch(comment)
        return rewrite(m["name"], int(m["line"]), m["text"]) if m else comment
    return lambda python: _edit_comments(python, edit)


MUTATIONS = {
    # every comment gone; the .gdl text is still in SOURCE_TEXT, so a substring search finds it
    "stripped": lambda python: _edit_comments(python, lambda comment: ""),
    # the markers kept, the quoted .gdl line dropped
    "unquoted": _edit_pointers(lambda name, line, text: f"# {name}, line {line}: "),
    # each comment pointing one line too far down
    "shifted": _edit_pointers(lambda name, line, text: f"# {name}, line {line + 1}: {text}"),
    # the quoted line's first character changed
    "misquoted": _edit_pointers(lambda name, line, text: f"# {name}, line {line}: ?{text[1:]}"),
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_changed_comments_are_caught(compiled, mutation):
    """The checks above can fail: a module whose comments were stripped or altered is still
    valid Python with the same code, yet differs from the golden file and fails the pointers."""
    name, c = compiled
    changed = MUTATIONS[mutation](c.python)
    assert changed != c.python
    ast.parse(changed)
    if mutation == "stripped":
        assert not comments(changed)
        assert ast.dump(ast.parse(changed)) == ast.dump(ast.parse(c.python))  # only comments differ
        assert all(line.strip()[:30] in changed for line in c.source.text.splitlines())
    # the module as generated stands for its golden file (which test_stage_matches_golden
    # holds equal to it), so this does not depend on the golden files being up to date
    assert not golden_difference(c.python, c.python)
    assert golden_difference(changed, c.python)
    assert not pointer_errors(c.source.text, *_pointers(c), c.python)
    assert pointer_errors(c.source.text, *_pointers(c), changed)
