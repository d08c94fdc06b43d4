"""A check that an RBM block-Gibbs sampler samples the right distribution, shared by the gdsl and
PyTorch sides of bench/gibbs.py (numpy only: imported by both worker processes).

A small RBM (10 visible, 8 hidden units, strong couplings) is enumerated exactly; the sampler
under test runs SMALL_CHAINS independent chains for SMALL_STEPS sweeps, and the visible
marginals P(v_i = 1) and the correlations E[v_i h_j] of the final states are compared with the
exact values, in units of their Monte Carlo standard errors.
"""
from __future__ import annotations

import numpy as np

SMALL_NV, SMALL_NH, SMALL_CHAINS, SMALL_STEPS = 10, 8, 4000, 500


def small_model_params(seed: int = 123):
    """A small RBM with strong couplings (so the check is not passed by a sampler that ignores
    them): W ~ N(0, 1), biases ~ N(0, 0.5)."""
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 1.0, (SMALL_NV, SMALL_NH)), rng.normal(0, 0.5, SMALL_NV), rng.normal(0, 0.5, SMALL_NH))


def exact_marginals(W, b, c):
    """P(v_i = 1) and E[v_i h_j] by enumerating the 2^nv visible states (h summed out)."""
    nv = W.shape[0]
    V = ((np.arange(2 ** nv)[:, None] >> np.arange(nv)) & 1).astype(np.float64)
    logp = V @ b + np.logaddexp(0.0, V @ W + c).sum(axis=1)
    p = np.exp(logp - logp.max())
    p /= p.sum()
    ph = 1.0 / (1.0 + np.exp(-(V @ W + c)))
    return p @ V, (V * p[:, None]).T @ ph


def small_model_check(sample) -> dict:
    """Run `sample(W, b, c, v0, h0, steps) -> (v, h)` on SMALL_CHAINS chains of the small model
    and compare the visible marginals and the v-h correlations with the exact ones. Returns the
    largest absolute errors and the largest error in units of its Monte Carlo standard error."""
    W, b, c = small_model_params()
    rng = np.random.default_rng(7)
    v0 = (rng.random((SMALL_CHAINS, SMALL_NV)) < 0.5).astype(np.float32)
    h0 = (rng.random((SMALL_CHAINS, SMALL_NH)) < 0.5).astype(np.float32)
    v, h = sample(W, b, c, v0, h0, SMALL_STEPS)
    v, h = np.asarray(v, np.float64), np.asarray(h, np.float64)
    pv, vh = exact_marginals(W, b, c)
    ev, evh = v.mean(0), (v.T @ h) / len(v)
    se_v = np.sqrt(pv * (1 - pv) / len(v))
    se_vh = np.sqrt(np.clip(vh * (1 - vh), 1e-12, None) / len(v))
    return {"max_err_v": float(np.abs(ev - pv).max()), "max_err_vh": float(np.abs(evh - vh).max()),
            "max_z": float(max((np.abs(ev - pv) / se_v).max(), (np.abs(evh - vh) / se_vh).max()))}
