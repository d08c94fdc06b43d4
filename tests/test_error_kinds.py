"""Every error of a .gdl file has a kind (errors.KINDS) finer than the default "model".

The error corpus (tests/errors/*.gdl, see test_errors.py) is run through the driver, as
`gdsl check` does: read_source (which reports a file that is not UTF-8), then
compile_source. Every error collected must have a kind other than "model", except the few
listed in STILL_MODEL, which fit none of the finer kinds. A case per kind is pinned.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from gdsl import driver
from gdsl.driver import compile_source, read_source
from gdsl.errors import DEFAULT_KIND, KINDS, GdslError, ModelErrors, Source

ERRORS = Path(__file__).parent / "errors"
CASES = sorted(p.stem for p in ERRORS.glob("*.gdl"))
# messages (their start) that keep the default kind: no finer kind fits them
STILL_MODEL = ("model '",)  # "model 'm' declares no variables"


def _errors_of_file(path: Path) -> list[GdslError]:
    with pytest.raises(ModelErrors) as info:
        compile_source(read_source(path), until="py")
    return info.value.errors


def _errors(text: str) -> list[GdslError]:
    with pytest.raises(ModelErrors) as info:
        compile_source(Source(text, "m.gdl"), until="py")
    return info.value.errors


def test_every_error_of_the_corpus_has_a_finer_kind_than_model():
    assert len(CASES) >= 35
    unclassified = []
    for name in CASES:
        for e in _errors_of_file(ERRORS / f"{name}.gdl"):
            assert e.kind in KINDS, f"{name}.gdl: {e.kind!r}: {e.message}"
            if e.kind == DEFAULT_KIND and not e.message.startswith(STILL_MODEL):
                unclassified.append(f"{name}.gdl: {e.message}")
    assert not unclassified, "errors still of kind 'model':\n" + "\n".join(unclassified)


@pytest.mark.parametrize("name, kinds", [
    ("syntax_double_star", ["syntax"]),
    ("syntax_sum_as_name", ["name", "syntax"]),  # a keyword as a name is a reserved name
    ("duplicate_declaration", ["name"]),
    ("unknown_initialiser", ["name", "domain"]),  # an unknown word, then the initialiser's arguments
    ("shape_matmul", ["shape"]),
    ("index_unused", ["index"]),
    ("directed_domain_mismatch", ["domain"]),
    ("positive_without_init", ["domain", "domain"]),
    ("divide_by_variable", ["structure"]),
    ("directed_cycle", ["directed"]),
    ("let_in_energy", ["directed"]),
    ("number_too_large", ["arithmetic", "arithmetic"]),
    ("nesting_too_deep", ["limit"]),
    ("inject_not_utf8", ["file"]),
    ("many_errors", ["name", "name", "shape", "name", "shape"]),
])
def test_kinds_of_representative_errors(name, kinds):
    assert [e.kind for e in _errors_of_file(ERRORS / f"{name}.gdl")] == kinds


def test_kinds_of_errors_outside_the_corpus():
    header = "model m(n = 4) {\n  visible v[n]: binary\n"
    assert [e.kind for e in _errors(header + "  energy 99999999999999999999 * sum(v)\n}\n")] == ["limit"]
    guides = header + "  latent h[n]: binary\n  energy -sum(v * h)\n" \
        "  guide { h ~ bernoulli(logits = v) }\n  guide { h ~ bernoulli(logits = v) }\n}\n"
    assert [e.kind for e in _errors(guides)] == ["directed"]
    no_variables = _errors("model m(n = 4) {\n  param b[n]\n}\n")
    assert [(e.kind, e.message) for e in no_variables] == [("model", "model 'm' declares no variables")]


def test_file_errors_have_kind_file(tmp_path):
    for path in (tmp_path / "missing.gdl", tmp_path):
        with pytest.raises(GdslError) as info:
            read_source(path)
        assert info.value.kind == "file"


def test_too_deep_for_python_has_kind_limit(monkeypatch):
    def recurse(*args):
        raise RecursionError

    monkeypatch.setattr(driver, "check", recurse)
    with pytest.raises(ModelErrors) as info:
        compile_source(Source("model m(n = 4) {\n  visible v[n]: binary\n}\n", "m.gdl"))
    assert [e.kind for e in info.value.errors] == ["limit"]
