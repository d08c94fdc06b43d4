"""The run-time edges: values that do not fit the model's dtype, states that are not states,
training that fails or diverges, methods a directed model does not have, constants the
model's arithmetic cannot take, a parameter dict that loses entries, sizes too large for
memory. Each case is refused with a ValueError / TypeError / TrainingError that names what
is wrong, and leaves the model as it was (issue "Hardening the edges" 10-14, "Reliability" 3).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import gdsl
from gdsl.runtime import learn
from gdsl.runtime.learn import TrainingError
from gdsl.runtime.model import ModelBase

from conftest import load_model, model_path


def snapshot(params) -> dict:
    return {k: np.array(v, copy=True) for k, v in params.items()}


def same(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def binary(rng, n, d):
    return (rng.random((n, d)) < 0.5).astype(np.float64)


def write_model(tmp_path, name, text):
    path = tmp_path / f"{name}.gdl"
    path.write_text(text)
    return str(path)


# ============================================================ 1. values beyond the model's dtype
def test_parameter_beyond_float32_is_refused_and_the_old_value_kept():
    m = load_model("rbm")
    before = snapshot(m.params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy overflow warning either: a clear error instead
        with pytest.raises(ValueError, match=r"parameter W has values too large for float32.*1e\+39 at \(0, 0\)"):
            m.params["W"] = np.full(m.shape("W"), 1e39)
        with pytest.raises(ValueError, match=r"parameter b has values too large for float32"):
            m.params = {"W": np.zeros(m.shape("W")), "b": np.full(m.shape("b"), -1e39)}
    assert same(m.params, before)
    # the same value is finite, and accepted, in float64
    m64 = load_model("rbm", dtype="float64")
    m64.params["W"] = np.full(m64.shape("W"), 1e39)
    assert np.all(m64.params["W"] == 1e39)


def test_state_beyond_float32_is_refused_naming_the_variable():
    m = load_model("grbm")
    v = np.zeros((2, m.shape("v")[0]))
    v[1, 0] = 1e39
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"v has values too large for float32.*at \(1, 0\)"):
            m.free_energy({"v": v})


# ============================================================ 2. initial states and evidence
def test_mean_field_refuses_a_nan_or_out_of_domain_start():
    m = load_model("rbm")
    v = np.ones((2, 4))
    with pytest.raises(ValueError, match=r"init \(starting means\) of h must be finite; found nan"):
        m.mean_field({"v": v}, init={"h": np.full((2, 3), np.nan)})
    with pytest.raises(ValueError, match=r"init \(starting means\) of h are probabilities.*\[0, 1\]; found 5\.0"):
        m.mean_field({"v": v}, init={"h": np.full((2, 3), 5.0)})
    with pytest.raises(ValueError, match=r"h must have shape \(2, 3\)"):
        m.mean_field({"v": v}, init={"h": np.full((2, 4), 0.5)})
    with pytest.raises(ValueError, match=r"rbm has no variable 'x'"):
        m.mean_field({"v": v}, init={"x": np.full((2, 3), 0.5)})
    # valid starts still work, including domain values
    out = m.mean_field({"v": v}, init={"h": np.full((2, 3), 0.25)})
    assert np.all(np.isfinite(out["h"]))


def test_mean_field_start_domains_of_spins_and_categories(ising, softmax_rbm):
    with pytest.raises(ValueError, match=r"means of spins.*\[-1, 1\]"):
        ising.mean_field({}, init={"s": np.full((1, 3, 3), 1.5)})
    ising.mean_field({}, init={"s": np.full((1, 3, 3), -0.5)})
    y_shape = softmax_rbm.shape("y")
    bad = np.full((1,) + y_shape, 0.5)
    with pytest.raises(ValueError, match=r"y are category probabilities: each row .* must sum to 1"):
        softmax_rbm.mean_field({}, init={"y": bad})
    softmax_rbm.mean_field({}, init={"y": np.full((1,) + y_shape, 1.0 / y_shape[-1])})


def test_masked_evidence_checks_its_observed_elements():
    m = load_model("rbm")
    v = np.array([[1.0, 0.0, np.nan, 1.0]])
    observed = np.array([True, True, True, False])
    with pytest.raises(ValueError, match=r"v contains NaN or infinity \(found nan at \(0, 2\)\)"):
        m.mean_field({"v": v}, mask={"v": observed})
    with pytest.raises(ValueError, match=r"v is binary"):
        m.mean_field({"v": np.array([[1.0, 0.5, 0.0, 1.0]])}, mask={"v": observed})
    # an element the mask leaves free is not the caller's: anything goes there
    out = m.mean_field({"v": v}, mask={"v": np.array([True, True, False, True])})
    assert np.all(np.isfinite(out["v"])) and np.all(np.isfinite(out["h"]))


def test_sample_gibbs_and_fit_validate_every_state_they_take():
    m = load_model("rbm")
    nan_h = np.full(3, np.nan)
    with pytest.raises(ValueError, match="h contains NaN"):
        m.sample(2, steps=1, init={"h": nan_h})
    with pytest.raises(ValueError, match="h contains NaN"):
        m.sample(2, steps=1, clamp={"h": nan_h})
    state = m.random_state(2)
    state["v"] = state["v"] * np.nan
    with pytest.raises(ValueError, match="v contains NaN"):
        m.gibbs(state)
    # validation data is checked before the first epoch: the parameters are untouched
    rng = np.random.default_rng(0)
    before = snapshot(m.params)
    bad = binary(rng, 10, 4)
    bad[3, 1] = 0.5
    with pytest.raises(ValueError, match="v is binary"):
        m.fit({"v": binary(rng, 20, 4)}, epochs=1, batch_size=10, validation={"v": bad}, progress=False)
    assert same(m.params, before)
    with pytest.raises(ValueError, match="v contains NaN"):
        m.base_model({"v": np.full((3, 4), np.nan)})


def test_directed_noise_is_validated():
    m = gdsl.load(model_path("vae"), seed=0, d=5, nh=3, nz=2)
    x = binary(np.random.default_rng(1), 4, 5)
    with pytest.raises(ValueError, match=r"eps of z must be finite"):
        m.elbo({"x": x}, eps={"z": np.full((4, 2), np.nan)})
    with pytest.raises(ValueError, match=r"eps of z must have shape \(4, 2\)"):
        m.elbo({"x": x}, eps={"z": np.zeros((3, 2))})
    eps = np.random.default_rng(2).standard_normal((2, 4, 2))
    assert np.array_equal(m.elbo({"x": x}, k=2, eps={"z": eps}), m.elbo({"x": x}, k=2, eps={"z": eps.reshape(8, 2)}))


# ============================================================ 3. a failed fit leaves a trainable model
def _grbm_data():
    return {"v": np.random.default_rng(3).normal(size=(60, 4))}


def test_failed_fit_restores_chains_and_velocities_so_the_next_fit_succeeds():
    """lr=1e6 blows the GRBM up; before the fix the NaN chains and velocities stayed and the next
    fit with a sane rate failed in its first epoch too."""
    m = gdsl.load(model_path("grbm"), seed=0, nv=4, nh=3)
    data = _grbm_data()
    kw = dict(epochs=2, batch_size=20, momentum=0.5, progress=False)
    m.fit(data, lr=1e-3, **kw)
    params, chains = snapshot(m.params), snapshot(m._state["chains"])
    velocity, rng = snapshot(m._state["velocity"]), m._rng.bit_generator.state
    with np.errstate(all="ignore"), pytest.raises(TrainingError, match=r"epoch 1: .*kept"):
        m.fit(data, lr=1e6, **kw)
    # the whole training state of the last good epoch: parameters, chains, velocities, generator
    assert same(m.params, params)
    assert same(m._state["chains"], chains)
    assert same(m._state["velocity"], velocity)
    assert m._rng.bit_generator.state == rng
    history = m.fit(data, lr=1e-3, **kw)
    assert len(history) == 2
    assert all(np.all(np.isfinite(v)) for v in m.params.values())


def test_failure_in_a_later_epoch_keeps_the_previous_epoch():
    m = gdsl.load(model_path("grbm"), seed=0, nv=4, nh=3)
    data = _grbm_data()
    with np.errstate(all="ignore"), pytest.raises(TrainingError, match=r"epoch 2.*of the end of epoch 1 are kept"):
        m.fit(data, epochs=3, batch_size=20, progress=False, lr_schedule=lambda e: 1e-3 if e < 1 else 1e6)
    assert all(np.all(np.isfinite(v)) for s in (m.params, m._state["chains"], m._state["velocity"])
               for v in s.values())
    assert len(m.fit(data, lr=1e-3, epochs=1, batch_size=20, progress=False)) == 1


def test_finite_divergence_is_a_training_error():
    """lr=1e30 used to return normally with weights of 1e30 and a log-likelihood of -1e32."""
    m = load_model("rbm", seed=4)
    data = {"v": binary(np.random.default_rng(5), 40, 4)}
    start = snapshot(m.params)
    with pytest.raises(TrainingError, match=r"epoch 1: the parameters diverged: the largest \|\w+\| is"):
        m.fit(data, lr=1e30, epochs=2, batch_size=10, progress=False)
    assert same(m.params, start)
    history = m.fit(data, lr=0.05, epochs=2, batch_size=10, progress=False)
    assert len(history) == 2 and np.isfinite(history[-1]["train_loglik"])


def test_divergence_criterion_can_be_turned_off(monkeypatch):
    monkeypatch.setattr(learn, "DIVERGENCE_GROWTH", None)
    m = load_model("rbm", seed=4, dtype="float64")
    data = {"v": binary(np.random.default_rng(5), 40, 4)}
    m.fit(data, lr=1e30, epochs=1, batch_size=10, progress=False, monitor=None)
    assert np.max(np.abs(m.params["W"])) > 1e20


def test_directed_divergence_and_overflow_restore_the_optimiser_state():
    m = gdsl.load(model_path("fvsbn"), seed=3, d=5)
    data = {"x": binary(np.random.default_rng(6), 40, 5)}
    start = snapshot(m.params)
    with pytest.raises(TrainingError, match=r"epoch 1: the parameters diverged.*from before the first epoch"):
        m.fit(data, lr=1e30, epochs=2, batch_size=10, progress=False)
    assert same(m.params, start)
    history = m.fit(data, lr=1e-2, epochs=2, batch_size=10, progress=False)
    assert len(history) == 2 and np.isfinite(history[-1]["train_loglik"])
    # a float32 directed model: a step finite in float64 but not in float32 is a TrainingError, not
    # the parameter check's ValueError from inside the optimiser
    m32 = gdsl.load(model_path("fvsbn"), seed=3, d=5, dtype="float32")
    before = snapshot(m32.params)
    with np.errstate(all="ignore"), pytest.raises(TrainingError, match=r"became NaN or infinite"):
        m32.fit(data, lr=1e300, optimizer="sgd", epochs=1, batch_size=10, progress=False)
    assert same(m32.params, before)


# ============================================================ 4. what a directed model does not have
SBN_SIZES = dict(nv=4, n1=3, n2=2)
V = np.ones((1, 4))
UNSUPPORTED = {
    "energy": lambda m: m.energy({"v": V}),
    "free_energy": lambda m: m.free_energy({"v": V}),
    "gibbs": lambda m: m.gibbs({"v": V}),
    "mean_field": lambda m: m.mean_field({"v": V}),
    "conditional_mean": lambda m: m.conditional_mean({"v": V}, "h1"),
    "log_partition": lambda m: m.log_partition(),
    "log_partition_ais": lambda m: m.log_partition(method="ais", runs=2),
    "variational_bound": lambda m: m.variational_bound({"v": V}, 0.0),
    "base_model": lambda m: m.base_model(),
    "random_state": lambda m: m.random_state(2),
    "kernel_args": lambda m: m.kernel_args({}),
    "reconstruction_error": lambda m: m.reconstruction_error({"v": V}),
    "pseudo_log_likelihood": lambda m: m.pseudo_log_likelihood({"v": V}),
    "predict_proba": lambda m: m.predict_proba({"v": V}, "h1"),
    "predict": lambda m: m.predict({"v": V}, "h1"),
    "multi_prediction_loss": lambda m: m.multi_prediction_loss({"v": V}, {"v": V > 0}),
}


@pytest.mark.parametrize("what", list(UNSUPPORTED))
def test_directed_model_says_what_it_supports(what):
    m = gdsl.load(model_path("sbn"), seed=0, **SBN_SIZES)
    with pytest.raises(ValueError, match=r"sbn is a directed model and has no .*sbn supports: log_prob, log_joint, "
                                         r"sample, elbo"):
        UNSUPPORTED[what](m)


def test_every_public_model_method_is_covered_for_directed_models():
    """Each public method of ModelBase either works on a purely directed model or is in UNSUPPORTED."""
    works = {"call", "fit", "graph", "load_params", "log_prob", "sample", "save", "shape", "why_not_summable"}
    public = {n for n in dir(ModelBase) if not n.startswith("_") and callable(getattr(ModelBase, n))
              and not n.isupper()}
    assert public - works - set(UNSUPPORTED) == set()


def test_directed_kernel_table_and_chain_graph_groups():
    m = gdsl.load(model_path("sbn"), seed=0, **SBN_SIZES)
    with pytest.raises(ValueError, match=r"sbn has no compiled kernel 'gibbs' \(it has: joint_values"):
        m.call("gibbs")
    assert "defined by a conditional" in m.why_not_summable(["h1"])
    dbn = gdsl.load(model_path("dbn"), seed=0, nv=3, n1=2, n2=2, n3=2)
    top = dbn.random_state(1)
    with pytest.raises(ValueError, match=r"v is defined by a conditional, and the energy methods cover the "
                                         r"energy part only \(h3, h2\)"):
        dbn.energy(dict(top, v=np.ones((1, 3))))
    with pytest.raises(ValueError, match=r"v is defined by a conditional"):
        dbn.mean_field({"v": np.ones((1, 3))})
    assert dbn.energy(top).shape == (1,)


# ============================================================ 5. constants and sizes the arithmetic needs
def test_zero_sigma_is_refused_naming_the_constant():
    with pytest.raises(ValueError, match=r"constant sigma must not be zero: grbm divides by it \(line 12: it is "
                                         r"a factor of the denominator '2 \* sigma\^2'\)"):
        gdsl.load(model_path("grbm"), nv=2, nh=3, sigma=0)
    m = gdsl.load(model_path("grbm"), nv=2, nh=3, sigma=-0.5)  # only sigma^2 is used: its sign is free
    assert m.NONZERO_CONSTS == ("sigma",) and m.POSITIVE_CONSTS == ()
    with pytest.raises(ValueError, match=r"'1 / \(2 \* sigma\^2\)' \(line 12\), must be a finite number; with "
                                         r"constant sigma = 1e-200 it is inf"):
        gdsl.load(model_path("grbm"), nv=2, nh=3, sigma=1e-200)


CONSTS_MODEL = """
model consts(n = 3, prec = 2.0, beta = 1.0, scale = 0.1) {
    visible r[n]: real
    latent  h[n]: binary
    param b[n] ~ normal(0, scale)
    param w[n]
    energy prec * sum(r^2) / 2 - sum(w * r * h) / (n - 1) - log(beta) * sum(b * h)
}
"""

STD_MODEL = """
model dstd(d = 3, s = 0.5) {
    latent  z[d] ~ normal(0, s)
    visible x[d] ~ normal(mean = W @ z, std = s * exp(a))
    param W[d, d] ~ normal(0, 0.1)
    param a
}
"""


@pytest.mark.parametrize("override, message", [
    (dict(n=1), r"a denominator of consts, 'n - 1' \(line 7\), must not be zero; with size n = 1 it is 0\.0"),
    (dict(prec=0.0), r"constant prec must be positive, got 0\.0 \(consts, line 7: 'prec \* sum\(r\^2\) / 2', "
                     r"the coefficient of r\^2"),
    (dict(prec=-1.0), r"constant prec must be positive, got -1\.0"),
    (dict(beta=0.0), r"constant beta must be positive, got 0\.0 \(consts, line 7: it is the argument of log\)"),
    (dict(scale=-1.0), r"the std of b's initialiser of consts, 'scale' \(line 5\), must be >= 0; with constant "
                       r"scale = -1\.0"),
])
def test_constants_and_sizes_are_checked_against_the_energy(tmp_path, override, message):
    path = write_model(tmp_path, "consts", CONSTS_MODEL)
    with pytest.raises(ValueError, match=message):
        gdsl.load(path, **override)
    gdsl.load(path, scale=0.0)  # a zero std draws the mean: allowed


def test_a_constant_std_of_a_directed_conditional_must_be_positive(tmp_path):
    path = write_model(tmp_path, "dstd", STD_MODEL)
    for s in (0.0, -1.0):
        with pytest.raises(ValueError, match=rf"constant s must be positive, got {s!r} \(dstd, line 3: it is the "
                                             rf"std of z\)"):
            gdsl.load(path, s=s)
    m = gdsl.load(path, s=0.25)
    assert m.POSITIVE_CONSTS == ("s",)


def test_const_requirements_are_worked_out_at_compile_time():
    from gdsl.analysis.constants import const_requirements, spell
    from gdsl.driver import compile_source
    from gdsl.errors import Source

    with open(model_path("grbm")) as fh:
        ir = compile_source(Source(fh.read(), "grbm.gdl")).ir
    req = const_requirements(ir)
    assert req.nonzero == ("sigma",)
    kinds = {(c.kind, spell(c.steps)) for c in req.checks}
    assert ("nonzero", "sigma") in kinds and ("finite", "1 / (2 * sigma^2)") in kinds
    steps = (("size", "n"), ("num", 1.0), ("const", "c"), ("-",), ("-",))
    assert spell(steps) == "n - (1 - c)"


def test_long_chains_of_constants_need_no_recursion():
    """A chain `c + c + ... + c` is as deep as it is long: the analysis, the published expression
    (a flat postfix tuple, so the generated module stays parseable) and its evaluation all loop."""
    from gdsl.analysis.constants import _Collector, postfix, spell
    from gdsl.ir.model import IBin, INum, ISym
    from gdsl.runtime.consts import evaluate

    chain = ISym("const", "c")
    for _ in range(20_000):
        chain = IBin("+", chain, ISym("const", "c"))
    coef = IBin("/", INum(1.0), IBin("-", chain, ISym("size", "n")))
    collector = _Collector([])
    collector.expression(coef, 1)
    kinds = [check.kind for check in collector.checks.values()]
    assert kinds == ["nonzero", "finite"]
    steps = postfix(chain)
    assert len(steps) == 40_001 and all(len(s) <= 2 for s in steps)
    assert evaluate(steps, {}, {"c": 0.5}) == 10_000.5
    assert spell(steps).startswith("c + c + c")
    denominator = next(iter(collector.checks.values())).steps
    assert evaluate(denominator, {"n": 10_001}, {"c": 0.5}) == -0.5


# ============================================================ 6. the parameter dict
def test_params_cannot_be_replaced_by_a_non_mapping_or_lose_entries():
    m = load_model("rbm")
    before = snapshot(m.params)
    with pytest.raises(TypeError, match=r"parameters of rbm are set from a dict from parameter names \(W, b, c\) "
                                        r"to arrays, got int"):
        m.params = 5
    for remove in (lambda p: p.__delitem__("W"), lambda p: p.pop("W"), lambda p: p.popitem(), lambda p: p.clear()):
        with pytest.raises(TypeError, match="the parameters of rbm cannot be removed"):
            remove(m.params)
    with pytest.raises(KeyError, match="parameters cannot be added"):
        m.params.setdefault("x", 1.0)
    assert same(m.params, before)
    assert np.all(np.isfinite(m.free_energy({"v": np.ones((1, 4))})))


@pytest.mark.parametrize("how", ["assign", "update", "update_kw", "ior", "pairs"])
def test_bulk_parameter_assignment_is_all_or_nothing(how):
    m = load_model("rbm")
    before = snapshot(m.params)
    good_w = np.ones(m.shape("W"))
    bad_b = np.full(m.shape("b"), np.nan)
    with pytest.raises(ValueError, match="parameter b contains NaN"):
        if how == "assign":
            m.params = {"W": good_w, "b": bad_b}
        elif how == "update":
            m.params.update({"W": good_w, "b": bad_b})
        elif how == "update_kw":
            m.params.update(W=good_w, b=bad_b)
        elif how == "ior":
            m.params |= {"W": good_w, "b": bad_b}
        else:
            m.params = [("W", good_w), ("b", bad_b)]
    assert same(m.params, before)  # W was not stored either
    with pytest.raises(KeyError, match="has no parameter 'zz'"):
        m.params.update({"W": good_w, "zz": 1.0})
    assert same(m.params, before)
    m.params.update({"W": good_w})
    assert np.all(m.params["W"] == 1.0)


def test_a_model_can_be_deep_copied_with_its_parameter_dict():
    import copy

    m = load_model("rbm")
    c = copy.deepcopy(m)
    assert same(c.params, m.params) and c.params["W"] is not m.params["W"]
    c.params["W"] = np.ones(c.shape("W"))  # the copy's dict checks against, and belongs to, the copy
    assert not np.array_equal(m.params["W"], c.params["W"])
    with pytest.raises(TypeError, match="cannot be removed"):
        del c.params["b"]


# ============================================================ 7. memory
def test_sizes_too_large_for_memory_are_refused_before_allocating():
    with pytest.raises(ValueError, match=r"rbm\(nv=784, nh=1000000000\) is too large: its parameters \(W: "
                                         r"\(784, 1000000000\).*would take 2\.86 TiB .* more than the .* allowed"):
        gdsl.load(model_path("rbm"), nh=10 ** 9)


def test_memory_limit_can_be_set(monkeypatch):
    from gdsl.runtime import consts as runtime_consts

    monkeypatch.setattr(runtime_consts, "MEMORY_LIMIT", 10_000)
    # 4 * 3 + 4 + 3 = 19 float32 parameters, 228 bytes while drawn: fine
    load_model("rbm")
    with pytest.raises(ValueError, match=r"would take 39\.84 KiB \(119\.53 KiB while they are drawn in float64\), "
                                         r"more than the 9\.77 KiB allowed \(gdsl\.runtime\.consts\.MEMORY_LIMIT\)"):
        gdsl.load(model_path("rbm"), nv=100, nh=100)
