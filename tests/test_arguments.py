"""Plain arguments of the public API (counts, rates, tolerances, log Z, seeds): a bad value
is a ValueError that names the argument, never a silent truncation (sample(1.5) used to
draw one sample) or a TypeError / OverflowError from inside numpy."""
from __future__ import annotations

import math

import numpy as np
import pytest

import gdsl
from conftest import model_path
from gdsl.runtime.ais import AISEstimate
from gdsl.runtime.checks import generator, real, whole

NOT_COUNTS = [1.5, 2.0, "3", None, True, [2], float("nan"), float("-inf"), 2 ** 70]
NOT_REALS = ["0.1", None, [0.1], float("nan"), float("inf"), True, 1 + 0j]


def test_whole_accepts_python_and_numpy_integers():
    assert whole(3, "n") == 3 and type(whole(np.int32(3), "n")) is int
    assert whole(0, "steps") == 0


@pytest.mark.parametrize("value", NOT_COUNTS)
def test_whole_refuses_everything_else(value):
    with pytest.raises(ValueError, match=r"^n must be a whole number >= 1"):
        whole(value, "n", 1)


def test_whole_refuses_a_count_below_its_minimum():
    with pytest.raises(ValueError, match=r"steps must be a whole number >= 1, got 0"):
        whole(0, "steps", 1)


def test_real_checks_finiteness_and_the_interval():
    assert real(np.float32(0.5), "damping", 0.0, 1.0, high_open=True) == 0.5
    assert real(0, "damping", 0.0, 1.0, high_open=True) == 0.0
    with pytest.raises(ValueError, match=r"damping must be a finite number in \[0, 1\), got 1"):
        real(1, "damping", 0.0, 1.0, high_open=True)
    with pytest.raises(ValueError, match=r"lr must be a finite number > 0, got 0"):
        real(0, "lr", 0.0, low_open=True)
    for value in NOT_REALS:
        with pytest.raises(ValueError, match=r"^log_z must be a finite number, got"):
            real(value, "log_z")


def test_generator_turns_numpy_seed_errors_into_value_errors():
    assert generator(5).integers(100) == np.random.default_rng(5).integers(100)
    for seed in (1.5, "3", -1):
        with pytest.raises(ValueError, match="seed must be None or a whole number >= 0"):
            generator(seed)


@pytest.fixture(scope="module")
def sbn():
    return gdsl.load(model_path("sbn"), seed=0)


# (call, the argument's name in the message); each call gets the bad value as its only free argument
def _energy_calls(rbm, dbm):
    v = {"v": np.array([[0.0, 1.0, 0.0, 1.0]] * 2)}
    dv = {"v": np.zeros((2, 3))}
    short = np.linspace(0.0, 1.0, 5)
    return [
        (lambda x: rbm.sample(x, steps=1), "n"),
        (lambda x: rbm.sample(2, steps=x), "steps"),
        (lambda x: rbm.sample(2, steps=1, burn_in=x), "burn_in"),
        (lambda x: rbm.sample(2, steps=1, chains=x), "chains"),
        (lambda x: rbm.random_state(x), "n"),
        (lambda x: rbm.gibbs(rbm.random_state(2), steps=x), "steps"),
        (lambda x: dbm.mean_field(dv, max_iter=x), "max_iter"),
        (lambda x: rbm.log_partition("ais", runs=x, betas=short), "runs"),
        (lambda x: rbm.log_partition("ais", runs=4, workers=x, betas=short), "workers"),
        (lambda x: rbm.log_partition("reverse-ais", runs=4, burn_in=x, data=v, betas=short), "burn_in"),
        (lambda x: rbm.fit(v, epochs=x, batch_size=2, progress=False), "epochs"),
        (lambda x: rbm.fit(v, epochs=1, batch_size=x, progress=False), "batch_size"),
        (lambda x: rbm.fit(v, epochs=1, k=x, progress=False), "k"),
    ]


def test_energy_model_counts(rbm, dbm):
    for call, name in _energy_calls(rbm, dbm):
        for value in NOT_COUNTS:
            if value is None and name in ("chains", "workers"):
                continue  # chains=None: one chain per sample; workers=None: m.threads
            with pytest.raises(ValueError, match=rf"^{name} must be a whole number"):
                call(value)


def test_ais_workers_default_to_the_models_thread_count(rbm):
    betas = np.linspace(0.0, 1.0, 5)
    threads = rbm.threads
    try:
        results = []
        for count, workers in ((1, None), (1, 1), (2, None), (2, 2)):
            rbm.threads = count
            rbm._rng = np.random.default_rng(0)
            rbm.log_partition("ais", runs=4, workers=workers, betas=betas)
            results.append(rbm.last_ais["log_weights"].copy())
    finally:
        rbm.threads = threads
    assert np.array_equal(results[0], results[1]) and np.array_equal(results[2], results[3])


def test_energy_model_reals(rbm, dbm):
    v = {"v": np.array([[0.0, 1.0, 0.0, 1.0]] * 2)}
    calls = [
        (lambda x: dbm.mean_field({"v": np.zeros((2, 3))}, damping=x), "damping"),
        (lambda x: dbm.mean_field({"v": np.zeros((2, 3))}, tol=x), "tol"),
        (lambda x: rbm.log_partition(max_states=x), "max_states"),
        (lambda x: rbm.log_prob(v, max_states=x), "max_states"),
        (lambda x: rbm.log_prob(v, log_z=x), "log_z"),
        (lambda x: rbm.fit(v, epochs=1, lr=x, progress=False), "lr"),
        (lambda x: rbm.fit(v, epochs=1, momentum=x, progress=False), "momentum"),
        (lambda x: rbm.fit(v, epochs=1, weight_decay=x, progress=False), "weight_decay"),
    ]
    for call, name in calls:
        for value in NOT_REALS:
            if value is None and name == "log_z":
                continue  # log_z=None: computed exactly
            with pytest.raises(ValueError, match=rf"^{name} must be a finite number"):
                call(value)
    with pytest.raises(ValueError, match=r"tol must be a finite number >= 0, got -1"):
        dbm.mean_field({"v": np.zeros((2, 3))}, tol=-1)


def test_log_prob_takes_an_ais_estimate_as_log_z(rbm):
    v = {"v": np.array([[0.0, 1.0, 0.0, 1.0]] * 2)}
    exact = rbm.log_partition()
    np.testing.assert_array_equal(rbm.log_prob(v, log_z=AISEstimate(exact, 0.1)), rbm.log_prob(v, log_z=exact))


def test_ais_betas_with_a_nan_are_refused(rbm):
    with pytest.raises(ValueError, match="betas must rise from 0 to 1"):
        rbm.log_partition("ais", runs=4, betas=[0.0, math.nan, 1.0])
    with pytest.raises(ValueError, match="betas must be a real-valued numeric array"):
        rbm.log_partition("ais", runs=4, betas=[0.0, "x", 1.0])


def test_seeds(rbm):
    with pytest.raises(ValueError, match="seed must be"):
        gdsl.load(model_path("rbm"), seed=1.5, nv=4, nh=3)
    with pytest.raises(ValueError, match="seed must be"):
        rbm.pseudo_log_likelihood({"v": np.zeros((2, 4))}, seed="3")


def test_directed_model_arguments(sbn):
    v = {sbn.visible[0]: np.zeros((2,) + sbn.shape(sbn.visible[0]))}
    counts = [
        (lambda x: sbn.sample(x), "n"),
        (lambda x: sbn.sample(2, steps=x), "steps"),
        (lambda x: sbn.elbo(v, k=x), "k"),
        (lambda x: sbn.fit(v, epochs=x, progress=False), "epochs"),
        (lambda x: sbn.fit(v, epochs=1, batch_size=x, progress=False), "batch_size"),
    ]
    for call, name in counts:
        for value in NOT_COUNTS:
            with pytest.raises(ValueError, match=rf"^{name} must be a whole number"):
                call(value)
    reals = [
        (lambda x: sbn.fit(v, epochs=1, lr=x, progress=False), "lr"),
        (lambda x: sbn.fit(v, epochs=1, weight_decay=x, progress=False), "weight_decay"),
        (lambda x: sbn.log_prob(v, max_states=x), "max_states"),
    ]
    for call, name in reals:
        for value in NOT_REALS:
            if value is None and name == "lr":
                continue  # lr=None: the optimiser's default rate
            with pytest.raises(ValueError, match=rf"^{name} must be a finite number"):
                call(value)
