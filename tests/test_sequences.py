"""Models that unfold in time: the RNN-NADE (models/rnn_nade.gdl) against a numpy reference
written from its equations, exact normalisation over all short sequences, BPTT gradients
against finite differences, step-by-step sampling against the exact distribution, clamps."""
import itertools
import os
from pathlib import Path

import numpy as np
import pytest

import gdsl

ROOT = Path(__file__).resolve().parent.parent
NADE = str(ROOT / "models" / "rnn_nade.gdl")


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def reference_logp(p, seq):
    """log p(v_1..v_T) of the RNN-NADE, from the equations of issue 29 / the paper."""
    nv = p["bv"].shape[0]
    u, total = p["u0"].copy(), 0.0
    for v in seq:
        bv = p["bv"] + p["Wuv"] @ u
        bh = p["bh"] + p["Wuh"] @ u
        for i in range(nv):
            h = sigmoid(bh + p["W"][:, :i] @ v[:i])
            q = sigmoid(bv[i] + p["V"][i] @ h)
            total += np.log(q if v[i] else 1 - q)
        u = np.tanh(p["bu"] + p["Wvu"] @ v + p["Wuu"] @ u)
    return total


def randomised(model, seed, scale=0.7):
    rng = np.random.default_rng(seed)
    model.params = {k: rng.normal(0, scale, size=np.shape(v)) for k, v in model.params.items()}
    return {k: np.asarray(v, np.float64) for k, v in model.params.items()}


@pytest.fixture(scope="module")
def tiny():
    return gdsl.load(NADE, nv=5, nh=3, nu=4, seed=1)


@pytest.fixture(scope="module")
def two_keys():
    return gdsl.load(NADE, nv=2, nh=2, nu=2, seed=2)


def sequences(seed, lengths, nv=5):
    rng = np.random.default_rng(seed)
    return [(rng.random((n, nv)) < 0.4).astype(float) for n in lengths]


def test_log_prob_matches_the_equations_for_sequences_of_different_lengths(tiny):
    p = randomised(tiny, 0)
    seqs = sequences(1, (4, 2, 3, 1, 4))
    got = tiny.log_prob({"v": seqs})
    want = np.array([reference_logp(p, s) for s in seqs])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # the same batch padded, with lengths
    padded = np.zeros((5, 4, 5))
    for i, s in enumerate(seqs):
        padded[i, :len(s)] = s
    np.testing.assert_allclose(tiny.log_prob({"v": padded}, lengths=[len(s) for s in seqs]), want, rtol=1e-6)


def test_the_sequence_distribution_is_normalised(two_keys):
    """Summed over every binary sequence of T frames, p is 1 (each step's NADE and the
    recurrence together define a distribution over whole sequences)."""
    randomised(two_keys, 3, scale=1.5)
    for T in (1, 3):
        frames = list(itertools.product([0.0, 1.0], repeat=2 * T))
        allseq = np.array(frames).reshape(-1, T, 2)
        total = np.exp(two_keys.log_prob({"v": allseq})).sum()
        assert abs(total - 1.0) < 1e-9


def test_bptt_gradient_matches_finite_differences(tiny):
    p = randomised(tiny, 4, scale=0.5)
    seqs = sequences(5, (4, 1, 3))
    value, grads = tiny.gradients({"v": seqs})
    assert value == pytest.approx(np.mean([reference_logp(p, s) for s in seqs]), rel=1e-9)
    rng = np.random.default_rng(6)
    eps = 1e-6
    for name, g in grads.items():
        for _ in range(3):
            at = tuple(int(rng.integers(d)) for d in np.shape(g))
            up = {k: v.copy() for k, v in p.items()}
            down = {k: v.copy() for k, v in p.items()}
            up[name][at] += eps
            down[name][at] -= eps
            fd = (np.mean([reference_logp(up, s) for s in seqs])
                  - np.mean([reference_logp(down, s) for s in seqs])) / (2 * eps)
            assert g[at] == pytest.approx(fd, rel=1e-5, abs=1e-8), (name, at)


def exact_and_counts(model, samples, T):
    frames = list(itertools.product([0.0, 1.0], repeat=2 * T))
    allseq = np.array(frames).reshape(-1, T, 2)
    exact = np.exp(model.log_prob({"v": allseq}))
    codes = samples.reshape(len(samples), -1) @ (2 ** np.arange(2 * T)[::-1])
    counts = np.bincount(codes.astype(int), minlength=len(frames))
    return exact, counts


def noise_band(p, n, rng, draws=20):
    """2.5 times the mean TV distance of n exact draws from p: the band sampling noise spans."""
    tv = [0.5 * np.abs(rng.multinomial(n, p) / n - p).sum() for _ in range(draws)]
    return 2.5 * float(np.mean(tv))


def test_step_by_step_sampling_matches_the_exact_distribution(two_keys):
    randomised(two_keys, 7, scale=1.5)
    T, n = 3, 40_000
    s = two_keys.sample(n, length=T)["v"]
    exact, counts = exact_and_counts(two_keys, s, T)
    tv = 0.5 * np.abs(counts / n - exact).sum()
    assert tv < noise_band(exact, n, np.random.default_rng(0)), tv


def test_clamped_beginning_gives_the_exact_continuation(two_keys):
    """Given the first frame (clamped), the later frames follow p(v_2.. | v_1) exactly."""
    randomised(two_keys, 8, scale=1.5)
    T, n = 3, 30_000
    first = np.array([1.0, 0.0])
    clamp = np.zeros((n, T, 2))
    clamp[:, 0] = first
    mask = np.zeros((n, T, 2), bool)
    mask[:, 0] = True
    s = two_keys.sample(n, length=T, clamp={"v": clamp}, mask={"v": mask})["v"]
    assert np.all(s[:, 0] == first)
    exact, counts = exact_and_counts(two_keys, s, T)
    code_first = int(first @ np.array([2, 1]))
    keep = (np.arange(len(exact)) >> (2 * T - 2)) == code_first
    cond = np.where(keep, exact, 0.0)
    cond /= cond.sum()
    tv = 0.5 * np.abs(counts / n - cond).sum()
    assert tv < noise_band(cond, n, np.random.default_rng(1)), tv


def test_clamped_elements_never_change(tiny):
    randomised(tiny, 9)
    rng = np.random.default_rng(10)
    n, T = 50, 6
    values = (rng.random((n, T, 5)) < 0.5).astype(float)
    mask = rng.random((n, T, 5)) < 0.3
    s = tiny.sample(n, length=T, clamp={"v": values}, mask={"v": mask})["v"]
    assert np.array_equal(s[mask], values[mask])
    # lengths per sequence: zero past each end
    s = tiny.sample(4, length=[2, 5, 1, 3])["v"]
    assert s.shape == (4, 5, 5) and not s[0, 2:].any() and not s[2, 1:].any()


def test_sampling_is_reproducible_from_the_seed():
    a = gdsl.load(NADE, nv=5, nh=3, nu=4, seed=11).sample(20, length=5)["v"]
    b = gdsl.load(NADE, nv=5, nh=3, nu=4, seed=11).sample(20, length=5)["v"]
    assert np.array_equal(a, b)


def test_fit_raises_the_likelihood_of_a_repeating_pattern():
    m = gdsl.load(NADE, nv=5, nh=3, nu=4, seed=12)
    pattern = np.eye(5)[[0, 1, 2, 3, 4, 0, 1, 2]]
    data = {"v": [pattern[k:k + 5] for k in range(4)] * 5}
    before = m.log_prob(data).mean()
    m.fit(data, epochs=60, lr=0.05, batch_size=5, progress=False)
    after = m.log_prob(data).mean()
    assert after > before + 5.0, (before, after)


def test_bad_sequences_are_value_errors_naming_the_variable(tiny):
    with pytest.raises(ValueError, match=r"v: sequence 1 has shape \(3, 4\); expected \(T, 5\)"):
        tiny.log_prob({"v": [np.zeros((2, 5)), np.zeros((3, 4))]})
    with pytest.raises(ValueError, match="binary"):
        tiny.log_prob({"v": [np.full((2, 5), 0.5)]})
    with pytest.raises(ValueError, match="lengths must be between 1 and the padded length 3"):
        tiny.log_prob({"v": np.zeros((2, 3, 5))}, lengths=[3, 4])
    with pytest.raises(ValueError, match="no sequence 'x'"):
        tiny.log_prob({"v": [np.zeros((2, 5))], "x": [np.zeros((2, 5))]})


# an energy at every step: the RNN-RBM ------------------------------------------------------------
RBM = str(ROOT / "models" / "rnnrbm.gdl")
CRBM = str(ROOT / "models" / "crbm.gdl")


def reference_rbm_logp(p, seq):
    """log p(v_1..v_T) of the RNN-RBM, each step's log Z(u) by enumerating v (h summed)."""
    nv = p["bv"].shape[0]
    frames = np.array(list(itertools.product([0.0, 1.0], repeat=nv)))
    u, total = p["u0"].copy(), 0.0
    for v in seq:
        bv, bh = p["bv"] + p["Wuv"] @ u, p["bh"] + p["Wuh"] @ u

        def neg_free(x):
            return x @ bv + np.sum(np.logaddexp(0, bh + x @ p["W"]))
        log_z = np.logaddexp.reduce([neg_free(x) for x in frames])
        total += neg_free(v) - log_z
        u = np.tanh(p["bu"] + p["Wvu"] @ v + p["Wuu"] @ u)
    return total


@pytest.fixture(scope="module")
def rbm_tiny():
    return gdsl.load(RBM, nv=3, nh=2, nu=2, seed=3)


def test_rnnrbm_log_prob_matches_the_equations(rbm_tiny):
    p = randomised(rbm_tiny, 20, scale=0.8)
    seqs = sequences(21, (3, 1, 4, 2), nv=3)
    want = np.array([reference_rbm_logp(p, s) for s in seqs])
    np.testing.assert_allclose(rbm_tiny.log_prob({"v": seqs}), want, rtol=1e-6)


def test_rnnrbm_cd_gradient_approaches_the_exact_gradient_with_a_long_chain(rbm_tiny):
    """CD-k from the data, with k long enough to mix, estimates d log p / dparam (including
    through the recurrence, BPTT) without bias: averaged over many copies of the data it
    matches central differences of the exact log-likelihood."""
    p = randomised(rbm_tiny, 22, scale=0.8)
    seqs = sequences(23, (3, 1, 2), nv=3)
    copies = 2000
    _, grads = rbm_tiny.gradients({"v": seqs * copies}, k=100)
    eps = 1e-5
    worst = 0.0
    for name, g in grads.items():
        for j in range(g.size):
            up = {k: v.copy() for k, v in p.items()}
            down = {k: v.copy() for k, v in p.items()}
            up[name].flat[j] += eps
            down[name].flat[j] -= eps
            fd = (np.mean([reference_rbm_logp(up, s) for s in seqs])
                  - np.mean([reference_rbm_logp(down, s) for s in seqs])) / (2 * eps)
            worst = max(worst, abs(g.flat[j] - fd))
    # Monte Carlo error of a mean over 6000 sequences of terms of size ~1: a few hundredths
    assert worst < 0.05, worst


def test_rnnrbm_sampling_matches_the_exact_distribution():
    m = gdsl.load(RBM, nv=2, nh=2, nu=2, seed=4)
    randomised(m, 24, scale=1.2)
    T, n = 2, 30_000
    s = m.sample(n, length=T, k=30)["v"]
    exact, counts = exact_and_counts(m, s, T)
    assert abs(exact.sum() - 1.0) < 1e-9
    tv = 0.5 * np.abs(counts / n - exact).sum()
    assert tv < noise_band(exact, n, np.random.default_rng(2)), tv


def test_rnnrbm_clamped_keys_within_a_step_follow_the_exact_conditional():
    """Within a step, Gibbs sampling with clamped keys draws the others from p(free | clamped, past)."""
    m = gdsl.load(RBM, nv=2, nh=2, nu=2, seed=5)
    randomised(m, 25, scale=1.2)
    n = 30_000
    values = np.zeros((n, 1, 2))
    values[:, 0, 1] = 1.0
    mask = np.zeros((n, 1, 2), bool)
    mask[:, 0, 1] = True
    s = m.sample(n, length=1, clamp={"v": values}, mask={"v": mask}, k=30)["v"]
    assert np.all(s[:, 0, 1] == 1.0)
    exact, counts = exact_and_counts(m, s, 1)
    keep = (np.arange(4) & 1) == 1  # second key on
    cond = np.where(keep, exact, 0.0)
    cond /= cond.sum()
    tv = 0.5 * np.abs(counts / n - cond).sum()
    assert tv < noise_band(cond, n, np.random.default_rng(3)), tv


@pytest.mark.parametrize("method", ["cd", "pcd"])
def test_rnnrbm_fit_raises_the_likelihood(rbm_tiny, method):
    rbm_tiny.params = gdsl.load(RBM, nv=3, nh=2, nu=2, seed=6).params
    pattern = np.eye(3)[[0, 1, 2, 0, 1, 2, 0]]
    data = {"v": [pattern[k:k + 4] for k in range(3)] * 4}
    before = rbm_tiny.log_prob(data).mean()
    history = rbm_tiny.fit(data, method=method, k=5, epochs=40, lr=0.05, batch_size=4, progress=False)
    after = rbm_tiny.log_prob(data).mean()
    assert after > before + 2.0, (before, after)
    assert "train_loglik" in history[-1]
    if method == "pcd":  # one persistent chain per training frame, binary, moved away from the data
        chains = rbm_tiny._pcd_chains["v"]
        assert chains.shape == (12, 4, 3) and set(np.unique(chains)) <= {0.0, 1.0}
        assert not np.array_equal(chains, np.array([pattern[k:k + 4] for k in range(3)] * 4))


@pytest.mark.parametrize("order", [2, 3])
def test_crbm_keeps_its_last_frames_in_a_window(order):
    """crbm.gdl's window holds v[t - 1], ..., v[t - n] (v0 before the first frame): its log p
    matches a direct numpy sum, for the default order and another."""
    m = gdsl.load(CRBM, nv=3, nh=2, n=order, seed=7)
    p = randomised(m, 26, scale=0.6)
    frames = np.array(list(itertools.product([0.0, 1.0], repeat=3)))
    seqs = sequences(27, (5, 2), nv=3)

    def ref(seq):
        past, total = [p["v0"][k] for k in range(order)], 0.0
        for v in seq:
            b = p["b"] + sum(p["A"][k] @ past[k] for k in range(order))
            c = p["c"] + sum(p["B"][k] @ past[k] for k in range(order))

            def neg_free(x):
                return x @ b + np.sum(np.logaddexp(0, c + x @ p["W"]))
            total += neg_free(v) - np.logaddexp.reduce([neg_free(x) for x in frames])
            past = [v] + past[:-1]
        return total
    np.testing.assert_allclose(m.log_prob({"v": seqs}), [ref(s) for s in seqs], rtol=1e-6)


TWO_STATES = """model crbm2(nv = 3, nh = 2) {
    time t
    visible v[t, nv]: binary
    latent  h[t, nh]: binary
    let p1[t] = v[t] from v1
    let p2[t] = p1[t - 1] from v2
    energy -(v[t] @ W @ h[t]) - (b + A1 @ p1[t - 1] + A2 @ p2[t - 1]) @ v[t]
           - (c + B1 @ p1[t - 1] + B2 @ p2[t - 1]) @ h[t]
    param W[nv, nh]
    param b[nv]
    param c[nh]
    param A1[nv, nv]
    param A2[nv, nv]
    param B1[nh, nv]
    param B2[nh, nv]
    param v1[nv]
    param v2[nv]
}
"""


def test_a_window_is_the_states_it_stands_for(tmp_path):
    """window(v[t]) of two frames gives the log p and the CD gradients (through time, into the start
    frames too) of the same model written with one state per frame."""
    path = tmp_path / "crbm2.gdl"
    path.write_text(TWO_STATES)
    a, b = gdsl.load(CRBM, nv=3, nh=2, seed=1), gdsl.load(str(path), seed=1)
    p = randomised(a, 5)
    b.params = {"W": p["W"], "b": p["b"], "c": p["c"], "A1": p["A"][0], "A2": p["A"][1], "B1": p["B"][0],
                "B2": p["B"][1], "v1": p["v0"][0], "v2": p["v0"][1]}
    seqs = sequences(6, (4, 2, 3, 1), nv=3)
    np.testing.assert_allclose(a.log_prob({"v": seqs}), b.log_prob({"v": seqs}), rtol=1e-12)
    a._rng, b._rng = np.random.default_rng(2), np.random.default_rng(2)  # the initialisers drew differently
    (ga, da), (gb, db) = a.gradients({"v": seqs}, k=2), b.gradients({"v": seqs}, k=2)
    assert ga == pytest.approx(gb, rel=1e-12)
    pairs = [("W", "W", None), ("b", "b", None), ("c", "c", None), ("A", "A1", 0), ("A", "A2", 1),
             ("B", "B1", 0), ("B", "B2", 1), ("v0", "v1", 0), ("v0", "v2", 1)]
    for mine, theirs, k in pairs:
        got = da[mine] if k is None else da[mine][k]
        np.testing.assert_allclose(got, db[theirs], rtol=1e-10, atol=1e-12, err_msg=theirs)
    assert np.abs(db["v2"]).max() > 1e-3  # the gradient reaches the oldest start frame


GRU_NADE = """model gru_nade(nv = 5, nh = 3, nu = 4) {
    time t
    visible v[t, nv]: binary
    let z[t] = sigmoid(Wz @ v[t] + Uz @ u[t - 1] + bz)
    let r[t] = sigmoid(Wr @ v[t] + Ur @ u[t - 1] + br)
    let u[t] = (1 - z[t]) * u[t - 1] + z[t] * tanh(Wh @ v[t] + Uh @ (r[t] * u[t - 1]) + bu) from u0
    v[t, i] ~ bernoulli(logits = bv[i] + Wuv[i] @ u[t - 1] + V[i] @ sigmoid(bh + Wuh @ u[t - 1] + W[:, :i] @ v[t, :i]))
    param Wz[nu, nv]
    param Uz[nu, nu]
    param bz[nu]
    param Wr[nu, nv]
    param Ur[nu, nu]
    param br[nu]
    param Wh[nu, nv]
    param Uh[nu, nu]
    param bu[nu]
    param u0[nu]
    param W[nh, nv]
    param V[nv, nh]
    param bv[nv]
    param bh[nh]
    param Wuv[nv, nu]
    param Wuh[nh, nu]
}
"""


def test_a_gated_recurrence_written_from_functions_has_exact_log_p_and_gradients(tmp_path):
    """A GRU state (update and reset gates as per-step lets read by the state's update) over a
    NADE per frame: log p against numpy, the BPTT gradient against central differences."""
    path = tmp_path / "gru_nade.gdl"
    path.write_text(GRU_NADE)
    m = gdsl.load(str(path), seed=0)
    p = randomised(m, 30, scale=0.5)

    def ref(q, seq):
        u, total = q["u0"].copy(), 0.0
        for v in seq:
            bv, bh = q["bv"] + q["Wuv"] @ u, q["bh"] + q["Wuh"] @ u
            for i in range(5):
                pi = sigmoid(bv[i] + q["V"][i] @ sigmoid(bh + q["W"][:, :i] @ v[:i]))
                total += np.log(pi if v[i] else 1 - pi)
            z = sigmoid(q["Wz"] @ v + q["Uz"] @ u + q["bz"])
            r = sigmoid(q["Wr"] @ v + q["Ur"] @ u + q["br"])
            u = (1 - z) * u + z * np.tanh(q["Wh"] @ v + q["Uh"] @ (r * u) + q["bu"])
        return total
    seqs = sequences(31, (4, 2, 3))
    np.testing.assert_allclose(m.log_prob({"v": seqs}), [ref(p, s) for s in seqs], rtol=1e-6)
    _, grads = m.gradients({"v": seqs})
    eps = 1e-6
    for name in ("Uh", "Wr", "Uz", "br", "u0"):
        up = {k: v.copy() for k, v in p.items()}
        down = {k: v.copy() for k, v in p.items()}
        up[name].flat[1] += eps
        down[name].flat[1] -= eps
        fd = (np.mean([ref(up, s) for s in seqs]) - np.mean([ref(down, s) for s in seqs])) / (2 * eps)
        assert grads[name].flat[1] == pytest.approx(fd, rel=1e-5, abs=1e-8), name


@pytest.mark.parametrize("path", [NADE, RBM])
def test_methods_of_other_models_are_refused_with_what_to_use(path):
    m = gdsl.load(path, nv=3, nh=2, nu=2, seed=0)
    frames = {"v": np.zeros((2, 3))}
    with pytest.raises(ValueError, match="log_prob"):
        m.log_joint(frames)
    for call in (m.energy, m.free_energy, m.gibbs):
        with pytest.raises(ValueError, match="unfolds in time"):
            call(frames)


# log_prob(method="ais"): every step's log Z(past) by annealed importance sampling ----------------
@pytest.fixture(scope="module")
def rbm_five():
    """A tiny RNN-RBM (nv = 5, nh = 3, nu = 4): 32 frames per step, so the exact log p is at hand."""
    m = gdsl.load(RBM, nv=5, nh=3, nu=4, seed=8)
    return m, randomised(m, 40, scale=0.8)


@pytest.mark.parametrize("base", ["mean-field", "biases"])
def test_ais_log_prob_agrees_with_the_exact_enumeration(rbm_five, base, capsys):
    """Sequences of different lengths in one batch: each estimate within 4 of its own standard
    deviations of the exact log p (the error band it states) and within 0.05 nats."""
    from gdsl.runtime.ais import LogProbEstimate, standard_schedule

    m, p = rbm_five
    seqs = sequences(41, (4, 2, 3, 1), nv=5)
    exact = m.log_prob({"v": seqs})
    np.testing.assert_allclose(exact, [reference_rbm_logp(p, s) for s in seqs], rtol=1e-6)
    est = m.log_prob({"v": seqs}, method="ais", runs=100, betas=standard_schedule(500), base=base)
    assert isinstance(est, LogProbEstimate) and est.log_prob.shape == est.sd.shape == (4,)
    assert np.all(est.sd > 0) and np.all(est.sd < 0.03), est.sd
    assert np.all(np.abs(est.log_prob - exact) <= 4 * est.sd), (est.log_prob - exact, est.sd)
    assert np.all(np.abs(est.log_prob - exact) < 0.05)
    # one estimate of log Z per frame, in the order the data gave the sequences and steps
    frames = m.last_ais
    assert frames["log_weights"].shape == (10, 100) and frames["base"] == base
    assert sorted(zip(frames["sequence"], frames["step"])) == [(i, t) for i, n in enumerate((4, 2, 3, 1))
                                                                for t in range(n)]
    assert capsys.readouterr() == ("", "")  # progress=False: quiet


def test_ais_log_prob_is_reproducible_from_the_seed_whatever_the_threads():
    """The chains' starts and random streams are drawn once, before the chains are cut into
    the workers' parts: the same seed gives the same estimate with 1 or 2 workers."""
    seqs = {"v": sequences(42, (3, 1, 2), nv=5)}
    out = []
    for workers in (1, 2):
        m = gdsl.load(RBM, nv=5, nh=3, nu=4, seed=9)
        randomised(m, 43, scale=0.8)
        out.append(m.log_prob(seqs, method="ais", runs=6, betas=np.linspace(0, 1, 20), workers=workers))
    np.testing.assert_array_equal(out[0].log_prob, out[1].log_prob)
    np.testing.assert_array_equal(out[0].sd, out[1].sd)


def test_ais_log_prob_mistakes_are_value_errors(rbm_five, tiny):
    m, _ = rbm_five
    data = {"v": sequences(44, (2, 1), nv=5)}
    with pytest.raises(ValueError, match="method must be 'exact' or 'ais'.*'annealed'"):
        m.log_prob(data, method="annealed")
    with pytest.raises(ValueError, match="runs must be a whole number >= 2, got 1"):
        m.log_prob(data, method="ais", runs=1)
    with pytest.raises(ValueError, match="runs must be a whole number >= 2, got 2.5"):
        m.log_prob(data, method="ais", runs=2.5)
    with pytest.raises(ValueError, match="betas must rise from 0 to 1"):
        m.log_prob(data, method="ais", runs=2, betas=[0.0, 0.5])
    with pytest.raises(ValueError, match="base must be 'mean-field' or 'biases', got 'uniform'"):
        m.log_prob(data, method="ais", runs=2, base="uniform")
    with pytest.raises(ValueError, match="workers must be a whole number >= 1"):
        m.log_prob(data, method="ais", runs=2, workers=0)
    # too many states to enumerate: the message says what to pass instead
    with pytest.raises(ValueError, match="max_states=16.*pass method='ais'"):
        m.log_prob(data, max_states=16)
    # a directed step's log p is exact already
    with pytest.raises(ValueError, match="exact: method='exact'"):
        tiny.log_prob({"v": sequences(45, (2,))}, method="ais")


def test_ais_log_prob_of_a_conditional_rbm_agrees_with_the_exact_enumeration():
    """The same kernels anneal any energy conditioned on states: crbm.gdl's two past frames."""
    from gdsl.runtime.ais import standard_schedule

    m = gdsl.load(CRBM, nv=4, nh=3, seed=10)
    randomised(m, 46, scale=0.6)
    data = {"v": sequences(47, (3, 1, 2), nv=4)}
    exact = m.log_prob(data)
    est = m.log_prob(data, method="ais", runs=50, betas=standard_schedule(300))
    assert np.all(np.abs(est.log_prob - exact) <= 4 * est.sd), (est.log_prob - exact, est.sd)
    assert np.all(np.abs(est.log_prob - exact) < 0.05)


AR_WINDOW = """model ar(nv = 4, n = 3) {
    time t
    visible v[t, nv]: binary
    let past[t] = window(v[t]) from v0
    v[t, i] ~ bernoulli(logits = b[i] + sum[k, j](A[k, i, j] * past[t - 1, k, j]))
    param b[nv]
    param A[n, nv, nv]
    param v0[n, nv]
}
"""


def test_a_window_in_a_directed_step(tmp_path):
    """An autoregressive model of order 3 over frames, written with a window: exact log p against
    numpy, and its gradient into the oldest start frame against finite differences."""
    path = tmp_path / "ar.gdl"
    path.write_text(AR_WINDOW)
    m = gdsl.load(str(path), seed=0)
    p = randomised(m, 3, scale=0.8)
    seqs = sequences(4, (5, 2, 4), nv=4)

    def ref(q, seq):
        past, total = [q["v0"][k] for k in range(3)], 0.0
        for v in seq:
            prob = 1 / (1 + np.exp(-(q["b"] + sum(q["A"][k] @ past[k] for k in range(3)))))
            total += np.sum(np.log(np.where(v > 0, prob, 1 - prob)))
            past = [v] + past[:-1]
        return total

    np.testing.assert_allclose(m.log_prob({"v": seqs}), [ref(p, s) for s in seqs], rtol=1e-10)
    _, grads = m.gradients({"v": seqs})
    eps = 1e-6
    bumped = {k: v.copy() for k, v in p.items()}
    bumped["v0"][2, 1] += eps
    numeric = (np.mean([ref(bumped, s) for s in seqs]) - np.mean([ref(p, s) for s in seqs])) / eps
    assert abs(grads["v0"][2, 1]) > 1e-2
    assert grads["v0"][2, 1] == pytest.approx(numeric, rel=1e-4)
