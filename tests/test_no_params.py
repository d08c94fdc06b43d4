"""Models with nothing to learn: every number is a size or a constant (issue 21, item 7).

The 1-D Ising chain below once compiled to a module with an empty argument in a call
(`train_epoch(..., rbfree_x, , , order, ...)`), a SyntaxError at `gdsl.load`. The driver now
passes every generated module through Python's `compile()` and reports a failure as a
CompilerBug (tested here by breaking the emitter on purpose); these tests check that such a
model works end to end: sampling against exact enumeration, exact and AIS log Z, and `fit`
saying that there is nothing to learn.

Tolerance: 20,000 independent chains (one final state each, after 40 sweeps of a 5-site chain
whose mixing time is a few sweeps) against the 32-state exact law. The TV bound is the mean +
4 sd of the TV of 20,000 i.i.d. multinomial draws from the exact law (400 simulations, fixed
seed), about 0.02.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import logsumexp

import gdsl
from gdsl.driver import compile_source
from gdsl.errors import CompilerBug, Source

CHAIN = """
model chain(n = 5, beta = 0.5) {
    visible x[n]: binary
    energy -beta * sum[i](x[i] * x[i + 1])
}
"""
COIN = """
model coin(n = 3, p = 0.3) {
    visible x[n] ~ bernoulli(probs = p)
}
"""
N = 20_000


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    path = tmp_path_factory.mktemp("noparams") / "chain.gdl"
    path.write_text(CHAIN)
    return gdsl.load(str(path), seed=3, beta=1.0)


def exact_law(n: int, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """Every state of the chain (rows) and its probability, from the energy written in numpy."""
    states = np.array(list(itertools.product((0.0, 1.0), repeat=n)))
    log_w = beta * (states[:, :-1] * states[:, 1:]).sum(1)
    return states, np.exp(log_w - logsumexp(log_w))


def tv_bound(p: np.ndarray, n: int) -> float:
    rng = np.random.default_rng(0)
    tvs = [0.5 * np.abs(rng.multinomial(n, p) / n - p).sum() for _ in range(400)]
    return float(np.mean(tvs) + 4 * np.std(tvs))


def test_parameter_less_model_compiles_to_valid_python():
    for text in (CHAIN, COIN):
        compiled = compile_source(Source(text, "m.gdl"))
        compile(compiled.python, "m.py", "exec")


def test_gibbs_sampling_matches_enumeration(chain):
    states, p = exact_law(5, 1.0)
    x = chain.sample(N, steps=40)["x"]
    index = (x.astype(np.int64) * (1 << np.arange(4, -1, -1))).sum(1)
    freq = np.bincount(index, minlength=32) / N
    tv = 0.5 * np.abs(freq - p).sum()
    assert tv < tv_bound(p, N), f"TV {tv:.4f}"


def test_log_partition_exact_and_ais(chain):
    states = np.array(list(itertools.product((0.0, 1.0), repeat=5)))
    log_z = logsumexp((states[:, :-1] * states[:, 1:]).sum(1))
    assert chain.log_partition() == pytest.approx(log_z, rel=1e-6)
    est = chain.log_partition(method="ais")
    assert abs(est.log_z - log_z) < 4 * est.sd + 0.01


def test_fit_says_there_is_nothing_to_learn(chain):
    data = chain.sample(10, steps=5)
    with pytest.raises(ValueError, match="no learned parameters.*nothing to fit"):
        chain.fit(data)


def test_directed_model_without_parameters(tmp_path):
    path = tmp_path / "coin.gdl"
    path.write_text(COIN)
    m = gdsl.load(str(path))
    assert m.log_prob({"x": [[1, 0, 1]]})[0] == pytest.approx(np.log(0.3 * 0.7 * 0.3))
    with pytest.raises(ValueError, match="nothing to fit"):
        m.fit(m.sample(10))


def test_invalid_generated_module_is_a_compiler_bug(monkeypatch):
    """The class of bug: whatever the emitter writes passes Python's compile() or is reported
    as ours (exit 3), never a SyntaxError at import."""
    import gdsl.driver as driver

    real_emit = driver.emit
    monkeypatch.setattr(driver, "emit",
                        lambda *a, **k: real_emit(*a, **k).replace("def gibbs(", "def gibbs(,", 1))
    with pytest.raises(CompilerBug, match="not valid Python"):
        compile_source(Source(CHAIN, "chain.gdl"))
