"""The on-disk cache of compiled modules: what it trusts, what it writes, how it heals.

Importing a cached module runs its code, so a file another user could have written must
never be imported (a planted module would run as the loading user). These tests plant such
files, as root where ownership matters, and check that their code never runs.
"""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import gdsl
from gdsl import cache
from gdsl.driver import load_text

TINY_RBM = """
model cachetest(nv = 3, nh = 2) {
    visible v[nv]: binary
    latent  h[nh]: binary
    param W[nv, nh]
    param b[nv]
    param c[nh]
    energy -(v @ W @ h) - b @ v - c @ h
}
"""
OTHER_UID = 54321
posix_root = pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0,
                                reason="chown to another uid needs root")


def text_for(test_name: str) -> str:
    """A model text unique to the test, so no test meets another's cache entry or module."""
    return TINY_RBM + f"# {test_name}\n"


def planted(path: Path, marker: Path) -> None:
    """Write a module at `path` that would leave `marker` behind if anything imported it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"open({str(marker)!r}, 'w').write('ran')\nclass Model: pass\n")


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    """GDSL_CACHE_DIR set to a fresh path; the per-user default moved into tmp as well."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("GDSL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_created_directory_is_owner_only_and_files_are_0600(cache_env, request):
    module = load_text(text_for(request.node.name), "<test>")
    path = Path(module.__file__)
    assert path.parent == cache_env / "cache"
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert hasattr(module, "Model")


def test_world_writable_directory_is_refused_and_planted_module_never_runs(cache_env, request):
    shared = cache_env / "cache"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # a team's shared cache, as CI runners set it up
    text = text_for(request.node.name)
    marker = cache_env / "pwned"
    # the attacker computes the name gdsl would use in the shared directory
    name = cache.safe_stem("cachetest") + "_" + _key(text)[:20] + ".py"
    planted(shared / name, marker)
    with pytest.warns(cache.UntrustedCacheWarning, match="writable by other users"):
        module = load_text(text, "<test>")
    assert not marker.exists()
    assert Path(module.__file__).parent != shared
    assert stat.S_IMODE(os.stat(Path(module.__file__).parent).st_mode) == 0o700


def _key(text: str) -> str:
    import hashlib

    return hashlib.sha256((cache.compiler_fingerprint() + "\0" + gdsl.__version__ + "\0" + text)
                          .encode("utf-8")).hexdigest()


def test_module_path_is_what_the_attacker_test_computes(cache_env):
    text = text_for("key")
    assert cache.module_path("cachetest", text).name == f"cachetest_{_key(text)[:20]}.py"


@posix_root
def test_file_owned_by_another_user_is_not_imported(cache_env, request):
    text = text_for(request.node.name)
    target = cache.module_path("cachetest", text)
    marker = cache_env / "pwned"
    planted(target, marker)
    os.chown(target, OTHER_UID, OTHER_UID)
    with pytest.warns(cache.UntrustedCacheWarning, match=f"owned by another user \\(uid {OTHER_UID}\\)"):
        module = load_text(text, "<test>")
    assert not marker.exists()
    assert hasattr(module, "Model") and Path(module.__file__) != target


@posix_root
def test_directory_owned_by_another_user_is_refused(cache_env, request):
    shared = cache_env / "cache"
    shared.mkdir(mode=0o755)
    os.chown(shared, OTHER_UID, OTHER_UID)
    with pytest.warns(cache.UntrustedCacheWarning, match="owned by another user"):
        module = load_text(text_for(request.node.name), "<test>")
    assert Path(module.__file__).parent != shared


@posix_root
def test_numba_cache_files_owned_by_another_user_are_refused(cache_env, request):
    text = text_for(request.node.name)
    module = load_text(text, "<test>")
    target = Path(module.__file__)
    pycache = target.parent / "__pycache__"
    pycache.mkdir(exist_ok=True)
    pickle = pycache / f"{target.stem}.kernel-1.py311.nbi"
    pickle.write_bytes(b"not a pickle")
    os.chown(pickle, OTHER_UID, OTHER_UID)
    del sys.modules[module.__name__]
    with pytest.raises(cache.UntrustedFile, match="owned by another user"):
        cache.import_trusted(target)


def test_cache_dir_that_is_a_regular_file_falls_back_with_a_warning(cache_env, monkeypatch, request):
    not_a_dir = cache_env / "file"
    not_a_dir.write_text("")
    monkeypatch.setenv("GDSL_CACHE_DIR", str(not_a_dir))
    with pytest.warns(cache.UntrustedCacheWarning, match="GDSL_CACHE_DIR.*a file, not a directory"):
        module = load_text(text_for(request.node.name), "<test>")
    assert Path(module.__file__).parent == cache_env / "xdg" / "gdsl"


def test_cache_dir_that_cannot_be_created_falls_back_with_a_warning(cache_env, monkeypatch, request):
    blocker = cache_env / "file"
    blocker.write_text("")
    monkeypatch.setenv("GDSL_CACHE_DIR", str(blocker / "sub"))
    with pytest.warns(cache.UntrustedCacheWarning, match="GDSL_CACHE_DIR.*cannot create it"):
        module = load_text(text_for(request.node.name), "<test>")
    assert hasattr(module, "Model")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_cache_dir_falls_back_with_a_warning(cache_env, monkeypatch, request):
    locked = cache_env / "locked"
    locked.mkdir(mode=0o500)
    monkeypatch.setenv("GDSL_CACHE_DIR", str(locked / "sub"))
    with pytest.warns(cache.UntrustedCacheWarning, match="permission denied"):
        load_text(text_for(request.node.name), "<test>")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "edit"])
def test_damaged_entry_is_rebuilt_with_a_warning(cache_env, request, damage):
    text = text_for(request.node.name)
    module = load_text(text, "<test>")
    path = Path(module.__file__)
    del sys.modules[module.__name__]
    data = path.read_bytes()
    marker = cache_env / "edited-code-ran"
    damaged = {"truncate": data[: len(data) // 2],
               "garbage": bytes(range(256)) * 4,
               "empty": b"",
               "edit": f"open({str(marker)!r}, 'w').write('ran')\n".encode() + data}[damage]
    path.write_bytes(damaged)
    with pytest.warns(cache.CacheRepairWarning, match="rebuilding"):
        again = load_text(text, "<test>")
    assert path.read_bytes() == data
    assert hasattr(again, "Model") and not marker.exists()


def test_long_model_name_gets_a_bounded_file_name_and_the_checker_error(cache_env, tmp_path):
    name = "m" * 241
    src = tmp_path / "long.gdl"
    src.write_text(TINY_RBM.replace("cachetest", name), encoding="utf-8")
    assert len(cache.module_path(name, "x").name) < 120
    with pytest.raises(gdsl.ModelErrors, match="64"):
        gdsl.load(str(src))


def test_safe_stem_keeps_plain_names_and_bounds_the_rest():
    assert cache.safe_stem("rbm") == "rbm"
    long = cache.safe_stem("a" * 300)
    assert len(long) <= cache.MAX_STEM and long != cache.safe_stem("a" * 301)


def test_non_ascii_model_loads_under_an_ascii_locale(tmp_path):
    src = tmp_path / "accent.gdl"
    src.write_text(TINY_RBM.replace("model cachetest", "# café – énergie\nmodel accent"), encoding="utf-8")
    env = dict(os.environ, LC_ALL="C", LANG="C", PYTHONUTF8="0", PYTHONIOENCODING="ascii",
               GDSL_CACHE_DIR=str(tmp_path / "cache"))
    p = subprocess.run([sys.executable, "-c", f"import gdsl; print(gdsl.load({str(src)!r}).NAME)"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "accent"


SAMPLE_IN_A_FRESH_PROCESS = r"""
import sys, warnings
warnings.simplefilter("always")
from gdsl.driver import load_text
m = load_text(open(sys.argv[1]).read(), "<test>").Model(seed=0)
s = m.sample(3, steps=2)
print("shape", s["v"].shape)
"""


def _sample_in_subprocess(text_file, env):
    return subprocess.run([sys.executable, "-c", SAMPLE_IN_A_FRESH_PROCESS, str(text_file)], env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("which", [".nbi", ".nbc"])
def test_corrupted_numba_cache_files_are_discarded_and_recompiled(tmp_path, which):
    text_file = tmp_path / "model.gdl"
    text_file.write_text(text_for(f"numba-{which}"))
    env = dict(os.environ, GDSL_CACHE_DIR=str(tmp_path / "cache"), XDG_CACHE_HOME=str(tmp_path / "xdg"))
    first = _sample_in_subprocess(text_file, env)
    assert first.returncode == 0, first.stderr
    module = next((tmp_path / "cache").glob("cachetest_*.py"))
    files = [p for p in cache.numba_files(module) if p.suffix == which]
    assert files, "numba wrote no cache files"
    for p in files:
        p.write_bytes(b"\x80\x09garbage" + p.read_bytes()[: len(p.read_bytes()) // 3])
    second = _sample_in_subprocess(text_file, env)
    assert second.returncode == 0, second.stderr
    assert "shape (3, 3)" in second.stdout
    assert "NumbaCacheWarning" in second.stderr and "recompil" in second.stderr
    third = _sample_in_subprocess(text_file, env)  # the rewritten cache serves the next process quietly
    assert third.returncode == 0 and "NumbaCacheWarning" not in third.stderr, third.stderr


LOAD_CONCURRENTLY = r"""
import sys
from gdsl.driver import load_text
m = load_text(open(sys.argv[1]).read(), "<test>").Model(seed=0)
print("ok", m.NAME)
"""


def test_concurrent_first_loads_all_succeed_and_leave_one_intact_entry(tmp_path):
    text_file = tmp_path / "model.gdl"
    text_file.write_text(text_for("concurrent"))
    env = dict(os.environ, GDSL_CACHE_DIR=str(tmp_path / "cache"), XDG_CACHE_HOME=str(tmp_path / "xdg"))
    procs = [subprocess.Popen([sys.executable, "-c", LOAD_CONCURRENTLY, str(text_file)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.strip() == "ok cachetest"
        assert "CacheRepairWarning" not in err
    entries = list((tmp_path / "cache").glob("cachetest_*.py"))
    assert len(entries) == 1
    assert not list((tmp_path / "cache").glob(".tmp-*"))
    from gdsl.driver import _entry_intact

    assert _entry_intact(entries[0])
