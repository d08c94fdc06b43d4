"""Fuzzing, seeded: every generated input keeps the compiler's promise, 1 MB inputs of each
large kind finish within their budgets, and recovery from syntax errors and the compilation
of a correct flat sum stay linear in the size of the file.

The generators and the promise are bench/fuzz.py's (imported, so the two cannot drift; it
also runs the long campaigns: `python bench/fuzz.py --inputs 100000 --seed S --workers 2`).
For every input, `compile_source` ends in user errors that each carry a span inside the text
and a kind, and whose report formats; or in a model whose generated Python passes
`compile()`. Never a CompilerBug, another exception, or more than fuzz.LIMIT seconds.

A failure names its input as SEED:INDEX; `python bench/fuzz.py --replay SEED:INDEX --show`
prints it and checks it again.
"""
from __future__ import annotations

import functools
import importlib.util
import sys
import time
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("gdsl_bench_fuzz", ROOT / "bench" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = fuzz
_spec.loader.exec_module(fuzz)

SEED = 20261206
COUNT = 2500  # about 10 s on this 2-core machine; the test allows 60 (issue 25 asks for at least 2,000)
CI_STRATEGIES = {name: weight for name, weight in fuzz.STRATEGIES.items() if name != "large"}  # below, at 1 MB

# Bugs the fuzzer found in other parts of gdsl, reported to their owners and not fixed yet:
# (what a failure of that bug looks like, a minimal reproducer). A failure that matches one
# is reported as a warning, not as a failure of this test; any other failure fails it. When
# a reproducer keeps the promise again, the test warns that its entry can go.
OPEN_BUGS = {
}


def _open_bug(failure: dict) -> str | None:
    for name, (matches, _) in OPEN_BUGS.items():
        if matches(failure):
            return name
    return None


def _describe(failures) -> str:
    return "\n".join(f"{f['seed']}:{f['index']} ({f['strategy']}) {f['outcome']}: {f['detail'][:600]}"
                     for f in failures[:10])


def test_seeded_inputs_keep_the_promise():
    start = time.perf_counter()
    tally = fuzz.run_inputs(SEED, COUNT, strategies=CI_STRATEGIES)
    elapsed = time.perf_counter() - start
    print(tally.report(elapsed))
    known = [f for f in tally.failures if _open_bug(f)]
    new = [f for f in tally.failures if not _open_bug(f)]
    assert not new, f"{len(new)} inputs break the promise (replay: python bench/fuzz.py --replay SEED:INDEX --show)\n" \
                    + _describe(new)
    for name in sorted({_open_bug(f) for f in known}):
        warnings.warn(f"open bug (reported, not fixed): {name}: "
                      + ", ".join(f"{f['seed']}:{f['index']}" for f in known if _open_bug(f) == name)[:300])
    assert tally.total == COUNT
    assert elapsed < 60, f"{COUNT} inputs took {elapsed:.0f} s"
    # the mix reaches every stage: accepted models, user errors of many kinds, every strategy
    assert tally.outcomes["accepted"] >= COUNT // 10, tally.report()
    assert tally.outcomes["errors"] >= COUNT // 2, tally.report()
    assert len(tally.kinds) >= 8, tally.report()
    assert set(tally.strategies) == set(CI_STRATEGIES), tally.report()


def test_open_bugs_are_still_open():
    """The reproducers of OPEN_BUGS: a warning for each one that keeps the promise again (its
    entry can go, and the reproducer can become a regression test)."""
    for name, (matches, text) in OPEN_BUGS.items():
        result = fuzz.check(text)
        failure = {"outcome": fuzz.outcome_of(result), "detail": result["detail"]}
        if not matches(failure):
            warnings.warn(f"fixed? the reproducer of '{name}' now gives {failure['outcome']}: remove it from OPEN_BUGS")


def test_the_generators_are_deterministic():
    for index in range(0, 400, 7):
        assert fuzz.generate(SEED, index) == fuzz.generate(SEED, index)


# --- 1 MB inputs, one error kind each -------------------------------------------------------
MB = 1 << 20
# CPU seconds allowed for 1 MB (fuzz.check times this process, so other work on the machine
# does not count: CI once failed these under load on the wall clock): about twice what it takes
# on a 2-core machine (measured in the comments), at least 2. The slow ones are bound by lark itself: with the AST built, gdl parses
# at 280 KB/s (a flat sum) to 450 KB/s (statements), `((((...))))` at 210 KB/s (seven
# reductions per ')'); the checker adds 1.7 s to the correct flat sum
LARGE_BUDGETS = {
    "misread": 2,              # 0.05 s: `energy -b @ v  y(1)` over and over (25 errors, then recovery stops)
    "misread_one": 2,          # 0.07 s: the audit's case, a long name before the misread one (was 101 s at 100 KB)
    "misread_spread": 3,       # 1.1 s: a misread name every 25 KB (each error used to re-parse the file)
    "open_brackets": 6,        # 2.3-3.1 s: lark reads a million '(' before the error at the end
    "close_brackets": 2,       # 0.2 s
    "bracket_statements": 2,   # 0.05 s: statements each leaving a bracket open
    "flat_sum": 12,            # 5.7-5.9 s: a correct flat sum of 131,072 `b @ v` (was 24 s); lark 2.9 s, checker 1.7 s
    "flat_sum_error": 7,       # 3.0 s: the same sum with a syntax error at its end (was 6.5 s)
    "flat_sum_unknown": 8,     # 3.6 s: 116,508 undeclared names, each reported (was 6 s)
    "comment": 2,              # 0.07 s: a correct model with a 1 MB comment
    "comment_error": 2,        # 0.03 s: a 1 MB comment, an error after it
    "statements_error": 4,     # 1.8 s: 1 MB of correct statements, then four errors
    "deep": 12,                # 5.4-5.6 s: 512 K nested parentheses, the nesting limit (was 11.6 s); lark 4.5 s
    "long_line": 2,            # 0.04 s: the whole model on one line, 25 errors in it
    "long_name": 2,            # 0.09 s: a 1 MB name
    "bad_characters": 2,       # 0.01 s: characters that are not gdl, on every line
}
ACCEPTED = ("flat_sum", "comment")  # the correct models among them; the others end in errors
# where errors lie all over the file, so that recovery, not lark, sets the time
DOUBLING = ("misread_one", "misread_spread", "long_line", "bracket_statements")


def test_every_large_kind_is_tested():
    assert set(LARGE_BUDGETS) == set(fuzz.LARGE_KINDS)
    assert set(ACCEPTED) <= set(LARGE_BUDGETS)


REFERENCE_LOOP_SECONDS = 0.4  # CPU time of _slowness's loop on the machine the budgets were measured on
# identical runs on a shared 2-core VM moved by up to 2.4x in CPU time (a 1 MB flat sum: 5.2 s,
# then 12.6 s, on the same AMD EPYC): the headroom the budgets keep over the machine's speed
HEADROOM = 1.5


@functools.lru_cache(maxsize=None)
def _slowness() -> float:
    """How much slower this machine runs plain Python than the one the budgets were measured on
    (never below 1; the fastest of three timings), times HEADROOM. Machines differ by 2x, while
    the regressions these budgets catch cost 4x to 10x more (the flat sum once took 24 s, not 5.8)."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        total = 0
        for i in range(5_000_000):
            total += i
        best = min(best, time.process_time() - start)
    return max(1.0, 2 * best / REFERENCE_LOOP_SECONDS) * HEADROOM


@pytest.mark.parametrize("kind", sorted(LARGE_BUDGETS))
def test_one_megabyte_of_one_error_kind(kind):
    budget = LARGE_BUDGETS[kind] * _slowness()
    text = fuzz.large_input(kind, MB)
    assert len(text) >= MB // 2
    result = fuzz.check(text, limit=budget)
    outcome = fuzz.outcome_of(result)
    expected = "accepted" if kind in ACCEPTED else "errors"
    assert outcome == expected, \
        f"{kind}: {outcome} in {result['seconds']:.1f} s (budget {budget:.1f} s)\n{result['detail'][:2000]}"
    assert result["seconds"] < budget


@pytest.mark.parametrize("kind", DOUBLING)
def test_recovery_is_linear(kind):
    """Doubling the input roughly doubles the time (a quadratic path would quadruple it)."""
    half = min(fuzz.check(fuzz.large_input(kind, MB // 2), limit=30)["seconds"] for _ in range(2))
    full = fuzz.check(fuzz.large_input(kind, MB), limit=30)["seconds"]
    assert full < 3 * half + 0.3, f"{kind}: {half:.2f} s for 512 KB, {full:.2f} s for 1 MB"


def test_a_correct_flat_sum_is_linear():
    """A correct flat sum goes through every stage, so every stage stays linear in the number of
    its terms: lowering, like-term merging, code generation and the source kept in the module."""
    def seconds(size: int) -> float:
        result = fuzz.check(fuzz.large_input("flat_sum", size), limit=30)
        assert fuzz.outcome_of(result) == "accepted", result["detail"][:2000]
        return result["seconds"]

    half = min(seconds(MB // 4) for _ in range(2))  # the 1 MB sum is timed above, against its budget
    full = seconds(MB // 2)
    assert full < 3 * half + 0.3, f"flat_sum: {half:.2f} s for 256 KB, {full:.2f} s for 512 KB"


# --- the command line under an ASCII locale ----------------------------------------------------
def test_check_under_the_c_locale():
    """`gdsl check` under LC_ALL=C PYTHONUTF8=0 (ASCII stdout and stderr, file names in
    surrogate escapes) on inputs full of non-ASCII text and bytes: exit 0 or 2, no traceback."""
    strategies = {"unicode": 3, "numbers": 1, "mutant": 1}
    failures = fuzz.locale_sample(SEED, 12, strategies)
    assert not failures, "\n".join(f"{f['seed']}:{f['index']} exit {f['status']}\n{f['stderr'][-1500:]}"
                                   for f in failures)
