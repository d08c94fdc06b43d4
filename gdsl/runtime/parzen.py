"""Parzen-window (Gaussian kernel density) log-likelihood estimates from samples.

A model whose density cannot be evaluated (a GAN, a GSN, or any sampler) is scored by
placing an isotropic Gaussian of width sigma on each of its samples mu_1..mu_k and
evaluating the test set under that mixture:

    log p(x) = logsumexp_i( -|x - mu_i|^2 / (2 sigma^2) ) - log k - (d / 2) log(2 pi sigma^2)

sigma is chosen on a validation set, as the value of a grid that gives the validation set
the highest mean log-likelihood (Breuleux, Bengio & Vincent 2011; Goodfellow et al. 2014).
docs/evaluation.md says what the estimate is worth (not much: Theis, van den Oord & Bethge 2016).

Implementation: the squared distances of a block of test rows to a block of samples come
from one matrix product, |x|^2 + |mu|^2 - 2 x.mu, in float64; the log-sum-exp over the
samples is accumulated block by block against the running smallest distance of each test
row, so no block overflows or underflows and memory stays at a few blocks of
batch_size x batch_size numbers, whatever the numbers of rows. Every sigma of a grid
shares the same distances.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from .checks import numeric_array, real, whole

DEFAULT_BATCH = 1000
SIGMA_RANGE = (1e-150, 1e150)
GRID_POINTS = 31  # the default grid: 10 points per decade, from 1/100 to 10 times the samples' scale


@dataclass(frozen=True)
class ParzenEstimate:
    """The result of `parzen_log_likelihood`.

    mean, se: the mean log-likelihood of the test rows and its standard error (the sample
    standard deviation of `log_p` over sqrt of the number of rows); sigma: the kernel width
    used; log_p: the log-density of each test row; sigmas, validation_means: the grid searched
    and the mean validation log-likelihood at each of its points (None when sigma was given).
    """
    mean: float
    se: float
    sigma: float
    log_p: np.ndarray
    sigmas: np.ndarray | None = None
    validation_means: np.ndarray | None = None

    def __str__(self) -> str:
        return f"{self.mean:.2f} ± {self.se:.2f} (sigma {self.sigma:.4g})"


def _rows(value, what: str, columns: int | None = None, like: str = "samples") -> np.ndarray:
    """A (n, d) float64 array with n, d >= 1 and finite values, or a ValueError that names `what`."""
    arr = numeric_array(value, np.float64, what)
    expected = f"(n, {columns})" if columns is not None else "(n, d)"
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array of shape {expected}, one row per point"
                         f"{f' (d = {columns}, as {like})' if columns is not None else ''}, got shape {arr.shape}")
    if columns is not None and arr.shape[1] != columns:
        raise ValueError(f"{what} must have shape {expected} like {like}, with {columns} columns, "
                         f"got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{what} must have shape {expected} with at least one row and one column, "
                         f"got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"{what} must hold finite numbers: row {r}, column {c} is {float(arr[r, c])!r}")
    return arr


def _sigma_grid(sigmas, what: str = "sigmas") -> np.ndarray:
    grid = numeric_array(sigmas, np.float64, what)
    if grid.ndim == 0:
        grid = grid.reshape(1)
    if grid.ndim != 1 or grid.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-D array of kernel widths, got shape {grid.shape}")
    if not np.all(np.isfinite(grid) & (grid > 0)):
        bad = float(grid[~(np.isfinite(grid) & (grid > 0))][0])
        raise ValueError(f"{what} must hold finite numbers > 0, got {bad!r}")
    return _usable(grid, what)


def _usable(grid: np.ndarray, what: str) -> np.ndarray:
    """Widths whose square neither underflows nor overflows (1/sigma^2 and log sigma^2 stay finite)."""
    bad = grid[(grid < SIGMA_RANGE[0]) | (grid > SIGMA_RANGE[1])]
    if bad.size:
        raise ValueError(f"{what} must lie between {SIGMA_RANGE[0]:g} and {SIGMA_RANGE[1]:g} (its square must be "
                         f"a normal float64), got {float(bad[0])!r}")
    return grid


def default_sigmas(samples) -> np.ndarray:
    """The default grid: 31 widths, 10 per decade, from 1/100 to 10 times the samples' scale
    (the root mean per-column variance; 1 if the samples are all the same)."""
    x = _rows(samples, "samples")
    scale = math.sqrt(float(np.mean(np.var(x, axis=0))))
    scale = scale if scale > 0 else 1.0
    return scale * np.logspace(-2, 1, GRID_POINTS)


def _log_density(samples: np.ndarray, x: np.ndarray, sigmas: np.ndarray, batch_size: int) -> np.ndarray:
    """log p(x) under the kernel density for every width: shape (len(sigmas), len(x))."""
    k, d = samples.shape
    inv = -0.5 / sigmas**2  # (s,)
    sample_sq = np.einsum("ij,ij->i", samples, samples)
    out = np.empty((len(sigmas), len(x)))
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        x_sq = np.einsum("ij,ij->i", xb, xb)
        nearest = np.full(len(xb), np.inf)  # each row's smallest squared distance so far
        sums = np.zeros((len(sigmas), len(xb)))  # sum_i exp(inv * (dist_i - nearest))
        for s0 in range(0, k, batch_size):
            mu = samples[s0:s0 + batch_size]
            dist = xb @ mu.T
            dist *= -2.0
            dist += x_sq[:, None]
            dist += sample_sq[None, s0:s0 + batch_size]
            np.maximum(dist, 0.0, out=dist)  # rounding can take a zero distance below zero
            block_min = dist.min(axis=1)
            new = np.minimum(nearest, block_min)
            # rescale what was summed against the old nearest distance (exp(0) = 1 the first time)
            shift = np.where(np.isfinite(nearest), nearest - new, 0.0)
            sums *= np.exp(inv[:, None] * shift[None, :])
            nearest = new
            dist -= nearest[:, None]
            scaled = np.empty_like(dist)
            for j, a in enumerate(inv):
                np.multiply(dist, a, out=scaled)
                np.exp(scaled, out=scaled)
                sums[j] += scaled.sum(axis=1)
        out[:, start:start + len(xb)] = (inv[:, None] * nearest[None, :] + np.log(sums)
                                         - math.log(k) - 0.5 * d * np.log(2 * np.pi * sigmas**2)[:, None])
    return out


def parzen_log_density(samples, x, sigma, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """log p(x) per row of `x` under an isotropic Gaussian kernel density of width `sigma`
    centred on the rows of `samples`. With a 1-D array of widths, shape (len(sigma), len(x))."""
    samples = _rows(samples, "samples")
    x = _rows(x, "x", samples.shape[1])
    one = np.ndim(sigma) == 0
    sigmas = _sigma_grid(sigma, "sigma")
    batch_size = whole(batch_size, "batch_size", 1)
    out = _log_density(samples, x, sigmas, batch_size)
    return out[0] if one else out


def select_bandwidth(samples, validation, sigmas=None, batch_size: int = DEFAULT_BATCH) -> tuple:
    """The width of the grid `sigmas` (default `default_sigmas(samples)`) that gives `validation`
    the highest mean log-likelihood; returns (sigma, grid, mean validation log-likelihood per width).
    Warns when the best width is at an end of a grid of several widths (widen the grid)."""
    samples = _rows(samples, "samples")
    validation = _rows(validation, "validation", samples.shape[1])
    grid = default_sigmas(samples) if sigmas is None else _sigma_grid(sigmas)
    return _select(samples, validation, grid, whole(batch_size, "batch_size", 1), stacklevel=3)


def _select(samples, validation, grid, batch_size, stacklevel) -> tuple:
    means = _log_density(samples, validation, grid, batch_size).mean(axis=1)
    best = int(np.argmax(means))
    if grid.min() < grid.max() and grid[best] in (grid.min(), grid.max()):
        end = "smallest" if grid[best] == grid.min() else "largest"
        warnings.warn(f"the best kernel width, sigma = {grid[best]:.4g}, is the {end} of the grid searched; "
                      f"the maximum may lie beyond it: widen the grid (sigmas=...)", RuntimeWarning,
                      stacklevel=stacklevel)
    return float(grid[best]), grid, means


def parzen_log_likelihood(samples, test, sigma=None, validation=None, sigmas=None,
                          batch_size: int = DEFAULT_BATCH) -> ParzenEstimate:
    """The Parzen-window estimate of the mean test log-likelihood of a model given its samples.

    samples: (k, d) samples of the model; test: (n, d) points to evaluate. Give either `sigma`,
    the kernel width, or `validation`, a (m, d) set on which the width is chosen among `sigmas`
    (default: `default_sigmas(samples)`, 31 log-spaced widths). batch_size bounds the blocks
    of the computation (batch_size^2 float64 numbers, a few times over). Returns a ParzenEstimate."""
    if sigma is not None and validation is not None:
        raise ValueError("give sigma (a kernel width) or validation (a set to choose it on), not both")
    if sigma is None and validation is None:
        raise ValueError("the kernel width is unknown: give sigma, or a validation set to choose it on "
                         "(choosing it on the test set itself would overstate the estimate)")
    if sigma is not None and sigmas is not None:
        raise ValueError("sigmas is the grid searched on the validation set: give it with validation, not sigma")
    samples = _rows(samples, "samples")
    test = _rows(test, "test", samples.shape[1])
    batch_size = whole(batch_size, "batch_size", 1)
    grid = means = None
    if sigma is None:
        validation = _rows(validation, "validation", samples.shape[1])
        grid = default_sigmas(samples) if sigmas is None else _sigma_grid(sigmas)
        sigma, grid, means = _select(samples, validation, grid, batch_size, stacklevel=3)
    else:
        sigma = float(_usable(np.array([real(sigma, "sigma", 0.0, low_open=True)]), "sigma")[0])
    log_p = _log_density(samples, test, np.array([sigma]), batch_size)[0]
    se = float(np.std(log_p, ddof=1) / math.sqrt(len(log_p))) if len(log_p) > 1 else float("nan")
    return ParzenEstimate(float(np.mean(log_p)), se, float(sigma), log_p, grid, means)
