"""Directed models (fvsbn, nade, sbn, vae, dbn): the compiled kernels and the DirectedModel
runtime against the independent numpy oracles in directed_reference.py.

What is compared with what, and how the tolerances are chosen
--------------------------------------------------------------
* Exact quantities (log p, log q, log joints, reparameterised bounds with fixed noise):
  directed models run in float64, so the compiled kernels and numpy agree to rounding,
  ~1e-15 relative for these tiny sizes; we allow 1e-10 absolute.
* Gradients: central differences with h = 1e-6 of the same float64 objective. Truncation
  is h^2 |f'''| / 6 ~ 1e-12, rounding ~1e-16 |f| / h ~ 1e-9 (|f| <= ~30 here); we allow
  |g - fd| <= 1e-6 + 1e-6 |fd| (measured errors are below 1e-8).
* Samples against exact tables (total variation, TV): rows are independent (ancestral
  draws; or one chain per row), so the empirical law of N rows is N i.i.d. draws from the
  sampler's law P. For the exact law p, E[TV] <= 1/2 sum_s sqrt(p_s (1 - p_s) / N) (Jensen),
  and TV moves by at most 1/N when one row changes, so by McDiarmid
  P(TV > E[TV] + 4/sqrt(N)) <= exp(-32). When the sampler runs Gibbs sweeps (a DBN's top,
  or conditioning on a descendant) P is not exactly p: we compute the exact Gibbs transition
  matrix of the free variables from the table, bound TV(P, p) by the worst start after that
  many sweeps (for either sweep order), add that bound to the tolerance and check it is
  negligible (< 1e-6 here). Power: the same samples are compared with a table whose root
  bias is off by 0.5, which the tolerance must reject (we also assert that the perturbed
  table is more than 2 tolerances away from the true one, so rejection is not luck).
* Monte-Carlo means (ELBO, IWAE bounds, gradients averaged over noise): |estimate - exact|
  < Z_MC = 5 standard errors, the standard error taken from B independent replicate means
  (B >= 40). With ~50 compared coordinates a correct implementation fails with
  probability < 1e-3; each test also asserts that the quantity is resolved (far more
  than 5 se from zero or from the competing value).
* Training on scikit-learn's digits (8x8, binarised at > 7 of 16, 1500 train / 297 test
  rows): the test-set log-likelihood (fvsbn, nade, exact), the exact ELBO (vae with nz = 1:
  quadrature; sbn: enumeration of the latents) before and after training. The margins are
  about half of what was measured over seeds 0-5, stated in each test.
Seeds are fixed for reproducibility; they were not chosen to make tests pass.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import directed_reference as ref
import gdsl
from conftest import model_path
from gdsl.runtime.learn import TrainingError

EXACT_ATOL = 1e-10
FD_H, FD_RTOL, FD_ATOL = 1e-6, 1e-6, 1e-6
Z_MC = 5.0
N_TV = 200_000           # rows for ancestral (exact) samplers
N_TV_GIBBS = 100_000     # rows when single-site Gibbs runs (a Python loop over sites: slower)
GIBBS_STEPS = 10         # sweeps; the exact mixing bound after 10 sweeps is < 1e-6 for these tables

# Tiny sizes: every joint state can be enumerated.
SIZES = {
    "fvsbn": dict(d=4),                       # 16 states
    "nade": dict(d=4, nh=3),                  # 16 states
    "sbn": dict(nv=3, n1=2, n2=2),            # 128 joint states
    "dbn": dict(nv=2, n1=2, n2=2, n3=2),      # 256 joint states
    "vae": dict(d=4, nh=3, nz=1),             # 16 states of x, z integrated by quadrature
}
PARAM_SEED = {"fvsbn": 101, "nade": 102, "sbn": 103, "dbn": 104, "vae": 105}


def make(name, seed=0, param_seed=None, scale=1.0, **sizes):
    """A fresh float64 instance with N(0, scale^2) parameters from the reference's generator."""
    sizes = sizes or SIZES[name]
    m = gdsl.load(model_path(name), seed=seed, **sizes)
    params = ref.random_params(ref.model_shapes(name, **sizes), PARAM_SEED[name] if param_seed is None
                               else param_seed, scale)
    m.params = params
    return m, params


def p64(model):
    return {k: np.array(v, dtype=np.float64) for k, v in model.params.items()}


def same_params(a, b):
    return set(a) == set(b) and all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def binary_rows(rng, n, d, p=0.5):
    return (rng.random((n, d)) < p).astype(np.float64)


# ----------------------------------------------------------------------------- exact tables
def table(name, p):
    """(states, probs) of the whole model at its SIZES; for the vae the marginal of x."""
    if name == "fvsbn":
        return ref.table_fvsbn(p, SIZES["fvsbn"]["d"])
    if name == "nade":
        return ref.table_nade(p, SIZES["nade"]["d"])
    if name == "sbn":
        return ref.table_sbn(p)
    if name == "dbn":
        return ref.table_dbn(p)
    if name == "vae":
        x = ref.all_states(SIZES["vae"]["d"])
        return {"x": x}, np.exp(ref.vae_logp_exact_1d(p, x))
    raise AssertionError(name)


def condition(states, probs, values, masks=None):
    """The table restricted to states whose masked elements equal `values`, renormalised."""
    sel = np.ones(len(probs), dtype=bool)
    for g, val in values.items():
        m = np.ones(states[g].shape[1], bool) if masks is None or g not in masks else np.asarray(masks[g], bool)
        sel &= np.all(states[g][:, m] == np.asarray(val)[m], axis=1)
    q = probs[sel]
    return {k: v[sel] for k, v in states.items()}, q / q.sum()


def tv_tolerance(probs, n):
    """E[TV] bound + 4/sqrt(N) for N i.i.d. draws (see the module docstring)."""
    probs = np.asarray(probs)
    return 0.5 * float(np.sum(np.sqrt(probs * (1 - probs) / n))) + 4 / math.sqrt(n)


def free_bits(states, groups):
    """The binary columns of `states` that are not constant, concatenated in `groups` order."""
    cols = np.concatenate([states[g] for g in groups], axis=1)
    return cols[:, cols.min(axis=0) != cols.max(axis=0)]


def gibbs_worst_tv(bits, probs, blocks, sweeps):
    """max over starting states of TV(law after `sweeps` sweeps, probs) for the Gibbs sampler
    that resamples each block of coordinates of `bits` in turn from its exact conditional.
    `bits` [S, f] must list every one of the 2^f binary vectors once."""
    S, f = bits.shape
    assert S == 2 ** f and len(np.unique(bits, axis=0)) == S
    T = np.eye(S)
    for block in blocks:
        rest = [c for c in range(f) if c not in block]
        key = np.unique(bits[:, rest], axis=0, return_inverse=True)[1].reshape(-1) if rest else np.zeros(S, int)
        K = np.zeros((S, S))
        for s in range(S):
            same = key == key[s]
            K[s, same] = probs[same] / probs[same].sum()
        T = T @ K
    P = np.linalg.matrix_power(T, sweeps)
    return 0.5 * float(np.abs(P - probs).sum(axis=1).max())


def site_sweeps_worst_tv(bits, probs, sweeps):
    """gibbs_worst_tv for single-site sweeps, the worse of the two site orders."""
    f = bits.shape[1]
    return max(gibbs_worst_tv(bits, probs, [[c] for c in order], sweeps)
               for order in (range(f), range(f - 1, -1, -1)))


def perturbed_root_bias(name, p, delta=0.5):
    """Parameters with one bias moved by delta (a 'plausible bug'): that of a root variable
    (fvsbn/nade x_0, sbn h2_0, dbn h3_0), for the vae the decoder's bias of x_0."""
    key = {"fvsbn": "b", "nade": "b", "sbn": "c2", "dbn": "c3", "vae": "bo"}[name]
    q = {k: v.copy() for k, v in p.items()}
    q[key][0] += delta
    return q


# ----------------------------------------------------------------------------- shared instances
@pytest.fixture(scope="module")
def tiny():
    """One instance of each model at SIZES with random N(0, 1) parameters; read-only."""
    return {name: make(name, seed=7) for name in SIZES}


@pytest.fixture(scope="module")
def digits64():
    """scikit-learn's 8x8 digits binarised at > 7 (of 16); permutation seed 0, 1500 / 297 rows."""
    from sklearn.datasets import load_digits

    x = load_digits().data
    perm = np.random.default_rng(0).permutation(len(x))
    x64 = (x > 7).astype(np.float64)[perm]
    train, test = x64[:1500], x64[1500:]
    q = (train.sum(0) + 1.0) / (len(train) + 2.0)   # the best model without interactions
    independent = float(np.mean(test @ np.log(q) + (1 - test) @ np.log(1 - q)))
    return train, test, independent


# ============================================================================= 1. densities
def test_metadata(tiny):
    fv, sbn, dbn, vae = tiny["fvsbn"][0], tiny["sbn"][0], tiny["dbn"][0], tiny["vae"][0]
    assert fv.dtype == np.float64 and fv.DIRECTED == ("x",) and fv.AUTOREGRESSIVE == ("x",) and not fv.GUIDE
    assert sbn.DIRECTED == ("h2", "h1", "v") and set(sbn.GUIDE) == {"h1", "h2"}
    assert sbn.visible == ["v"] and set(sbn.latent) == {"h1", "h2"}
    assert set(sbn.PARAMS_P) == {"W2", "W1", "c2", "c1", "b"} and set(sbn.PARAMS_Q) == {"R1", "R2", "d1", "d2"}
    assert set(dbn.UNDIRECTED) == {"h3", "h2"} and dbn.DIRECTED == ("h1", "v")
    assert vae.REPARAM == ("z",) and vae.GUIDE == ("z",) and vae.visible == ["x"]


@pytest.mark.parametrize("name, sizes", [("fvsbn", dict(d=6)), ("nade", dict(d=6, nh=4)),
                                         ("fvsbn", dict(d=23)), ("nade", dict(d=23, nh=9))])
def test_fully_observed_log_prob_matches_reference(name, sizes):
    m, p = make(name, param_seed=11, **sizes)
    d = sizes["d"]
    oracle = ref.fvsbn_logp if name == "fvsbn" else ref.nade_logp_naive   # nade: O(d^2 nh) from scratch
    x = ref.all_states(d) if d <= 10 else binary_rows(np.random.default_rng(12), 300, d)
    got = m.log_prob({"x": x})
    np.testing.assert_allclose(got, oracle(p, x), rtol=0, atol=EXACT_ATOL)
    np.testing.assert_allclose(m.log_joint({"x": x}), got, rtol=0, atol=EXACT_ATOL)
    if d <= 10:   # a normalised distribution over all 2^d states
        assert ref.logsumexp(got) == pytest.approx(0.0, abs=1e-12)
    if name == "nade":   # and the hand-vectorised numpy competitor agrees too
        np.testing.assert_allclose(got, ref.nade_logp_numpy(p, x), rtol=0, atol=EXACT_ATOL)


def test_sbn_densities_match_reference():
    m, p = make("sbn", param_seed=13, nv=4, n1=3, n2=2)
    V = ref.all_states(4)
    np.testing.assert_allclose(m.log_prob({"v": V}), ref.sbn_logp_exact(p, V), rtol=0, atol=EXACT_ATOL)
    states, probs = ref.table_sbn(p)
    np.testing.assert_allclose(m.log_joint(states), ref.sbn_log_joint(p, states["h2"], states["h1"], states["v"]),
                               rtol=0, atol=EXACT_ATOL)
    np.testing.assert_allclose(m.log_prob(states), np.log(probs), rtol=0, atol=EXACT_ATOL)   # all given
    np.testing.assert_allclose(m.log_q(states), ref.sbn_guide_log_q(p, states["v"], states["h1"], states["h2"]),
                               rtol=0, atol=EXACT_ATOL)
    # some latents given: log p(v, h2) sums out h1 only
    H1 = ref.all_states(3)
    want = ref.logsumexp(np.stack([ref.sbn_log_joint(p, states["h2"], np.broadcast_to(h, states["h1"].shape),
                                                     states["v"]) for h in H1]), axis=0)
    np.testing.assert_allclose(m.log_prob({"v": states["v"], "h2": states["h2"]}), want, rtol=0, atol=EXACT_ATOL)


def test_sbn_log_prob_over_several_enumeration_blocks():
    """2^13 = 8192 latent states: more than one block of the enumeration (4096 rows)."""
    m, p = make("sbn", param_seed=14, scale=0.5, nv=5, n1=8, n2=5)
    v = binary_rows(np.random.default_rng(15), 3, 5)
    np.testing.assert_allclose(m.log_prob({"v": v}), ref.sbn_logp_exact(p, v), rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="elbo"):
        m.log_prob({"v": v}, max_states=1000)


def test_dbn_log_prob_uses_the_top_log_z():
    m, p = make("dbn", param_seed=16, nv=3, n1=2, n2=2, n3=2)
    V = ref.all_states(3)
    log_z = ref.dbn_log_z_top(p)
    assert abs(log_z) > 1.0   # so that forgetting it would show
    assert m.log_partition("exact") == pytest.approx(log_z, abs=EXACT_ATOL)
    np.testing.assert_allclose(m.log_prob({"v": V}), ref.dbn_logp_exact(p, V), rtol=0, atol=EXACT_ATOL)
    # a given log Z is the one subtracted
    np.testing.assert_allclose(m.log_prob({"v": V}, log_z=log_z + 1.0), ref.dbn_logp_exact(p, V) - 1.0,
                               rtol=0, atol=EXACT_ATOL)
    states, probs = ref.table_dbn(p)
    lj = ref.dbn_log_joint_unnormalised(p, states["h3"], states["h2"], states["h1"], states["v"])
    np.testing.assert_allclose(m.log_joint(states), lj, rtol=0, atol=EXACT_ATOL)       # unnormalised
    np.testing.assert_allclose(m.log_prob(states), np.log(probs), rtol=0, atol=EXACT_ATOL)


def _marginal_table(states, probs, groups):
    """Every combination of the given groups ([K, .] each) and its exact marginal probability."""
    cols = np.concatenate([states[g] for g in groups], axis=1)
    keys, inv = np.unique(cols, axis=0, return_inverse=True)
    sizes = np.cumsum([states[g].shape[1] for g in groups])[:-1]
    return dict(zip(groups, np.split(keys, sizes, axis=1))), np.bincount(inv.reshape(-1), weights=probs)


def _subsets(groups):
    import itertools

    return [c for r in range(1, len(groups) + 1) for c in itertools.combinations(groups, r)]


SUBSET_CASES = ([pytest.param("sbn", g, id="sbn-" + "-".join(g)) for g in _subsets(["h2", "h1", "v"])]
                + [pytest.param("dbn", g, id="dbn-" + "-".join(g)) for g in _subsets(["h3", "h2", "h1", "v"])])


@pytest.mark.parametrize("model_name, groups", SUBSET_CASES)
def test_log_prob_of_every_subset_of_groups(model_name, groups):
    """log_prob with any non-empty subset of the groups given (the rest summed out: enumerated,
    or for a DBN's top groups that no conditional reads, by the free energy) against the
    marginals of the exact joint table."""
    sizes = dict(nv=3, n1=2, n2=2) if model_name == "sbn" else dict(nv=2, n1=2, n2=2, n3=2)
    m, p = make(model_name, param_seed=43, **sizes)
    states, probs = ref.table_sbn(p) if model_name == "sbn" else ref.table_dbn(p)
    given, marginal = _marginal_table(states, probs, list(groups))
    np.testing.assert_allclose(m.log_prob(given), np.log(marginal), rtol=0, atol=EXACT_ATOL)


def test_dbn_log_prob_sums_the_top_analytically():
    """n3 = 12: log p(v) must not enumerate h3 (the free energy sums it), so 2^(n2 + n1) = 16
    enumerated states are enough; against the reference's full enumeration."""
    m, p = make("dbn", param_seed=44, scale=0.5, nv=3, n1=2, n2=2, n3=12)
    V = ref.all_states(3)
    np.testing.assert_allclose(m.log_prob({"v": V}, max_states=16), ref.dbn_logp_exact(p, V),
                               rtol=0, atol=1e-9)


def test_vae_densities_and_bounds_with_fixed_noise():
    m, p = make("vae", param_seed=17, d=5, nh=3, nz=2)
    rng = np.random.default_rng(18)
    x, z = binary_rows(rng, 9, 5), rng.standard_normal((9, 2))
    np.testing.assert_allclose(m.log_joint({"x": x, "z": z}), ref.vae_log_joint(p, x, z), rtol=0, atol=EXACT_ATOL)
    np.testing.assert_allclose(m.log_q({"x": x, "z": z}), ref.vae_log_q(p, x, z), rtol=0, atol=EXACT_ATOL)
    eps = rng.standard_normal((4, 9, 2))   # [k, n, nz]; the API's rows are j * n + r
    np.testing.assert_allclose(m.elbo({"x": x}, eps={"z": eps[0]}), ref.vae_elbo_reparam(p, x, eps[0]),
                               rtol=0, atol=EXACT_ATOL)
    np.testing.assert_allclose(m.elbo({"x": x}, k=4, eps={"z": eps.reshape(36, 2)}),
                               ref.vae_elbo_reparam(p, x, eps), rtol=0, atol=EXACT_ATOL)
    with pytest.raises(ValueError, match="elbo"):
        m.log_prob({"x": x})


# ============================================================================= 2. ancestral sampling
def _sampling_bias_bound(name, states, probs, sweeps):
    """Exact bound on TV(sampler's law, table): 0 for pure ancestral sampling; for the DBN, the
    worst-start bound of block Gibbs on the top RBM (blocks h3 and h2, either order)."""
    if name != "dbn":
        return 0.0
    bits = np.concatenate([states["h3"], states["h2"]], axis=1)
    keys, inv = np.unique(bits, axis=0, return_inverse=True)
    top = np.bincount(inv.reshape(-1), weights=probs)
    n3 = states["h3"].shape[1]
    h3, h2 = list(range(n3)), list(range(n3, bits.shape[1]))
    return max(gibbs_worst_tv(keys, top, [h3, h2], sweeps), gibbs_worst_tv(keys, top, [h2, h3], sweeps))


@pytest.mark.parametrize("name", ["fvsbn", "nade", "sbn", "dbn", "vae"])
def test_ancestral_samples_match_exact_table(tiny, name):
    m, p = tiny[name]
    states, probs = table(name, p)
    s = m.sample(N_TV, steps=GIBBS_STEPS)          # steps: Gibbs sweeps on the DBN's top only
    assert set(s) == set(m.group_names) and all(v.shape[0] == N_TV for v in s.values())
    bias = _sampling_bias_bound(name, states, probs, GIBBS_STEPS)
    assert bias < 1e-6
    tol = tv_tolerance(probs, N_TV) + bias
    tv = ref.tv_distance({g: s[g] for g in states}, states, probs)
    assert tv < tol, (tv, tol)
    # power: a root bias off by 0.5 is rejected
    _, wrong = table(name, perturbed_root_bias(name, p))
    assert 0.5 * np.abs(wrong - probs).sum() > 2 * tol
    assert ref.tv_distance({g: s[g] for g in states}, states, wrong) > tol
    if name == "vae":   # z ~ N(0, 1): mean and variance within 5 standard errors
        z = s["z"][:, 0]
        assert abs(z.mean()) < Z_MC / math.sqrt(N_TV)
        assert abs(z.var() - 1.0) < Z_MC * math.sqrt(2.0 / N_TV)


# ============================================================================= 3. conditional sampling
def _check_conditional(m, states, probs, clamp, mask, n, steps, gibbs_groups=None):
    cstates, cprobs = condition(states, probs, clamp, mask)
    kw = {} if mask is None else {"mask": mask}
    s = m.sample(n, steps=steps, clamp=clamp, **kw)
    for g, val in clamp.items():   # clamped elements are kept
        keep = np.ones(states[g].shape[1], bool) if mask is None or g not in mask else np.asarray(mask[g], bool)
        assert np.all(s[g][:, keep] == np.asarray(val)[keep])
    bias = 0.0
    if gibbs_groups is not None:
        bits = free_bits(cstates, gibbs_groups)
        bias = site_sweeps_worst_tv(bits, cprobs, steps)
        assert bias < 1e-6
    tol = tv_tolerance(cprobs, n) + bias
    tv = ref.tv_distance({g: s[g] for g in states}, cstates, cprobs)
    assert tv < tol, (tv, tol)
    return s, tol


@pytest.mark.parametrize("name", ["fvsbn", "nade"])
@pytest.mark.parametrize("where", ["prefix", "suffix", "middle"])
def test_autoregressive_inpainting(tiny, name, where):
    """prefix clamped: exact ancestral (the free x_i come after every clamped one);
    suffix / a middle element clamped: the posterior of the earlier elements needs Gibbs."""
    m, p = tiny[name]
    states, probs = table(name, p)
    val = np.array([1.0, 0.0, 1.0, 0.0])
    mask = {"prefix": [1, 1, 0, 0], "suffix": [0, 0, 1, 1], "middle": [0, 1, 0, 0]}[where]
    if where == "prefix":
        _check_conditional(m, states, probs, {"x": val}, {"x": np.array(mask, bool)}, N_TV, steps=1)
    else:
        _check_conditional(m, states, probs, {"x": val}, {"x": np.array(mask, bool)}, N_TV_GIBBS,
                           steps=GIBBS_STEPS, gibbs_groups=["x"])


@pytest.mark.parametrize("name", ["fvsbn", "nade"])
def test_inpainting_with_a_prefix_per_row(tiny, name):
    """Per-row clamp values: prefixes drawn from their exact marginal, the rest sampled
    ancestrally, must give the joint table back."""
    m, p = tiny[name]
    states, probs = table(name, p)
    rng = np.random.default_rng(19)
    prefixes = states["x"][rng.choice(len(probs), size=N_TV, p=probs)]
    prefixes[:, 2:] = 0.0
    s = m.sample(N_TV, steps=1, clamp={"x": prefixes}, mask={"x": np.array([1, 1, 0, 0], bool)})
    assert np.array_equal(s["x"][:, :2], prefixes[:, :2])
    tv = ref.tv_distance(s, states, probs)
    assert tv < tv_tolerance(probs, N_TV), tv


def test_sbn_posterior_given_v(tiny):
    """v clamped: single-site Gibbs on (h2, h1) from an ancestral start; the exact posterior."""
    m, p = tiny["sbn"]
    states, probs = table("sbn", p)
    _check_conditional(m, states, probs, {"v": np.array([1.0, 0.0, 1.0])}, None, N_TV_GIBBS,
                       steps=GIBBS_STEPS, gibbs_groups=["h2", "h1"])


def test_dbn_posterior_given_v(tiny):
    """v clamped in the hybrid: Gibbs on the top's h3, h2 (with -E) and h1; the exact posterior."""
    m, p = tiny["dbn"]
    states, probs = table("dbn", p)
    _check_conditional(m, states, probs, {"v": np.array([1.0, 0.0])}, None, N_TV_GIBBS,
                       steps=GIBBS_STEPS, gibbs_groups=["h3", "h2", "h1"])


def test_dbn_with_top_group_clamped(tiny):
    """h2 clamped: the top's Gibbs gives h3 | h2 exactly; h1 and v follow ancestrally."""
    m, p = tiny["dbn"]
    states, probs = table("dbn", p)
    _check_conditional(m, states, probs, {"h2": np.array([1.0, 0.0])}, None, N_TV, steps=GIBBS_STEPS)


def test_clamp_values_outside_masked_elements_are_ignored(tiny):
    """Like the energy models' sample: only masked-in clamp values must be valid."""
    m, _ = tiny["fvsbn"]
    s = m.sample(50, clamp={"x": np.array([1.0, 0.0, 0.5, 7.0])}, mask={"x": np.array([1, 1, 0, 0], bool)})
    assert np.all(s["x"][:, :2] == [1.0, 0.0]) and np.all((s["x"] == 0) | (s["x"] == 1))


def test_clamp_values_are_checked_against_the_domain(tiny):
    # (an energy model's sample, e.g. rbm.sample(3, clamp={"v": [0.5, 1, 0]}), raises
    # "v is binary: values must be 0 or 1")
    m, _ = tiny["fvsbn"]
    with pytest.raises(ValueError, match="binary"):   # log_prob of the same values is refused
        m.log_prob({"x": np.array([[0.5, 1.0, 0.0, 2.0]])})
    with pytest.raises(ValueError, match="binary"):
        m.sample(3, clamp={"x": np.array([0.5, 1.0, 0.0, 2.0])})


def test_vae_conditional_on_z_and_refusal_on_x(tiny):
    m, p = tiny["vae"]
    X = ref.all_states(SIZES["vae"]["d"])
    z0 = np.array([0.7])
    pxz = np.exp(ref.bern_logp(X, ref.vae_decoder_logits(p, z0[None])))
    s = m.sample(N_TV, clamp={"z": z0})
    assert np.all(s["z"] == 0.7)
    assert ref.tv_distance({"x": s["x"]}, {"x": X}, pxz) < tv_tolerance(pxz, N_TV)
    # x given: the posterior of the real z needs more than ancestral sampling
    with pytest.raises(ValueError, match="real"):
        m.sample(10, clamp={"x": X[3]})


def test_sbn_guide_samples_match_q(tiny):
    m, p = tiny["sbn"]
    v = np.array([0.0, 1.0, 1.0])
    H = ref.all_states(4)
    h1, h2 = H[:, :2], H[:, 2:]
    q = np.exp(ref.sbn_guide_log_q(p, np.broadcast_to(v, (16, 3)), h1, h2))
    s = m.sample_guide({"v": np.tile(v, (N_TV, 1))})
    assert np.all(s["v"] == v)
    assert ref.tv_distance({"h1": s["h1"], "h2": s["h2"]}, {"h1": h1, "h2": h2}, q) < tv_tolerance(q, N_TV)


def test_vae_guide_samples_match_q(tiny):
    m, p = tiny["vae"]
    x = np.array([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0]])
    n = 100_000
    z = m.sample_guide({"x": np.repeat(x, n, axis=0)})["z"].reshape(2, n)
    mean, std = ref.vae_guide(p, x)
    assert np.all(np.abs(z.mean(1) - mean[:, 0]) < Z_MC * std[:, 0] / math.sqrt(n))
    assert np.all(np.abs(z.var(1) / std[:, 0] ** 2 - 1) < Z_MC * math.sqrt(2.0 / n))


# ============================================================================= 4. gradients
def fd_grad(m, f, h=FD_H):
    """Central differences of f() (which reads m.params) in every coordinate of every parameter."""
    base = p64(m)
    out = {}
    try:
        for k, v in base.items():
            g = np.zeros_like(v)
            for idx in np.ndindex(v.shape):
                vals = []
                for sign in (1.0, -1.0):
                    w = v.copy()
                    w[idx] += sign * h
                    m.params[k] = w
                    vals.append(f())
                g[idx] = (vals[0] - vals[1]) / (2 * h)
            m.params[k] = v
            out[k] = g
    finally:
        m.params = base
    return out


def assert_grads_close(got, want, where=""):
    assert set(got) == set(want), where
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=FD_RTOL, atol=FD_ATOL, err_msg=f"{where} {k}")


@pytest.mark.parametrize("name, sizes", [("fvsbn", dict(d=5)), ("nade", dict(d=5, nh=3)),
                                         ("sbn", dict(nv=4, n1=3, n2=2))])
def test_ml_gradients_match_finite_differences(name, sizes):
    m, p = make(name, param_seed=21, **sizes)
    rng = np.random.default_rng(22)
    data = {g: binary_rows(rng, 7, m.shape(g)[0]) for g in m.group_names}
    value, grads = m.gradients(data, "ml")
    assert value == pytest.approx(float(np.mean(m.log_joint(data))), abs=EXACT_ATOL)
    assert_grads_close(grads, fd_grad(m, lambda: float(np.mean(m.log_joint(data)))), name)
    assert max(np.abs(g).max() for g in grads.values()) > 0.1
    if name == "sbn":   # "ml" is log p only: the guide's parameters get no gradient
        assert all(np.all(grads[k] == 0) for k in m.PARAMS_Q)
    if name == "fvsbn":  # only W[i, j], j < i, is used
        assert np.all(np.triu(grads["W"]) == 0)


def test_dbn_gradients_cover_the_directed_conditionals():
    """gradients('ml') of a DBN: log p(h1 | h2) + log p(v | h1), i.e. log_joint + E_top;
    the top's parameters get zero gradient (the RBM is trained greedily)."""
    m, p = make("dbn", param_seed=23, nv=3, n1=2, n2=2, n3=2)
    rng = np.random.default_rng(24)
    st = {g: binary_rows(rng, 7, m.shape(g)[0]) for g in m.group_names}
    value, grads = m.gradients(st, "ml")
    directed = (ref.bern_logp(st["h1"], st["h2"] @ p["W2"].T + p["c1"])
                + ref.bern_logp(st["v"], st["h1"] @ p["W1"].T + p["b"]))
    assert value == pytest.approx(float(directed.mean()), abs=EXACT_ATOL)
    fd = fd_grad(m, lambda: float(np.mean(m.log_joint(st))))
    for k in ("W2", "W1", "c1", "b"):
        np.testing.assert_allclose(grads[k], fd[k], rtol=FD_RTOL, atol=FD_ATOL, err_msg=k)
    for k in ("W3", "c2", "c3"):
        assert np.all(grads[k] == 0), k
        assert np.abs(fd[k]).max() > 0.01   # log_joint itself does depend on them


@pytest.mark.parametrize("objective, k", [("elbo", 1), ("iwae", 4)])
def test_vae_bound_gradients_with_fixed_noise_match_finite_differences(objective, k):
    m, p = make("vae", param_seed=25, d=5, nh=3, nz=2)
    rng = np.random.default_rng(26)
    x = binary_rows(rng, 6, 5)
    eps = {"z": rng.standard_normal((k * 6, 2))}
    value, grads = m.gradients({"x": x}, objective, k=k, eps=eps)
    want = ref.vae_elbo_reparam(p, x, eps["z"] if k == 1 else eps["z"].reshape(k, 6, 2)).mean()
    assert value == pytest.approx(float(want), abs=EXACT_ATOL)
    assert_grads_close(grads, fd_grad(m, lambda: float(np.mean(m.elbo({"x": x}, k=k, eps=eps)))), objective)
    assert all(np.abs(grads[g]).max() > 1e-3 for g in grads)   # decoder and encoder both get gradients


def test_gradients_accumulate_over_kernel_chunks():
    """40000 rows are more than one chunk of the forward (26214 rows) and backward (13107 rows)
    kernels here: the gradient equals the mean of gradients over 5000-row slices (same noise)."""
    m, p = make("vae", param_seed=41, d=4, nh=3, nz=1)
    rng = np.random.default_rng(42)
    n = 40_000
    x, eps = binary_rows(rng, n, 4), rng.standard_normal((n, 1))
    value, grads = m.gradients({"x": x}, "elbo", eps={"z": eps})
    assert value == pytest.approx(float(ref.vae_elbo_reparam(p, x, eps).mean()), abs=EXACT_ATOL)
    parts = [m.gradients({"x": x[i:i + 5000]}, "elbo", eps={"z": eps[i:i + 5000]})[1] for i in range(0, n, 5000)]
    for k in grads:
        np.testing.assert_allclose(grads[k], np.mean([g[k] for g in parts], axis=0), rtol=1e-10, atol=1e-12)


# ============================================================================= 5. unbiased ELBO gradient
def test_reparameterised_elbo_gradient_is_unbiased():
    """The mean of B = 100 independent gradients('elbo') calls, each over 1000 copies of 4 rows
    (fresh noise every row), against central differences (h = 1e-5) of the exact ELBO
    (nz = 1: quadrature, accurate to ~1e-10, so the difference quotient is good to ~1e-5).
    Per coordinate |mean - exact| < 5 se + 1e-4; the gradient is resolved (max |exact| > 20 se)."""
    m, p = make("vae", param_seed=27, scale=0.7, d=4, nh=3, nz=1)
    x = binary_rows(np.random.default_rng(28), 4, 4)
    names = list(p)

    def exact_elbo(q):
        return float(ref.vae_elbo_exact_1d(q, x).mean())

    exact = []
    for k in names:
        for idx in np.ndindex(p[k].shape):
            up, down = ({**p, k: p[k].copy()} for _ in range(2))
            up[k][idx] += 1e-5
            down[k][idx] -= 1e-5
            exact.append((exact_elbo(up) - exact_elbo(down)) / 2e-5)
    exact = np.array(exact)
    B, R = 100, 1000
    xs = np.tile(x, (R, 1))
    draws = np.array([np.concatenate([g[k].ravel() for k in names])
                      for g in (m.gradients({"x": xs}, "elbo")[1] for _ in range(B))])
    mean, se = draws.mean(0), draws.std(0, ddof=1) / math.sqrt(B)
    assert np.abs(exact).max() > 20 * se.max()
    bad = np.abs(mean - exact) > Z_MC * se + 1e-4
    assert not bad.any(), (np.flatnonzero(bad), mean[bad], exact[bad], se[bad])


# ============================================================================= 6. IWAE bounds
def test_vae_iwae_bound_grows_with_k():
    """Tiny random vae (nz = 1) over 16 rows. L_k = mean over rows of elbo(k): replicates R_k
    (each a mean over the 16 rows) give the mean and its se. Checks, each at 4-5 se:
    L_1 = exact ELBO (unbiased); exact ELBO < L_5 < L_50 < log p(x) (exact, quadrature)."""
    m, p = make("vae", param_seed=29, d=6, nh=4, nz=1)
    x = ref.all_states(6)[::4]
    n = len(x)
    est = {}
    for k, R in ((1, 2000), (5, 400), (50, 40)):
        v = m.elbo({"x": np.tile(x, (R, 1))}, k=k).reshape(R, n).mean(axis=1)
        est[k] = (float(v.mean()), float(v.std(ddof=1) / math.sqrt(R)))
    elbo = float(ref.vae_elbo_exact_1d(p, x).mean())
    logp = float(ref.vae_logp_exact_1d(p, x).mean())
    assert abs(est[1][0] - elbo) < Z_MC * est[1][1], (est[1], elbo)
    assert est[5][0] > elbo + 4 * est[5][1], (est[5], elbo)
    assert est[50][0] > est[5][0] + 4 * math.hypot(est[5][1], est[50][1]), (est[5], est[50])
    assert est[50][0] < logp + 4 * est[50][1], (est[50], logp)


def sbn_elbo_exact(p, v):
    """Exact ELBO per row of an SBN with its guide: sum over every (h1, h2) of q (log p - log q)."""
    n1, n2 = p["c1"].size, p["c2"].size
    H = ref.all_states(n1 + n2)
    h1, h2 = H[:, :n1], H[:, n1:]
    v = np.asarray(v, dtype=np.float64)
    lq = ref.sbn_guide_log_q(p, v[:, None, :], h1[None], h2[None])
    lj = ref.sbn_log_joint(p, h2[None], h1[None], v[:, None, :])
    return np.sum(np.exp(lq) * (lj - lq), axis=1)


def test_sbn_bounds_with_the_discrete_guide(tiny):
    """Discrete guide (drawn, not reparameterised): per row, the mean of elbo(k=1) over 20000
    draws = the exact ELBO (enumeration) within 5 se; elbo(k=10) averages between them and
    log p(v) (5 se)."""
    m, p = tiny["sbn"]
    V = ref.all_states(3)
    R = 20000
    w = m.elbo({"v": np.tile(V, (R, 1))}).reshape(R, 8)
    exact = sbn_elbo_exact(p, V)
    se = w.std(0, ddof=1) / math.sqrt(R)
    assert np.all(np.abs(w.mean(0) - exact) < Z_MC * se), (w.mean(0), exact, se)
    iw = m.elbo({"v": np.tile(V, (2000, 1))}, k=10).reshape(2000, 8)
    se_iw = iw.std(0, ddof=1) / math.sqrt(2000)
    logp = ref.sbn_logp_exact(p, V)
    assert np.all(iw.mean(0) > exact + Z_MC * se_iw)
    assert np.all(iw.mean(0) < logp + Z_MC * se_iw)


# ============================================================================= 7. training
def one_step(m, data, method, n):
    """The change of every parameter after one SGD step (lr = 1) on one batch of all n rows."""
    before = p64(m)
    m.fit(data, method=method, optimizer="sgd", lr=1.0, epochs=1, batch_size=n, progress=False)
    after = p64(m)
    return {k: after[k] - before[k] for k in before}


@pytest.mark.parametrize("method", ["reinforce", "wake-sleep"])
def test_sbn_learning_steps_are_unbiased(method):
    """One SGD step (lr = 1) on n = 4000 rows (the 8 states of v, 500 times each), repeated B = 40
    times from the same parameters; targets by central differences (h = 1e-6) of exact sums.
    Model parameters (both methods): the step is mean_r grad log p(v_r, h_r), h_r ~ q, whose
    expectation is the gradient of the exact ELBO wrt the model's parameters.
    Wake-sleep's guide step is mean grad log q(h | v) over dreams (v, h) ~ p: expectation the
    gradient of E_p[log q(h | v)] (exact by enumeration of the joint table).
    REINFORCE's guide step (dlearn: the first batch uses its own mean signal l = log p - log q as
    the baseline and max(1, its sd) as the normaliser) is mean (l - mean l) / sd * grad log q:
    expectation grad_q ELBO / max(1, sd(l)), with sd(l) exact by enumeration. The batch mean and
    sd bias this by O(1/n) relative, far below the standard error.
    |mean - target| < 5 se + 1e-6, and every target is resolved (> 10 se)."""
    m, p = make("sbn", param_seed=31, nv=3, n1=2, n2=2)
    V = ref.all_states(3)
    data = {"v": np.tile(V, (500, 1))}
    n = len(data["v"])
    B = 40
    steps = []
    for _ in range(B):
        m.params = p
        steps.append(one_step(m, data, method, n))
    m.params = p
    want = {}
    model_target = lambda: float(np.mean(sbn_elbo_exact(p64(m), V)))   # noqa: E731
    fd = fd_grad(m, model_target)
    for k in m.PARAMS_P:
        want[k] = fd[k]
    if method == "reinforce":
        H = ref.all_states(4)
        lq = ref.sbn_guide_log_q(p, V[:, None, :], H[None, :, :2], H[None, :, 2:])
        signal = ref.sbn_log_joint(p, H[None, :, 2:], H[None, :, :2], V[:, None, :]) - lq
        w = np.exp(lq) / len(V)          # the law of (v, h) in the batch: v uniform, h ~ q(h | v)
        scale = max(1.0, math.sqrt(np.sum(w * signal ** 2) - np.sum(w * signal) ** 2))
        fd = fd_grad(m, model_target)
        for k in m.PARAMS_Q:
            want[k] = fd[k] / scale
    if method == "wake-sleep":
        states, probs = ref.table_sbn(p)

        def sleep_target():
            q = p64(m)
            return float(probs @ ref.sbn_guide_log_q(q, states["v"], states["h1"], states["h2"]))

        fd = fd_grad(m, sleep_target)
        for k in m.PARAMS_Q:
            want[k] = fd[k]
    for k, target in want.items():
        d = np.array([s[k] for s in steps])
        mean, se = d.mean(0), d.std(0, ddof=1) / math.sqrt(B)
        assert np.abs(target).max() > 10 * se.max(), k
        bad = np.abs(mean - target) > Z_MC * se + 1e-6
        assert not bad.any(), (k, mean, target, se)


def test_fvsbn_and_nade_training_raise_test_loglik(digits64):
    """ML (Adam, batch 50, 10 epochs) on 8x8 digits. The initial models are within 0.1 nats of
    uniform (-64 log 2 = -44.4); the independent-pixel model gets -25.21 on the test rows.
    Measured over seeds 0-5: fvsbn (lr 0.01) -19.03 to -19.08, nade 64x16 (lr 0.03) -18.99 to -19.21,
    i.e. ~6.0-6.2 nats better than independent pixels. We require > 20 nats over the initial
    model and > 3 nats over independent pixels (half of the measured gain)."""
    train, test, independent = digits64
    for name, sizes, lr in (("fvsbn", dict(d=64), 0.01), ("nade", dict(d=64, nh=16), 0.03)):
        m = gdsl.load(model_path(name), seed=0, **sizes)
        before = float(np.mean(m.log_prob({"x": test})))
        assert before == pytest.approx(-64 * math.log(2), abs=0.1)
        hist = m.fit({"x": train}, lr=lr, epochs=10, batch_size=50, validation={"x": test}, progress=False)
        after = float(np.mean(m.log_prob({"x": test})))
        assert after - before > 20.0, (name, before, after)
        assert after - independent > 3.0, (name, after, independent)
        assert [r["epoch"] for r in hist] == list(range(1, 11))
        assert set(hist[-1]) == {"epoch", "lr", "train_objective", "train_loglik", "valid_loglik"}
        assert hist[-1]["valid_loglik"] == pytest.approx(after, rel=1e-12)
        assert hist[-1]["train_loglik"] == pytest.approx(float(np.mean(m.log_prob({"x": train[:1000]}))),
                                                         rel=1e-12)


def vae_elbo_exact_mean(p, x, chunk=32, n_points=1001):
    """Mean exact ELBO over rows (quadrature in chunks of rows). 1001 nodes (not the reference's
    default 4001, to save time) are checked against 4001 on the first chunk to 1e-8."""
    full = ref.vae_elbo_exact_1d(p, x[:chunk])
    assert np.allclose(ref.vae_elbo_exact_1d(p, x[:chunk], n_points=n_points), full, rtol=0, atol=1e-8)
    return float(np.mean(np.concatenate([ref.vae_elbo_exact_1d(p, x[i:i + chunk], n_points=n_points)
                                         for i in range(0, len(x), chunk)])))


@pytest.mark.parametrize("method", ["elbo", "iwae"])
def test_vae_training_raises_exact_test_elbo(digits64, method):
    """VAE 64-16-1 (nz = 1, so the ELBO is exact by quadrature), Adam lr 0.01, batch 50,
    15 epochs (iwae: k = 5). Initial ELBO ~ -44.4. Measured test ELBO over seeds 0-5:
    elbo -23.83 to -23.98, iwae -23.94 to -24.21 (1.0-1.4 nats better than independent pixels,
    -25.21). We require > 10 nats over the initial model and > 0.5 nats over independent pixels."""
    train, test, independent = digits64
    m = gdsl.load(model_path("vae"), seed=0, d=64, nh=16, nz=1)
    before = vae_elbo_exact_mean(p64(m), test)
    hist = m.fit({"x": train}, method=method, k=5, lr=0.01, epochs=15, batch_size=50,
                 validation={"x": test}, progress=False)
    after = vae_elbo_exact_mean(p64(m), test)
    assert after - before > 10.0, (before, after)
    assert after - independent > 0.5, (after, independent)
    keys = {"epoch", "lr", "train_objective", "train_elbo", "valid_elbo"}
    if method == "iwae":
        keys |= {"train_iwae5", "valid_iwae5"}
    assert set(hist[-1]) == keys


@pytest.mark.parametrize("method, margin", [("reinforce", 1.0), ("wake-sleep", 2.0)])
def test_sbn_training_raises_exact_test_elbo(digits64, method, margin):
    """SBN 64-6-3 with its guide, Adam lr 0.03, batch 50, 15 epochs. The ELBO and log p(v) are
    exact (2^9 latent states enumerated). Initial ELBO ~ -44.4 (weights ~ 0). Measured test ELBO
    over seeds 0-5: reinforce -22.11 to -23.13, wake-sleep -20.95 to -21.19, i.e. 2.1-3.1 and
    4.0-4.3 nats better than independent pixels (-25.21). We require > 10 nats over the initial
    model and > 1.0 (reinforce) / 2.0 (wake-sleep) nats over independent pixels, and the ELBO
    below the exact log-likelihood."""
    train, test, independent = digits64
    m = gdsl.load(model_path("sbn"), seed=0, nv=64, n1=6, n2=3)
    before = float(np.mean(sbn_elbo_exact(p64(m), test)))
    hist = m.fit({"v": train}, method=method, lr=0.03, epochs=15, batch_size=50, progress=False)
    after = float(np.mean(sbn_elbo_exact(p64(m), test)))
    assert after - before > 10.0, (before, after)
    assert after - independent > margin, (after, independent)
    logp = float(np.mean(m.log_prob({"v": test})))
    assert logp == pytest.approx(float(np.mean(ref.sbn_logp_exact(p64(m), test))), abs=1e-9)
    assert after < logp
    assert set(hist[-1]) == {"epoch", "lr", "train_objective", "train_elbo"}


# ============================================================================= 8. errors, checkpoints
def test_errors_for_methods_the_model_cannot_use(tiny):
    sbn, fv, vae = tiny["sbn"][0], tiny["fvsbn"][0], tiny["vae"][0]
    v = binary_rows(np.random.default_rng(32), 10, 3)
    x = binary_rows(np.random.default_rng(33), 10, 4)
    with pytest.raises(ValueError, match="method 'ml' needs every variable"):
        sbn.fit({"v": v}, method="ml", epochs=1)
    with pytest.raises(ValueError, match="needs values for"):
        sbn.gradients({"v": v}, "ml")
    with pytest.raises(ValueError, match="needs a guide"):
        fv.elbo({"x": x})
    with pytest.raises(ValueError, match="needs a guide"):
        fv.fit({"x": x}, method="elbo", epochs=1)
    with pytest.raises(ValueError, match="needs a guide"):
        fv.sample_guide({"x": x})
    with pytest.raises(ValueError, match="reinforce"):
        sbn.fit({"v": v}, method="elbo", epochs=1)      # discrete guide: no reparameterisation
    with pytest.raises(ValueError, match="reinforce"):
        sbn.gradients({"v": v}, "elbo")
    with pytest.raises(ValueError, match="'elbo' or 'iwae'"):
        vae.fit({"x": x}, method="wake-sleep", epochs=1)
    with pytest.raises(ValueError, match="unknown method"):
        fv.fit({"x": x}, method="bogus")
    with pytest.raises(ValueError, match="unknown objective"):
        fv.gradients({"x": x}, "bogus")
    with pytest.raises(ValueError, match="k must be a whole number >= 1"):
        vae.elbo({"x": x}, k=0)
    with pytest.raises(ValueError, match="greedy"):
        tiny["dbn"][0].fit({"v": binary_rows(np.random.default_rng(34), 10, 2)}, method="ml")


def test_log_prob_checks_its_data_before_enumerating(tiny):
    sbn = tiny["sbn"][0]
    v = binary_rows(np.random.default_rng(35), 4, 3)
    with pytest.raises(ValueError, match="no variable 'x'"):   # was: every group summed out, log p = 0
        sbn.log_prob({"x": v})
    with pytest.raises(ValueError, match="v is binary"):
        sbn.log_prob({"v": v * 0.5})
    with pytest.raises(ValueError, match="real-valued"):
        sbn.log_prob({"v": v * (1 + 1j)})
    with pytest.raises(ValueError, match="clamp must be a dict"):
        sbn.sample(2, clamp="v")


def test_training_error_when_parameters_overflow():
    """Adam's first step moves every parameter by ~lr; with lr = 1e308 from epoch 2 on, the
    second step overflows: TrainingError names the parameter and the epoch, and the parameters
    of the end of epoch 1 are kept."""
    x = binary_rows(np.random.default_rng(35), 60, 5)
    kw = dict(lr=0.01, batch_size=10, progress=False)
    ref_run = gdsl.load(model_path("fvsbn"), seed=3, d=5)
    ref_run.fit({"x": x}, epochs=1, **kw)
    m = gdsl.load(model_path("fvsbn"), seed=3, d=5)
    with np.errstate(over="ignore", invalid="ignore"):
        with pytest.raises(TrainingError, match=r"epoch 2: parameter (W|b) became NaN or infinite"):
            m.fit({"x": x}, epochs=3, lr_schedule=lambda e: 0.01 if e < 1 else 1e308, **kw)
    assert same_params(m.params, ref_run.params)
    assert issubclass(TrainingError, ValueError)


@pytest.mark.parametrize("name, sizes, data_key, kw", [
    ("fvsbn", dict(d=5), "x", dict(lr=0.05)),
    ("sbn", dict(nv=5, n1=3, n2=2), "v", dict(method="reinforce", lr=0.05)),
    ("vae", dict(d=5, nh=3, nz=2), "x", dict(method="iwae", k=3, lr=0.05)),
])
def test_checkpoint_and_resume_are_bit_identical(tmp_path, name, sizes, data_key, kw):
    """4 epochs uninterrupted vs 2 epochs with a checkpoint, then a fresh instance (another seed)
    resuming to 4: the same history and bitwise the same parameters."""
    data = {data_key: binary_rows(np.random.default_rng(36), 60, 5)}
    kw = dict(kw, batch_size=10, progress=False)
    full = gdsl.load(model_path(name), seed=5, **sizes)
    hist = full.fit(data, epochs=4, **kw)
    path = tmp_path / "ck.npz"
    first = gdsl.load(model_path(name), seed=5, **sizes)
    assert first.fit(data, epochs=2, checkpoint=path, **kw) == hist[:2]
    resumed = gdsl.load(model_path(name), seed=99, **sizes)
    assert resumed.fit(data, epochs=4, resume=path, **kw) == hist
    assert same_params(resumed.params, full.params)
    other = gdsl.load(model_path(name), seed=6, **sizes)      # and the seed matters
    other.fit(data, epochs=4, **kw)
    assert not same_params(other.params, full.params)


def test_directed_resume_refuses_other_settings_and_parameter_files(tmp_path):
    data = {"x": binary_rows(np.random.default_rng(37), 40, 5)}
    kw = dict(lr=0.05, batch_size=10, progress=False)
    path = tmp_path / "ck.npz"
    gdsl.load(model_path("fvsbn"), seed=5, d=5).fit(data, epochs=1, checkpoint=path, **kw)
    m = gdsl.load(model_path("fvsbn"), seed=5, d=5)
    before = {k: v.copy() for k, v in m.params.items()}
    with pytest.raises(ValueError, match=r"cannot resume from .*ck\.npz: it was trained with batch_size=10, not 20"):
        m.fit(data, epochs=2, resume=path, **dict(kw, batch_size=20))
    with pytest.raises(ValueError, match=r"trained with optimizer='adam', not 'sgd'"):
        m.fit(data, epochs=2, resume=path, optimizer="sgd", **kw)
    m.save(tmp_path / "params.npz")
    with pytest.raises(ValueError, match="parameter file, not a checkpoint"):
        m.fit(data, epochs=2, resume=tmp_path / "params.npz", **kw)
    assert same_params(m.params, before)  # a refused checkpoint changes nothing


# ============================================================================= 9. files
def test_vae_save_load_round_trip(tmp_path):
    m, p = make("vae", seed=1, param_seed=37, d=5, nh=3, nz=2)
    path = tmp_path / "vae.npz"
    m.save(path)
    other = gdsl.load(model_path("vae"), seed=2, d=5, nh=3, nz=2)
    assert not same_params(other.params, m.params)
    other.load_params(path)
    assert same_params(other.params, m.params)
    x = binary_rows(np.random.default_rng(38), 6, 5)
    eps = {"z": np.random.default_rng(39).standard_normal((6, 2))}
    assert np.array_equal(other.elbo({"x": x}, eps=eps), m.elbo({"x": x}, eps=eps))
    wrong = gdsl.load(model_path("vae"), seed=2, d=5, nh=4, nz=2)
    with pytest.raises(ValueError, match="sizes"):
        wrong.load_params(path)
    with pytest.raises(ValueError, match="model"):
        gdsl.load(model_path("fvsbn"), d=5).load_params(path)


def test_dbn_greedy_training_raises_the_exact_log_likelihood():
    """fit(method="greedy") trains the stack bottom-up as RBMs, then the top RBM; on 8x8 digits the
    exact test log-likelihood (latents enumerated, the top's h3 summed analytically, exact log Z)
    must rise well above the untrained model's (measured: -44.3 -> about -25.4 with these settings;
    required: 10 nats, under half the gain)."""
    from sklearn.datasets import load_digits

    x = (load_digits().data > 7).astype(np.float64)
    train, test = x[:1200], x[1500:1560]
    m = gdsl.load(model_path("dbn"), nv=64, n1=6, n2=4, n3=4, seed=0)
    before = m.log_prob({"v": test}).mean()
    history = m.fit({"v": train}, method="greedy", epochs=4, batch_size=20, progress=False)
    after = m.log_prob({"v": test}).mean()
    assert [h["layer"] for h in history] == ["v -> h1", "h1 -> h2", "top RBM (h3, h2)"]
    assert set(m.recognition) == {"h1", "h2"}
    assert after > before + 10.0, (before, after)


def test_dbn_greedy_refuses_models_that_are_not_stacks():
    m = gdsl.load(model_path("sbn"), nv=4, n1=3, n2=2, seed=0)
    with pytest.raises(ValueError, match="energy"):
        m.fit({"v": np.zeros((4, 4))}, method="greedy")


def _load_with_random_params(tmp_path, text: str, seed: int):
    """A model compiled from `text`, its parameters drawn from N(0, 1); and the generator used."""
    path = tmp_path / "model.gdl"
    path.write_text(text)
    m = gdsl.load(path, seed=0)
    rng = np.random.default_rng(seed)
    for k, v in m.params.items():
        m.params[k] = rng.normal(size=v.shape)
    return m, rng


MIXTURE = """
model mixture(d = 3, k = 3) {
    latent  c[k] ~ categorical(logits = a)
    visible x[d] ~ bernoulli(logits = M @ c + b)
    param a[k]
    param M[d, k] ~ normal(0, 1)
    param b[d]
}
"""


def test_categorical_conditional_log_prob_samples_and_gradient(tmp_path):
    """A mixture of product-Bernoullis (a categorical latent, not in the shipped models): log_prob
    sums the latent out against a direct formula; samples of x match it (TV, 100k draws: the i.i.d.
    noise on 8 states is ~0.005); the ml gradient (softmax normaliser included) matches finite
    differences."""
    import itertools

    m, rng = _load_with_random_params(tmp_path, MIXTURE, seed=1)
    a, M, b = (np.asarray(m.params[k]) for k in ("a", "M", "b"))
    pc = np.exp(a - a.max())
    pc /= pc.sum()
    xs = np.array(list(itertools.product([0.0, 1.0], repeat=3)))
    p1 = 1 / (1 + np.exp(-(M + b[:, None])))  # [d, k]
    exact = np.log([(pc * np.prod(np.where(x[:, None] == 1, p1, 1 - p1), axis=0)).sum() for x in xs])
    assert np.allclose(m.log_prob({"x": xs}), exact, atol=1e-12)
    s = m.sample(100_000)["x"]
    codes = (s @ np.array([4, 2, 1])).astype(int)
    freq = np.bincount(codes, minlength=8) / len(codes)
    assert 0.5 * np.abs(freq - np.exp(exact)).sum() < 0.02
    state = {"c": np.eye(3)[rng.integers(0, 3, 20)], "x": (rng.random((20, 3)) < 0.5).astype(float)}
    _, grads = m.gradients(state)
    assert_grads_close(grads, fd_grad(m, lambda: float(np.mean(m.log_joint(state)))), "mixture")


MISC = """
model misc(n = 3, k = 2) {
    latent  h[k] ~ bernoulli(probs = sigmoid(a))
    let u = relu(W @ h + c)
    visible x[n] ~ normal(mean = u, std = exp(s))
    visible y[n] ~ bernoulli(logits = log_sigmoid(V @ x) + d)
    param a[k]
    param W[n, k] ~ normal(0, 1)
    param c[n]
    param s[n]
    param V[n, n] ~ normal(0, 1)
    param d[n]
}
"""


def test_probs_relu_log_sigmoid_let_and_learned_std(tmp_path):
    """The constructs no shipped model uses: bernoulli(probs=), a let outside a guide, relu,
    log_sigmoid, a normal with a learned std and a real parent of a discrete child. log_joint
    against numpy, every gradient element against central differences (relu's kink is not hit:
    the pre-activations are continuous random values)."""
    m, rng = _load_with_random_params(tmp_path, MISC, seed=2)
    p = {k: np.array(v) for k, v in m.params.items()}
    st = m.sample(20)
    h, x, y = st["h"], st["x"], st["y"]
    prob = 1 / (1 + np.exp(-p["a"]))
    u = np.maximum(h @ p["W"].T + p["c"], 0)
    sd = np.exp(p["s"])
    logits = -np.logaddexp(0, -(x @ p["V"].T)) + p["d"]
    expected = ((h * np.log(prob) + (1 - h) * np.log(1 - prob)).sum(1)
                + (-0.5 * ((x - u) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi)).sum(1)
                + (y * logits - np.logaddexp(0, logits)).sum(1))
    assert np.allclose(m.log_joint(st), expected, atol=1e-12)
    _, grads = m.gradients(st)
    assert_grads_close(grads, fd_grad(m, lambda: float(np.mean(m.log_joint(st)))), "misc")


def test_ancestral_sampling_in_blocks_of_rows_draws_the_same():
    """sample() runs the kernel a block of rows at a time (its values for 10,000 rows of a 500-unit
    NADE did not fit in memory); the streams are drawn first, so the blocks change nothing."""
    whole = gdsl.load(model_path("nade"), seed=9, **SIZES["nade"])
    blocks = gdsl.load(model_path("nade"), seed=9, **SIZES["nade"])
    blocks._row_floats = lambda: 1 << 40  # one row per block
    a, b = whole.sample(50), blocks.sample(50)
    assert all(np.array_equal(a[g], b[g]) for g in a) and a["x"].std() > 0


def test_adam_step_is_the_textbook_update_to_the_last_bit():
    """Optimizer's compiled Adam (one pass per parameter) gives numpy's array expressions of Kingma &
    Ba's update exactly, for a matrix, a vector and a scalar parameter with weight decay; the moments
    a checkpoint takes are copies (they change in place afterwards)."""
    from gdsl.runtime.dlearn import Optimizer

    class Params:
        dtype = np.float64

        def __init__(self, values):
            self.params = {k: np.array(v) for k, v in values.items()}

    rng = np.random.default_rng(4)
    start = {"W": rng.standard_normal((5, 3)), "b": rng.standard_normal(7), "s": np.float64(0.3)}
    model, opt = Params(start), None
    opt = Optimizer("adam", model.params, 1e-2, weight_decay=1e-3)
    p = {k: np.array(v, dtype=np.float64) for k, v in start.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(x) for k, x in p.items()}
    b1, b2, eps, decay = 0.9, 0.999, 1e-8, 1e-3
    for t in range(1, 13):
        g = {k: rng.standard_normal(np.shape(x)) for k, x in p.items()}
        kept = opt.state()
        opt.step(model, g, list(g), 0.01)
        for k in p:
            gk = g[k] - decay * p[k]
            m[k] = b1 * m[k] + (1 - b1) * gk
            v[k] = b2 * v[k] + (1 - b2) * gk * gk
            p[k] = p[k] + 0.01 * (m[k] / (1 - b1 ** t)) / (np.sqrt(v[k] / (1 - b2 ** t)) + eps)
            assert np.array_equal(model.params[k], p[k]), (k, t)
            assert np.shape(model.params[k]) == np.shape(start[k])
        if t > 1:
            assert not np.array_equal(kept["opt_m/W"], opt.m["W"])  # the copy kept the old moments
