"""Checks of the public API's plain arguments: counts, real numbers, optional dicts, seeds.

Each returns the value in the form the kernels want, or raises a ValueError that names the
argument and says what it must be. Without them a float count was silently truncated
(`sample(1.5)` drew one sample), a string count was parsed, and `None`, `inf` or a list
ended in a TypeError or OverflowError from deep inside numpy.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

_INT64_MAX = 2 ** 63 - 1  # counts go to the kernels as int64


def whole(value, what: str, minimum: int = 0) -> int:
    """A count: a Python or numpy integer (not a bool, not a float) >= minimum."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{what} must be a whole number >= {minimum}, got {value!r}")
    if not minimum <= value <= _INT64_MAX:
        raise ValueError(f"{what} must be a whole number >= {minimum}"
                         f"{'' if value < minimum else ' that fits in 64 bits'}, got {value!r}")
    return int(value)


def real(value, what: str, low: float = -math.inf, high: float = math.inf,
         low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number in the interval from low to high (each end closed unless said open)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    x = float(value) if ok else math.nan
    inside = (x > low if low_open else x >= low) and (x < high if high_open else x <= high)
    if not (math.isfinite(x) and inside):
        raise ValueError(f"{what} must be a finite number{_interval(low, high, low_open, high_open)}, "
                         f"got {value!r}")
    return x


def _interval(low, high, low_open, high_open) -> str:
    if low == -math.inf and high == math.inf:
        return ""
    if high == math.inf:
        return f" {'>' if low_open else '>='} {low:g}"
    if low == -math.inf:
        return f" {'<' if high_open else '<='} {high:g}"
    return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def numeric_array(value, dtype, what: str) -> np.ndarray:
    """An array of real numbers (complex is refused: the cast would drop the imaginary part
    with only a warning)."""
    try:
        if np.iscomplexobj(value):
            raise ValueError
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a real-valued numeric array") from None


def mapping(value, what: str) -> Mapping:
    """An optional dict argument (clamp, mask, init, evidence): None means empty."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a dict from variable names to arrays, "
                         f"got {type(value).__name__}")
    return value


def generator(seed) -> np.random.Generator:
    """numpy's generator for `seed` (None, a whole number >= 0, a sequence of them, or a
    SeedSequence / Generator)."""
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError):
        raise ValueError(f"seed must be None or a whole number >= 0, got {seed!r}") from None


def refuse_nothing_to_learn(model) -> None:
    """`fit` on a model whose every number is a size or a constant has nothing to change."""
    if not len(model.params):
        raise ValueError(f"{model.NAME} has no learned parameters (every number in it is a size or a constant), "
                         "so there is nothing to fit; declare with `param` what should be learned, or use the "
                         "model as it is (sample, log_partition, log_prob)")
