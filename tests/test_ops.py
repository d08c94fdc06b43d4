"""The operator table (gdsl/ops.py) against every stage that uses it.

Each function of the language is swept through every position the language allows it
(an energy, a directed conditional, an initialiser, a guide): each either gives a working
compiled module or a `gdsl check` error, never an internal error. The numba and Python
implementations and the derivative formulas are checked against numpy, and one compiled
model per position is evaluated against a numpy reference, gradients included.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from gdsl import ops
from gdsl.driver import compile_source, load_text
from gdsl.errors import CompilerBug, ModelErrors, Source
from gdsl.runtime import kernels as _k
from gdsl.runtime.directed import DirectedModel

NUMPY = {
    "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "tanh": np.tanh,
    "sigmoid": lambda a: 1.0 / (1.0 + np.exp(-a)),
    "softplus": lambda a: np.logaddexp(0.0, a),
    "relu": lambda a: np.maximum(a, 0.0),
    "log_sigmoid": lambda a: -np.logaddexp(0.0, -a),
    "step": lambda a: np.where(np.asarray(a) > 0, 1.0, 0.0),
}
# a point inside each function's domain, away from kinks, one per function (distinct values)
POINT = {"exp": 0.3, "log": 1.7, "sqrt": 2.2, "tanh": -0.4, "sigmoid": 0.9, "softplus": -1.3,
         "relu": 0.8, "log_sigmoid": -0.6}


def test_numpy_reference_covers_the_table():
    assert set(NUMPY) == set(ops.FUNCTIONS)
    assert set(POINT) == set(ops.WRITTEN)


@pytest.mark.parametrize("name", sorted(ops.FUNCTIONS))
def test_numba_and_python_implementations_agree_with_numpy(name):
    f = ops.FUNCTIONS[name]
    module, attr = f.numba.split(".")
    jitted = getattr({"math": math, "_k": _k}[module], attr)
    for a in (-30.0, -2.5, -0.1, 0.1, 0.5, 3.0, 40.0):
        with np.errstate(all="ignore"):
            want = NUMPY[name](np.float64(a))
        if np.isfinite(want):
            assert jitted(a) == pytest.approx(want, rel=1e-12, abs=1e-300)
        assert f.python(a) == pytest.approx(want, rel=1e-12, abs=1e-300, nan_ok=True)


@pytest.mark.parametrize("name", sorted(ops.FUNCTIONS))
def test_python_implementation_never_raises(name):
    for a in (-math.inf, -1e308, -1.0, 0.0, 1.0, 1e308, math.inf, math.nan):
        out = ops.FUNCTIONS[name].python(a)
        assert isinstance(out, float)


def evaluate(formula, a: float, y: float) -> float:
    """A derivative formula of the table on numbers (the compiler turns it into IR instead)."""
    if isinstance(formula, (int, float)):
        return float(formula)
    if formula == "a":
        return a
    if formula == "y":
        return y
    op, *args = formula
    vals = [evaluate(g, a, y) for g in args]
    if op == "neg":
        return -vals[0]
    if op in ("+", "-", "*", "/"):
        l, r = vals
        return {"+": l + r, "-": l - r, "*": l * r, "/": l / r}[op]
    return float(NUMPY[op](np.float64(vals[0])))


@pytest.mark.parametrize("name", sorted(ops.FUNCTIONS))
def test_derivative_formula_matches_central_differences(name):
    f = ops.FUNCTIONS[name]
    for a in (-1.9, -0.3, 0.4, 1.2, 2.6):
        if name in ("log", "sqrt") and a <= 0:
            continue
        h = 1e-6
        numeric = (NUMPY[name](a + h) - NUMPY[name](a - h)) / (2 * h)
        assert evaluate(f.derivative, a, float(NUMPY[name](a))) == pytest.approx(numeric, rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("name", ops.VECTORISED)
def test_vector_helpers_match_the_scalar_function(name):
    x = np.linspace(-8, 8, 37)
    for dtype, tol in ((np.float64, 1e-13), (np.float32, 1e-6)):
        y = x.astype(dtype)
        getattr(_k, ops.FUNCTIONS[name].vector)(y)
        np.testing.assert_allclose(y, NUMPY[name](x), rtol=tol, atol=tol)


# every position the language allows -------------------------------------------------------
POSITIONS = {
    "energy": """model sweep(n = 3) {{
        visible x[n]: binary
        param b[n]
        param t = 0.5
        energy -{f}(t) * (b @ x) - b @ x
    }}""",
    "energy over variables": """model sweep(n = 3) {{
        visible x[n]: binary
        param b[n]
        energy -sum({f}(b * x))
    }}""",
    "directed": """model sweep(n = 3) {{
        visible x[n] ~ bernoulli(logits = {f}(b) - 1)
        visible y[n] ~ normal(mean = {f}(b), std = 1)
        param b[n] = 0.5
    }}""",
    "initialiser": """model sweep(n = 3) {{
        visible x[n]: binary
        param b[n] ~ normal({f}(0.5), 0.1)
        param c[n] = {f}(2.0)
        energy -b @ x - c @ x
    }}""",
    "guide": """model sweep(n = 3, m = 2) {{
        latent  z[m] ~ normal(0, 1)
        visible x[n] ~ bernoulli(logits = W @ z)
        param W[n, m]
        guide {{
            z ~ normal(mean = {f}(R @ x + 1), std = exp(s))
        }}
        param R[m, n]
        param s[m]
    }}""",
}
REFUSED = {"energy over variables"}  # the energy is a polynomial in the variables


@pytest.mark.parametrize("position", sorted(POSITIONS))
@pytest.mark.parametrize("name", ops.WRITTEN)
def test_every_function_in_every_position_compiles_or_is_refused(name, position):
    text = POSITIONS[position].format(f=name)
    try:
        compiled = compile_source(Source(text, f"<{position}>"))
    except ModelErrors as e:
        assert position in REFUSED, e.format()
        assert name in e.format()
        return
    except CompilerBug as e:  # pragma: no cover - the failure this test exists for
        pytest.fail(f"internal compiler error for {name} in {position}: {e}")
    assert position not in REFUSED
    compile(compiled.python, "<generated>", "exec")  # valid Python, always
    load_text(text, f"<{position}>").Model(seed=0)  # imports, class body, initialisers


def _sum_text(pattern: str, names) -> str:
    return " + ".join(pattern.format(f=f, k=k) for k, f in enumerate(names))


@pytest.fixture(scope="module")
def energy_model():
    """One energy with every function applied to a parameter: -sum_k F_k(t[k]) * x[k]."""
    names = ops.WRITTEN
    text = (f"model opsweep_energy(n = {len(names)}) {{\n  visible x[n]: binary\n  param t[n]\n"
            f"  energy -({_sum_text('{f}(t[{k}]) * x[{k}]', names)})\n}}\n")
    m = load_text(text, "<ops energy>").Model(seed=0, dtype="float64")
    m.params["t"] = np.array([POINT[f] for f in names])
    return m


def test_energy_values_match_numpy(energy_model):
    m, names = energy_model, ops.WRITTEN
    x = np.random.default_rng(0).integers(0, 2, size=(6, len(names))).astype(float)
    values = np.array([NUMPY[f](POINT[f]) for f in names])
    np.testing.assert_allclose(m.energy({"x": x}), -(x @ values), rtol=1e-12)


def test_energy_gradient_matches_numpy(energy_model):
    m, names = energy_model, ops.WRITTEN
    x = np.ones((1, len(names)))
    grad = np.zeros(len(names))
    m.KERNELS["energy_grad"](*m.kernel_args({"x": x}), 1.0, grad)
    h = 1e-6
    want = [-(NUMPY[f](POINT[f] + h) - NUMPY[f](POINT[f] - h)) / (2 * h) for f in names]
    np.testing.assert_allclose(grad, want, rtol=1e-6, atol=1e-9)


def test_directed_log_prob_and_gradient_match_numpy():
    names = ops.WRITTEN
    groups = "\n".join(f"  visible x{k}[1] ~ bernoulli(logits = {f}(t[{k}]))" for k, f in enumerate(names))
    text = f"model opsweep_directed(n = {len(names)}) {{\n{groups}\n  param t[n]\n}}\n"
    m = load_text(text, "<ops directed>").Model(seed=0)
    t = np.array([POINT[f] for f in names])
    m.params["t"] = t
    data = {f"x{k}": np.array([[1.0], [0.0], [1.0]]) for k in range(len(names))}
    data["x0"] = np.array([[0.0], [0.0], [1.0]])
    logits = np.array([NUMPY[f](POINT[f]) for f in names])
    x = np.stack([data[f"x{k}"][:, 0] for k in range(len(names))], axis=1)
    want = (x * logits - np.logaddexp(0.0, logits)).sum(axis=1)
    np.testing.assert_allclose(m.log_prob(data), want, rtol=1e-10)
    _, grads = m.gradients(data)
    h = 1e-6
    dlogit = np.array([(NUMPY[f](POINT[f] + h) - NUMPY[f](POINT[f] - h)) / (2 * h) for f in names])
    sig = 1.0 / (1.0 + np.exp(-logits))
    want_grad = ((x - sig) * dlogit).mean(axis=0)
    np.testing.assert_allclose(np.ravel(grads["t"]), want_grad, rtol=1e-5, atol=1e-8)


def test_initialisers_evaluate_every_function_in_python():
    names = ops.WRITTEN
    params = "\n".join(f"  param c{k} = {f}(1.5)" for k, f in enumerate(names))
    text = (f"model opsweep_init(n = 2) {{\n  visible x[n]: binary\n{params}\n"
            f"  energy -({' + '.join(f'c{k}' for k in range(len(names)))}) * sum(x)\n}}\n")
    m = load_text(text, "<ops init>").Model(seed=0, dtype="float64")
    for k, f in enumerate(names):
        assert float(m.params[f"c{k}"]) == pytest.approx(float(NUMPY[f](1.5)), rel=1e-12)


def test_directed_model_with_a_function_in_an_initialiser_loads():
    """Once a NameError ('ModelBase' is not defined) inside the generated module."""
    text = ("model opsweep_dinit(n = 3) {\n  visible x[n] ~ bernoulli(logits = b)\n"
            "  param b[n] ~ normal(0, sigmoid(1.0))\n}\n")
    m = load_text(text, "<ops dinit>").Model(seed=0)
    assert m.params["b"].shape == (3,) and np.all(np.isfinite(m.params["b"]))
    assert isinstance(m, DirectedModel)
