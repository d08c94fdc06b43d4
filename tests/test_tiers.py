"""The numpy tier (codegen/numpy_tier.py, runtime/npkernels.py, runtime/tiers.py): the same
kernels as numba's, answering while numba compiles.

Both tiers draw from the same xoroshiro128+ streams, so for a seed they give the same samples:
exactly in float64 here (a probability would have to fall within an ulp of a uniform to
differ), and in float32 for at least 99% of the chains (numpy's exp and the SIMD exp round
differently, and one different draw changes the rest of its chain). Deterministic quantities
(free energies, energies, mean-field fixed points) agree to rounding.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import gdsl
from gdsl.runtime import kernels as _k
from gdsl.runtime import npkernels as _nk
from gdsl.runtime import tiers

from conftest import SPIN_RBM, TINY, model_path, random_params

# Every kind of term the tier writes: a dense product, a three-way einsum over spins and
# pooling rows, a constant subscript (v[0] * r[1]), a range shorter than its axis, a shifted
# subscript (r[i + 1]), functions of parameters as coefficients, a scalar parameter, and a real
# group's quadratic term.
MIX = """
model mix(n = 3, m = 2, k = 3, t = 0.7) {
    visible v[n]: binary
    latent  h[m]: spin
    latent  z[m, k]: categorical(k, off)
    visible r[2]: real
    param W[n, m] ~ normal(0, 1)
    param U[m, k] ~ normal(0, 1)
    param a[n] ~ normal(0, 1)
    param s ~ normal(0, 1)

    energy -(v @ W @ h) - sum[i, j](tanh(U[i, j]) * h[i] * z[i, j]) - s * v[0] * r[1]
    energy sum(r^2) * exp(s) / 2 - t * sum[i < n - 1](a[i] * v[i]) + sum(a^2)
    energy -sum[i < m - 1](h[i] * r[i + 1])
}
"""
CATEGORICAL = """
model cat(n = 4, k = 3) {
    visible y[n, k]: categorical(k)
    latent  h[n]: binary
    param U[n, k] ~ normal(0, 1)
    param c[n] ~ normal(0, 1)
    energy -sum[i, j](U[i, j] * y[i, j] * h[i]) - c @ h
}
"""


def _pair(path, dtype, seed=0, **sizes):
    """The same model and parameters on each tier."""
    a = gdsl.load(path, seed=seed, dtype=dtype, jit="numba", **sizes)
    b = gdsl.load(path, seed=seed, dtype=dtype, jit="numpy", **sizes)
    if a.PARAMS and any(len(a.shape(p)) for p, _ in a.PARAMS):
        params = random_params(a, seed=seed + 100)
        a.params = params
        b.params = params
    return a, b


@pytest.fixture(scope="module")
def text_paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiers")
    out = {}
    for name, text in (("mix", MIX), ("cat", CATEGORICAL), ("spin_rbm", SPIN_RBM)):
        (root / f"{name}.gdl").write_text(text)
        out[name] = str(root / f"{name}.gdl")
    return out


def _same_chains(x, y) -> float:
    """The fraction of chains (rows) on which two samples agree everywhere (real values to
    float32 rounding)."""
    x, y = x.reshape(len(x), -1), y.reshape(len(y), -1)
    return float(np.mean(np.all(np.isclose(x, y, rtol=1e-4, atol=1e-5), axis=1)))


def _compare(a, b, n=300, exact=True):
    sa, sb = a.sample(n, steps=4), b.sample(n, steps=4)
    assert b._tiers.tier == "numpy" and a._tiers.tier == "numba"
    for g in a.domains:
        if exact:
            np.testing.assert_allclose(sa[g], sb[g], rtol=1e-9, atol=1e-9, err_msg=g)
        else:
            assert _same_chains(sa[g], sb[g]) >= 0.99, g
    state = sa
    rtol = 1e-9 if exact else 2e-5
    np.testing.assert_allclose(a.energy(state), b.energy(state), rtol=rtol, atol=rtol)
    visible = {g: state[g] for g in a.visible}
    if not a.why_not_summable(tuple(g for g in a.domains if g not in visible)):
        np.testing.assert_allclose(a.free_energy(visible), b.free_energy(visible), rtol=rtol, atol=rtol)
    ma, mb = a.mean_field(visible, max_iter=30, tol=0.0), b.mean_field(visible, max_iter=30, tol=0.0)
    for g in a.domains:
        np.testing.assert_allclose(ma[g], mb[g], rtol=10 * rtol, atol=10 * rtol, err_msg=g)
    # clamped elements stay, free ones are drawn from the same streams
    g = a.visible[0]
    mask = np.zeros((n,) + a.shape(g), bool)
    mask[:, 0] = True
    ca = a.gibbs(state, steps=2, clamp={g: mask})
    cb = b.gibbs(state, steps=2, clamp={g: mask})
    for h in a.domains:
        if exact:
            np.testing.assert_allclose(ca[h], cb[h], rtol=1e-9, atol=1e-9, err_msg=h)
        else:
            assert _same_chains(ca[h], cb[h]) >= 0.99, h
    np.testing.assert_array_equal(cb[g][mask], state[g][mask])


@pytest.mark.parametrize("name", ["rbm", "grbm", "dbm", "softmax_rbm", "threeway", "ising"])
def test_shipped_models_agree_in_float32(name):
    a, b = _pair(model_path(name), "float32", seed=3, **TINY[name])
    _compare(a, b, exact=False)


@pytest.mark.parametrize("name", ["mix", "cat", "spin_rbm"])
def test_every_kind_of_term_agrees_in_float64(text_paths, name):
    a, b = _pair(text_paths[name], "float64", seed=4)
    _compare(a, b, exact=True)


def test_rbm_samples_are_identical_in_float64():
    a, b = _pair(model_path("rbm"), "float64", seed=5, **TINY["rbm"])
    _compare(a, b, exact=True)


def test_streams_are_numbas():
    seeds = np.array([0, 1, 2 ** 62 + 12345, 987654321], dtype=np.uint64)
    want = np.empty((4, 2), np.uint64)
    _k.seed_streams(seeds, want)
    got = np.empty((4, 2), np.uint64)
    _nk.seed_streams(seeds, got)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_two_state_draws_take_numbas_uniforms(dtype):
    """An odd row length (float32 takes uniforms in pairs) and a mask: the draws and the
    streams' states after them are numba's."""
    rng0 = np.random.default_rng(0)
    f = rng0.normal(0, 2, size=(6, 7)).astype(dtype)
    mask = (rng0.random((6, 7)) < 0.3).astype(np.uint8)
    seeds = np.arange(6, dtype=np.uint64) + 11
    streams = np.empty((6, 2), np.uint64)
    _nk.seed_streams(seeds, streams)
    x1, x2 = np.zeros((6, 7), dtype), np.zeros((6, 7), dtype)
    s1, s2 = streams.copy(), streams.copy()
    _k.two_state_draw(f, x1, mask, s1, 0.0)
    _nk.two_state_draw(f, x2, mask, s2, 0.0)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(s1, s2)


def test_a_coloured_lattice_agrees_in_float64():
    """A checkerboard sweep, one colour at a time: the same sites take the same uniforms."""
    a, b = _pair(model_path("ising"), "float64", seed=7, n=4, m=5)
    for m in (a, b):
        m.params["J"] = np.full(m.shape("J"), 0.45)
        m.params["field"] = np.full(m.shape("field"), 0.15)
    _compare(a, b, exact=True)


def test_models_the_tier_does_not_cover_say_why():
    bm = gdsl.load(model_path("bm"), seed=0, jit="numpy", **TINY["bm"])
    assert bm.NUMPY_KERNELS == {}
    assert "site by site" in bm.NUMPY_REFUSED
    bm.sample(4, steps=2)  # numba answers
    assert bm._tiers.tier == "numba"


def test_jit_choices_are_checked(monkeypatch):
    with pytest.raises(ValueError, match="jit must be one of"):
        gdsl.load(model_path("rbm"), jit="fast", **TINY["rbm"])
    monkeypatch.setenv("GDSL_JIT", "quick")
    with pytest.raises(ValueError, match="GDSL_JIT must be one of"):
        gdsl.load(model_path("rbm"), **TINY["rbm"])


def test_training_runs_on_numba_whatever_the_tier():
    m = gdsl.load(model_path("rbm"), seed=0, jit="numpy", **TINY["rbm"])
    data = {"v": (np.random.default_rng(0).random((20, 4)) < 0.5).astype(np.float32)}
    m.fit(data, epochs=1, batch_size=10, progress=False)
    assert m._tiers.uses_numpy("gibbs") and not m._tiers.uses_numpy("train_epoch")


def test_a_long_run_in_parts_is_the_same_run():
    """While a background compile may finish, Gibbs runs in calls of CHUNK sweeps on the same
    streams: the same samples as one call."""
    a = gdsl.load(model_path("rbm"), seed=9, dtype="float64", jit="numpy", **TINY["rbm"])
    b = gdsl.load(model_path("rbm"), seed=9, dtype="float64", jit="numpy", **TINY["rbm"])
    b._tiers.jit = "background"  # as a background model before the switch (no process here: numpy answers)
    b._tiers.uses_numpy = lambda kernel: kernel in b._tiers.numpy
    assert len(b._tiers.chunks(3 * tiers.CHUNK + 1)) == 4
    sa, sb = a.sample(20, steps=3 * tiers.CHUNK + 1), b.sample(20, steps=3 * tiers.CHUNK + 1)
    for g in sa:
        np.testing.assert_array_equal(sa[g], sb[g])


def test_background_hands_over_to_numba(tmp_path):
    """A fresh cache in a child process: the first sample comes from numpy while a worker
    compiles; after `tiers.wait()` numba answers, and the samples of both tiers are the same
    for the same seed."""
    script = textwrap.dedent(f"""
        import numpy as np, gdsl
        from gdsl.runtime import tiers
        m = gdsl.load({model_path('rbm')!r}, seed=1, dtype="float64", jit="background", nv=4, nh=3)
        first = m.sample(50, steps=3)
        print("first", m.tier)
        assert gdsl.wait_compiled(timeout=600)
        again = gdsl.load({model_path('rbm')!r}, seed=1, dtype="float64", jit="background", nv=4, nh=3)
        second = again.sample(50, steps=3)
        print("second", again.tier)
        print("same", all(np.array_equal(first[g], second[g]) for g in first))
        print("sums", [float(first[g].sum()) for g in sorted(first)])
    """)
    env = dict(__import__("os").environ, GDSL_CACHE_DIR=str(tmp_path / "cache"), NUMBA_CACHE_DIR=str(tmp_path / "nb"))
    env.pop("GDSL_JIT", None)
    # two processes at once on the empty caches: both compile the module and both background
    # processes write numba's cache at the same time
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=900) + (p.returncode,) for p in procs]
    for stdout, stderr, code in outs:
        assert code == 0, stderr
        assert "first numpy" in stdout, (stdout, stderr)
        assert "same True" in stdout, (stdout, stderr)
    # a process whose first call came after the other's background process had written numba's
    # cache starts none of its own (that kernel is cached): its second model answers from numpy
    # until it has taken LOAD_SECONDS, so only the process that compiled is sure to hand over
    assert any("second numba" in o[0] for o in outs), outs
    assert [o[0].splitlines()[-1] for o in outs][0] == [o[0].splitlines()[-1] for o in outs][1]
    # numba's cache is warm now: no background process; numpy answers until it has taken about
    # what loading numba's kernels would, then numba does
    cached = textwrap.dedent(f"""
        import gdsl
        from gdsl.runtime import tiers
        m = gdsl.load({model_path('rbm')!r}, seed=1, dtype="float64", jit="background", nv=4, nh=3)
        m.sample(5, steps=1)
        print("first", m._tiers.tier, len(tiers._WORKERS))
        while m._tiers.spent < tiers.LOAD_SECONDS:
            m.sample(50, steps=20)
        m.sample(5, steps=1)
        print("later", m._tiers.tier, len(tiers._WORKERS))
    """)
    out = subprocess.run([sys.executable, "-c", cached], capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stderr
    assert "first numpy 0" in out.stdout
    assert "later numba 0" in out.stdout


def test_every_function_has_a_numpy_version_that_agrees():
    """ops.Function.numpy on arrays equals the Python implementation point by point."""
    from gdsl import ops

    points = np.array([-30.0, -2.5, -1.0, -1e-3, 0.0, 1e-3, 0.5, 1.0, 3.0, 30.0])
    for f in ops._TABLE:
        fn = eval(f.numpy, {"np": np, "_nk": _nk})  # the table's text is what generated code calls
        got = fn(points)
        want = np.array([f.python(float(p)) for p in points])
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300, err_msg=f.name)


@pytest.fixture(scope="module")
def function_model(tmp_path_factory):
    """Every function the energy may hold, on positive arguments, as a coefficient."""
    from gdsl import ops

    names = [f.name for f in ops._TABLE if f.written and f.in_energy]
    terms = " + ".join(f"{name}(exp(a[i]) + 0.5) * v[i] * h[{k % 2}]" for k, name in enumerate(names))
    text = f"""
    model funcs(n = 3) {{
        visible v[n]: binary
        latent  h[2]: binary
        param a[n] ~ normal(0, 1)
        param c[2] ~ normal(0, 1)
        energy -sum[i]({terms}) / 4 - c @ h
    }}
    """
    path = tmp_path_factory.mktemp("funcs") / "funcs.gdl"
    path.write_text(text)
    return str(path), names


def test_functions_in_energies_agree(function_model):
    path, names = function_model
    a, b = _pair(path, "float64", seed=6)
    assert b.NUMPY_KERNELS, b.NUMPY_REFUSED
    _compare(a, b, exact=True)


def test_a_failed_background_compile_warns_and_numba_takes_over():
    m = gdsl.load(model_path("rbm"), seed=0, jit="background", **TINY["rbm"])
    m._tiers.key = ("/nonexistent/gdsl_model.py", "gdsl_no_such_module", "float32")
    m._tiers._in_numbas_cache = lambda kernel: False  # as on a fresh machine: start the process
    m._tiers._compiled_here = lambda kernel: False  # (other tests may have compiled it in this process)
    m.sample(4, steps=1)
    assert m.tier == "numpy"
    with pytest.warns(RuntimeWarning, match="compiling in the background failed"):
        assert gdsl.wait_compiled(timeout=300)
    m.sample(4, steps=1)
    assert m.tier == "numba"
