"""gdsl.distributed on a LocalCluster of two worker processes (issue 24, item 3).

Each function cuts its work into parts whose random streams are drawn before anything is sent,
so the cluster must give exactly what the same call gives here without a client (and AIS
exactly what log_partition gives with as many thread workers as parts). The workers rebuild the
model from its .gdl text: nothing compiled is pickled."""
from __future__ import annotations

import numpy as np
import pytest

import gdsl
from conftest import load_model, random_params

distributed = pytest.importorskip("dask.distributed")
from gdsl import distributed as gd  # noqa: E402


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def rbm(seed):
    m = load_model("rbm", seed=seed)
    m.params = random_params(m, 4)
    return m


def test_ais_on_the_cluster_is_the_local_ais(client):
    betas = np.linspace(0.0, 1.0, 60)
    here = rbm(5).log_partition(method="ais", runs=8, betas=betas, workers=2)
    there_model = rbm(5)
    there = gd.log_partition(there_model, client, runs=8, betas=betas, parts=2)
    assert there == here and there_model.last_ais["log_weights"].shape == (8,)
    assert abs(there.log_z - rbm(5).log_partition()) < 0.5  # and it estimates log Z (exact: 2^4 states)
    assert gd.log_partition(rbm(5), None, runs=8, betas=betas, parts=2) == here


def test_samples_and_fits_on_the_cluster_are_the_local_ones(client):
    there = gd.sample(rbm(6), 8, client, parts=2, steps=3)
    here = gd.sample(rbm(6), 8, None, parts=2, steps=3)
    assert there.keys() == here.keys() and all(np.array_equal(there[g], here[g]) for g in here)
    data = {"v": (np.random.default_rng(0).random((40, 4)) < 0.5).astype(np.float32)}
    fits = gd.sweep(rbm(7), {"lr": [0.01, 0.1]}, data, client, repeats=2, epochs=2, batch_size=10)
    again = gd.sweep(rbm(7), {"lr": [0.01, 0.1]}, data, None, repeats=2, epochs=2, batch_size=10)
    assert [f["options"]["lr"] for f in fits] == [0.01, 0.01, 0.1, 0.1]
    for a, b in zip(fits, again):
        assert a["seed"] == b["seed"] and a["history"] == b["history"]
        assert all(np.array_equal(a["params"][k], b["params"][k]) for k in a["params"])
    assert fits[0]["seed"] != fits[1]["seed"]  # the repeats differ


def test_bad_arguments_are_explained():
    m = rbm(1)
    with pytest.raises(ValueError, match=r"n \(7\) must be a multiple of parts \(2\)"):
        gd.sample(m, 7, None, parts=2)
    with pytest.raises(ValueError, match="grid\\['lr'\\] must be a list"):
        gd.sweep(m, {"lr": 0.1}, {"v": np.zeros((2, 4))})
    with pytest.raises(ValueError, match="method must be 'ais' or 'reverse-ais'"):
        gd.log_partition(m, None, method="exact")
    assert gdsl.distributed is gd
