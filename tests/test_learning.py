"""Learning: gradient kernels, exact maximum-likelihood gradients, training on digits,
parameter files, checkpoints and fit's control flow.

What is compared with what
--------------------------
* `energy_grad` (the generated dE/dtheta kernel) against central differences of
  `model.energy` for every shipped model, in float64, per row and summed over rows.
  The energies are polynomials of degree <= 2 in each parameter (the GRBM's
  (v - b)^2 is the only square), so a central difference has no truncation error;
  what is left is rounding, about 1e-16 * |E| / eps ~ 1e-11 with eps = 1e-4. We allow
  1e-7 (absolute and relative).
* The exact gradient of the mean log-likelihood of a tiny data set,
      d/dtheta mean log p(data) = E_model[dE/dtheta] - E_data[dE/dtheta],
  both expectations computed exactly by enumeration (numpy energies from test_exact)
  and fed to `energy_grad` one state at a time with alpha = the state's weight, against
  (i) central differences of the exact `log_prob` (every model; eps = 1e-5: truncation
  ~eps^2 * |third derivative| ~ 1e-9, rounding ~1e-11; tolerance 1e-6) and (ii) for the
  RBM, the textbook numpy formula (E_data[v sigmoid(c + vW)^T] - E_model[v h^T], ...).
* Monte Carlo: the model expectation E_model[dE/dtheta] estimated from `model.sample`
  and `energy_grad`, and one PCD step of `fit` (many chains, many sweeps, lr = 1), against
  the exact values. Tolerances are Z_MC = 5 standard errors (see the tests for how each
  standard error is obtained) plus 1e-4 for float32 accumulation over 10^4 rows.
  With a few hundred compared coordinates, a correct implementation fails with
  probability < 1e-3; errors of the size of a wrong sign, a missing factor 1/2 on the
  symmetric coupling or a dropped term are tens of standard errors.
* Training on scikit-learn's digits with the exact test log-likelihood (see the margins
  stated in those tests), save/load, checkpoints and resume (bitwise equal to an
  uninterrupted run), validation, NaN detection, callbacks and Ctrl-C.
Seeds are fixed for reproducibility; they were not chosen to make tests pass.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import expit, logsumexp

import gdsl
from gdsl.runtime.learn import TrainingError
from conftest import load_model, model_path, random_params
from test_exact import Exact, grbm_exact, np_energy

ALL_MODELS = ["rbm", "grbm", "dbm", "bm", "softmax_rbm", "threeway", "ising"]
DISCRETE = ["rbm", "dbm", "bm", "softmax_rbm", "threeway", "ising"]

FD_EPS_ENERGY, FD_TOL_ENERGY = 1e-4, 1e-7
FD_EPS_LOGLIK, FD_TOL_LOGLIK = 1e-5, 1e-6
Z_MC = 5.0
F32_SUM_ATOL = 1e-4


# ============================================================================= helpers
def names(model):
    return [p for p, _ in model.PARAMS]


def visible(model):
    return [g for g, role, _ in model.GROUPS if role == "visible"]


def grad_buffers(model):
    """Zeroed gradient buffers in kernel order; scalar parameters get shape (1,)."""
    return {p: np.zeros(model.shape(p) or (1,), model.dtype) for p in names(model)}


def energy_grad(model, state, alpha=1.0, bufs=None):
    """bufs += alpha * sum over rows of dE/dtheta, through the compiled kernel."""
    bufs = grad_buffers(model) if bufs is None else bufs
    st = {g: np.ascontiguousarray(state[g], dtype=model.dtype) for g in model.group_names}
    model.KERNELS["energy_grad"](*model.kernel_args(st), float(alpha), *(bufs[p] for p in names(model)))
    return bufs


def as_params(model, bufs):
    return {p: np.asarray(b, dtype=np.float64).reshape(model.shape(p)) for p, b in bufs.items()}


def snapshot(model):
    return {k: np.array(v, copy=True) for k, v in model.params.items()}


def same_params(a, b):
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def directions(model, name):
    """Unit perturbations of one parameter that keep its constraints: (label, direction).

    A symmetric matrix moves along e_ij + e_ji (and e_ii unless zero_diag), so the matching
    directional derivative of the kernel's (unconstrained) gradient is g_ij + g_ji."""
    shape = model.shape(name)
    cons = dict(model.PARAMS)[name]
    if "symmetric" in cons:
        first = 1 if "zero_diag" in cons else 0
        for i in range(shape[0]):
            for j in range(i + first, shape[0]):
                d = np.zeros(shape)
                d[i, j] = d[j, i] = 1.0
                yield f"{name}[{i},{j}]+{name}[{j},{i}]", d
        return
    for idx in np.ndindex(*shape):
        d = np.zeros(shape)
        d[idx] = 1.0
        yield f"{name}{list(idx)}", d


def central_difference(model, name, d, f, eps):
    """(f(theta + eps d) - f(theta - eps d)) / 2 eps, through the public parameter API."""
    base = np.array(model.params[name], dtype=np.float64)
    try:
        model.params[name] = base + eps * d
        up = np.asarray(f(), dtype=np.float64)
        model.params[name] = base - eps * d
        down = np.asarray(f(), dtype=np.float64)
    finally:
        model.params[name] = base
    return (up - down) / (2 * eps)


def model64(name, seed):
    m = load_model(name, seed=seed, dtype="float64")
    m.params = random_params(m, seed=5000 + seed)
    if name == "ising":
        m.params = {"J": 0.35, "field": -0.2}
    return m


@pytest.fixture(scope="module")
def models64():
    """float64 instances of every shipped model at its tiny size, with random parameters."""
    return {name: model64(name, seed=40 + i) for i, name in enumerate(ALL_MODELS)}


def tiny_data(model, n, seed):
    """n random values of the visible groups (binary/spin/one-hot, or N(0, 1.5^2) for real)."""
    rng = np.random.default_rng(seed)
    out = {}
    for g in visible(model):
        shape = (n,) + model.shape(g)
        domain = model.domains[g]
        if domain == "binary":
            out[g] = (rng.random(shape) < 0.5).astype(np.float64)
        elif domain == "spin":
            out[g] = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
        elif domain == "categorical":
            out[g] = np.eye(shape[-1])[rng.integers(0, shape[-1], size=shape[:-1])]
        else:
            out[g] = rng.normal(0.0, 1.5, size=shape)
    return out


# ============================================================================= dE/dtheta vs FD
def sparse_binary(state, model, seed):
    """The state with every binary group mostly 0 (at most one 1 per row, half the rows empty),
    like binary data and samples: kernels may take other paths for such arrays."""
    rng = np.random.default_rng(seed)
    out = dict(state)
    for g, domain in model.domains.items():
        if domain == "binary":
            x = np.zeros_like(state[g]).reshape(len(state[g]), -1)
            rows = np.flatnonzero(rng.random(len(x)) < 0.5)
            x[rows, rng.integers(0, x.shape[1], size=len(rows))] = 1.0
            out[g] = x.reshape(state[g].shape)
    return out


FD_CASES = [(name, "random") for name in ALL_MODELS] + [(name, "sparse") for name in ALL_MODELS if name != "ising"]


@pytest.mark.parametrize("name, states", FD_CASES)
def test_energy_grad_matches_finite_differences(name, states, models64):
    model = models64[name]
    n = 6
    state = model.random_state(n)
    if model.domains.get("v") == "real":
        state["v"] = state["v"] * 1.5
    if states == "sparse":
        state = sparse_binary(state, model, seed=len(name))
    kept = {g: v.copy() for g, v in state.items()}
    params = snapshot(model)
    total = as_params(model, energy_grad(model, state))
    rows = [as_params(model, energy_grad(model, {g: v[r:r + 1] for g, v in state.items()})) for r in range(n)]
    assert all(np.array_equal(state[g], kept[g]) for g in state) and same_params(model.params, params)

    labels, fd, got_rows, got_total = [], [], [], []
    for p in names(model):
        for label, d in directions(model, p):
            labels.append(label)
            fd.append(central_difference(model, p, d, lambda: model.energy(state), FD_EPS_ENERGY))
            got_rows.append([np.sum(r[p] * d) for r in rows])
            got_total.append(np.sum(total[p] * d))
    fd, got_rows, got_total = np.array(fd), np.array(got_rows), np.array(got_total)
    assert np.abs(fd).max() > 0.5  # the check is not vacuous
    for k, label in enumerate(labels):
        np.testing.assert_allclose(got_rows[k], fd[k], rtol=FD_TOL_ENERGY, atol=FD_TOL_ENERGY,
                                   err_msg=f"{name}: dE/d{label} per row")
        np.testing.assert_allclose(got_total[k], fd[k].sum(), rtol=FD_TOL_ENERGY, atol=FD_TOL_ENERGY,
                                   err_msg=f"{name}: dE/d{label} summed over rows")

    # alpha scales, and the kernel adds to what the buffers hold
    bufs = energy_grad(model, state, alpha=2.5)
    for p in names(model):
        np.testing.assert_allclose(as_params(model, bufs)[p], 2.5 * total[p], rtol=1e-12, atol=1e-12)
    energy_grad(model, state, alpha=-3.0, bufs=bufs)
    for p in names(model):
        np.testing.assert_allclose(as_params(model, bufs)[p], -0.5 * total[p], rtol=1e-12, atol=1e-12)


def test_float32_energy_grad_agrees_with_float64(rbm):
    """The float32 kernel (what fit runs by default) computes the same statistics."""
    twin = load_model("rbm", dtype="float64")
    twin.params = snapshot(rbm)
    state = twin.random_state(50)
    g32 = as_params(rbm, energy_grad(rbm, state, alpha=0.02))
    g64 = as_params(twin, energy_grad(twin, state, alpha=0.02))
    for p in g64:
        np.testing.assert_allclose(g32[p], g64[p], rtol=1e-5, atol=1e-6)


# ============================================================================= exact ML gradient
def exact_weights(model, data):
    """(joint states, w) with w = E_data-weights - p: the exact E_data[.] - E_model[.] as a
    weighted sum over every joint state. E_data uses the exact posterior p(latents | data row)."""
    ex = Exact(model)
    vis = visible(model)
    n = len(data[vis[0]])
    q = np.zeros_like(ex.p)
    for r in range(n):
        q += ex.conditional({g: data[g][r] for g in vis}) / n
    return ex.states, q - ex.p


def grbm_weights(model, data):
    """The same for the Gaussian RBM: h is enumerated; v is real. dE/dtheta is affine in v
    for fixed h (dE/dW = -v h^T / s^2, dE/db = (b - v) / s^2, dE/dc = -h), so
    E_model[dE/dtheta] = sum_h p(h) dE/dtheta(E[v | h], h) with E[v | h] = b + W h."""
    H, ph, means, _, _, _ = grbm_exact(model)
    V = data["v"]
    vs, hs, ws = [], [], []
    for v in V:
        e = np_energy(model, {"v": np.repeat(v[None], len(H), 0), "h": H})
        q = np.exp(-e - logsumexp(-e))
        vs.append(np.repeat(v[None], len(H), 0))
        hs.append(H)
        ws.append(q / len(V))
    vs.append(means)
    hs.append(H)
    ws.append(-ph)
    return {"v": np.concatenate(vs), "h": np.concatenate(hs)}, np.concatenate(ws)


def compiled_nll_gradient(model, data):
    """E_data[dE/dtheta] - E_model[dE/dtheta] (the gradient of the mean negative
    log-likelihood), from energy_grad called once per state with alpha = its weight."""
    states, w = grbm_weights(model, data) if model.NAME == "grbm" else exact_weights(model, data)
    bufs = grad_buffers(model)
    for s in np.flatnonzero(w):
        energy_grad(model, {g: v[s:s + 1] for g, v in states.items()}, alpha=w[s], bufs=bufs)
    return as_params(model, bufs)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_exact_ml_gradient_matches_finite_differences_of_log_likelihood(name, models64):
    model = models64[name]
    data = tiny_data(model, 6, seed=7)
    g = compiled_nll_gradient(model, data)
    mean_loglik = lambda: np.mean(model.log_prob(data))  # noqa: E731 (exact, by enumeration)
    worst = 0.0
    for p in names(model):
        for label, d in directions(model, p):
            fd = float(central_difference(model, p, d, mean_loglik, FD_EPS_LOGLIK))
            want = -fd  # the NLL gradient
            got = float(np.sum(g[p] * d))
            worst = max(worst, abs(want))
            assert got == pytest.approx(want, rel=FD_TOL_LOGLIK, abs=FD_TOL_LOGLIK), \
                f"{name}: d(-loglik)/d{label}: compiled exact statistics {got:.9g}, finite differences {want:.9g}"
    assert worst > 0.1  # the data are far from the model: the gradient is not ~0


def test_exact_rbm_gradient_matches_numpy_formula(models64):
    """E_data[v sigmoid(c + vW)^T] - E_model[v h^T] (and the bias terms) in plain numpy, against
    the compiled statistics: positive phase with h replaced by its exact conditional mean
    (one call, alpha = 1/N: what train_epoch's positive phase does), negative phase by
    enumeration (alpha = -p(state))."""
    model = models64["rbm"]
    p = {k: np.asarray(v, dtype=np.float64) for k, v in model.params.items()}
    V = tiny_data(model, 8, seed=3)["v"]
    ex = Exact(model)
    S = expit(p["c"] + V @ p["W"])
    Ev, Eh = ex.mean("v"), ex.mean("h")
    Evh = np.einsum("s,si,sj->ij", ex.p, ex.states["v"], ex.states["h"])
    dloglik = {"W": V.T @ S / len(V) - Evh, "b": V.mean(0) - Ev, "c": S.mean(0) - Eh}

    bufs = energy_grad(model, {"v": V, "h": S}, alpha=1.0 / len(V))
    for s in range(len(ex.p)):
        energy_grad(model, {g: ex.states[g][s:s + 1] for g in ("v", "h")}, alpha=-ex.p[s], bufs=bufs)
    got = as_params(model, bufs)
    for k in dloglik:
        np.testing.assert_allclose(-got[k], dloglik[k], rtol=1e-9, atol=1e-12, err_msg=k)
    # the enumerated posterior gives the same (energy_grad is linear in h)
    generic = compiled_nll_gradient(model, {"v": V})
    for k in dloglik:
        np.testing.assert_allclose(-generic[k], dloglik[k], rtol=1e-9, atol=1e-12, err_msg=k)
    assert max(np.abs(v).max() for v in dloglik.values()) > 0.1


# ============================================================================= Monte Carlo
def per_state_gradients(model, states):
    """Matrix (states, coordinates) of dE/dtheta, one energy_grad call per state."""
    n = len(next(iter(states.values())))
    return np.array([np.concatenate([v.ravel() for v in as_params(
        model, energy_grad(model, {g: x[s:s + 1] for g, x in states.items()})).values()]) for s in range(n)])


def flat(model, grads):
    return np.concatenate([np.asarray(grads[p], dtype=np.float64).ravel() for p in names(model)])


def exact_model_expectation(model):
    """E_model[dE/dtheta] (flat) and Var_model[dE/dtheta] per coordinate, by enumeration."""
    if model.NAME == "grbm":
        H, ph, means, _, _, _ = grbm_exact(model)
        G = per_state_gradients(model, {"v": means, "h": H})
        return ph @ G, None
    ex = Exact(model)
    G = per_state_gradients(model, ex.states)
    mean = ex.p @ G
    return mean, ex.p @ (G - mean) ** 2


MC_CHAINS, MC_RECORDS, MC_BATCHES = 2000, 20, 50
MC_STEPS = {"grbm": 25}  # sweeps between records; the GRBM's h mixes slowly (see test_exact)


@pytest.mark.parametrize("name", ["rbm", "grbm", "dbm", "bm", "softmax_rbm", "threeway", "ising"])
def test_sampled_model_statistics_approximate_exact(name, request):
    """E_model[dE/dtheta] from long Gibbs chains (the negative phase of PCD with many sweeps)
    through energy_grad, against the exact expectation.

    Standard error: 2000 independent chains, each burnt in for 50 sweeps and recorded 20
    times; the samples are split into 50 batches of whole chains (independent), and
    energy_grad gives each batch's mean in one call (alpha = 1 / rows). SE = sd of the
    batch means / sqrt(50), which includes the autocorrelation within chains. Tolerance
    Z_MC = 5 SE (+ float32 accumulation). The premise that the chains mix (so the SE is
    small and the test has power) is checked: the batch SE is below 2x the i.i.d. SE
    sqrt(Var_model / N), i.e. a variance inflation below 4."""
    model = request.getfixturevalue(name)
    mean, var = exact_model_expectation(model)
    n = MC_CHAINS * MC_RECORDS
    s = model.sample(n, chains=MC_CHAINS, steps=MC_STEPS.get(name, 4), burn_in=50)
    rows = n // MC_BATCHES  # chain c's records are rows c * 20 ... c * 20 + 19: batches hold whole chains
    batch = np.array([flat(model, as_params(model, energy_grad(
        model, {g: x[b * rows:(b + 1) * rows] for g, x in s.items()}, alpha=1.0 / rows)))
        for b in range(MC_BATCHES)])
    est = batch.mean(0)
    se = batch.std(0, ddof=1) / math.sqrt(MC_BATCHES)
    z = np.abs(est - mean) / (se + 1e-12)
    bad = np.abs(est - mean) > Z_MC * se + F32_SUM_ATOL
    assert not bad.any(), f"{name}: coordinates {np.flatnonzero(bad)} off by z = {z[bad]}"
    if var is not None:
        iid = np.sqrt(var / n)
        live = var > 1e-6
        assert np.all(se[live] < 2.0 * iid[live]), f"{name}: chains mix too slowly ({(se / iid).max():.2f})"


PCD_CASES = ["rbm", "bm", "softmax_rbm", "threeway", "ising"]


@pytest.mark.parametrize("name", PCD_CASES)
def test_pcd_step_approximates_exact_ml_gradient(name, request):
    """One step of fit(method="pcd") with many chains and sweeps is the exact ML gradient step
    up to Monte Carlo error.

    The models here have posteriors that factorise given the data, so fit's positive phase is
    exact; the whole data set is one minibatch; C = 10,000 persistent chains start from
    random states and run k = 100 sweeps (the tiny models mix in a few; test_exact measures
    it), then give the Rao-Blackwellised negative statistics; lr = 1, no momentum or decay.
    So  theta_before - theta_after = E_data[dE] - E_model-estimate[dE]. The chains are
    independent, so the SE of the estimate is sqrt(Var / C) with Var the variance of the
    Rao-Blackwellised statistic; we use Var_model[dE/dtheta] (exact, by enumeration), an
    upper bound on it (law of total variance). Tolerance: 5 SE + float32 accumulation.
    The exact gradient is computed on a float64 twin with the same parameters."""
    session = request.getfixturevalue(name)
    model = load_model(name, seed=77)
    model.params = snapshot(session)
    twin = load_model(name, dtype="float64")
    twin.params = snapshot(session)
    check_pcd_step(name, model, twin)


SPIN_RBM = """model spin_rbm(nv = 6, nh = 4) {
    visible v[nv]: spin
    latent  h[nh]: spin
    param W[nv, nh]
    param b[nv]
    param c[nh]
    energy -(v @ W @ h) - b @ v - c @ h
}
"""


def test_pcd_step_with_spin_units_approximates_exact_ml_gradient(tmp_path):
    """The same check on +-1 units: the training sweeps' two-state kernels with low = -1."""
    path = tmp_path / "spin_rbm.gdl"
    path.write_text(SPIN_RBM)
    model = gdsl.load(path, seed=77)
    twin = gdsl.load(path, dtype="float64")
    params = random_params(twin, seed=123, weight_scale=0.4, bias_scale=0.3)
    model.params = params
    twin.params = params
    check_pcd_step("spin_rbm", model, twin)


def check_pcd_step(name, model, twin):
    data = tiny_data(model, 8, seed=11)
    g = compiled_nll_gradient(twin, data)
    _, var = exact_model_expectation(twin)
    se = np.sqrt(var / 10_000)

    before = snapshot(model)
    hist = model.fit(data, method="pcd", k=100, lr=1.0, epochs=1, batch_size=8, chains=10_000,
                     monitor=None, progress=False)
    assert len(hist) == 1
    step = {k: before[k].astype(np.float64) - np.asarray(model.params[k], dtype=np.float64) for k in before}
    for p, cons in model.PARAMS:
        if "zero_diag" in cons:  # the update restores the constraint: the diagonal does not move
            assert np.all(np.diagonal(step[p]) == 0)
            g[p] = g[p] - np.diag(np.diagonal(g[p]))
    d = flat(model, step) - flat(model, g)
    bad = np.abs(d) > Z_MC * se + F32_SUM_ATOL
    assert not bad.any(), f"{name}: coordinates {np.flatnonzero(bad)} off by {d[bad]} (se {se[bad]})"
    assert np.abs(flat(model, g)).max() > 20 * se.max()  # the step is well resolved


# ============================================================================= training on digits
@pytest.fixture(scope="module")
def digits():
    """scikit-learn's 8x8 digits, binarised at > 7 (of 16), and 4x4 versions (2x2 means, > 7);
    a fixed split: a permutation with seed 0, 1500 training and 297 test images."""
    from sklearn.datasets import load_digits

    x = load_digits().data
    perm = np.random.default_rng(0).permutation(len(x))
    x64 = (x > 7).astype(np.float64)[perm]
    x16 = (x.reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(-1, 16) > 7).astype(np.float64)[perm]
    return {"train64": x64[:1500], "test64": x64[1500:], "train16": x16[:1500], "test16": x16[1500:]}


def independent_pixels_loglik(train, test):
    """Mean test log-likelihood of the best model without interactions (Laplace-smoothed pixel rates)."""
    q = (train.sum(0) + 1.0) / (len(train) + 2.0)
    return float(np.mean(test @ np.log(q) + (1 - test) @ np.log(1 - q)))


def test_rbm_training_on_digits_raises_exact_test_loglik(digits):
    """RBM 64 x 16 (log Z sums v analytically over 2^16 h states: exact), CD-1, 20 epochs.

    Margins: the initial model (W ~ N(0, 0.01^2), zero biases) is within 0.1 nats of uniform,
    -64 log 2 = -44.4 nats. The best model without interactions (independent pixels) gets
    about -25.2 on the test set. Measured over seeds 0-5: -18.9 to -19.4 (sd 0.18). We require
    a gain of at least 20 nats over the initial model and at least 3 nats over independent
    pixels, i.e. the weights, not just the biases, learned structure. Both margins are more
    than 15 seed-to-seed standard deviations from the measured results (and from zero)."""
    train, test = digits["train64"], digits["test64"]
    m = gdsl.load(model_path("rbm"), seed=0, nv=64, nh=16)
    before = float(np.mean(m.log_prob({"v": test})))
    assert before == pytest.approx(-64 * math.log(2), abs=0.1)
    hist = m.fit({"v": train}, method="cd", k=1, lr=0.1, momentum=0.5, epochs=20, batch_size=20,
                 validation={"v": test}, progress=False)
    after = float(np.mean(m.log_prob({"v": test})))
    baseline = independent_pixels_loglik(train, test)
    assert after - before > 20.0, (before, after)
    assert after - baseline > 3.0, (after, baseline)
    # the history's exact log-likelihood is the same computation, after each epoch
    assert hist[-1]["valid_loglik"] == pytest.approx(after, rel=1e-12)
    assert hist[-1]["train_loglik"] == pytest.approx(np.mean(m.log_prob({"v": train[:1000]})), rel=1e-12)
    assert hist[-1]["train_loglik"] > hist[0]["train_loglik"] + 3.0
    assert hist[-1]["train_recon"] < hist[0]["train_recon"]
    assert hist[-1]["valid_recon"] == pytest.approx(m.reconstruction_error({"v": test}), rel=1e-6)


def test_dbm_training_on_digits_raises_exact_test_loglik(digits):
    """DBM 16-6-4 on 4x4 digits; PCD (mean-field positive phase), 40 epochs, lr 0.15 decaying
    linearly. log p(v) is exact: h1 summed analytically, 2^4 h2 states enumerated per image,
    and log Z enumerates the 2^6 h1 states with v and h2 summed.

    Margins: initial model -16 log 2 = -11.1 nats; independent pixels (the best a model
    without interactions can do) -5.21 on the test set. Measured over seeds 0-5: -4.83 to
    -4.90 (sd 0.026). We require a gain of at least 5 nats over the initial model and at
    least 0.15 nats over independent pixels: half the smallest measured gain (0.31), six or
    more seed-to-seed standard deviations from both the measured results and zero."""
    train, test = digits["train16"], digits["test16"]
    m = gdsl.load(model_path("dbm"), seed=0, nv=16, n1=6, n2=4)
    before = float(np.mean(m.log_prob({"v": test})))
    assert before == pytest.approx(-16 * math.log(2), abs=0.1)
    hist = m.fit({"v": train}, method="pcd", lr=0.15, lr_schedule="linear", momentum=0.5, epochs=40,
                 batch_size=20, chains=100, progress=False)
    after = float(np.mean(m.log_prob({"v": test})))
    baseline = independent_pixels_loglik(train, test)
    assert after - before > 5.0, (before, after)
    assert after - baseline > 0.15, (after, baseline)
    # the DBM's latents do not sum out jointly: no pseudo-likelihood, but the exact log-likelihood
    assert set(hist[-1]) == {"epoch", "lr", "train_recon", "train_loglik"}
    assert hist[-1]["lr"] == pytest.approx(0.15 * (1 - 39 / 40))


# ============================================================================= files
@pytest.fixture()
def tiny_rbm():
    m = load_model("rbm", seed=3)
    m.params = random_params(m, seed=33)
    return m


DATA = {"v": (np.random.default_rng(0).random((60, 4)) < 0.5).astype(np.float64)}
FIT = dict(method="pcd", lr=0.1, momentum=0.5, weight_decay=0.01, lr_schedule="exp:0.9", batch_size=10,
           chains=15, progress=False)


def test_a_failed_save_leaves_no_temporary_file(tmp_path, tiny_rbm):
    target = tmp_path / "taken"
    target.mkdir()  # np.savez can write the .tmp, but it cannot replace a directory
    with pytest.raises(OSError):
        tiny_rbm.save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_save_load_round_trip(tmp_path, tiny_rbm):
    path = tmp_path / "rbm.npz"
    tiny_rbm.save(path)
    assert path.exists() and not (tmp_path / "rbm.npz.tmp").exists()
    other = load_model("rbm", seed=99)
    assert not same_params(other.params, tiny_rbm.params)
    other.load_params(path)
    assert same_params(other.params, tiny_rbm.params)
    st = tiny_rbm.random_state(20)
    np.testing.assert_array_equal(other.energy(st), tiny_rbm.energy(st))
    # a float64 model of the same sizes reads it too (values widened exactly)
    wide = load_model("rbm", dtype="float64")
    wide.load_params(path)
    assert all(np.array_equal(wide.params[k], tiny_rbm.params[k].astype(np.float64)) for k in wide.params)
    # scalar parameters keep their 0-d shape; saving again gives the same file content
    ising = load_model("ising")
    ising.params = {"J": 0.3, "field": -0.1}
    ising.save(tmp_path / "ising.npz")
    back = load_model("ising", seed=5)
    back.load_params(tmp_path / "ising.npz")
    assert back.params["J"].shape == () and float(back.params["J"]) == pytest.approx(0.3)
    assert same_params(back.params, ising.params)


def test_load_params_refuses_other_models_and_sizes(tmp_path, tiny_rbm):
    before = snapshot(tiny_rbm)
    load_model("dbm").save(tmp_path / "dbm.npz")
    with pytest.raises(ValueError, match=r"cannot load .*dbm\.npz: it is for model 'dbm', not 'rbm'"):
        tiny_rbm.load_params(tmp_path / "dbm.npz")
    load_model("rbm", nh=4).save(tmp_path / "rbm_nh4.npz")
    with pytest.raises(ValueError, match=r"its sizes are \{'nv': 4, 'nh': 4\}, this model's are \{'nv': 4, 'nh': 3\}"):
        tiny_rbm.load_params(tmp_path / "rbm_nh4.npz")
    load_model("grbm", sigma=0.5).save(tmp_path / "grbm.npz")
    with pytest.raises(ValueError, match=r"its constants are \{'sigma': 0.5\}"):
        load_model("grbm").load_params(tmp_path / "grbm.npz")
    # the same model name from a different .gdl text
    src = (tmp_path / "rbm.gdl")
    src.write_text(open(model_path("rbm")).read().replace("normal(0, 0.01)", "normal(0, 0.02)"))
    gdsl.load(str(src), nv=4, nh=3).save(tmp_path / "edited.npz")
    with pytest.raises(ValueError, match="different version of the model's .gdl source"):
        tiny_rbm.load_params(tmp_path / "edited.npz")
    np.savez(tmp_path / "plain.npz", W=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="not a gdsl parameter file"):
        tiny_rbm.load_params(tmp_path / "plain.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="cannot read parameters"):
        tiny_rbm.load_params(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="cannot read parameters"):
        tiny_rbm.load_params(tmp_path / "missing.npz")
    assert same_params(tiny_rbm.params, before)  # nothing was changed by a refused file
    # a plain parameter file is not a checkpoint
    tiny_rbm.save(tmp_path / "params.npz")
    with pytest.raises(ValueError, match="parameter file, not a checkpoint"):
        tiny_rbm.fit(DATA, epochs=2, resume=tmp_path / "params.npz", **FIT)


# ============================================================================= checkpoints, resume
@pytest.fixture(scope="module")
def reference_run():
    """An uninterrupted 6-epoch run (seed 5) and the parameters after every epoch."""
    m = load_model("rbm", seed=5)
    after = []
    hist = m.fit(DATA, epochs=6, callback=lambda model, rec: after.append(snapshot(model)), **FIT)
    return {"params": snapshot(m), "history": hist, "after": after}


def test_fit_is_reproducible(reference_run):
    m = load_model("rbm", seed=5)
    assert m.fit(DATA, epochs=6, **FIT) == reference_run["history"]
    assert same_params(m.params, reference_run["params"])
    other = load_model("rbm", seed=6)
    other.fit(DATA, epochs=6, **FIT)
    assert not same_params(other.params, reference_run["params"])


@pytest.mark.parametrize("method", ["pcd", "cd"])
def test_checkpoint_written_during_fit_resumes_exactly(tmp_path, reference_run, method):
    """A run stopped by its callback after epoch 3 (checkpoint every epoch) and resumed by a fresh
    instance with another seed ends with exactly the parameters and history of an uninterrupted run."""
    kw = dict(FIT, method=method)
    ref = load_model("rbm", seed=5)
    ref_hist = ref.fit(DATA, epochs=6, **kw)
    path = tmp_path / "ck.npz"
    first = load_model("rbm", seed=5)
    hist = first.fit(DATA, epochs=6, checkpoint=path, callback=lambda m, r: r["epoch"] < 3, **kw)
    assert len(hist) == 3 and hist == ref_hist[:3]
    resumed = load_model("rbm", seed=123)
    full = resumed.fit(DATA, epochs=6, resume=path, checkpoint=path, **kw)
    assert full == ref_hist
    assert same_params(resumed.params, ref.params)
    # now the checkpoint holds the finished run: resuming it does nothing more
    again = load_model("rbm", seed=1)
    assert again.fit(DATA, epochs=6, resume=path, **kw) == ref_hist
    assert same_params(again.params, ref.params)
    # a checkpoint is also a parameter file
    plain = load_model("rbm")
    plain.load_params(path)
    assert same_params(plain.params, ref.params)


def test_resume_refuses_other_settings(tmp_path):
    path = tmp_path / "ck.npz"
    load_model("rbm", seed=5).fit(DATA, epochs=2, checkpoint=path, **FIT)
    with pytest.raises(ValueError, match=r"trained with batch_size=10, not 20"):
        load_model("rbm").fit(DATA, epochs=4, resume=path, **dict(FIT, batch_size=20))
    with pytest.raises(ValueError, match=r"trained with method='pcd', not 'cd'"):
        load_model("rbm").fit(DATA, epochs=4, resume=path, **dict(FIT, method="cd"))
    with pytest.raises(ValueError, match=r"its sizes are"):
        load_model("rbm", nh=5).fit(DATA, epochs=4, resume=path, **FIT)


def test_keyboard_interrupt_from_callback(tmp_path, capsys, reference_run):
    """Ctrl-C after epoch 2 (simulated by the callback): fit returns the 2 records, keeps the
    parameters of epoch 2, writes the checkpoint (not due until epoch 5), and resuming from
    it gives the uninterrupted result."""
    path = tmp_path / "ck.npz"

    def interrupt(model, record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    m = load_model("rbm", seed=5)
    hist = m.fit(DATA, epochs=6, checkpoint=path, checkpoint_every=5, callback=interrupt, **FIT)
    assert hist == reference_run["history"][:2]
    assert same_params(m.params, reference_run["after"][1])
    assert "interrupted after epoch 2" in capsys.readouterr().err
    assert path.exists()
    resumed = load_model("rbm", seed=321)
    assert resumed.fit(DATA, epochs=6, resume=path, **FIT) == reference_run["history"]
    assert same_params(resumed.params, reference_run["params"])


@pytest.mark.parametrize("where", ["kernel", "monitor"])
def test_keyboard_interrupt_inside_an_epoch(tmp_path, monkeypatch, capsys, reference_run, where):
    """Ctrl-C pressed while epoch 3 runs reaches Python when the compiled kernel returns (or while
    the monitors measure): the unrecorded epoch is undone, so parameters, history and checkpoint
    all describe epoch 2, and resuming gives the uninterrupted result."""
    m = load_model("rbm", seed=5)
    calls = []
    if where == "kernel":
        real = m.KERNELS["train_epoch"]

        def kernel(*args):
            out = real(*args)
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return out

        monkeypatch.setitem(m.KERNELS, "train_epoch", kernel)
    else:
        real = m._measure

        def measure(*args):
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return real(*args)

        monkeypatch.setattr(m, "_measure", measure)
    path = tmp_path / "ck.npz"
    hist = m.fit(DATA, epochs=6, checkpoint=path, checkpoint_every=5, **FIT)
    assert hist == reference_run["history"][:2]
    assert same_params(m.params, reference_run["after"][1])
    assert "interrupted after epoch 2" in capsys.readouterr().err
    monkeypatch.undo()
    resumed = load_model("rbm", seed=321)
    assert resumed.fit(DATA, epochs=6, resume=path, **FIT) == reference_run["history"]
    assert same_params(resumed.params, reference_run["params"])


# ============================================================================= fit's control flow
def test_callback_can_stop_training(reference_run):
    m = load_model("rbm", seed=5)
    seen = []

    def cb(model, record):
        assert model is m
        seen.append(record["epoch"])
        return record["epoch"] < 4  # False after epoch 4; None or True continue

    hist = m.fit(DATA, epochs=6, callback=cb, **FIT)
    assert seen == [1, 2, 3, 4] and [r["epoch"] for r in hist] == [1, 2, 3, 4]
    assert same_params(m.params, reference_run["after"][3])
    hist = load_model("rbm", seed=5).fit(DATA, epochs=3, callback=lambda m, r: None, **FIT)
    assert len(hist) == 3


def test_history_records_every_epoch(tiny_rbm):
    valid = {"v": DATA["v"][:17]}
    hist = tiny_rbm.fit(DATA, epochs=4, validation=valid, **dict(FIT, lr_schedule="linear"))
    assert [r["epoch"] for r in hist] == [1, 2, 3, 4]
    assert [r["lr"] for r in hist] == pytest.approx([0.1 * (1 - e / 4) for e in range(4)])
    keys = {"epoch", "lr"} | {f"{s}_{k}" for s in ("train", "valid") for k in ("recon", "pll", "loglik")}
    assert all(set(r) == keys for r in hist)
    last = hist[-1]  # the records are measured on the parameters at the end of each epoch
    assert last["train_loglik"] == pytest.approx(np.mean(tiny_rbm.log_prob(DATA)), rel=1e-12)
    assert last["valid_loglik"] == pytest.approx(np.mean(tiny_rbm.log_prob(valid)), rel=1e-12)
    assert last["valid_recon"] == pytest.approx(tiny_rbm.reconstruction_error(valid), rel=1e-6)
    assert last["valid_pll"] == pytest.approx(np.mean(tiny_rbm.pseudo_log_likelihood(valid)), rel=1e-6)
    assert all(np.isfinite(v) for r in hist for v in r.values())
    assert all(r["train_loglik"] < 0 and r["train_pll"] < 0 and 0 <= r["train_recon"] <= 1 for r in hist)

    assert set(tiny_rbm.fit(DATA, epochs=1, monitor=None, **FIT)[0]) == {"epoch", "lr"}
    assert set(tiny_rbm.fit(DATA, epochs=1, monitor=("recon",), **FIT)[0]) == {"epoch", "lr", "train_recon"}
    # too large to enumerate (2^20 states either way): no exact log-likelihood
    big = load_model("rbm", nv=20, nh=20)
    data = {"v": (np.random.default_rng(1).random((30, 20)) < 0.5).astype(np.float64)}
    assert set(big.fit(data, epochs=1, **FIT)[0]) == {"epoch", "lr", "train_recon", "train_pll"}


@pytest.mark.parametrize("kw, message", [
    (dict(method="bogus"), r"unknown method 'bogus'"),
    (dict(epochs=-1), r"epochs must be a whole number >= 0, got -1"),
    (dict(epochs=2.5), r"epochs must be"),
    (dict(k=0), r"k must be"),
    (dict(batch_size=0), r"batch_size must be"),
    (dict(batch_size=7.0), r"batch_size must be"),
    (dict(mf_iters=0), r"mf_iters must be"),
    (dict(checkpoint_every=0), r"checkpoint_every must be"),
    (dict(chains=-4), r"chains must be a whole number >= 1, got -4"),
    (dict(momentum=1.0), r"momentum must be a finite number in \[0, 1\)"),
    (dict(momentum=-0.1), r"momentum must be a finite number in \[0, 1\)"),
    (dict(mf_damping=1.0), r"mf_damping must be a finite number in \[0, 1\)"),
    (dict(lr=-0.1), r"lr must be a finite number > 0, got -0.1"),
    (dict(lr=float("nan")), r"lr must be a finite number > 0"),
    (dict(weight_decay=-1e-3), r"weight_decay must be a finite number >= 0"),
    (dict(lr_schedule="bogus"), r"unknown lr_schedule 'bogus'"),
    (dict(lr_schedule=lambda e: -0.5), r"learning rate of epoch 1 is -0.5"),
])
def test_fit_rejects_bad_options(tiny_rbm, kw, message):
    before = snapshot(tiny_rbm)
    with pytest.raises(ValueError, match=message):
        tiny_rbm.fit(DATA, **{**dict(epochs=2, progress=False), **kw})
    assert same_params(tiny_rbm.params, before)


def test_fit_rejects_bad_data(tiny_rbm):
    before = snapshot(tiny_rbm)
    for data, message in [({}, "non-empty dict"), ({"v": DATA["v"][:, :3]}, r"v must have shape \(60, 4\)"),
                          ({"v": DATA["v"] * 0.5}, "v is binary"), ({"x": DATA["v"]}, "no variable 'x'"),
                          ({"v": DATA["v"], "h": np.zeros((59, 3))}, "same number of samples")]:
        with pytest.raises(ValueError, match=message):
            tiny_rbm.fit(data, epochs=1, progress=False)
    assert same_params(tiny_rbm.params, before)
    assert tiny_rbm.fit(DATA, epochs=0, progress=False) == []
    assert same_params(tiny_rbm.params, before)


def test_numpy_scalars_as_options_checkpoint(tmp_path, reference_run):
    """Options given as numpy scalars (as from a config array) work, checkpoints included."""
    m = load_model("rbm", seed=5)
    kw = dict(FIT, lr=np.float32(0.1), momentum=np.float64(0.5), batch_size=np.int64(10), chains=np.int32(15))
    hist = m.fit(DATA, epochs=np.int64(6), k=np.int64(1), checkpoint=tmp_path / "ck.npz", **kw)
    assert len(hist) == 6
    np.testing.assert_allclose(m.params["W"], reference_run["params"]["W"], rtol=1e-5, atol=1e-6)


def test_nan_detection_names_parameter_and_epoch(reference_run):
    """A learning rate beyond float32's range in epoch 3 overflows the weights: fit stops with
    TrainingError naming the parameter and the epoch, and keeps the (finite) parameters of epoch 2."""
    m = load_model("rbm", seed=5)
    kw = dict(FIT, lr_schedule=lambda e: 0.1 * 0.9 ** e if e < 2 else 1e39)
    with pytest.raises(TrainingError, match=r"parameter W became NaN or infinite in epoch 3"):
        m.fit(DATA, epochs=6, **kw)
    assert all(np.all(np.isfinite(v)) for v in m.params.values())
    assert same_params(m.params, reference_run["after"][1])
    # from the first epoch: the initial parameters are kept
    m = load_model("rbm", seed=5)
    start = snapshot(m)
    with pytest.raises(TrainingError, match=r"parameter W became NaN or infinite in epoch 1"):
        m.fit(DATA, epochs=2, **dict(FIT, lr=1e300, lr_schedule=None))
    assert same_params(m.params, start)
    assert issubclass(TrainingError, ValueError)


def test_variational_equals_pcd_when_the_posterior_factorises(reference_run):
    """For an RBM the iterated mean-field positive phase stops after one pass at the exact
    conditional means, so method="variational" takes exactly the PCD steps."""
    m = load_model("rbm", seed=5)
    assert m.fit(DATA, epochs=6, **dict(FIT, method="variational")) == reference_run["history"]
    assert same_params(m.params, reference_run["params"])
