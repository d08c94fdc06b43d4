"""Which implementation of a kernel answers a call: numba's, or the numpy tier's.

numba compiles a kernel on its first call: seconds for a new model, before the first sample.
A generated module also holds numpy versions of the sampling kernels (codegen/numpy_tier.py,
`NUMPY_KERNELS`), which need no compiling. The choice is the model's `jit`:

- "background" (the default): the numpy versions answer while a separate process compiles the
  numba kernels into numba's on-disk cache (`python -m gdsl.runtime.background`); once it has
  finished, every call goes to numba (the first loads the kernel from the cache). A separate
  process, not a thread: numba's compiler holds the GIL, and would stall the numpy tier. When
  numba's cache already holds the Gibbs kernel, no process is started: the numpy versions
  answer until they have taken LOAD_SECONDS in all (loading numba's kernels from the cache
  costs about that much; a short script never pays it), then numba does.
- "numba": numba only, each kernel compiled (or loaded from the cache) on its first call.
- "numpy": the numpy versions wherever the module has them, numba for the rest (training,
  AIS), never a background process.

$GDSL_JIT sets the default. Kernels the numpy tier lacks (training epochs, AIS steps, directed
kernels) are numba's in every mode. Both tiers draw from the same streams, so for a seed they
give the same samples up to rounding (runtime/npkernels.py says how rarely that shows).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import warnings

CHOICES = ("background", "numba", "numpy")
WORKER = "gdsl.runtime.background"
LOAD_SECONDS = 0.3  # about what loading a model's sampling kernels from numba's cache takes

# one background compile per (module file, dtype) and process: later models of the class share it
_WORKERS: dict = {}


def choose(jit) -> str:
    """The jit mode: the argument, else $GDSL_JIT, else "background"."""
    if jit is None:
        jit = os.environ.get("GDSL_JIT", "").strip() or "background"
        if jit not in CHOICES:
            raise ValueError(f"GDSL_JIT must be one of {', '.join(CHOICES)}, got {jit!r}")
    if jit not in CHOICES:
        raise ValueError(f"jit must be one of {', '.join(repr(c) for c in CHOICES)}, got {jit!r}")
    return jit


class BackgroundCompile:
    """A process compiling a module's numba kernels for one dtype; `done()` once it has exited."""

    def __init__(self, module_file: str, module_name: str, dtype: str):
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-m", WORKER, module_file, module_name, dtype],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log,
                                     env=dict(os.environ, GDSL_JIT="numba"))
        self.reported = False

    def done(self) -> bool:
        if self.proc.poll() is None:
            return False
        if self.proc.returncode != 0 and not self.reported:
            self.reported = True
            self.log.seek(0)
            tail = self.log.read().decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
            warnings.warn(f"gdsl: compiling in the background failed ({tail[0]}); the kernels compile in this "
                          "process instead", RuntimeWarning, stacklevel=4)
        return True


class Tiers:
    """The kernel each call of one model goes to."""

    def __init__(self, cls, jit: str, dtype: str):
        self.cls, self.jit, self.dtype = cls, jit, dtype
        self.numba = cls.KERNELS
        self.numpy = dict(getattr(cls, "NUMPY_KERNELS", {})) if jit != "numba" else {}
        self.switched = not self.numpy or (jit == "background" and self._compiled_here())
        self.key = (sys.modules[cls.__module__].__file__, cls.__module__, dtype) if self.numpy else None
        self.cached = None  # whether numba's cache has the Gibbs kernel (looked up on the first call)
        self.spent = 0.0  # seconds the numpy versions have taken

    def __reduce__(self):  # a copied model chooses afresh (never copies kernels or a process)
        return (Tiers, (self.cls, self.jit, self.dtype))

    def __deepcopy__(self, memo):
        return Tiers(self.cls, self.jit, self.dtype)

    def _compiled_here(self) -> bool:
        """numba has already compiled (or loaded) this module's Gibbs kernel in this process."""
        dispatcher = self.numba.get("gibbs")
        return bool(getattr(dispatcher, "overloads", None))

    def _in_numbas_cache(self) -> bool:
        """numba's on-disk cache has an index for this module's Gibbs kernel (for some types)."""
        try:
            return os.path.exists(self.numba["gibbs"]._cache._cache_file._index_path)
        except (AttributeError, KeyError, TypeError):  # another numba: start the background process
            return False

    def uses_numpy(self, kernel: str) -> bool:
        if kernel not in self.numpy or self.switched:
            return False
        if self.jit == "numpy":
            return True
        if self.cached is None:
            self.cached = self.key not in _WORKERS and self._in_numbas_cache()
        if self.cached:
            self.switched = self.spent >= LOAD_SECONDS
            return not self.switched
        worker = _WORKERS.get(self.key)
        if worker is None:
            worker = _WORKERS[self.key] = BackgroundCompile(*self.key)
        if worker.done():
            self.switched = True
            return False
        return True

    def run(self, name: str, args):
        """Call kernel `name` on its tier."""
        if not self.uses_numpy(name):
            return self.numba[name](*args)
        start = time.perf_counter()
        try:
            return self.numpy[name](*args)
        finally:
            self.spent += time.perf_counter() - start

    @property
    def tier(self) -> str:
        """"numpy" while the numpy versions answer, else "numba"."""
        return "numba" if self.switched or not self.numpy else "numpy"


def wait(timeout: float | None = None) -> bool:
    """Wait for this process's background compiles; True if all have finished."""
    for worker in list(_WORKERS.values()):
        try:
            worker.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
    return True
