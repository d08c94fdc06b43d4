"""Language semantics checked through compiled models: what an expression means."""
import numpy as np
import pytest

import gdsl

SOURCE = """
model sem(n = 5) {
    visible x[n]: binary
    param visible_bias[n] ~ normal(0, 1)
    param latent_scale = 2.0
    energy -visible_bias @ x - latent_scale * x[-1] - 3 * x[0] * x[-2]
}
"""


def _load(directory, name, text):
    path = directory / f"{name}.gdl"
    path.write_text(text)
    return gdsl.load(path, seed=0)


@pytest.fixture
def model(tmp_path):
    """A fresh instance for every test: some tests set parameters, and none may see another's.

    (The compiled module is cached, so this costs an instantiation, not a compilation.)"""
    return _load(tmp_path, "sem", SOURCE)


def test_names_may_start_with_keywords(model):
    assert set(model.params) == {"visible_bias", "latent_scale"}


def test_negative_subscripts_count_from_the_end(model):
    rng = np.random.default_rng(0)
    x = (rng.random((50, 5)) < 0.5).astype(np.float32)
    b = model.params["visible_bias"].astype(np.float64)
    expected = -x @ b - 2.0 * x[:, -1] - 3.0 * x[:, 0] * x[:, -2]
    np.testing.assert_allclose(model.energy({"x": x}), expected, rtol=1e-5, atol=1e-5)


def test_scalar_parameter_reads_back_as_a_scalar(model):
    assert np.shape(model.params["latent_scale"]) == ()
    model.params["latent_scale"] = 1.5
    assert float(model.params["latent_scale"]) == 1.5


def test_fixed_element_coupling_samples_the_exact_distribution(model):
    """x[0] * x[-2] couples two fixed elements: swept site by site, checked against enumeration.

    32 states, 200,000 samples (400 chains, 2 sweeps apart). Exact i.i.d. draws would give
    TV about 0.5 * sum(sqrt(2 p / (pi N))) = 0.004; the threshold 0.015 allows for chain
    autocorrelation. Wrong conditionals are far away: ignoring the coupling gives TV 0.47,
    half of it 0.14, double it (the diagonal counted twice) 0.049."""
    model.params["visible_bias"] = np.array([0.5, -1.0, 0.3, 1.2, -0.4])
    model.params["latent_scale"] = -1.0
    states = np.array(np.meshgrid(*[[0.0, 1.0]] * 5, indexing="ij")).reshape(5, -1).T
    b = model.params["visible_bias"].astype(np.float64)
    energy = -states @ b + 1.0 * states[:, -1] - 3 * states[:, 0] * states[:, -2]
    p = np.exp(-energy - np.logaddexp.reduce(-energy))
    s = model.sample(200_000, chains=400, burn_in=50, steps=2)["x"]
    codes = (s.astype(int) * (2 ** np.arange(4, -1, -1))).sum(1)
    empirical = np.bincount(codes, minlength=32) / len(codes)
    assert 0.5 * np.abs(empirical - p).sum() < 0.015


INDEPENDENT = "model ind(n = 3) { visible x[n]: binary  param b[n] = 0.5  energy -b @ x }"


@pytest.fixture(scope="module")
def independent(tmp_path_factory):
    """Shared by the tests below, which only read it: a test that sets parameters needs its own."""
    return _load(tmp_path_factory.mktemp("ind"), "ind", INDEPENDENT)


def test_log_partition_when_everything_sums_out(independent):
    # x sums out analytically, so nothing is enumerated: log Z = n * softplus(0.5)
    assert independent.log_partition() == pytest.approx(3 * np.logaddexp(0.0, 0.5), rel=1e-12)


def test_mean_field_without_evidence(independent):
    mu = independent.mean_field({})["x"]
    np.testing.assert_allclose(mu, np.full((1, 3), 1 / (1 + np.exp(-0.5))), rtol=1e-6)


def test_mask_for_a_group_outside_the_evidence_is_refused(independent):
    with pytest.raises(ValueError, match="not in the evidence"):
        independent.mean_field({}, mask={"x": True})


SQUARED_SPINS = """
model sq(n = 4) {
    visible s[n]: spin
    param J = 0.4
    energy -J * sum[i](s[i]^2 * s[i + 1]^3) - J * sum[i](s[i]^2)
}
"""


def test_a_factor_the_domain_removes_still_bounds_the_sum(tmp_path):
    """s^2 = 1 for spins, but sum[i](s[i]^2 * s[i + 1]) still runs where both exist (n - 1 terms,
    not n), and sum[i](s[i]^2) is n."""
    m = _load(tmp_path, "sq", SQUARED_SPINS)
    s = np.where(np.random.default_rng(1).random((20, 4)) < 0.5, -1.0, 1.0)
    expected = -0.4 * s[:, 1:].sum(1) - 0.4 * 4
    np.testing.assert_allclose(m.energy({"s": s}), expected, rtol=1e-5, atol=1e-5)
