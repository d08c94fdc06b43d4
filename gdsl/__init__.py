"""gdsl: write an energy in a .gdl file, get compiled samplers for it."""
__version__ = "0.1.0"

from .errors import CompilerBug, GdslError, ModelErrors  # noqa: E402
from .runtime.ais import LogProbEstimate  # noqa: E402
from .runtime.diagnostics import to_inferencedata  # noqa: E402
from .runtime.parzen import ParzenEstimate, parzen_log_likelihood  # noqa: E402


def load(path, seed=None, dtype=None, jit=None, **sizes_and_consts):
    """Compile (or fetch from the cache) the model in `path` and instantiate it.

    jit: "background" (default, or $GDSL_JIT), "numba" or "numpy": which kernels answer while
    numba has not compiled them (see gdsl.runtime.tiers)."""
    from .driver import load_module

    cls = load_module(path).Model
    if dtype is None:  # each kind of model has its own default (float32 energy models, float64 directed)
        return cls(seed=seed, jit=jit, **sizes_and_consts)
    return cls(seed=seed, dtype=dtype, jit=jit, **sizes_and_consts)


def wait_compiled(timeout=None) -> bool:
    """Wait for the numba kernels this process is compiling in the background (jit="background");
    True once none is left (False if `timeout` seconds passed first)."""
    from .runtime.tiers import wait

    return wait(timeout)


__all__ = ["load", "wait_compiled", "LogProbEstimate", "GdslError", "ModelErrors", "CompilerBug", "to_inferencedata",
           "parzen_log_likelihood",
           "ParzenEstimate", "__version__"]
