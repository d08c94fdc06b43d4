"""gdsl: write an energy in a .gdl file, get compiled samplers for it."""
__version__ = "0.1.0"

from .errors import CompilerBug, GdslError, ModelErrors  # noqa: E402
from .runtime.diagnostics import to_inferencedata  # noqa: E402
from .runtime.parzen import ParzenEstimate, parzen_log_likelihood  # noqa: E402


def load(path, seed=None, dtype=None, **sizes_and_consts):
    """Compile (or fetch from the cache) the model in `path` and instantiate it."""
    from .driver import load_module

    cls = load_module(path).Model
    if dtype is None:  # each kind of model has its own default (float32 energy models, float64 directed)
        return cls(seed=seed, **sizes_and_consts)
    return cls(seed=seed, dtype=dtype, **sizes_and_consts)


__all__ = ["load", "GdslError", "ModelErrors", "CompilerBug", "to_inferencedata", "parzen_log_likelihood",
           "ParzenEstimate", "__version__"]
