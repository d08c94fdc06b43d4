"""The on-disk store of compiled modules: where it is, what it trusts, how files get in and out.

Importing a cached module runs its code, and numba's own cache files beside it are pickles,
so the store trusts only what no other user could have written: a directory owned by the
current user (or root) that is not group- or world-writable, and files in it with the same
owner and no group/world write bit. A directory that fails the check (a shared mode-1777
directory, one owned by someone else, a regular file, an unwritable path) is not used: gdsl
warns once, naming the reason, and falls back to a private directory. Directories gdsl
creates are 0700 and the files it writes 0600.

A module is read through a checked file descriptor and executed from those bytes, so the file
that was checked is the file that runs, and Python's own bytecode cache (another file someone
could plant) is never consulted. This module imports neither the compiler nor the runtime.
"""
from __future__ import annotations

import functools
import hashlib
import os
import stat
import sys
import tempfile
import types
import warnings
from importlib import resources
from pathlib import Path

MAX_STEM = 80  # file-name stems stay far below every file system's 255-byte limit
NUMBA_CACHE_SUFFIXES = (".nbi", ".nbc")


class UntrustedCacheWarning(UserWarning):
    """The configured cache directory is not safe (or not usable); a private one is used instead."""


class CacheRepairWarning(UserWarning):
    """A cached module was damaged or changed since gdsl wrote it; it is rebuilt."""


class UntrustedFile(Exception):
    """A file in the cache that another user could have written; never imported."""


def configured_dir() -> tuple[Path, str]:
    """The directory the user asked for and how they asked (for messages)."""
    root = os.environ.get("GDSL_CACHE_DIR")
    if root:
        return Path(root), "GDSL_CACHE_DIR"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gdsl", "the default cache directory"


def cache_dir() -> Path:
    """The directory compiled modules live in: the configured one if it is safe, else a private one."""
    path, how = configured_dir()
    return _resolve(str(path), how)


@functools.lru_cache(maxsize=None)
def _resolve(path: str, how: str) -> Path:
    reason = _unusable(Path(path))
    if reason is None:
        return Path(path)
    fallback = _private_fallback(exclude=Path(path))
    warnings.warn(f"gdsl: not using the cache directory {path} ({how}): {reason}; "
                  f"compiled models go to the private directory {fallback} instead",
                  UntrustedCacheWarning, stacklevel=4)
    return fallback


@functools.lru_cache(maxsize=1)
def private_dir() -> Path:
    """A fresh directory only this process knows (0700): the last resort for an untrusted entry."""
    return Path(tempfile.mkdtemp(prefix="gdsl-cache-"))


def _private_fallback(exclude: Path) -> Path:
    """The per-user default directory when it is safe (and is not the one refused), else a fresh temp one."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")) / "gdsl"
    if default != exclude and _unusable(default) is None:
        return default
    return private_dir()


def _unusable(path: Path) -> str | None:
    """Why `path` cannot serve as the cache directory (created 0700 if missing), or None."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        return "it is a file, not a directory"
    except PermissionError:
        return "cannot create it (permission denied)"
    except OSError as e:
        return f"cannot create it ({e.strerror or e})"
    try:
        st = os.stat(path)
    except OSError as e:
        return f"cannot read it ({e.strerror or e})"
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a directory"
    why = _untrusted(st)
    if why:
        return why
    if not os.access(path, os.W_OK | os.X_OK):
        return "it is not writable by you"
    return None


def _trusted_owners() -> tuple[int, ...]:
    return (os.geteuid(), 0) if hasattr(os, "geteuid") else ()


def _untrusted(st: os.stat_result) -> str | None:
    """Why a file or directory with this status could hold another user's code, or None."""
    owners = _trusted_owners()
    if not owners:  # no uids (Windows): per-user profile directories are private by default
        return None
    if st.st_uid not in owners:
        return f"it is owned by another user (uid {st.st_uid})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "it is writable by other users (group or world write permission)"
    return None


@functools.lru_cache(maxsize=1)
def compiler_fingerprint() -> str:
    """A hash of gdsl's own sources and grammar: a changed compiler never reuses an old module."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    files = sorted(root.rglob("*.py")) + sorted(root.rglob("*.lark"))
    grammar = resources.files("gdsl.grammars").joinpath("gdl.lark")
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    h.update(grammar.read_bytes())
    return h.hexdigest()


def module_path(name: str, key_text: str) -> Path:
    """The cache file for a model called `name` whose source (with any extra key) is `key_text`."""
    from . import __version__

    key = hashlib.sha256((compiler_fingerprint() + "\0" + __version__ + "\0" + key_text)
                         .encode("utf-8", "surrogatepass")).hexdigest()
    return cache_dir() / f"{safe_stem(name)}_{key[:20]}.py"


def safe_stem(name: str) -> str:
    """`name` as a bounded, portable file-name stem (long or odd names are cut and hashed)."""
    clean = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in name) or "model"
    if len(clean) <= MAX_STEM and clean == name:
        return clean
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{clean[:MAX_STEM - 13]}_{digest}"


def write_atomic(path: Path, text: str) -> None:
    """Write UTF-8 text via a private temp file and a rename (readers never see a partial file).

    Skipped when an identical file we trust is already there."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = text.encode("utf-8")
    try:
        if read_trusted(path) == data:
            return
    except (OSError, UntrustedFile):
        pass
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_trusted(path: Path) -> bytes:
    """The bytes of `path`, read through one descriptor checked to be a file no one else could write."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UntrustedFile(f"{path} is not a regular file")
        why = _untrusted(st)
        if why:
            raise UntrustedFile(f"{path}: {why}")
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def check_numba_files(path: Path) -> None:
    """numba keeps pickles for `path` in __pycache__ beside it: refuse them unless trusted too."""
    cache = path.parent / "__pycache__"
    try:
        st = os.lstat(cache)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode) or _untrusted(st):
        raise UntrustedFile(f"{cache}: {_untrusted(st) or 'not a plain directory'}")
    for entry in os.scandir(cache):
        if entry.name.startswith(path.stem + ".") and entry.name.endswith(NUMBA_CACHE_SUFFIXES):
            est = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(est.st_mode) or _untrusted(est):
                raise UntrustedFile(f"{entry.path}: {_untrusted(est) or 'not a regular file'}")


class NumbaCacheWarning(UserWarning):
    """numba's cache files for a module could not be read; they were discarded and the kernels recompiled."""


def numba_files(module_file) -> list[Path]:
    """numba's index (.nbi) and data (.nbc) files for the kernels of the module at `module_file`."""
    path = Path(module_file)
    cache = path.parent / "__pycache__"
    if not cache.is_dir():
        return []
    return sorted(p for p in cache.iterdir()
                  if p.name.startswith(path.stem + ".") and p.name.endswith(NUMBA_CACHE_SUFFIXES))


def discard_numba_files(module_file) -> int:
    """Delete numba's cache files for a module (a corrupted one fails every later load); returns how many."""
    removed = 0
    for p in numba_files(module_file):
        try:
            p.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def raised_by_numba_cache(error: BaseException) -> bool:
    """Whether `error` (or an error it was raised from) came from numba reading its on-disk cache
    (a truncated or garbled .nbi/.nbc); a kernel compiling another one wraps the first error."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        tb = error.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename.replace("\\", "/").endswith("numba/core/caching.py"):
                return True
            tb = tb.tb_next
        error = error.__cause__ or error.__context__
    return False


def import_trusted(path: Path, module_name: str | None = None) -> types.ModuleType:
    """Import the module at `path` from bytes read through a checked descriptor.

    Raises UntrustedFile if the file (or numba's cache files for it) could hold another user's code."""
    module_name = module_name or f"gdsl_compiled_{path.stem}"
    loaded = sys.modules.get(module_name)
    if loaded is not None and getattr(loaded, "__file__", None) == str(path):
        return loaded
    check_numba_files(path)
    code = compile(read_trusted(path), str(path), "exec", dont_inherit=True)
    module = types.ModuleType(module_name)
    module.__file__ = str(path)  # numba's cache=True finds its files beside this path
    sys.modules[module_name] = module
    try:
        exec(code, module.__dict__)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module
