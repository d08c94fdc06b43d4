"""Error messages, pinned as a corpus: tests/errors/NAME.gdl and its exact output NAME.err.

NAME.err is what `gdsl check NAME.gdl` prints on stderr when run from tests/errors (so the
file name in it is relative). The tests run the CLI in-process on each file and compare.

To regenerate every .err after a deliberate change of a message, run

    GDSL_UPDATE_ERRORS=1 python -m pytest tests/test_errors.py

and read the diff of tests/errors/*.err before committing it: each message should tell a
user where the problem is and what to change.

tests/errors/valid/*.gdl are models that try to smuggle Python into the generated module
(through comments with odd line breaks, or names such as __import__) but are valid: they
must compile, and the generated module must keep their text inside comments.
"""
from __future__ import annotations

import ast
import importlib.util
import io
import os
import random
import re
import sys
import tokenize
from pathlib import Path

import pytest

from gdsl import cli
from gdsl.driver import compile_source
from gdsl.errors import GdslError, ModelErrors, Source

ERRORS = Path(__file__).parent / "errors"
MODELS = Path(__file__).parent.parent / "models"
UPDATE = os.environ.get("GDSL_UPDATE_ERRORS") == "1"
CASES = sorted(p.stem for p in ERRORS.glob("*.gdl"))
VALID = sorted(p.stem for p in (ERRORS / "valid").glob("*.gdl"))
HEAD = re.compile(r"^(?P<file>[^\s:][^:]*):(?P<line>\d+):(?P<col>\d+): error: (?P<msg>.+)$")


def run_check(name: str, monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.chdir(ERRORS)
    capsys.readouterr()
    status = cli.main(["check", f"{name}.gdl"])
    return status, capsys.readouterr().err


def expected(name: str) -> str:
    return (ERRORS / f"{name}.err").read_text(encoding="utf-8")


def test_corpus_is_complete():
    assert len(CASES) >= 35
    missing = [n for n in CASES if not (ERRORS / f"{n}.err").exists() and not UPDATE]
    assert not missing, f"no .err for {missing}: run with GDSL_UPDATE_ERRORS=1"
    orphans = sorted(p.stem for p in ERRORS.glob("*.err") if p.stem not in CASES)
    assert not orphans, f".err without .gdl: {orphans}"


@pytest.mark.parametrize("name", CASES)
def test_error_output(name, monkeypatch, capsys):
    status, err = run_check(name, monkeypatch, capsys)
    if UPDATE:
        (ERRORS / f"{name}.err").write_text(err, encoding="utf-8", newline="\n")
    assert status == 2, f"{name}.gdl: exit status {status}, not 2 (a model error)\n{err}"
    assert err == expected(name)


@pytest.mark.parametrize("name", CASES)
def test_every_error_has_location_line_and_caret(name):
    lines = expected(name).rstrip("\n").split("\n")
    heads = [k for k, line in enumerate(lines) if ": error: " in line]
    assert heads, f"{name}.err reports no error"
    for k in heads:
        m = HEAD.match(lines[k])
        assert m, f"{name}.err: no FILE:LINE:COL in {lines[k]!r}"
        assert m["file"] == f"{name}.gdl"
        gutter = re.match(r"^ *(\d+) \| ", lines[k + 1])
        assert gutter and int(gutter[1]) == int(m["line"]), f"{name}.err: no source line after {lines[k]!r}"
        caret = lines[k + 2]
        assert re.fullmatch(r" *\^+", caret), f"{name}.err: no caret line after {lines[k + 1]!r}"
        assert caret.index("^") == len(gutter[0]) + int(m["col"]) - 1 or "..." in lines[k + 1]
        assert "Traceback" not in lines[k]
    n = len(heads)
    assert lines[-1] == f"{n} error{'s' if n != 1 else ''} in {name}.gdl"


@pytest.mark.parametrize("name", CASES)
def test_errors_are_sorted_by_position(name):
    positions = [(int(m["line"]), int(m["col"])) for m in map(HEAD.match, expected(name).split("\n")) if m]
    assert positions == sorted(positions)


def test_all_errors_of_a_file_are_reported():
    heads = [line for line in expected("many_errors").split("\n") if ": error: " in line]
    assert len(heads) == 5
    assert {m.split(": error: ")[1].split(" ")[0] for m in heads} >= {"unknown", "'W'", "cannot", "an"}


def test_syntax_recovery_reports_a_later_separate_error():
    heads = [line for line in expected("syntax_recovery").split("\n") if ": error: " in line]
    assert [h.split(":")[1] for h in heads] == ["5", "9"]
    heads = [line for line in expected("syntax_recovery_three").split("\n") if ": error: " in line]
    assert [h.split(":")[1] for h in heads] == ["3", "6", "10"]


def test_unknown_name_outside_subscripts_is_not_told_to_become_an_index():
    text = expected("unknown_name_in_sum")
    assert "sum[q]" not in text and "declare it" in text
    assert "add it to the enclosing sum: sum[i, j]" in expected("index_unbound")


def test_no_message_shows_ir_notation():
    """Messages quote the .gdl text; the IR's monomials (`term m0 (-1 * L[i0, i1] ...)`) and its
    renamed indices (i0, t3) are for dumps only."""
    ir_text = re.compile(r"term m\d|\bi\d+\b|\bt\d+\b| for \w+ in \[")
    for name in CASES:
        for line in expected(name).split("\n"):
            if ": error: " in line:
                assert not ir_text.search(line.split(": error: ", 1)[1]), f"{name}.err: {line}"


def test_model_errors_carry_spans_and_the_file_name():
    src = (ERRORS / "real_without_quadratic.gdl").read_text()
    with pytest.raises(ModelErrors) as info:
        compile_source(Source(src, "grbm.gdl"))
    assert info.value.format().startswith("grbm.gdl:2:13: error: the real variable v")
    assert all(e.span is not None for e in info.value.errors)


# injection -------------------------------------------------------------------------------
PAYLOAD = "pwned"


def _generated(name: str) -> str:
    path = ERRORS / "valid" / f"{name}.gdl"
    text = path.read_bytes().decode("utf-8")
    return compile_source(Source(text, path.name), until="py").python


def _source_literal_lines(code: str, source: str) -> set[int]:
    """The lines of `SOURCE_TEXT = <string literals>` assignments that evaluate to exactly the
    source: the module keeps its .gdl text as data (repr'd chunks cannot be escaped from)."""
    lines = set()
    for node in ast.walk(ast.parse(code)):
        if (isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["SOURCE_TEXT"]
                and isinstance(node.value, ast.Constant) and node.value.value == source):
            lines.update(range(node.lineno, node.end_lineno + 1))
    return lines


def _is_the_source_literal(tok, code: str, source: str) -> bool:
    return tok.type == tokenize.STRING and tok.start[0] in _source_literal_lines(code, source)


@pytest.mark.parametrize("name", VALID)
def test_user_text_stays_in_comments(name):
    code = _generated(name)
    source = (ERRORS / "valid" / f"{name}.gdl").read_bytes().decode("utf-8")
    ast.parse(code)
    assert "\x00" not in code and "\r" not in code
    assert all(ch == "\n" or ch.isprintable() for ch in code), "odd characters in the generated module"
    assert code.splitlines() == code.split("\n")[:-1], "a line break Python sees but the emitter did not"
    tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    for tok in tokens:
        if PAYLOAD in tok.string or "__import__(" in tok.string:
            if _is_the_source_literal(tok, code, source):
                continue
            assert tok.type == tokenize.COMMENT, f"user text outside a comment: {tok}"
            line = code.split("\n")[tok.start[0] - 1]
            assert line.lstrip().startswith("#"), f"a comment-bearing line runs code: {line!r}"
    # no call in the module can reach the payload: every name it uses is ours or prefixed
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Name):
            assert node.id not in ("__import__", "eval", "exec", "open"), node.id


@pytest.mark.parametrize("name", ["comment_line_separator", "dunder_names"])
def test_importing_the_generated_module_does_not_run_the_payload(name, tmp_path, monkeypatch):
    marker = tmp_path / "marker"
    monkeypatch.setenv("GDSL_PWNED", str(marker))
    module = tmp_path / f"inj_{name}.py"
    module.write_text(_generated(name))
    spec = importlib.util.spec_from_file_location(f"inj_{name}", module)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # numba compiles lazily: importing costs no compilation
    assert not marker.exists()
    assert mod.Model.NAME in ("rbm", "__import__")


# fuzzing --------------------------------------------------------------------------------
_TOKENS = ["(", ")", "[", "]", "{", "}", "@", "*", "/", "^", "+", "-", ",", ":", "~", "=", "<", "<=",
           "sum", "sum[i]", "exp", "v", "h", "i", "j", "0", "2.5", "1e999", "energy ", "param ", "visible ",
           "latent ", "binary", "real", "categorical(2)", "#", "\n", "$", "**", "\u2028", "\r", "\x00",
           "model", "symmetric", "normal(0, 1)", "^3", "^2", "0.0", "99999999999999999999"]


def _mutate(text: str, rng: random.Random) -> str:
    parts = re.findall(r"\w+|\s+|.", text, re.S)
    for _ in range(rng.randint(1, 3)):
        k = rng.randrange(len(parts) + 1)
        op = rng.random()
        if op < 0.3 and k < len(parts):
            del parts[k]
        elif op < 0.6:
            parts.insert(k, rng.choice(_TOKENS))
        elif op < 0.8 and k < len(parts):
            parts[k] = rng.choice(_TOKENS)
        else:
            parts.insert(k, chr(rng.randrange(1, 0x3000)))
    return "".join(parts)


def test_mutated_models_end_in_success_or_model_errors():
    """A small, seeded version of the fuzzing done while writing the error messages."""
    rng = random.Random(20240601)
    models = [p.read_text() for p in sorted(MODELS.glob("*.gdl"))]
    assert models
    outcomes = {"ok": 0, "error": 0}
    for _ in range(200):
        text = _mutate(rng.choice(models), rng)
        try:
            compiled = compile_source(Source(text, "fuzz.gdl"), until="py")
        except GdslError as e:
            outcomes["error"] += 1
            report = e.format()
            assert "fuzz.gdl:" in report, report
            for sub in getattr(e, "errors", [e]):
                assert sub.span is not None, f"an error without a position: {sub.message}\n{text!r}"
            continue
        except Exception as e:  # CompilerBug or anything else is a failure of the compiler
            pytest.fail(f"{type(e).__name__}: {e}\non input:\n{text!r}")
        compile(compiled.python, "fuzz_model.py", "exec")
        outcomes["ok"] += 1
    assert outcomes["ok"] and outcomes["error"]
