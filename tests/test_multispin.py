"""Multi-spin coding (analysis/multispin.py, codegen/multispin.py, runtime/multispin.py).

Lattices with one coupling and one bias are sampled 64 chains to a word. The draws differ from
those of sample() without multispin=True, so they are checked like every sampler: against
the exact law of tiny lattices by enumeration (the TV tolerance and chain-mixing premise of
test_exact.py), spin and binary, 2-D with free boundaries, and 1-D and 3-D stencils."""
from __future__ import annotations

import numpy as np
import pytest

import gdsl
from gdsl.runtime import multispin as ms
from conftest import load_model, model_path
from test_exact import Exact, assert_tv

SAMPLE_N, CHAINS, STEPS, BURN_IN = 200_000, 10_000, 4, 50

CUBE = """model cube(n = 2, m = 2, k = 2, beta = 0.6) {
    visible s[n, m, k]: binary
    param bias = -0.7
    energy -beta * sum[i, j, l](s[i, j, l] * s[i + 1, j, l]) - beta * sum[i, j, l](s[i, j, l] * s[i, j + 1, l])
           - beta * sum[i, j, l](s[i, j, l] * s[i, j, l + 1]) + bias * sum(s) + 2
}
"""

CHAIN = """model chain(n = 8, beta = -0.8) {
    visible x[n]: spin
    param h = 0.3
    energy -beta * sum[i](x[i] * x[i + 1]) - h * sum(x) - 0.5 * h * sum(x)
}
"""


def _load(tmp_path, text, name, **kw):
    path = tmp_path / f"{name}.gdl"
    path.write_text(text)
    return gdsl.load(str(path), seed=11, **kw)


def energy_cube(m, x):
    beta, bias = m.consts["beta"], float(m.params["bias"])
    bonds = (x[:, 1:] * x[:, :-1]).sum((1, 2, 3)) + (x[:, :, 1:] * x[:, :, :-1]).sum((1, 2, 3)) \
        + (x[:, :, :, 1:] * x[:, :, :, :-1]).sum((1, 2, 3))
    return -beta * bonds + bias * x.sum((1, 2, 3)) + 2


def energy_chain(m, x):
    beta, h = m.consts["beta"], float(m.params["h"])
    return -beta * (x[:, 1:] * x[:, :-1]).sum(1) - 1.5 * h * x.sum(1)


class _Law(Exact):
    """Exact's enumeration with the energy given here (Exact knows the shipped models only)."""

    def __init__(self, model, energy):
        import test_exact

        self._energy = energy
        saved = test_exact.ENERGY.get(model.NAME)
        test_exact.ENERGY[model.NAME] = lambda p, s, c: energy(model, s[model.GROUPS[0][0]])
        try:
            super().__init__(model)
        finally:
            if saved is None:
                del test_exact.ENERGY[model.NAME]


def _check_exact(model, law, label):
    s = model.sample(SAMPLE_N, chains=CHAINS, steps=STEPS, burn_in=BURN_IN, multispin=True)
    assert_tv(law.index(s), law.p, label, SAMPLE_N // CHAINS)


def test_ising_by_multispin_matches_the_exact_law(ising):
    _check_exact(ising, Exact(ising), "ising 3x3, multi-spin")


def test_a_float64_lattice_by_multispin_matches_the_exact_law():
    m = load_model("ising", seed=5, dtype="float64")
    m.params = {"J": np.full((), -0.3), "field": np.full((), 0.4)}  # antiferromagnetic, with a field
    s = m.sample(SAMPLE_N, chains=CHAINS, steps=STEPS, burn_in=BURN_IN, multispin=True)
    assert s["s"].dtype == np.float64
    assert_tv(Exact(m).index(s), Exact(m).p, "ising 3x3 float64, multi-spin", SAMPLE_N // CHAINS)


def test_binary_cube_by_multispin_matches_the_exact_law(tmp_path):
    m = _load(tmp_path, CUBE, "cube")
    law = _Law(m, energy_cube)
    assert law.p.max() > 5.0 / len(law.p)
    _check_exact(m, law, "binary 2x2x2, multi-spin")


def test_antiferromagnetic_chain_by_multispin_matches_the_exact_law(tmp_path):
    m = _load(tmp_path, CHAIN, "chain")
    _check_exact(m, _Law(m, energy_chain), "spin chain of 8, multi-spin")


ANNNI = """model annni(n = 8, beta = 0.7, kappa = 0.6) {
    visible s[n]: spin
    param h = 0.2
    energy -beta * sum[i](s[i] * s[i + 1]) + kappa * beta * sum[i](s[i] * s[i + 2]) - h * sum(s)
}
"""


def energy_annni(m, x):
    beta, kappa, h = m.consts["beta"], m.consts["kappa"], float(m.params["h"])
    return (-beta * (x[:, 1:] * x[:, :-1]).sum(1) + kappa * beta * (x[:, 2:] * x[:, :-2]).sum(1)
            - h * x.sum(1))


def energy_aniso(m, x):
    J, K = float(m.params["J"]), float(m.params["K"])
    return -J * (x[:, 1:] * x[:, :-1]).sum((1, 2)) - K * (x[:, :, 1:] * x[:, :, :-1]).sum((1, 2))


def test_two_couplings_by_multispin_match_the_exact_law(tmp_path):
    """Two classes of bonds, each counted on its own: the axial next-nearest-neighbour Ising chain
    (competing couplings, 3 colours) and an anisotropic 3x3 lattice."""
    m = _load(tmp_path, ANNNI, "annni")
    assert m.MULTISPIN == ("s", "spin")
    _check_exact(m, _Law(m, energy_annni), "ANNNI chain of 8, multi-spin")
    a = _load(tmp_path, ANISOTROPIC.replace("n = 4, m = 4", "n = 3, m = 3"), "aniso")
    a.params = {"J": np.full((), 0.6), "K": np.full((), -0.3)}
    _check_exact(a, _Law(a, energy_aniso), "anisotropic 3x3, multi-spin")


def test_two_class_thresholds_are_the_conditional_probabilities():
    t = ms.thresholds2(-0.5, 0.3, 0.2, 2, 4, True).astype(np.float64) / 2.0 ** 64
    for nb0 in range(3):
        for u0 in range(nb0 + 1):
            for nb1 in range(5):
                for u1 in range(nb1 + 1):
                    f = -0.5 * (2 * u0 - nb0) + 0.3 * (2 * u1 - nb1) + 0.2
                    assert t[nb0, u0, nb1, u1] == pytest.approx(1 / (1 + np.exp(2 * f)), rel=1e-12, abs=1e-18)


def test_the_tolerance_sees_a_wrong_coupling(ising):
    """The same check fails when the sampler's coupling is 10% weaker than the law's."""
    m = load_model("ising", seed=7)
    m.params = {"J": np.full((), 0.45 * 0.9), "field": np.full((), 0.15)}
    s = m.sample(SAMPLE_N, chains=CHAINS, steps=STEPS, burn_in=BURN_IN, multispin=True)
    with pytest.raises(AssertionError, match="TV"):
        assert_tv(Exact(ising).index(s), Exact(ising).p, "perturbed")


def test_same_seed_same_draws_on_any_thread_count(tmp_path):
    out = []
    for threads in (1, 2, 1):
        m = _load(tmp_path, CHAIN, "chain", n=40)
        m.threads = threads
        out.append(m.sample(200, chains=200, steps=3, burn_in=5, multispin=True)["x"])
    assert np.array_equal(out[0], out[1]) and np.array_equal(out[0], out[2])
    assert out[0].shape == (200, 40) and set(np.unique(out[0])) == {-1.0, 1.0}


def test_gibbs_with_multispin_keeps_chains_apart():
    """m.gibbs(state, multispin=True) returns every chain of the state, in order: a chain frozen by a
    huge coupling keeps its sign, so chain c's result is its own start."""
    m = gdsl.load(model_path("ising"), n=6, m=5, seed=0)
    m.params = {"J": np.full((), 40.0), "field": np.full((), 0.0)}
    start = np.where(np.arange(70)[:, None, None] % 3 == 0, 1.0, -1.0) * np.ones((70, 6, 5))
    got = m.gibbs({"s": start}, steps=4, multispin=True)["s"]
    assert np.array_equal(got, start)
    m.params = {"J": np.full((), 0.0), "field": np.full((), 0.0)}  # free spins: the sweeps do move them
    moved = m.gibbs({"s": start}, steps=1, multispin=True)["s"]
    assert 0.4 < np.mean(moved != start) < 0.6


def test_pack_and_unpack_are_inverse():
    rng = np.random.default_rng(0)
    x = np.where(rng.random((130, 3, 5)) < 0.3, 1.0, 0.0)
    p = ms.pack(x, 3)
    assert p.shape == (3, 3, 5) and p.dtype == np.uint64
    assert int(p[2, 1, 4] >> np.uint64(1)) & 1 == int(x[129, 1, 4])  # chain 129: word 2, bit 1
    assert np.array_equal(ms.unpack(p, 130, 0.0, np.float64), x)
    assert (ms.unpack(p, 192, 0.0, np.float64)[130:] == 0).all()  # the lanes past the chains


def test_thresholds_are_the_conditional_probabilities():
    t = ms.thresholds(-0.5, 0.2, 4, True).astype(np.float64) / 2.0 ** 64
    for nb in range(5):
        for u in range(nb + 1):
            p = 1.0 / (1.0 + np.exp(2.0 * (-0.5 * (2 * u - nb) + 0.2)))
            assert t[nb, u] == pytest.approx(p, rel=1e-12, abs=1e-18)
    assert ms.thresholds(1000.0, 0.0, 2, False)[2, 2] == 0
    assert ms.thresholds(-1000.0, 0.0, 2, False)[2, 2] == np.uint64(2 ** 64 - 1)


ANISOTROPIC = """model aniso(n = 4, m = 4) {
    visible s[n, m]: spin
    param J = 0.4
    param K = 0.2
    energy -J * sum[i, j](s[i, j] * s[i + 1, j]) - K * sum[i, j](s[i, j] * s[i, j + 1])
}
"""
GLASS = """model glass(n = 4, m = 4) {
    visible s[n, m]: spin
    param J[n, m]
    energy -sum[i, j](J[i, j] * s[i, j] * s[i + 1, j]) - sum[i, j](J[i, j] * s[i, j] * s[i, j + 1])
}
"""
PART = """model part(n = 4, m = 4) {
    visible s[n, m]: spin
    param J = 0.4
    energy -J * sum[i, j](s[i, j] * s[i + 1, j]) - J * sum[i](s[i, 0] * s[i, 1])
}
"""


DIAGONAL = """model diag(n = 4) {
    visible s[n, n]: spin
    param J = 0.4
    param h = 0.1
    energy -J * sum[i, j](s[i, j] * s[i + 1, j]) - J * sum[i, j](s[i, j] * s[i, j + 1])
           - h * sum[i, j < n](s[i, i] * (j - j + 1))
}
"""
HALF_FIELD = """model half_field(n = 4, m = 4) {
    visible s[n, m]: spin
    param J = 0.4
    param h = 0.1
    energy -J * sum[i, j](s[i, j] * s[i + 1, j]) - J * sum[i, j](s[i, j] * s[i, j + 1]) - h * sum[i < 2, j](s[i, j])
}
"""


THREE_COUPLINGS = """model three(n = 4, m = 4) {
    visible s[n, m]: spin
    param J = 0.4
    param K = 0.2
    param L = 0.1
    energy -J * sum[i, j](s[i, j] * s[i + 1, j]) - K * sum[i, j](s[i, j] * s[i, j + 1])
           - L * sum[i, j](s[i, j] * s[i + 1, j + 1])
}
"""


@pytest.mark.parametrize("text,why", [(THREE_COUPLINGS, "more than 2 different couplings"),
                                      (GLASS, "depends on the site"),
                                      (PART, "does not couple each site to the site at a constant offset"),
                                      (DIAGONAL, "does not run over the whole lattice"),
                                      (HALF_FIELD, "does not run over the whole lattice")])
def test_models_that_are_not_uniform_lattices_say_why(tmp_path, text, why):
    from gdsl.driver import Source, compile_source

    plan = compile_source(Source(text, "<test>"), until="plan").plan
    assert plan.multispin is None and why in plan.multispin_refused


def test_asking_a_model_that_is_not_a_lattice(rbm):
    with pytest.raises(ValueError, match="cannot be sampled by multi-spin coding: it has 2 variable groups"):
        rbm.sample(10, multispin=True)


def test_multispin_takes_no_clamp(ising):
    with pytest.raises(ValueError, match="takes no clamp"):
        ising.sample(4, multispin=True, clamp={"s": np.ones((3, 3))})


def test_compile_summary_says_so():
    from gdsl.driver import compile_source, read_source

    c = compile_source(read_source(model_path("ising")), until="plan")
    assert "multi-spin coding with sample(..., multispin=True)" in c.plan.schedule()
