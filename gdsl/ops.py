"""The operator table: what each function of the language means, in one place.

Every stage reads this table and nothing else about functions: the checker (which names are
functions, where they may appear), the printers (the numba callable), the initialisers of
generated modules (the Python implementation), the gradient derivation (the derivative
formula), and the directed code generator (which functions have a SIMD helper over whole
arrays). So a function is either supported in every position the language allows or
refused by the checker; `tests/test_ops.py` sweeps every entry through every position.

A derivative is a small formula, data rather than code, over "a" (the argument) and "y"
(the function's value f(a)): numbers, the names "a" and "y", ("neg", f), (op, f, g) for
op in + - * /, and (name, f) for a function of this table. Keeping it data keeps this
module free of the compiler's types, so the runtime (and generated modules) can import it.
"""
from __future__ import annotations

import math
import types
from dataclasses import dataclass
from typing import Callable, Union

Formula = Union[float, str, tuple]


@dataclass(frozen=True)
class Function:
    name: str
    numba: str  # the callable generated kernels call (`math` and `_k`, the kernels module, are in scope)
    python: Callable[[float], float]  # the same on Python floats, numpy's conventions (inf, nan; no raise)
    derivative: Formula  # d f(a) / d a, over "a" and "y" = f(a)
    summary: str
    vector: str | None = None  # `_k.<vector>(array)`: f over a whole array in place, in SIMD blocks
    written: bool = True  # False: introduced by the compiler only (the derivative of relu)
    in_energy: bool = True  # may appear in an energy (applied to parameters and constants)
    numpy: str = ""  # the numpy tier's callable on arrays (`np`, and `_nk`, runtime/npkernels.py, in scope)

    @property
    def arity(self) -> int:
        return 1


# Python implementations for initialisers: values a numpy user expects, never an exception
def _exp(a: float) -> float:
    try:
        return math.exp(a)
    except OverflowError:
        return math.inf


def _log(a: float) -> float:
    if a != a or a < 0:
        return math.nan
    return -math.inf if a == 0 else math.log(a)


def _sqrt(a: float) -> float:
    return math.nan if a != a or a < 0 else math.sqrt(a)


def _sigmoid(a: float) -> float:
    if a != a:
        return math.nan
    if a >= 0:
        return 1.0 / (1.0 + math.exp(-a))
    e = math.exp(a)
    return e / (1.0 + e)


def _softplus(a: float) -> float:
    if a != a:
        return math.nan
    if a == math.inf:
        return math.inf
    return max(a, 0.0) + math.log1p(math.exp(-abs(a)))


def _log_sigmoid(a: float) -> float:
    return -_softplus(-a)


def _relu(a: float) -> float:
    return a if a > 0.0 else (math.nan if a != a else 0.0)


def _step(a: float) -> float:
    return 1.0 if a > 0.0 else (math.nan if a != a else 0.0)


def _tanh(a: float) -> float:
    return math.tanh(a)


_TABLE = (
    Function("exp", "math.exp", _exp, "y", "e^a", vector="vexp_inplace", numpy="_nk.exp"),
    Function("log", "math.log", _log, ("/", 1.0, "a"), "natural logarithm (a > 0)", numpy="_nk.log"),
    Function("sqrt", "math.sqrt", _sqrt, ("/", 0.5, "y"), "square root (a >= 0)", numpy="_nk.sqrt"),
    Function("tanh", "math.tanh", _tanh, ("-", 1.0, ("*", "y", "y")), "hyperbolic tangent",
             vector="vtanh_inplace", numpy="np.tanh"),
    Function("sigmoid", "_k.sigmoid", _sigmoid, ("*", "y", ("-", 1.0, "y")), "1 / (1 + e^-a)",
             vector="vsigmoid_inplace", numpy="_nk.sigmoid"),
    Function("softplus", "_k.softplus", _softplus, ("sigmoid", "a"), "log(1 + e^a), without overflow",
             numpy="_nk.softplus"),
    Function("relu", "_k.relu", _relu, ("step", "a"), "max(a, 0); its derivative is 0 at 0", numpy="_nk.relu"),
    Function("log_sigmoid", "_k.log_sigmoid", _log_sigmoid, ("sigmoid", ("neg", "a")),
             "log(sigmoid(a)) = -softplus(-a), without overflow", numpy="_nk.log_sigmoid"),
    Function("step", "_k.step", _step, 0.0, "1 if a > 0 else 0 (the derivative of relu)", written=False,
             numpy="_nk.step"),
)

FUNCTIONS: dict[str, Function] = {f.name: f for f in _TABLE}
WRITTEN: tuple[str, ...] = tuple(f.name for f in _TABLE if f.written)  # the names a .gdl file may call
VECTORISED: tuple[str, ...] = tuple(f.name for f in _TABLE if f.vector)

# `_py.<name>(x)` in a generated module's initialisers
PY = types.SimpleNamespace(**{f.name: f.python for f in _TABLE})


def lookup(name: str) -> Function:
    """The table's entry for `name`; a missing one is a compiler bug (the checker admits only WRITTEN)."""
    try:
        return FUNCTIONS[name]
    except KeyError:
        from .errors import CompilerBug

        raise CompilerBug(f"the operator table has no function {name!r}") from None
