"""`python -m gdsl.runtime.background MODULE_FILE MODULE_NAME DTYPE`: compile a generated
module's numba kernels for sampling, mean field and free energies into numba's on-disk cache,
then exit (runtime/tiers.py starts it; the process that started it loads the kernels from the
cache once this has finished).

The module is imported through the cache's own checks (gdsl.cache.import_trusted), exactly as
the parent imported it; the kernels are compiled by running each kind of work once on two rows
(runtime/warming.py), so they have the argument types the parent's calls will have.
"""
from __future__ import annotations

import sys
from pathlib import Path

WORK = ("sample", "mean-field", "free-energy", "log-prob")


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m gdsl.runtime.background MODULE_FILE MODULE_NAME DTYPE", file=sys.stderr)
        return 2
    path, name, dtype = argv
    from .. import cache
    from .warming import warm_model

    module = sys.modules.get(name) or cache.import_trusted(Path(path), module_name=name)
    warm_model(module.Model(seed=0, dtype=dtype, jit="numba"), WORK, report=None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
