"""Chains split over threads (issue 24, item 1; runtime/rows.py).

The streams are drawn for every chain before the cut, and these tiny models' products run as
loops (row by row, no BLAS blocking), so the results must be identical for any thread count:
samples, mean-field means and free energies, for a block sampler and a site-by-site one."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import load_model, random_params
from gdsl.runtime.rows import MIN_ROWS, spans


def test_spans_cover_the_rows_in_contiguous_parts_of_enough_rows():
    assert spans(10, 4) == [(0, 10)]  # fewer than 2 x MIN_ROWS rows: one part
    parts = spans(1000, 3)
    assert len(parts) == 3 and parts[0][0] == 0 and parts[-1][1] == 1000
    assert all(b == c for (_, b), (c, _) in zip(parts, parts[1:])) and min(b - a for a, b in parts) >= MIN_ROWS
    assert len(spans(3 * MIN_ROWS - 1, 8)) == 2


@pytest.mark.parametrize("name", ["rbm", "bm"])
def test_results_do_not_depend_on_the_thread_count(name):
    runs = []
    for threads in (1, 2, 3):
        m = load_model(name, seed=11)
        m.params = random_params(m, 3)
        m.threads = threads
        s = m.sample(300, steps=5)
        mf = m.mean_field({"v": s["v"]}, max_iter=3)
        runs.append((s, mf, m.free_energy({"v": s["v"]})))
    for s, mf, f in runs[1:]:
        for g in s:
            np.testing.assert_array_equal(s[g], runs[0][0][g])
            np.testing.assert_array_equal(mf[g], runs[0][1][g])
        np.testing.assert_array_equal(f, runs[0][2])
    assert runs[0][0]["v"].std() > 0.1  # the chains moved: the comparison means something


def test_directed_densities_and_gradients_over_threads():
    """A directed model's log_prob, gradients and samples with its rows cut over threads: the
    densities and samples are the same on any thread count (rows are independent), the gradient
    sums to rounding (the parts' sums are added in order: the same result every time for a
    thread count)."""
    import gdsl
    from conftest import model_path

    out = {}
    for threads in (1, 2, 2):
        m = gdsl.load(model_path("nade"), seed=5, d=6, nh=4)
        m.params = random_params(m, 5)
        m.threads = threads
        x = {"x": (np.random.default_rng(1).random((200, 6)) < 0.4).astype(float)}
        logp = m.log_prob(x)
        value, grads = m.gradients(x)
        out.setdefault(threads, []).append((logp, value, grads, m.sample(100)["x"]))
    one, two = out[1][0], out[2]
    np.testing.assert_array_equal(two[0][0], one[0])
    np.testing.assert_array_equal(two[0][3], one[3])  # ancestral samples: each row has its own stream
    for k in one[2]:
        np.testing.assert_allclose(two[0][2][k], one[2][k], rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(two[1][2][k], two[0][2][k])
    assert abs(one[1]) > 0.1


@pytest.mark.parametrize("method, momentum", [("pcd", 0.0), ("cd", 0.5)])
def test_training_epochs_are_cut_over_threads(method, momentum):
    """fit runs train_epoch as m.threads parts at once (each samples its rows of every minibatch
    and its chains, then steps its share of every parameter; barriers in compiled code): each
    chain keeps its own stream, so the result is one thread's to rounding, and identical between
    runs on the same thread count. A bm (site-by-site, lateral weights, a symmetric constraint:
    the third barrier) and an rbm (W cut by rows)."""
    for name in ("rbm", "bm"):
        nv = load_model(name).shape("v")[0]
        x = (np.random.default_rng(4).random((256, nv)) < 0.3).astype(np.float32)
        out = {}
        for threads in (1, 2, 2):
            m = load_model(name, seed=3)
            m.params = random_params(m, 2, weight_scale=0.3)
            m.threads = threads
            cut = []
            epoch_parts = m._epoch_parts
            m._epoch_parts = lambda *a: (cut.append(epoch_parts(*a)), cut[-1])[1]
            m.fit({"v": x}, method=method, epochs=2, batch_size=64, lr=0.1, momentum=momentum,
                  progress=False, monitor=None)
            out.setdefault(threads, []).append(({k: v.copy() for k, v in m.params.items()}, cut))
        one, two = out[1][0], out[2]
        assert one[1] == [1, 1] and two[0][1] == [2, 2]  # one thread: one part; two: both epochs in 2 parts
        for k, v in one[0].items():
            np.testing.assert_allclose(two[0][0][k], v, rtol=1e-4, atol=1e-5)
            np.testing.assert_array_equal(two[1][0][k], two[0][0][k])
        assert max(float(np.abs(two[0][0][k] - random_params(m, 2, weight_scale=0.3)[k]).max())
                   for k in one[0]) > 1e-3  # the parameters moved


def test_a_part_that_fails_does_not_leave_the_others_waiting():
    """If one part's kernel raises, the others leave their barrier (the abort flag of
    runtime/sync.py): fit raises, never hangs."""
    x = (np.random.default_rng(5).random((128, 4)) < 0.3).astype(np.float32)
    m = load_model("rbm", seed=3)
    m.threads = 2
    kernels = dict(m.KERNELS)
    calls = []

    def flaky(*args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("a part failed")
        return kernels["train_epoch"](*args)

    m.KERNELS = dict(kernels, train_epoch=flaky)  # this instance only
    with pytest.raises(Exception) as info:
        m.fit({"v": x}, method="pcd", epochs=1, batch_size=64, lr=0.1, progress=False, monitor=None)
    assert "a part failed" in str(info.value)


def test_sequence_models_are_cut_over_threads_by_sequence():
    """A batch of sequences is dealt over threads (runtime/sequence.py `_in_sequence_parts`): the
    RNN-RBM's CD gradients (every frame draws from the stream it has in the whole batch), and the
    RNN-NADE's log-densities and exact gradients equal the one-thread results to rounding, and
    repeat exactly on the same thread count; sampled sequences are the same on any count."""
    import gdsl
    from conftest import MODELS

    rng = np.random.default_rng(4)
    seqs = [(rng.random((n, 5)) < 0.4).astype(float) for n in (6, 2, 5, 3, 6, 1, 4)]
    runs = {}
    for threads in (1, 2, 3, 2):
        rbm = gdsl.load(str(MODELS / "rnnrbm.gdl"), nv=5, nh=3, nu=4, seed=1)
        nade = gdsl.load(str(MODELS / "rnn_nade.gdl"), nv=5, nh=3, nu=4, seed=1)
        for m in (rbm, nade):
            m.threads = threads
            r = np.random.default_rng(9)
            m.params = {k: r.normal(0, 0.7, size=np.shape(v)) for k, v in m.params.items()}
        got = (rbm.gradients({"v": seqs}, k=3), nade.log_prob({"v": seqs}), nade.gradients({"v": seqs}),
               rbm.sample(5, length=4, k=2)["v"], nade.sample(5, length=4)["v"])
        if threads in runs:  # the same thread count again: the same numbers
            (g0, lp0, n0, _, _) = runs[threads]
            assert g0[0] == got[0][0] and all(np.array_equal(g0[1][k], got[0][1][k]) for k in g0[1])
        runs[threads] = got
    (g1, lp1, n1, rs1, ns1) = runs[1]
    assert abs(g1[0]) > 0.1 and max(np.abs(v).max() for v in g1[1].values()) > 1e-3
    for threads in (2, 3):
        g, lp, n, rs, ns = runs[threads]
        # each sequence is drawn on its own stream: the same samples
        assert np.array_equal(rs, rs1) and np.array_equal(ns, ns1)
        assert g[0] == pytest.approx(g1[0], rel=1e-12)
        for k in g1[1]:
            np.testing.assert_allclose(g[1][k], g1[1][k], rtol=1e-10, atol=1e-12, err_msg=k)
        np.testing.assert_allclose(lp, lp1, rtol=1e-12)
        assert n[0] == pytest.approx(n1[0], rel=1e-12)
        for k in n1[1]:
            np.testing.assert_allclose(n[1][k], n1[1][k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_frames_of_a_part_are_their_places_in_the_whole_batch():
    """Frame (r, t) of a batch sorted longest first is first[t] + r; a part's frames, in its own step
    order, map to those places (runtime/sequence.py)."""
    from gdsl.runtime.sequence import _frame_index, _frames_of

    lengths = np.array([4, 3, 3, 1])
    first = _frame_index(lengths)
    assert first.tolist() == [0, 4, 7, 10, 11]
    whole = [(r, t) for t in range(4) for r in range(4) if lengths[r] > t]  # the kernel's order
    place = {rt: k for k, rt in enumerate(whole)}
    for sub in (np.array([0, 2]), np.array([1, 3]), np.arange(4)):
        own = [(int(sub[q]), t) for t in range(4) for q in range(len(sub)) if lengths[sub[q]] > t]
        assert _frames_of(first, lengths, sub).tolist() == [place[rt] for rt in own]


def test_threaded_epoch_loads_from_numba_cache_in_a_fresh_process(tmp_path):
    """The epoch's barrier is compiled into train_epoch (atomics and sched_yield, runtime/sync.py):
    a second process that loads the kernels from numba's on-disk cache (no compiling) trains on
    two threads and gets the first process's parameters bit for bit (an earlier attempt with numba's
    parallel=True crashed exactly there)."""
    import os
    import subprocess
    import sys
    import textwrap

    from conftest import model_path

    script = textwrap.dedent(f"""
        import numpy as np, gdsl
        m = gdsl.load({model_path('rbm')!r}, seed=2, nv=40, nh=24)
        m.threads = 2
        x = (np.random.default_rng(0).random((256, 40)) < 0.3).astype(np.float32)
        m.fit({{"v": x}}, method="pcd", epochs=2, batch_size=64, lr=0.1, progress=False, monitor=None)
        print(repr(float(np.abs(m.params["W"]).sum())))
    """)
    env = dict(os.environ, GDSL_CACHE_DIR=str(tmp_path / "cache"), GDSL_THREADS="2")
    env.pop("GDSL_JIT", None)
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=900)
            for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert runs[0].stdout == runs[1].stdout and float(runs[0].stdout) > 0
    assert list((tmp_path / "cache").rglob("*train_epoch*.nbc")), "the second process should load numba's cache"
