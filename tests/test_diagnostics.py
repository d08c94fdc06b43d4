"""MCMC diagnostics through ArviZ (issue 23, item 5): gdsl.to_inferencedata.

R-hat compares chains: a chain split along the wrong axis, or chains mixed together, would
hide exactly what it must show. So: on an RBM that mixes in a sweep, R-hat of the energy and
of the group means is near 1 and the effective sample size is a fair part of the draws; on an
RBM with two modes it cannot leave in 100 sweeps (chains started two in each mode), R-hat is
far above 1 and ESS is tiny."""
from __future__ import annotations

import numpy as np
import pytest

import gdsl
from conftest import load_model, random_params

az = pytest.importorskip("arviz")


@pytest.fixture(scope="module")
def rbm():
    m = load_model("rbm", seed=1)
    m.params = random_params(m, 2)
    return m


def test_a_mixing_sampler_has_r_hat_near_one(rbm):
    s = rbm.sample(800, steps=1, chains=4)
    idata = gdsl.to_inferencedata(s, chains=4, model=rbm)
    assert dict(idata.posterior.sizes)["chain"] == 4 and dict(idata.posterior.sizes)["draw"] == 200
    rhat = az.rhat(idata, var_names=["energy", "v_mean", "h_mean"])
    ess = az.ess(idata, var_names=["energy", "v_mean", "h_mean"])
    for name in ("energy", "v_mean", "h_mean"):
        assert np.isfinite(float(rhat[name])) and float(rhat[name]) < 1.05, name
        assert 150 < float(ess[name]) < 2000, name
    assert idata.posterior["v"].shape == (4, 200, 4)  # the groups themselves, per chain and draw
    np.testing.assert_allclose(idata.posterior["energy"].values.reshape(-1), rbm.energy(s))


def test_chains_stuck_in_different_modes_are_flagged(rbm):
    stuck = load_model("rbm", seed=1)
    stuck.params = {"W": np.full((4, 3), 6.0), "b": np.full(4, -9.0), "c": np.full(3, -9.0)}
    init = {"v": np.repeat([[0.0] * 4, [1.0] * 4], 2, axis=0), "h": np.repeat([[0.0] * 3, [1.0] * 3], 2, axis=0)}
    s = stuck.sample(400, steps=1, chains=4, init=init)
    idata = gdsl.to_inferencedata(s, chains=4, model=stuck)
    with np.errstate(divide="ignore", invalid="ignore"):
        assert float(az.rhat(idata, var_names=["energy"])["energy"]) > 1.5
        assert float(az.ess(idata, var_names=["v_mean"])["v_mean"]) < 20


def test_bad_splits_are_explained(rbm):
    s = rbm.sample(12, steps=1, chains=3)
    with pytest.raises(ValueError, match="cannot be split into 5 chains"):
        gdsl.to_inferencedata(s, chains=5)
    with pytest.raises(ValueError, match="at least 4 draws"):
        gdsl.to_inferencedata(s, chains=6)
    with pytest.raises(ValueError, match=r"samples\['h'\] must have the draws along its first axis"):
        gdsl.to_inferencedata({"v": s["v"], "h": s["h"][:5]}, chains=3)
