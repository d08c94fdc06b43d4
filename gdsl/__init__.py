"""gdsl: write an energy in a .gdl file, get compiled samplers for it."""
__version__ = "0.1.0"

from .errors import CompilerBug, GdslError, ModelErrors  # noqa: E402


def load(path, seed=None, dtype="float32", **sizes_and_consts):
    """Compile (or fetch from the cache) the model in `path` and instantiate it."""
    from .runtime.cache import load_module

    return load_module(path).Model(seed=seed, dtype=dtype, **sizes_and_consts)


__all__ = ["load", "GdslError", "ModelErrors", "CompilerBug", "__version__"]
