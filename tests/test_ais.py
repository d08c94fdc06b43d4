"""Annealed importance sampling against exact log Z, reverse AIS bracketing, the DBM bound.

Every model is trained briefly first: with random small weights log Z is nearly that of
the base model and any estimator looks right.
"""
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

import gdsl
from gdsl.runtime.ais import standard_schedule

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
MNIST = ROOT.parent / "shared" / "data" / "binarized_mnist.npz"


CASES = [
    ("rbm", dict(nv=16, nh=8), lambda b, r, y: {"v": b}, 0.05),
    ("grbm", dict(nv=16, nh=8), lambda b, r, y: {"v": r}, 0.02),
    ("dbm", dict(nv=16, n1=6, n2=4), lambda b, r, y: {"v": b}, 0.05),
    ("bm", dict(nv=16, nh=4), lambda b, r, y: {"v": b}, 0.05),
    ("softmax_rbm", dict(nv=16, nh=8, k=10), lambda b, r, y: {"v": b, "y": y}, 0.05),
    ("threeway", dict(nx=8, ny=8, nh=4), lambda b, r, y: {"x": b[:, :8], "y": b[:, 8:]}, 0.05),
    ("ising", dict(n=4, m=4), lambda b, r, y: {"s": 2 * b.reshape(-1, 4, 4) - 1}, 0.01),
]


def fit_case(name, sizes, build, lr, digits):
    """One of CASES trained 10 PCD epochs on the 4x4 digits: (model, its data, exact log Z).
    bench/ais_accuracy.py prints the comparisons below from the same models."""
    data = build(*digits[:3])
    m = gdsl.load(MODELS / f"{name}.gdl", seed=0, **sizes)
    m.fit(data, method="pcd", lr=lr, epochs=10, batch_size=20, progress=False, monitor=None)
    return m, data, m.log_partition()


def fit_mnist_784x20(x):
    """A 784 x 20 RBM trained 5 PCD epochs on MNIST rows x, and its exact log Z (2^20 states)."""
    m = gdsl.load(MODELS / "rbm.gdl", nh=20, seed=0)
    m.fit({"v": x}, method="pcd", lr=0.05, epochs=5, batch_size=100, progress=False, monitor=None)
    return m, m.log_partition(max_states=2 ** 20)


@pytest.fixture(scope="module")
def trained(digits4x4):
    return {case[0]: fit_case(*case, digits4x4) for case in CASES}


@pytest.mark.parametrize("name", [c[0] for c in CASES])
@pytest.mark.parametrize("method", ["ais", "reverse-ais"])
def test_ais_matches_exact_log_z(trained, name, method):
    """3,001 temperatures, 100 runs: measured errors are 1-2 of the estimator's own standard
    deviations (0.001-0.008 nats). Allowed: 5 sd, at least 0.02 nats (the sd is itself estimated
    from 100 runs, so a floor keeps a lucky small sd from making the test flaky)."""
    m, data, exact = trained[name]
    est = m.log_partition(method, runs=100, data=data, betas=np.linspace(0, 1, 3001))
    assert abs(est.log_z - exact) < max(5 * est.sd, 0.02), (est, exact)


@pytest.mark.parametrize("name", ["rbm", "dbm"])
def test_reverse_ais_from_the_persistent_chains_matches_exact_log_z(trained, name):
    """start="chains": the reverse chains start at the fit's persistent chains (20 here,
    resampled to 100 runs), without data; same tolerance as above."""
    m, data, exact = trained[name]
    est = m.log_partition("reverse-ais", runs=100, betas=np.linspace(0, 1, 3001), start="chains", burn_in=100)
    assert abs(est.log_z - exact) < max(5 * est.sd, 0.02), (est, exact)


def test_forward_ais_from_the_uniform_base(trained):
    m, _, exact = trained["rbm"]
    est = m.log_partition("ais", runs=100, betas=np.linspace(0, 1, 3001))
    assert abs(est.log_z - exact) < max(5 * est.sd, 0.02)


def test_base_model_fits_kept_latents_to_the_posterior_means(trained):
    """A DBM's h2 is annealed, not summed: its base is fitted to the mean-field posterior means
    of the data (smoothed like the visible base rates); h1, summed out, keeps a zero base."""
    m, data, _ = trained["dbm"]
    base = m.base_model(data)
    q = m.mean_field(data)["h2"].astype(np.float64)
    p = (q.sum(0) + 1.0) / (len(q) + 2.0)
    np.testing.assert_allclose(base["h2"][0], np.log(p) - np.log1p(-p), rtol=1e-5, atol=1e-6)
    assert not np.any(base["h1"][0])
    assert not np.any(m.base_model()["h2"][0])  # without data: uniform


def test_an_estimate_below_one_of_its_own_states_warns():
    """log Z is at least the log-mass of any single state. Two temperatures from a uniform base
    cannot find the one state that holds almost all the mass here (20 visibles with bias +10:
    log Z is about 200, a uniform start about 100): the estimate falls far below the final
    states' mass, and the user is told."""
    m = gdsl.load(MODELS / "rbm.gdl", nv=20, nh=2, seed=0)
    m.params = {"b": np.full(20, 10.0)}
    with pytest.warns(RuntimeWarning, match="has not converged"):
        est = m.log_partition("ais", runs=4, betas=[0.0, 1.0])
    assert est.log_z < m.last_ais["state_floor"] - 50


def test_the_runs_states_at_beta_one_are_kept(trained):
    """last_ais["states"] holds where forward runs ended and where reverse runs started, one row
    per run; the floor is the largest -F over exactly those states."""
    m, data, _ = trained["rbm"]
    for method in ("ais", "reverse-ais"):
        m.log_partition(method, runs=30, data=data, betas=np.linspace(0, 1, 50))
        states = m.last_ais["states"]
        assert states["v"].shape == (30, 16)
        assert set(np.unique(states["v"])) <= {0.0, 1.0}
        floor = float(np.max(-m.free_energy({"v": states["v"]})))
        assert m.last_ais["state_floor"] == pytest.approx(floor, abs=1e-4)


def test_single_runs_bracket_the_exact_value():
    """One forward run's log Z0 + log w is a stochastic lower bound on log Z (E[log w] <= log E[w],
    and E[w] = Z / Z0 exactly), one reverse run's log Z0 - log w a stochastic upper bound from
    chains at the model (bidirectional Monte Carlo, Grosse et al. 2015). With 10 temperatures the
    two bounds are about 2 nats from log Z on this model, each mean over 400 runs with a standard
    error of about 0.1; the test asks for both sides clear of log Z by 4 standard errors.

    (The pooled estimates do not bracket log Z reliably: with transitions that leave each
    temperature's marginal invariant, the forward estimate's bias, var(w) / 2N, is 0.03 nats
    here against a spread of 0.25.)"""
    x = (load_digits().data > 7).astype(np.float32)
    m = gdsl.load(MODELS / "rbm.gdl", nv=64, nh=16, seed=0)
    m.fit({"v": x}, method="pcd", lr=0.1, epochs=30, batch_size=20, progress=False, monitor=None)
    exact = m.log_partition()
    betas = np.linspace(0, 1, 10)
    m._rng = np.random.default_rng(0)
    m.log_partition("ais", runs=400, data={"v": x}, betas=betas)
    low = m.last_ais["log_z0"] + m.last_ais["log_weights"]
    m.log_partition("reverse-ais", runs=400, data={"v": x}, betas=betas)
    high = m.last_ais["log_z0"] - m.last_ais["log_weights"]
    se = lambda a: a.std(ddof=1) / np.sqrt(len(a))  # noqa: E731
    assert low.mean() + 4 * se(low) < exact < high.mean() - 4 * se(high), \
        (low.mean() - exact, se(low), high.mean() - exact, se(high))


def test_dbm_variational_bound_is_below_the_exact_likelihood(trained):
    m, data, exact = trained["dbm"]
    bound = m.variational_bound(data, exact)
    exact_ll = m.log_prob(data, log_z=exact)
    assert np.all(bound <= exact_ll + 1e-9)
    assert np.mean(exact_ll - bound) < 1.0  # mean-field is a close fit on this small model


def test_standard_schedule():
    b = standard_schedule()
    assert b[0] == 0.0 and b[-1] == 1.0 and np.all(np.diff(b) > 0)
    assert 14_000 < len(b) < 15_000


@pytest.mark.skipif(not MNIST.exists(), reason="needs ../shared/data/binarized_mnist.npz")
def test_mnist_784x20_rbm_default_schedule_within_two_tenths_of_a_nat():
    """The issue's check: exact log Z by summing the 2^20 hidden states, AIS with the default
    ~14,500-temperature schedule and 100 runs from the base-rate model."""
    x = np.load(MNIST)["train"][:10000].astype(np.float32)
    m, exact = fit_mnist_784x20(x)
    est = m.log_partition("ais", runs=100, data={"v": x})
    assert abs(est.log_z - exact) < 0.2, (est, exact)


def test_ais_argument_errors(trained):
    m, data, _ = trained["rbm"]
    with pytest.raises(ValueError, match="reverse AIS starts"):
        m.log_partition("reverse-ais")
    with pytest.raises(ValueError, match="start must be"):
        m.log_partition("reverse-ais", data=data, start="model")
    fresh = gdsl.load(MODELS / "rbm.gdl", nv=16, nh=8, seed=0)
    with pytest.raises(ValueError, match="persistent chains"):
        fresh.log_partition("reverse-ais", start="chains")
    with pytest.raises(ValueError, match="betas must rise"):
        m.log_partition("ais", betas=[0.5, 1.0])
    with pytest.raises(ValueError, match="runs"):
        m.log_partition("ais", runs=1)
    with pytest.raises(ValueError, match="unknown method"):
        m.log_partition("bridge")


def test_log_prob_uses_the_bound_when_the_latents_cannot_be_enumerated(trained):
    m, data, exact = trained["dbm"]
    bound = m.log_prob(data, log_z=exact, method="bound")
    np.testing.assert_allclose(bound, m.variational_bound(data, exact))
    # with an enumeration limit below what the DBM's latents need, "auto" falls back to the bound
    np.testing.assert_allclose(m.log_prob(data, log_z=exact, max_states=2), bound)
    assert np.all(m.log_prob(data, log_z=exact) >= bound - 1e-9)  # exact where it fits


def test_log_prob_asks_for_log_z_when_it_cannot_be_computed_exactly():
    m = gdsl.load(MODELS / "rbm.gdl", nv=64, nh=40, seed=0)
    x = (load_digits().data[:5] > 7).astype(np.float32)
    with pytest.raises(ValueError, match="max_states.*pass log_z"):
        m.log_prob({"v": x}, max_states=2 ** 20)
    assert m.log_prob({"v": x}, log_z=0.0).shape == (5,)
