"""Which implementation of a kernel answers a call: numba's, or the numpy tier's.

numba compiles a kernel on its first call: seconds for a new model, before the first sample.
A generated module also holds numpy versions of the sampling kernels (codegen/numpy_tier.py,
`NUMPY_KERNELS`), which need no compiling. The choice is the model's `jit`:

- "background" (the default): the numpy versions answer while a separate process compiles the
  numba kernels into numba's on-disk cache (`python -m gdsl.runtime.background`); once it has
  finished, every call goes to numba (the first loads the kernel from the cache). A separate
  process, not a thread: numba's compiler holds the GIL, and would stall the numpy tier. A
  kernel numba's cache already holds needs no process: its numpy version answers until the
  numpy versions have taken LOAD_SECONDS in all (loading numba's kernels from the cache costs
  about that much; a short script never pays it), then numba's does. Long Gibbs runs are cut
  into calls of CHUNK sweeps meanwhile (on the same streams), so a run switches as it goes.
- "numba": numba only, each kernel compiled (or loaded from the cache) on its first call.
- "numpy": the numpy versions wherever the module has them, numba for the rest (training,
  AIS), never a background process.

$GDSL_JIT sets the default. Kernels the numpy tier lacks (training epochs, AIS steps, directed
kernels) are numba's in every mode. Both tiers draw from the same streams, so for a seed they
give the same samples up to rounding (runtime/npkernels.py says how rarely that shows).
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings

CHOICES = ("background", "numba", "numpy")
WORKER = "gdsl.runtime.background"
LOAD_SECONDS = 0.3  # about what loading a model's sampling kernels from numba's cache takes
CHUNK = 10  # Gibbs sweeps per call while a background compile may finish

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
    """A process compiling a module's numba kernels for one dtype; `done()` once it has exited.

    Started with os.posix_spawn and reaped with waitpid, so a process that ends first leaves it
    running to completion (it fills the cache for the next run) without a warning."""

    def __init__(self, module_file: str, module_name: str, dtype: str):
        fd, name = tempfile.mkstemp(prefix="gdsl-background-")
        os.unlink(name)  # its stderr, read if it fails
        self.log = fd
        argv = [sys.executable, "-m", WORKER, module_file, module_name, dtype]
        actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0), (os.POSIX_SPAWN_DUP2, fd, 2)]
        self.pid = os.posix_spawn(sys.executable, argv, dict(os.environ, GDSL_JIT="numba"), file_actions=actions)
        self.returncode = None

    def done(self) -> bool:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere
                pid, status = self.pid, 0
            if pid == 0:
                return False
            self.returncode = os.waitstatus_to_exitcode(status)
            if self.returncode != 0:
                os.lseek(self.log, 0, os.SEEK_SET)
                text = os.read(self.log, 1 << 16).decode("utf-8", "replace").strip().splitlines()
                warnings.warn(f"gdsl: compiling in the background failed ({(text or ['no message'])[-1]}); the "
                              "kernels compile in this process instead", RuntimeWarning, stacklevel=5)
            os.close(self.log)
        return True


class Tiers:
    """The kernel each call of one model goes to."""

    def __init__(self, cls, jit: str, dtype: str):
        self.cls, self.jit, self.dtype = cls, jit, dtype
        self.numba = cls.KERNELS
        self.numpy = dict(getattr(cls, "NUMPY_KERNELS", {})) if jit != "numba" else {}
        module_file = getattr(sys.modules.get(cls.__module__), "__file__", None)
        self.key = (module_file, cls.__module__, dtype)
        self.ready: set = set()  # kernels numba answers from now on
        if jit == "background" and (module_file is None or not hasattr(os, "posix_spawn")):
            self.ready = set(self.numpy)  # nothing can compile elsewhere: numba, as jit="numba"
        self.spent = 0.0  # seconds the numpy versions have taken

    def __reduce__(self):  # a copied model chooses afresh (never copies kernels or a process)
        return (Tiers, (self.cls, self.jit, self.dtype))

    def __deepcopy__(self, memo):
        return Tiers(self.cls, self.jit, self.dtype)

    def _compiled_here(self, kernel: str) -> bool:
        """numba has compiled (or loaded) `kernel` in this process already."""
        return bool(getattr(self.numba.get(kernel), "overloads", None))

    def _in_numbas_cache(self, kernel: str) -> bool:
        """numba's on-disk cache has an index for `kernel` (for some argument types)."""
        try:
            return os.path.exists(self.numba[kernel]._cache._cache_file._index_path)
        except (AttributeError, KeyError, TypeError):  # another numba's layout: compile in the background
            return False

    def uses_numpy(self, kernel: str) -> bool:
        """Whether the numpy version answers a call of `kernel` now (may start the background compile)."""
        if kernel not in self.numpy or kernel in self.ready:
            return False
        if self.jit == "numpy":
            return True
        if self._compiled_here(kernel):
            self.ready.add(kernel)
            return False
        worker = _WORKERS.get(self.key)
        if worker is not None:
            if worker.done():
                self.ready.update(self.numpy)
                return False
            return True
        if self._in_numbas_cache(kernel):
            if self.spent >= LOAD_SECONDS:
                self.ready.add(kernel)
                return False
            return True
        _WORKERS[self.key] = BackgroundCompile(*self.key)
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

    def chunks(self, steps: int) -> list[int]:
        """`steps` Gibbs sweeps as the calls to make: one, or (while numpy answers and numba may
        take over) calls of CHUNK sweeps."""
        if self.jit != "background" or steps <= CHUNK or not self.uses_numpy("gibbs"):
            return [steps]
        return [CHUNK] * (steps // CHUNK) + ([steps % CHUNK] if steps % CHUNK else [])

    @property
    def tier(self) -> str:
        """"numpy" while the numpy versions answer Gibbs sampling, else "numba"."""
        return "numpy" if "gibbs" in self.numpy and "gibbs" not in self.ready else "numba"


def wait(timeout: float | None = None) -> bool:
    """Wait for this process's background compiles; True if all have finished."""
    deadline = None if timeout is None else time.monotonic() + timeout
    for worker in list(_WORKERS.values()):
        while not worker.done():
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.05)
    return True
