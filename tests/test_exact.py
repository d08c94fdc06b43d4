"""Exact-distribution tests: compiled samplers and exact sums against brute force.

Every reference quantity here is computed independently of gdsl's kernels: the
energy of each shipped model is re-implemented below in plain numpy from
`model.params`, and distributions are obtained by enumerating every joint state
of a tiny instance (see conftest.TINY). The only things taken from the model are
its parameters, its group names/domains/shapes, and what it returns.

How the statistical tolerances are chosen
-----------------------------------------
Samples come from SAMPLE_N = 200,000 draws: 10,000 independent chains, each
burnt in for 50 sweeps and then recorded every 4 sweeps (20 records per chain;
25 sweeps for the Gaussian RBM, whose h mixes slowly). Records of one chain are
autocorrelated, so the effective sample size is N / tau for a variance inflation
tau >= 1. We allow tau <= TAU_MAX = 2 and check that premise: tau is estimated
from batch means over the chains and asserted < TAU_MAX (measured: 1.0-1.2 for
the discrete models, ~1.25 for the GRBM).

* Total variation (TV): the tolerance is the mean + 4 standard deviations of the
  TV between p and the histogram of N / TAU_MAX i.i.d. draws from p, estimated by
  simulating 400 numpy multinomial histograms (fixed seed). TV scales as
  1/sqrt(N_eff), so this is about 1.6x (hundreds of states) to 3x (8 states) the
  expected TV of N i.i.d. draws, 0.004-0.02 here: a correct sampler fails with
  probability well below 1e-3, while a wrong conditional (a wrong sign, a missing
  factor 2 for spins, lateral couplings off by 10%, ...) moves the law by more.
  `test_tv_tolerance_has_power` checks that perturbing a single weight by 0.25
  already exceeds the tolerance.
* Moments (real units): |estimate - exact| < Z_MAX * standard error, Z_MAX = 4,
  with the standard error computed for N_eff = N / TAU_MAX.
* Exact (non-random) quantities such as free energies: the default dtype is
  float32, so they agree to about 1e-6 relative; we use rtol 1e-5 / atol 1e-4.
Seeds are fixed for reproducibility; they were not chosen to make tests pass.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.special import expit, logsumexp

from conftest import load_model, random_params

SAMPLE_N = 200_000
CHAINS = 10_000
STEPS = 4
BURN_IN = 50
TAU_MAX = 2.0
Z_MAX = 4.0
RTOL, ATOL = 1e-5, 1e-4  # float32 kernels against float64 numpy

# spin_rbm is a test-only RBM with spin units on both layers (see conftest.SPIN_RBM)
DISCRETE_MODELS = ["rbm", "dbm", "bm", "softmax_rbm", "threeway", "ising", "spin_rbm"]


# ----------------------------------------------------------------------------- numpy energies
def _p64(model):
    return {k: np.asarray(v, dtype=np.float64) for k, v in model.params.items()}


def _scalar(x):
    return float(np.asarray(x, dtype=np.float64).reshape(-1)[0])


def energy_rbm(p, s, consts):
    v, h = s["v"], s["h"]
    return -np.einsum("ni,ij,nj->n", v, p["W"], h) - v @ p["b"] - h @ p["c"]


def energy_grbm(p, s, consts):
    v, h = s["v"], s["h"]
    sig2 = consts["sigma"] ** 2
    return (((v - p["b"]) ** 2).sum(1) / (2 * sig2)
            - np.einsum("ni,ij,nj->n", v, p["W"], h) / sig2 - h @ p["c"])


def energy_dbm(p, s, consts):
    v, h1, h2 = s["v"], s["h1"], s["h2"]
    return (-np.einsum("ni,ij,nj->n", v, p["W1"], h1) - np.einsum("ni,ij,nj->n", h1, p["W2"], h2)
            - v @ p["b"] - h1 @ p["c1"] - h2 @ p["c2"])


def energy_bm(p, s, consts):
    v, h = s["v"], s["h"]
    return (-0.5 * np.einsum("ni,ij,nj->n", v, p["L"], v) - np.einsum("ni,ij,nj->n", v, p["W"], h)
            - v @ p["b"] - h @ p["c"])


def energy_softmax_rbm(p, s, consts):
    v, y, h = s["v"], s["y"], s["h"]
    return (-np.einsum("ni,ij,nj->n", v, p["W"], h) - np.einsum("ni,ij,nj->n", y, p["U"], h)
            - v @ p["b"] - y @ p["d"] - h @ p["c"])


def energy_threeway(p, s, consts):
    x, y, h = s["x"], s["y"], s["h"]
    return (-np.einsum("ijk,ni,nj,nk->n", p["W"], x, y, h)
            - x @ p["a"] - y @ p["b"] - h @ p["c"])


def energy_ising(p, s, consts):
    x = s["s"]
    J, field = _scalar(p["J"]), _scalar(p["field"])
    vertical = (x[:, :-1, :] * x[:, 1:, :]).sum((1, 2))
    horizontal = (x[:, :, :-1] * x[:, :, 1:]).sum((1, 2))
    return -J * vertical - J * horizontal - field * x.sum((1, 2))


ENERGY = {"rbm": energy_rbm, "grbm": energy_grbm, "dbm": energy_dbm, "bm": energy_bm,
          "softmax_rbm": energy_softmax_rbm, "threeway": energy_threeway, "ising": energy_ising,
          "spin_rbm": energy_rbm}


def np_energy(model, states):
    states = {k: np.asarray(v, dtype=np.float64) for k, v in states.items()}
    return ENERGY[model.NAME](_p64(model), states, model.consts)


# ----------------------------------------------------------------------------- enumeration
def group_states(domain, shape):
    """Every value of one group, shape (K, *shape), in itertools.product order."""
    size = int(np.prod(shape))
    if domain == "binary":
        vals = np.array(list(itertools.product([0.0, 1.0], repeat=size)))
    elif domain == "spin":
        vals = np.array(list(itertools.product([-1.0, 1.0], repeat=size)))
    elif domain == "categorical":
        k = shape[-1]
        digits = np.array(list(itertools.product(range(k), repeat=size // k)))
        vals = np.eye(k)[digits]
    else:
        raise AssertionError(f"cannot enumerate a {domain} group")
    return vals.reshape((-1,) + tuple(shape))


def encode(domain, x):
    """Index of each row of x (N, *shape) in group_states order."""
    x = np.asarray(x)
    n = x.shape[0]
    if domain == "categorical":
        k = x.shape[-1]
        digits = x.reshape(n, -1, k).argmax(-1)
        base = k
    else:
        digits = (x.reshape(n, -1) > 0).astype(np.int64)
        base = 2
    weights = base ** np.arange(digits.shape[1] - 1, -1, -1, dtype=np.int64)
    return digits @ weights


class Exact:
    """The exact joint distribution of a tiny all-discrete model, by enumeration."""

    def __init__(self, model):
        self.model = model
        self.names = [g for g, _, _ in model.GROUPS]
        self.domains = {g: d for g, _, d in model.GROUPS}
        tables = [group_states(self.domains[g], model.shape(g)) for g in self.names]
        self.counts = tuple(len(t) for t in tables)
        idx = np.indices(self.counts).reshape(len(self.counts), -1)
        self.states = {g: t[i] for g, t, i in zip(self.names, tables, idx)}
        self.energy = np_energy(model, self.states)
        self.log_z = float(logsumexp(-self.energy))
        self.p = np.exp(-self.energy - self.log_z)

    def index(self, samples):
        codes = [encode(self.domains[g], samples[g]) for g in self.names]
        return np.ravel_multi_index(codes, self.counts)

    def conditional(self, values, masks=None):
        """p(joint | the elements selected by masks[g] equal values[g]); masks default to whole groups."""
        sel = np.ones(len(self.p), dtype=bool)
        masks = masks or {}
        for g, val in values.items():
            m = np.broadcast_to(np.asarray(masks.get(g, True), dtype=bool), self.model.shape(g))
            val = np.asarray(val, dtype=np.float64)
            sel &= np.all((self.states[g] == val)[:, m], axis=1)
        q = np.where(sel, self.p, 0.0)
        return q / q.sum()

    def mean(self, group, q=None):
        q = self.p if q is None else q
        return np.tensordot(q, self.states[group], axes=(0, 0))


_EXACT_CACHE: dict = {}


def exact(model) -> Exact:
    """Exact distribution of a session model (cached; session models' params are never changed)."""
    key = (id(model), model._version)
    if key not in _EXACT_CACHE:
        _EXACT_CACHE[key] = Exact(model)
    return _EXACT_CACHE[key]


# ----------------------------------------------------------------------------- statistics
def simulated_tv_iid(p, n, reps=400, seed=12345):
    """TV(empirical, p) of `reps` simulated histograms of n i.i.d. draws from p (numpy multinomial)."""
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(int(n), p / p.sum(), size=reps)
    return 0.5 * np.abs(counts / n - p).sum(axis=1)


def tv_tolerance(p, n):
    """Mean + 4 sd of the TV of n / TAU_MAX i.i.d. draws (about 1.6-3x the i.i.d. TV of n draws)."""
    tv = simulated_tv_iid(p, n / TAU_MAX)
    return float(tv.mean() + 4.0 * tv.std())


def chain_tau(idx, per_chain, k):
    """Largest variance inflation over the states with p > 1%: batch means over chains.

    sample() returns chain c's records as rows c * per_chain ... (c + 1) * per_chain - 1."""
    chains = len(idx) // per_chain
    means = np.zeros((chains, k))
    np.add.at(means, (np.arange(len(idx)) // per_chain, idx), 1.0 / per_chain)
    p = means.mean(0)
    ok = p > 0.01
    return float((per_chain * means.var(0)[ok] / (p * (1 - p))[ok]).max())


def assert_tv(idx, p, label, per_chain=None):
    n = len(idx)
    emp = np.bincount(idx, minlength=len(p)) / n
    tv = 0.5 * np.abs(emp - p).sum()
    tol = tv_tolerance(p, n)
    iid = simulated_tv_iid(p, n).mean()
    assert tv < tol, (f"{label}: TV(samples, exact) = {tv:.4f} >= tolerance {tol:.4f} "
                      f"(E[TV] for {n} i.i.d. draws is {iid:.4f})")
    if per_chain:  # the premise of the tolerance: records are nearly independent
        tau = chain_tau(idx, per_chain, len(p))
        assert tau < TAU_MAX, f"{label}: chains mix too slowly (variance inflation {tau:.2f})"
    return tv, tol


def draw(model, **kw):
    kw = {"chains": CHAINS, "steps": STEPS, "burn_in": BURN_IN, **kw}
    return model.sample(SAMPLE_N, **kw)


PER_CHAIN = SAMPLE_N // CHAINS


# ============================================================================= energies
@pytest.mark.parametrize("name", DISCRETE_MODELS)
def test_energy_matches_numpy(name, request):
    model = request.getfixturevalue(name)
    ex = exact(model)
    got = model.energy(ex.states)
    np.testing.assert_allclose(got, ex.energy, rtol=RTOL, atol=ATOL)
    assert np.ptp(ex.energy) > 3.0  # the distribution is far from uniform


def test_energy_matches_numpy_grbm(grbm):
    rng = np.random.default_rng(0)
    states = {"v": rng.normal(0, 2, size=(50, 2)), "h": (rng.random((50, 3)) < 0.5).astype(float)}
    np.testing.assert_allclose(grbm.energy(states), np_energy(grbm, states), rtol=RTOL, atol=ATOL)


# ============================================================================= sampling: TV
@pytest.mark.parametrize("name", DISCRETE_MODELS)
def test_gibbs_samples_match_exact_joint(name, request):
    """Empirical joint of all groups (visible and latent) vs brute-force enumeration."""
    model = request.getfixturevalue(name)
    ex = exact(model)
    assert ex.p.max() > 5.0 / len(ex.p)  # far from uniform
    s = draw(model)
    assert_tv(ex.index(s), ex.p, f"{name} joint", PER_CHAIN)


def _bump_w00(p):
    p["W"][0, 0] += 0.25


def _scale_lateral(p):
    p["L"] *= 0.9


def _scale_coupling(p):
    p["J"] = p["J"] * 0.9


@pytest.mark.parametrize("name,perturb", [("rbm", _bump_w00), ("bm", _scale_lateral),
                                          ("ising", _scale_coupling)])
def test_tv_tolerance_has_power(name, perturb, request):
    """The TV threshold is sensitive: one weight off by 0.25, or lateral couplings 10% too weak,
    move the exact law by clearly more than the tolerance."""
    model = request.getfixturevalue(name)
    ex = exact(model)
    other = load_model(name)
    params = {k: np.array(v, dtype=np.float64) for k, v in model.params.items()}
    perturb(params)
    other.params = params
    shifted = Exact(other).p
    assert 0.5 * np.abs(shifted - ex.p).sum() > 1.5 * tv_tolerance(ex.p, SAMPLE_N)


# ============================================================================= Gaussian units
def grbm_exact(model):
    """p(h) by enumerating h and integrating v analytically; moments of v."""
    p = _p64(model)
    sig2 = model.consts["sigma"] ** 2
    H = group_states("binary", model.shape("h"))
    means = p["b"] + H @ p["W"].T  # E[v | h] = b + W h
    logw = H @ p["c"] + ((means ** 2).sum(1) - (p["b"] ** 2).sum()) / (2 * sig2)
    ph = np.exp(logw - logsumexp(logw))
    mean = ph @ means
    cov = sig2 * np.eye(len(mean)) + (means - mean).T @ (ph[:, None] * (means - mean))
    # Z = sum_h exp(c.h) * integral exp(-|v - b|^2 / 2s^2 + v.Wh / s^2) dv, completing the square
    log_z = float(logsumexp(logw)) + 0.5 * len(mean) * math.log(2 * math.pi * sig2)
    return H, ph, means, mean, cov, log_z


def assert_moments(v, mean, cov, label):
    n_eff = len(v) / TAU_MAX
    d = v - mean
    emp_mean = v.mean(0)
    se_mean = np.sqrt(np.diag(cov) / n_eff)
    assert np.all(np.abs(emp_mean - mean) < Z_MAX * se_mean), \
        f"{label}: mean {emp_mean} vs exact {mean} (se {se_mean})"
    prods = d[:, :, None] * d[:, None, :]
    emp_cov = prods.mean(0)
    se_cov = prods.std(0) / np.sqrt(n_eff)
    assert np.all(np.abs(emp_cov - cov) < Z_MAX * se_cov), \
        f"{label}: covariance {emp_cov.tolist()} vs exact {cov.tolist()} (se {se_cov.tolist()})"


def test_grbm_samples_match_exact(grbm):
    H, ph, means, mean, cov, _ = grbm_exact(grbm)
    assert ph.max() > 2.0 / len(ph)
    # v and h are strongly coupled (W ~ N(0, 1), sigma = 0.8), so h moves slowly: with 4 sweeps
    # between records the variance inflation reaches ~4, with 16 ~1.5, with 25 ~1.25.
    s = draw(grbm, steps=25)
    assert_moments(s["v"].astype(np.float64), mean, cov, "grbm v")
    assert_tv(encode("binary", s["h"]), ph, "grbm h marginal", PER_CHAIN)


def test_grbm_clamped_h_gives_gaussian_v(grbm):
    """v | h = N(b + W h, sigma^2 I)."""
    h0 = np.array([1.0, 0.0, 1.0])
    s = draw(grbm, clamp={"h": h0})
    assert np.all(s["h"] == h0)
    p = _p64(grbm)
    sig2 = grbm.consts["sigma"] ** 2
    assert_moments(s["v"].astype(np.float64), p["b"] + p["W"] @ h0, sig2 * np.eye(2), "grbm v | h")


# ============================================================================= clamping
CLAMP_CASES = {
    # model: (values, per-element mask or None for whole groups)
    "rbm_half_v": ("rbm", {"v": [1.0, 0.0, 1.0, 1.0]}, {"v": [True, True, False, False]}),
    "rbm_all_v": ("rbm", {"v": [0.0, 1.0, 1.0, 0.0]}, None),
    "bm_some_v": ("bm", {"v": [0.0, 1.0, 0.0, 1.0, 1.0]}, {"v": [False, True, False, True, False]}),
    "dbm_v_h2": ("dbm", {"v": [1.0, 0.0, 1.0], "h2": [0.0, 1.0]}, None),
    "softmax_rbm_y": ("softmax_rbm", {"y": [0.0, 0.0, 1.0]}, None),
    "threeway_x": ("threeway", {"x": [1.0, 1.0, 0.0]}, None),
    "ising_row": ("ising", {"s": -np.ones((3, 3))}, {"s": [[True, True, True], [False] * 3, [False] * 3]}),
    "spin_rbm_half_v": ("spin_rbm", {"v": [1.0, -1.0, 1.0, 1.0]}, {"v": [False, True, True, False]}),
}


@pytest.mark.parametrize("case", list(CLAMP_CASES))
def test_clamped_samples_match_exact_conditional(case, request):
    name, values, masks = CLAMP_CASES[case]
    model = request.getfixturevalue(name)
    ex = exact(model)
    values = {g: np.asarray(v, dtype=float) for g, v in values.items()}
    s = draw(model, clamp=values, mask=masks)
    for g, v in values.items():  # clamped elements never move
        m = np.broadcast_to(np.asarray((masks or {}).get(g, True), dtype=bool), model.shape(g))
        assert np.all(s[g][:, m] == v[m])
    q = ex.conditional(values, masks)
    assert (q > 0).sum() >= 4
    assert_tv(ex.index(s), q, f"{case} conditional", PER_CHAIN)


def test_clamp_per_chain_values(rbm):
    """Different clamp values per chain: each chain samples its own conditional."""
    ex = exact(rbm)
    chains, n = 4000, 80_000
    pats = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 1.0]])
    vals = pats[np.arange(chains) % 2]
    mask = np.array([True, False, True, False])
    s = rbm.sample(n, chains=chains, steps=STEPS, burn_in=BURN_IN, clamp={"v": vals}, mask={"v": mask})
    which = (s["v"][:, 0] == 0).astype(int)  # the clamped v[0] tells the pattern
    assert np.all(s["v"][:, mask] == pats[which][:, mask])
    assert abs(which.mean() - 0.5) < 1e-9
    for k in range(2):
        q = ex.conditional({"v": pats[k]}, {"v": mask})
        assert_tv(ex.index({g: x[which == k] for g, x in s.items()}), q, f"rbm pattern {k}", n // chains)


@pytest.mark.parametrize("name,group,mask", [
    ("rbm", "v", [True, False, True, False]),
    ("bm", "v", [False, True, True, False, True]),
    ("ising", "s", [[True, False, True], [False, True, False], [True, False, True]]),
    ("softmax_rbm", "y", True),
    ("dbm", "h1", True),
])
def test_gibbs_keeps_clamped_elements(name, group, mask, request):
    model = request.getfixturevalue(name)
    n = 200
    state = model.random_state(n)
    before = {k: v.copy() for k, v in state.items()}
    out = model.gibbs(state, steps=3, clamp={group: mask})
    for k in state:  # the input is not modified
        assert np.array_equal(state[k], before[k])
    m = np.broadcast_to(np.asarray(mask, dtype=bool), model.shape(group))
    assert np.array_equal(out[group][:, m], state[group][:, m])
    if not m.all():
        assert not np.array_equal(out[group][:, ~m], state[group][:, ~m])
    others = [k for k in state if k != group]
    assert any(not np.array_equal(out[k], state[k]) for k in others) or not others
    # a per-sample mask (with the sample axis) works too
    rows = np.zeros((n,) + model.shape(group), dtype=bool)
    rows[: n // 2] = True
    out = model.gibbs(state, steps=2, clamp={group: rows})
    assert np.array_equal(out[group][: n // 2], state[group][: n // 2])


# ============================================================================= mean field
def test_mean_field_rbm_exact_posterior(rbm):
    ex = exact(rbm)
    V = group_states("binary", (4,))
    mf = rbm.mean_field({"v": V})
    assert np.array_equal(mf["v"], V)
    for i, v in enumerate(V):
        q = ex.conditional({"v": v})
        np.testing.assert_allclose(mf["h"][i], ex.mean("h", q), atol=1e-5)
    np.testing.assert_allclose(rbm.conditional_mean({"v": V}, "h"), mf["h"], atol=1e-6)


def test_mean_field_spin_rbm_exact_posterior(spin_rbm):
    """Spin means E[h | v] = tanh(c + v W), checked against enumeration."""
    ex = exact(spin_rbm)
    V = group_states("spin", (4,))
    mf = spin_rbm.mean_field({"v": V})
    for i, v in enumerate(V):
        np.testing.assert_allclose(mf["h"][i], ex.mean("h", ex.conditional({"v": v})), atol=1e-5)


def test_mean_field_dbm_exact_h1_given_v_h2(dbm):
    ex = exact(dbm)
    V = group_states("binary", (3,))
    H2 = group_states("binary", (2,))
    pairs = [(v, h2) for v in V for h2 in H2]
    ev = {"v": np.array([a for a, _ in pairs]), "h2": np.array([b for _, b in pairs])}
    mf = dbm.mean_field(ev)
    for i, (v, h2) in enumerate(pairs):
        q = ex.conditional({"v": v, "h2": h2})
        np.testing.assert_allclose(mf["h1"][i], ex.mean("h1", q), atol=1e-5)


def test_mean_field_factorised_posteriors(threeway, softmax_rbm, grbm):
    """Other conditionals that factorise: h | x, y (threeway), h | v, y and y | v, h (softmax RBM),
    h | v and v | h (Gaussian RBM)."""
    ex = exact(threeway)
    x, y = np.array([1.0, 0.0, 1.0]), np.array([0.0, 1.0])
    mf = threeway.mean_field({"x": x[None], "y": y[None]})
    np.testing.assert_allclose(mf["h"][0], ex.mean("h", ex.conditional({"x": x, "y": y})), atol=1e-5)

    ex = exact(softmax_rbm)
    v, y, h = np.array([1.0, 1.0, 0.0]), np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0])
    mf = softmax_rbm.mean_field({"v": v[None], "y": y[None]})
    np.testing.assert_allclose(mf["h"][0], ex.mean("h", ex.conditional({"v": v, "y": y})), atol=1e-5)
    mf = softmax_rbm.mean_field({"v": v[None], "h": h[None]})
    np.testing.assert_allclose(mf["y"][0], ex.mean("y", ex.conditional({"v": v, "h": h})), atol=1e-5)
    assert abs(mf["y"][0].sum() - 1) < 1e-5

    p = _p64(grbm)
    V = np.array([[0.3, -1.2], [2.0, 0.5]])
    mf = grbm.mean_field({"v": V})
    # exact p(h_j = 1 | v) by enumerating h with the numpy energy
    H = group_states("binary", (3,))
    for i, v in enumerate(V):
        e = np_energy(grbm, {"v": np.repeat(v[None], len(H), 0), "h": H})
        q = np.exp(-e - logsumexp(-e))
        np.testing.assert_allclose(mf["h"][i], q @ H, atol=1e-5)
    Hs = H[[1, 6]]
    np.testing.assert_allclose(grbm.mean_field({"h": Hs})["v"], p["b"] + Hs @ p["W"].T, atol=1e-5)


def _mf(model, evidence, mask=None):
    out, info = model.mean_field(evidence, mask=mask, tol=1e-7, max_iter=2000, return_info=True)
    assert info["max_change"] <= 1e-6, info
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


MF_TOL = 2e-5  # the kernel stops when no mean moves by more than tol = 1e-7 (float32 values)


def test_mean_field_fixed_point_dbm(dbm):
    p = _p64(dbm)
    V = group_states("binary", (3,))
    mu = _mf(dbm, {"v": V})
    np.testing.assert_allclose(mu["h1"], expit(p["c1"] + V @ p["W1"] + mu["h2"] @ p["W2"].T), atol=MF_TOL)
    np.testing.assert_allclose(mu["h2"], expit(p["c2"] + mu["h1"] @ p["W2"]), atol=MF_TOL)
    # with only v clamped the posterior does not factorise: mean field is not exact here
    ex = exact(dbm)
    exact_h1 = np.array([ex.mean("h1", ex.conditional({"v": v})) for v in V])
    assert np.abs(exact_h1 - mu["h1"]).max() > 1e-3


def test_mean_field_fixed_point_bm(bm):
    """Lateral (site-by-site) updates converge to a fixed point of mu_v = sigmoid(b + L mu_v + W h)."""
    p = _p64(bm)
    H = group_states("binary", (3,))
    mu = _mf(bm, {"h": H})
    np.testing.assert_allclose(mu["v"], expit(p["b"] + mu["v"] @ p["L"] + H @ p["W"].T), atol=MF_TOL)


def test_mean_field_fixed_point_threeway(threeway):
    p = _p64(threeway)
    X = group_states("binary", (3,))
    mu = _mf(threeway, {"x": X})
    np.testing.assert_allclose(mu["y"], expit(p["b"] + np.einsum("ijk,ni,nk->nj", p["W"], X, mu["h"])),
                               atol=MF_TOL)
    np.testing.assert_allclose(mu["h"], expit(p["c"] + np.einsum("ijk,ni,nj->nk", p["W"], X, mu["y"])),
                               atol=MF_TOL)


def test_mean_field_fixed_point_softmax_rbm(softmax_rbm):
    p = _p64(softmax_rbm)
    V = group_states("binary", (3,))
    mu = _mf(softmax_rbm, {"v": V})
    a = p["d"] + mu["h"] @ p["U"].T
    np.testing.assert_allclose(mu["y"], np.exp(a - logsumexp(a, axis=1, keepdims=True)), atol=MF_TOL)
    np.testing.assert_allclose(mu["h"], expit(p["c"] + V @ p["W"] + mu["y"] @ p["U"]), atol=MF_TOL)


def test_mean_field_fixed_point_ising_with_mask(ising):
    """Spin means with the top row clamped: m = tanh(field + J * sum of neighbour means)."""
    J, field = _scalar(ising.params["J"]), _scalar(ising.params["field"])
    S = np.zeros((2, 3, 3))
    S[0, 0] = 1.0
    S[1, 0] = -1.0
    mask = np.zeros((3, 3), dtype=bool)
    mask[0] = True
    mu = _mf(ising, {"s": S}, mask={"s": mask})["s"]
    assert np.array_equal(mu[:, 0], S[:, 0])
    nb = np.zeros_like(mu)
    nb[:, 1:] += mu[:, :-1]
    nb[:, :-1] += mu[:, 1:]
    nb[:, :, 1:] += mu[:, :, :-1]
    nb[:, :, :-1] += mu[:, :, 1:]
    np.testing.assert_allclose(mu[:, 1:], np.tanh(field + J * nb)[:, 1:], atol=MF_TOL)
    assert mu[0, 1:].mean() > mu[1, 1:].mean() + 0.1  # the clamped row matters


# ============================================================================= free energy, Z
def _brute_free_energy(ex, evidence):
    """-log sum over the other groups of exp(-E), for each row of evidence."""
    out = []
    n = len(next(iter(evidence.values())))
    for i in range(n):
        sel = np.ones(len(ex.p), dtype=bool)
        for g, val in evidence.items():
            sel &= np.all((ex.states[g] == val[i]).reshape(len(ex.p), -1), axis=1)
        out.append(-logsumexp(-ex.energy[sel]))
    return np.array(out)


def _joint_states(model, ex, given):
    """Every joint configuration of the `given` groups, as a data dict (rows in enumeration order)."""
    tables = [group_states(ex.domains[g], model.shape(g)) for g in given]
    idx = np.indices([len(t) for t in tables]).reshape(len(tables), -1)
    return {g: t[i] for g, t, i in zip(given, tables, idx)}


FREE_ENERGY_CASES = [("rbm", ("v",)), ("bm", ("v",)), ("dbm", ("v", "h2")), ("softmax_rbm", ("v", "y")),
                     ("threeway", ("x", "y")), ("ising", ("s",)), ("rbm", ("h",)), ("dbm", ("h1",)),
                     ("spin_rbm", ("v",)), ("spin_rbm", ("h",))]


@pytest.mark.parametrize("name,given", FREE_ENERGY_CASES)
def test_free_energy_matches_brute_force(name, given, request):
    model = request.getfixturevalue(name)
    ex = exact(model)
    evidence = _joint_states(model, ex, given)
    got = model.free_energy(evidence)
    np.testing.assert_allclose(got, _brute_free_energy(ex, evidence), rtol=RTOL, atol=ATOL)


def test_free_energy_grbm(grbm):
    rng = np.random.default_rng(1)
    V = rng.normal(0, 1.5, size=(20, 2))
    H = group_states("binary", (3,))
    want = np.array([-logsumexp(-np_energy(grbm, {"v": np.repeat(v[None], 8, 0), "h": H})) for v in V])
    np.testing.assert_allclose(grbm.free_energy({"v": V}), want, rtol=RTOL, atol=ATOL)
    # summing out the real v: Gaussian integral, checked by quadrature on a fine grid
    got = grbm.free_energy({"h": H})
    grid = np.linspace(-12, 12, 601)
    dv = grid[1] - grid[0]
    G = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    for i, h in enumerate(H):
        e = np_energy(grbm, {"v": G, "h": np.repeat(h[None], len(G), 0)})
        want = -(logsumexp(-e) + 2 * math.log(dv))
        assert abs(got[i] - want) < 1e-4, (h, got[i], want)


@pytest.mark.parametrize("name", DISCRETE_MODELS)
def test_log_partition_exact(name, request):
    model = request.getfixturevalue(name)
    ex = exact(model)
    assert model.log_partition(method="exact") == pytest.approx(ex.log_z, rel=1e-9, abs=1e-9)


def test_log_partition_grbm(grbm):
    H, ph, means, mean, cov, log_z = grbm_exact(grbm)
    # independent check by quadrature: Z = sum_h integral exp(-E(v, h)) dv
    grid = np.linspace(-12, 12, 601)
    dv = grid[1] - grid[0]
    G = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    terms = [logsumexp(-np_energy(grbm, {"v": G, "h": np.repeat(h[None], len(G), 0)})) for h in H]
    quad = float(logsumexp(terms) + 2 * math.log(dv))
    assert quad == pytest.approx(log_z, abs=1e-8)
    assert grbm.log_partition(method="exact") == pytest.approx(quad, abs=1e-6)


LOG_PROB_CASES = [("rbm", ("v",)), ("rbm", ("h",)), ("bm", ("v",)), ("bm", ("h",)), ("dbm", ("v",)),
                  ("dbm", ("v", "h2")), ("softmax_rbm", ("v", "y")), ("softmax_rbm", ("y",)),
                  ("threeway", ("x", "y")), ("ising", ("s",)), ("spin_rbm", ("v",))]


@pytest.mark.parametrize("name,given", LOG_PROB_CASES)
def test_log_prob_is_exact_marginal(name, given, request):
    model = request.getfixturevalue(name)
    ex = exact(model)
    data = _joint_states(model, ex, given)
    lp = model.log_prob(data)
    assert np.exp(logsumexp(lp)) == pytest.approx(1.0, abs=1e-9)
    marginal = ex.p.reshape(ex.counts).sum(axis=tuple(k for k, g in enumerate(ex.names) if g not in given))
    np.testing.assert_allclose(np.exp(lp), marginal.reshape(-1), rtol=1e-6, atol=1e-12)


def test_log_prob_grbm(grbm):
    H, ph, means, mean, cov, log_z = grbm_exact(grbm)
    lp = grbm.log_prob({"h": H})
    np.testing.assert_allclose(np.exp(lp), ph, rtol=1e-6)
    sig2 = grbm.consts["sigma"] ** 2
    V = np.random.default_rng(2).normal(0, 1.5, size=(10, 2))
    # p(v) = sum_h p(h) N(v; b + W h, sigma^2 I)
    logn = (-((V[:, None, :] - means[None]) ** 2).sum(-1) / (2 * sig2) - math.log(2 * math.pi * sig2))
    want = logsumexp(logn + np.log(ph)[None], axis=1)
    np.testing.assert_allclose(grbm.log_prob({"v": V}), want, rtol=1e-6, atol=1e-6)


def test_summing_out_impossible_raises(bm, dbm, rbm, grbm):
    H = group_states("binary", (3,))
    with pytest.raises(ValueError, match=r"cannot sum out v.*v is coupled to itself"):
        bm.free_energy({"h": H})
    with pytest.raises(ValueError, match=r"h1 and h2 share an energy term"):
        dbm.free_energy({"v": group_states("binary", (3,))})
    with pytest.raises(ValueError, match=r"2\^3 states.*max_states"):
        rbm.log_partition(max_states=4)
    with pytest.raises(ValueError, match=r"max_states"):
        rbm.log_prob({"h": H}, max_states=4)
    with pytest.raises(ValueError, match="method"):
        rbm.log_partition(method="bogus")
    with pytest.raises(ValueError, match="non-empty dict"):
        grbm.free_energy({})


# ============================================================================= reproducibility
@pytest.mark.parametrize("name", ["rbm", "bm", "ising", "softmax_rbm"])
def test_same_seed_same_samples(name):
    a, b, c = load_model(name, seed=11), load_model(name, seed=11), load_model(name, seed=12)
    for k in a.params:
        assert np.array_equal(a.params[k], b.params[k])
    params = random_params(a, seed=3)  # identical parameters everywhere: only the seed differs
    for m in (a, b, c):
        m.params = params
    sa, sb, sc = (m.sample(400, chains=40, steps=2, burn_in=5) for m in (a, b, c))
    for k in sa:
        assert np.array_equal(sa[k], sb[k])
    assert any(not np.array_equal(sa[k], sc[k]) for k in sa)
    # the stream moves on: a second call differs from the first
    again = a.sample(400, chains=40, steps=2, burn_in=5)
    assert any(not np.array_equal(sa[k], again[k]) for k in sa)
    # gibbs from a given state is reproducible too
    st = b.random_state(30)
    g1 = load_model(name, seed=5)
    g2 = load_model(name, seed=5)
    g1.params = params
    g2.params = params
    o1, o2 = g1.gibbs(st, steps=3), g2.gibbs(st, steps=3)
    for k in o1:
        assert np.array_equal(o1[k], o2[k])


# ============================================================================= input validation
def test_wrong_shapes_name_the_variable(rbm, ising):
    with pytest.raises(ValueError, match=r"v must have shape \(5, 4\).*got \(5, 3\)"):
        rbm.energy({"v": np.zeros((5, 3)), "h": np.zeros((5, 3))})
    with pytest.raises(ValueError, match=r"h must have shape \(5, 3\)"):
        rbm.energy({"v": np.zeros((5, 4)), "h": np.zeros((5, 4))})
    with pytest.raises(ValueError, match=r"\bv must have shape \(n, 4\).*got \(4,\).*leading axis"):
        rbm.free_energy({"v": np.zeros(4)})  # one sample without the sample axis
    with pytest.raises(ValueError, match=r"s must have shape \(n, 3, 3\).*got \(2, 9\)"):
        ising.free_energy({"s": np.ones((2, 9))})
    with pytest.raises(ValueError, match="same number of samples"):
        rbm.energy({"v": np.zeros((5, 4)), "h": np.zeros((6, 3))})
    with pytest.raises(ValueError, match="'x'"):
        rbm.free_energy({"x": np.zeros((2, 4))})
    with pytest.raises(ValueError, match="missing h"):
        rbm.gibbs({"v": np.zeros((2, 4))})
    with pytest.raises(ValueError, match=r"v must have shape"):
        rbm.sample(10, clamp={"v": np.zeros(3)})
    with pytest.raises(ValueError, match=r"mask of v"):
        rbm.sample(10, clamp={"v": np.zeros(4)}, mask={"v": np.ones(3, dtype=bool)})
    with pytest.raises(ValueError, match=r"v must have shape \(3, 4\)"):
        rbm.mean_field({"v": np.zeros((3, 5))})
    with pytest.raises(ValueError, match="multiple of chains"):
        rbm.sample(10, chains=3)


def test_empty_complex_and_non_dict_inputs_are_value_errors(rbm):
    # each of these used to escape as ZeroDivisionError, AttributeError or a silent cast
    with pytest.raises(ValueError, match=r"v has no samples \(shape \(0, 4\)\)"):
        rbm.free_energy({"v": np.zeros((0, 4))})
    with pytest.raises(ValueError, match="no samples"):
        rbm.fit({"v": np.zeros((0, 4))}, epochs=1, progress=False)
    with pytest.raises(ValueError, match="v must be a real-valued numeric array"):
        rbm.free_energy({"v": np.ones((2, 4)) * 1j})
    with pytest.raises(ValueError, match="clamp must be a dict.*got list"):
        rbm.sample(2, clamp=[[0.0, 1.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match="evidence must be a dict.*got ndarray"):
        rbm.mean_field(np.zeros((2, 4)))
    assert set(rbm.mean_field(None)) == {"v", "h"}  # None: no evidence, like {}


def test_values_outside_the_domain(rbm, ising, softmax_rbm, grbm):
    with pytest.raises(ValueError, match=r"v is binary"):
        rbm.free_energy({"v": np.full((2, 4), 0.5)})
    with pytest.raises(ValueError, match=r"h is binary"):
        rbm.gibbs({"v": np.zeros((2, 4)), "h": np.full((2, 3), -1.0)})
    with pytest.raises(ValueError, match=r"v is binary"):
        rbm.sample(10, clamp={"v": [0.0, 2.0, 1.0, 1.0]})
    with pytest.raises(ValueError, match=r"s is spin"):
        ising.energy({"s": np.zeros((1, 3, 3))})
    with pytest.raises(ValueError, match=r"y is categorical.*one-hot"):
        softmax_rbm.free_energy({"v": np.zeros((1, 3)), "y": np.array([[1.0, 1.0, 0.0]])})
    with pytest.raises(ValueError, match=r"v contains NaN"):
        grbm.free_energy({"v": np.array([[0.0, np.nan]])})


def test_bad_parameters_are_rejected(rbm, bm, ising):
    W = np.array(rbm.params["W"])
    with pytest.raises(ValueError, match=r"parameter W must have shape \(4, 3\).*got \(3, 4\)"):
        rbm.params["W"] = np.zeros((3, 4))
    bad = W.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"W contains NaN"):
        rbm.params["W"] = bad
    with pytest.raises(ValueError, match=r"W contains NaN"):
        rbm.params = {"W": bad}
    with pytest.raises(ValueError, match=r"W contains NaN"):
        rbm.params.update(W=np.where(np.isnan(bad), np.inf, bad))
    with pytest.raises(ValueError, match=r"parameter b must be a real-valued numeric array"):
        rbm.params["b"] = "abc"
    assert np.array_equal(rbm.params["W"], W)  # a rejected value leaves the parameter alone
    with pytest.raises(KeyError):
        rbm.params = {"nope": 1.0}

    L = np.array(bm.params["L"])
    nonsym = L.copy()
    nonsym[0, 1] += 0.5
    with pytest.raises(ValueError, match=r"L is declared symmetric"):
        bm.params["L"] = nonsym
    diag = L + np.eye(5)
    with pytest.raises(ValueError, match=r"L is declared zero_diag"):
        bm.params["L"] = diag
    assert np.array_equal(bm.params["L"], L)

    with pytest.raises(ValueError, match=r"parameter J must have shape \(\)"):
        ising.params["J"] = [0.1, 0.2]
    fresh = load_model("ising")
    fresh.params["J"] = 0.3  # a plain float is fine for a scalar parameter
    assert _scalar(fresh.params["J"]) == pytest.approx(0.3)


@pytest.mark.parametrize("name", ["rbm", "grbm", "dbm", "bm", "softmax_rbm", "threeway", "ising"])
def test_params_round_trip(name):
    """model.params values have the declared shapes and can be assigned back (scalars stay 0-d)."""
    m = load_model(name)
    for k, v in m.params.items():
        assert v.shape == m.shape(k), k
    before = {k: v.copy() for k, v in m.params.items()}
    m.params = dict(m.params)
    for k in before:
        assert np.array_equal(m.params[k], before[k]) and m.params[k].shape == m.shape(k)


def test_sizes_must_be_valid():
    with pytest.raises(ValueError, match="nv"):
        load_model("rbm", nv=0)
    with pytest.raises(TypeError, match="no size or constant"):
        load_model("rbm", nq=3)
