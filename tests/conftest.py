"""Shared fixtures: every shipped model, loaded once per session at a tiny size.

The session fixtures below carry random, non-trivial parameters (normal(0, 1)-scale
weights, non-zero biases) so that their distributions are far from uniform. They are
shared between tests: treat them as read-only (sampling advances their random
stream, which is fine). A test that needs to change parameters or to control the
seed should build its own instance with `load_model(...)`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import gdsl
from small_data import digits_4x4

# The tests check numba's kernels, which the runtime uses once compiled; tests/test_tiers.py
# checks the numpy tier against them. No background compiles from the suite's processes.
os.environ.setdefault("GDSL_JIT", "numba")

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"

# Tiny sizes: small enough to enumerate every joint state (at most 512 here).
TINY = {
    "rbm": dict(nv=4, nh=3),                 # 2^7 = 128 joint states
    "grbm": dict(nv=2, nh=3, sigma=0.8),     # 2^3 hidden states, v real
    "dbm": dict(nv=3, n1=3, n2=2),           # 2^8 = 256
    "bm": dict(nv=5, nh=3),                  # 2^8 = 256 (lateral v: site-by-site sweep)
    "softmax_rbm": dict(nv=3, nh=2, k=3),    # 2^3 * 3 * 2^2 = 96
    "threeway": dict(nx=3, ny=2, nh=2),      # 2^7 = 128
    "ising": dict(n=3, m=3),                 # 2^9 = 512 (spin lattice, checkerboard)
}


# Not shipped: an RBM with spin units on both layers, so that spins also go through the
# block (non-lateral) sampler and the log 2cosh free energy, which no shipped model uses.
SPIN_RBM = """
model spin_rbm(nv = 4, nh = 3) {
    visible v[nv]: spin
    latent  h[nh]: spin

    param W[nv, nh] ~ normal(0, 0.01)
    param b[nv]
    param c[nh]

    energy -(v @ W @ h) - b @ v - c @ h
}
"""


def model_path(name: str) -> str:
    return str(MODELS / f"{name}.gdl")


def load_model(name: str, seed=0, **overrides):
    """A fresh instance of a shipped model at its tiny size (overrides replace sizes/constants)."""
    sizes = dict(TINY[name])
    sizes.update(overrides)
    return gdsl.load(model_path(name), seed=seed, **sizes)


def random_params(model, seed: int, weight_scale: float = 1.0, bias_scale: float = 0.5) -> dict:
    """Non-trivial parameters for `model`: N(0, weight_scale) weights, N(0, bias_scale) biases.

    Matrices (ndim >= 2) are weights; vectors are biases; `symmetric` / `zero_diag`
    constraints are honoured. Scalars (the Ising coupling and field) are left alone."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, cons in model.PARAMS:
        shape = model.shape(name)
        if len(shape) == 0:
            continue
        if len(shape) == 1:
            out[name] = rng.normal(0.0, bias_scale, size=shape)
            continue
        value = rng.normal(0.0, weight_scale, size=shape)
        if "symmetric" in cons:
            value = np.triu(value, 1)
            value = value + value.T
            if "zero_diag" not in cons:
                value += np.diag(rng.normal(0.0, weight_scale, size=shape[0]))
        out[name] = value
    return out


def _prepared(name: str, seed: int, **param_kw):
    m = load_model(name, seed=seed)
    m.params = random_params(m, seed=1000 + seed, **param_kw)
    return m


@pytest.fixture(scope="session")
def rbm():
    return _prepared("rbm", 1)


@pytest.fixture(scope="session")
def grbm():
    return _prepared("grbm", 2)


@pytest.fixture(scope="session")
def dbm():
    return _prepared("dbm", 3)


@pytest.fixture(scope="session")
def bm():
    return _prepared("bm", 4)


@pytest.fixture(scope="session")
def softmax_rbm():
    return _prepared("softmax_rbm", 5)


@pytest.fixture(scope="session")
def threeway():
    return _prepared("threeway", 6)


@pytest.fixture(scope="session")
def ising():
    m = load_model("ising", seed=7)
    # Near the 2-d critical coupling (~0.44) with a field: strongly correlated and
    # far from uniform, yet a 3x3 lattice still mixes quickly.
    m.params["J"] = np.full(m.shape("J"), 0.45)
    m.params["field"] = np.full(m.shape("field"), 0.15)
    return m


@pytest.fixture(scope="session")
def spin_rbm(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "spin_rbm.gdl"
    path.write_text(SPIN_RBM)
    m = gdsl.load(str(path), seed=8)
    # spins double every field (P(+1) = sigmoid(2 f)): smaller weights keep the law spread out
    m.params = random_params(m, seed=1008, weight_scale=0.6, bias_scale=0.3)
    return m


@pytest.fixture(scope="session")
def digits4x4():
    """small_data.digits_4x4(): 4x4 digits as binary, real and label arrays, and a split."""
    return digits_4x4()


def differences(model, objective, eps: float = 1e-5) -> dict:
    """Central differences of objective() (a number computed from the model) with respect to every
    element of every parameter: {name: array of the parameter's shape}. The parameters are put
    back as they were."""
    out = {}
    for name in model.params:
        base = np.array(model.params[name], dtype=np.float64)
        grad = np.zeros_like(base)
        for at in np.ndindex(base.shape):
            step = np.zeros_like(base)
            step[at] = eps
            model.params[name] = base + step
            up = objective()
            model.params[name] = base - step
            down = objective()
            grad[at] = (up - down) / (2 * eps)
        model.params[name] = base
        out[name] = grad
    return out
