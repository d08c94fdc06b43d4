"""The Parzen-window log-likelihood estimate (gdsl/runtime/parzen.py): against the plain formula,
the choice of the kernel width, convergence on a known Gaussian, and the refusals."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import gdsl
from gdsl.runtime.parzen import ParzenEstimate, default_sigmas, parzen_log_density, select_bandwidth


def direct(samples, x, sigma):
    """The formula written out: every pairwise distance at once, no blocks, log-sum-exp by hand."""
    samples, x = np.asarray(samples, float), np.asarray(x, float)
    k, d = samples.shape
    sq = ((x[:, None, :] - samples[None, :, :]) ** 2).sum(axis=2)
    a = -sq / (2 * sigma ** 2)
    top = a.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(a - top).sum(axis=1))
    return lse - math.log(k) - 0.5 * d * math.log(2 * math.pi * sigma ** 2)


@pytest.fixture
def small():
    rng = np.random.default_rng(3)
    return rng.normal(size=(37, 6)), rng.normal(size=(19, 6)), rng.normal(size=(25, 6))


@pytest.mark.parametrize("sigma", [0.02, 0.3, 1.0, 7.0])
@pytest.mark.parametrize("batch_size", [1, 5, 1000])
def test_matches_the_plain_formula(small, sigma, batch_size):
    samples, test, _ = small
    got = parzen_log_density(samples, test, sigma, batch_size=batch_size)
    np.testing.assert_allclose(got, direct(samples, test, sigma), rtol=1e-10, atol=1e-9)
    est = gdsl.parzen_log_likelihood(samples, test, sigma=sigma, batch_size=batch_size)
    ref = direct(samples, test, sigma)
    assert isinstance(est, ParzenEstimate)
    assert est.sigma == sigma and est.sigmas is None and est.validation_means is None
    np.testing.assert_allclose(est.log_p, ref, rtol=1e-10, atol=1e-9)
    assert est.mean == pytest.approx(ref.mean(), rel=1e-12, abs=1e-9)
    assert est.se == pytest.approx(ref.std(ddof=1) / math.sqrt(len(ref)), rel=1e-9)


def test_tiny_width_far_points_do_not_underflow():
    # every exponent is about -1e6: a naive exp gives 0 and log 0 = -inf
    samples = np.array([[0.0, 0.0], [3.0, 4.0]])
    x = np.array([[10.0, 10.0], [0.0, 0.1]])
    got = parzen_log_density(samples, x, 0.01)
    assert np.all(np.isfinite(got))
    # the nearest sample dominates: log p = -dmin^2 / (2 s^2) - log 2 - log(2 pi s^2)
    dmin = np.array([min(np.sum((p - s) ** 2) for s in samples) for p in x])
    np.testing.assert_allclose(got, -dmin / 2e-4 - math.log(2) - math.log(2 * math.pi * 1e-4), rtol=1e-12)


def test_several_widths_at_once(small):
    samples, test, _ = small
    widths = np.array([0.1, 0.5, 2.0])
    got = parzen_log_density(samples, test, widths, batch_size=4)
    assert got.shape == (3, len(test))
    for row, s in zip(got, widths):
        np.testing.assert_allclose(row, direct(samples, test, s), rtol=1e-10)


def test_bandwidth_is_the_grid_value_best_on_validation(small):
    samples, test, valid = small
    grid = np.geomspace(0.05, 20.0, 17)
    est = gdsl.parzen_log_likelihood(samples, test, validation=valid, sigmas=grid, batch_size=8)
    means = np.array([direct(samples, valid, s).mean() for s in grid])
    np.testing.assert_allclose(est.validation_means, means, rtol=1e-10)
    np.testing.assert_array_equal(est.sigmas, grid)
    assert est.sigma == grid[np.argmax(means)]
    assert 0 < np.argmax(means) < len(grid) - 1  # an interior maximum on this data
    np.testing.assert_allclose(est.log_p, direct(samples, test, est.sigma), rtol=1e-10)
    sigma, g, m = select_bandwidth(samples, valid, grid)
    assert sigma == est.sigma
    np.testing.assert_allclose(m, est.validation_means, rtol=1e-12)


def test_default_grid_and_edge_warning(small):
    samples, test, valid = small
    grid = default_sigmas(samples)
    assert len(grid) == 31 and np.all(np.diff(np.log(grid)) > 0)
    scale = math.sqrt(np.var(samples, axis=0).mean())
    assert grid[0] == pytest.approx(scale / 100) and grid[-1] == pytest.approx(scale * 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = gdsl.parzen_log_likelihood(samples, test, validation=valid)
    assert est.sigma in grid
    # a grid whose best value is its end says so
    with pytest.warns(RuntimeWarning, match="largest of the grid"):
        gdsl.parzen_log_likelihood(samples, test, validation=valid, sigmas=[0.01, 0.02, 0.03])


def test_approaches_the_true_density_of_a_known_gaussian():
    """Samples of N(m, s^2 I) in 2 dimensions: with more samples (and the width chosen on a
    validation set) the estimate of the mean test log-density closes in on the true value."""
    rng = np.random.default_rng(0)
    d, m, s = 2, np.array([1.0, -2.0]), 0.7
    test = m + s * rng.normal(size=(4000, d))
    valid = m + s * rng.normal(size=(2000, d))
    true = (-0.5 * ((test - m) ** 2).sum(1) / s ** 2 - 0.5 * d * math.log(2 * math.pi * s ** 2)).mean()
    errors = []
    for k in (30, 300, 3000):
        samples = m + s * rng.normal(size=(k, d))
        est = gdsl.parzen_log_likelihood(samples, test, validation=valid, sigmas=np.geomspace(0.01, 3, 40))
        errors.append(abs(est.mean - true))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.03
    # the true density's own test mean is about -2.33 nats; an error of 0.03 is about 1%
    assert abs(true) > 1


def test_training_points_score_themselves_higher_with_smaller_widths(small):
    samples, _, _ = small
    a = gdsl.parzen_log_likelihood(samples, samples, sigma=0.01).mean
    b = gdsl.parzen_log_likelihood(samples, samples, sigma=0.1).mean
    assert a > b  # the overfitting a validation set guards against


def test_integer_and_boolean_inputs_are_accepted():
    x = np.array([[0, 1, 1], [1, 0, 0]], dtype=np.uint8)
    est = gdsl.parzen_log_likelihood(x.astype(bool), x, sigma=0.5)
    np.testing.assert_allclose(est.log_p, direct(x, x, 0.5))


@pytest.mark.parametrize("call, match", [
    (lambda s, t, v: gdsl.parzen_log_likelihood(s, t[:, :5], sigma=1.0),
     r"test must have shape \(n, 6\) like samples, with 6 columns, got shape \(19, 5\)"),
    (lambda s, t, v: gdsl.parzen_log_likelihood(s, t, validation=v[:, :4]),
     r"validation must have shape \(n, 6\) like samples.*got shape \(25, 4\)"),
    (lambda s, t, v: gdsl.parzen_log_likelihood(s[0], t, sigma=1.0),
     r"samples must be a 2-D array of shape \(n, d\).*got shape \(6,\)"),
    (lambda s, t, v: gdsl.parzen_log_likelihood(s, t[None], sigma=1.0),
     r"test must be a 2-D array of shape \(n, 6\)"),
    (lambda s, t, v: gdsl.parzen_log_likelihood(s[:0], t, sigma=1.0),
     r"samples must have shape \(n, d\) with at least one row.*got shape \(0, 6\)"),
    (lambda s, t, v: gdsl.parzen_log_likelihood(s, t[:0], sigma=1.0),
     r"test must have shape \(n, 6\) with at least one row.*got shape \(0, 6\)"),
    (lambda s, t, v: gdsl.parzen_log_likelihood(np.zeros((3, 0)), np.zeros((2, 0)), sigma=1.0),
     r"samples must have shape \(n, d\) with at least one row and one column, got shape \(3, 0\)"),
    (lambda s, t, v: gdsl.parzen_log_likelihood(np.where(np.arange(6) == 2, np.nan, s), t, sigma=1.0),
     r"samples must hold finite numbers: row 0, column 2 is nan"),
    (lambda s, t, v: gdsl.parzen_log_likelihood(s, np.where(np.arange(6) == 1, np.inf, t), sigma=1.0),
     r"test must hold finite numbers: row 0, column 1 is inf"),
    (lambda s, t, v: gdsl.parzen_log_likelihood(s, t, validation=np.full((2, 6), -np.inf)),
     r"validation must hold finite numbers: row 0, column 0 is -inf"),
    (lambda s, t, v: gdsl.parzen_log_likelihood(s + 1j, t, sigma=1.0), r"samples must be a real-valued"),
    (lambda s, t, v: gdsl.parzen_log_likelihood(s, t, sigma=0.0), r"sigma must be a finite number > 0"),
    (lambda s, t, v: gdsl.parzen_log_likelihood(s, t, sigma=np.nan), r"sigma must be a finite number > 0"),
    (lambda s, t, v: gdsl.parzen_log_likelihood(s, t, sigma=1e-200), r"sigma must lie between 1e-150 and 1e\+150"),
    (lambda s, t, v: gdsl.parzen_log_likelihood(s, t, validation=v, sigmas=[1.0, 1e160]),
     r"sigmas must lie between .* got 1e\+160"),
    (lambda s, t, v: gdsl.parzen_log_likelihood(s, t), r"give sigma, or a validation set"),
    (lambda s, t, v: gdsl.parzen_log_likelihood(s, t, sigma=1.0, validation=v), r"not both"),
    (lambda s, t, v: gdsl.parzen_log_likelihood(s, t, sigma=1.0, sigmas=[1.0]), r"sigmas is the grid"),
    (lambda s, t, v: gdsl.parzen_log_likelihood(s, t, validation=v, sigmas=[]), r"sigmas must be a non-empty"),
    (lambda s, t, v: gdsl.parzen_log_likelihood(s, t, validation=v, sigmas=[0.1, -1.0]),
     r"sigmas must hold finite numbers > 0, got -1.0"),
    (lambda s, t, v: gdsl.parzen_log_likelihood(s, t, sigma=1.0, batch_size=0), r"batch_size must be a whole"),
    (lambda s, t, v: gdsl.parzen_log_likelihood(s, t, sigma=1.0, batch_size=10.0), r"batch_size must be a whole"),
    (lambda s, t, v: parzen_log_density(s, t[:, :2], 1.0), r"x must have shape \(n, 6\) like samples"),
])
def test_bad_inputs_raise_value_errors_naming_the_argument(small, call, match):
    samples, test, valid = small
    with pytest.raises(ValueError, match=match):
        call(samples, test, valid)


def test_inputs_are_not_modified(small):
    samples, test, valid = small
    copies = [a.copy() for a in small]
    gdsl.parzen_log_likelihood(samples, test, validation=valid, sigmas=[0.5, 1.0, 2.0], batch_size=3)
    for a, b in zip(small, copies):
        np.testing.assert_array_equal(a, b)


def test_str():
    est = gdsl.parzen_log_likelihood(np.zeros((2, 1)), np.ones((3, 1)), sigma=1.0)
    assert str(est).startswith(f"{est.mean:.2f} ± ") and "sigma 1" in str(est)
