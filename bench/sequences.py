"""Sequence models on Bach chorales (../shared/data/bach_chorales.npz): test log-likelihood per
frame of the RNN-NADE (models/rnn_nade.gdl) beside two baselines computed here, a model of
independent keys and a linear autoregressive model (88 logistic regressions on the previous
frame), and the published JSB figures.

    python bench/sequences.py [--epochs 200] [--lr 1e-3] [--batch 10] [--out docs/results-sequences.md]
    python bench/sequences.py --speed [--threads 1] [--k 15] [--epochs 3]
    python bench/sequences.py --harmonise [--epochs 100] [--k 15] [--lr 1e-3]
    python bench/sequences.py --ais [--model rnnrbm|crbm [--order n]] [--params rnnrbm.npz] [--epochs 60 --k 15 --lr 3e-3]
                              [--runs 20] [--temperatures 300 1000]

The RNN-NADE is trained by maximum likelihood (Adam, minibatches of pieces) on the training
pieces; the epoch with the best validation log-likelihood is kept (a checkpoint per epoch).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gdsl  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "bach_chorales.npz")
PUBLISHED = {"RNN (Boulanger-Lewandowski et al. 2012, JSB)": -8.71, "RNN-NADE, best (ibid., JSB)": -5.19}


def pieces(d, split):
    x, o = d[split], d[split + "_offsets"]
    return [x[o[i]:o[i + 1]].astype(np.float64) for i in range(len(o) - 1)]


def per_frame(logp, seqs) -> float:
    return float(np.sum(logp) / sum(len(s) for s in seqs))


def independent(train, test) -> float:
    f = np.clip(np.concatenate(train).mean(0), 1e-6, 1 - 1e-6)
    x = np.concatenate(test)
    return float(np.sum(x * np.log(f) + (1 - x) * np.log(1 - f)) / len(x))


def previous_frames(seqs):
    """(inputs, targets): each frame with the one before it (zeros before the first)."""
    prev = [np.vstack([np.zeros((1, s.shape[1])), s[:-1]]) for s in seqs]
    return np.concatenate(prev), np.concatenate(seqs)


def linear_autoregressive(train, valid, test):
    """88 logistic regressions of each key on the previous frame (an L2 penalty chosen on the
    validation pieces), fitted jointly by L-BFGS."""
    from scipy.optimize import minimize

    X, Y = previous_frames(train)
    Xv, Yv = previous_frames(valid)
    Xt, Yt = previous_frames(test)
    k = X.shape[1]

    def loglik(theta, X, Y):
        W, b = theta[:k * k].reshape(k, k), theta[k * k:]
        a = X @ W + b
        return np.sum(Y * a - np.logaddexp(0, a))

    def fit(l2):
        def f(theta):
            W, b = theta[:k * k].reshape(k, k), theta[k * k:]
            a = X @ W + b
            p = 1 / (1 + np.exp(-a))
            ll = np.sum(Y * a - np.logaddexp(0, a)) - 0.5 * l2 * np.sum(W * W)
            g = Y - p
            gW = X.T @ g - l2 * W
            return -ll, -np.concatenate([gW.ravel(), g.sum(0)])
        return minimize(f, np.zeros(k * k + k), jac=True, method="L-BFGS-B", options={"maxiter": 500}).x

    best = max(((loglik(th, Xv, Yv), l2, th) for l2 in (0.1, 1.0, 10.0) for th in [fit(l2)]), key=lambda r: r[0])
    return float(loglik(best[2], Xt, Yt) / len(Xt)), best[1]


def speed(train, threads: int, epochs: int, k: int, batch: int) -> None:
    """Median seconds of an RNN-RBM training epoch (CD-k, BPTT, Adam), gdsl and PyTorch in
    turn in this process, at `threads` threads each."""
    import torch
    from threadpoolctl import threadpool_limits

    from torch_rnnrbm import RnnRbm

    torch.set_num_threads(threads)
    m = gdsl.load("models/rnnrbm.gdl", seed=0)
    m.threads = threads
    tm = RnnRbm(seed=0)
    rng = np.random.default_rng(0)
    times = {"gdsl": [], "torch": []}
    m.fit({"v": train[:10]}, method="cd", k=k, epochs=1, batch_size=batch, progress=False)  # compiles
    tm.epoch(train[:10], batch, k, rng)
    # after the first calls, so that the BLAS numba's kernels call (scipy's) is loaded and limited too
    with threadpool_limits(threads):
        for _ in range(epochs):
            t0 = time.perf_counter()
            m.fit({"v": train}, method="cd", k=k, epochs=1, batch_size=batch, progress=False)
            times["gdsl"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            tm.epoch(train, batch, k, rng)
            times["torch"].append(time.perf_counter() - t0)
    g, t = np.median(times["gdsl"]), np.median(times["torch"])
    # each epoch's two sides ran back to back: their ratios are robust to a machine whose speed drifts
    ratios = [b / a for a, b in zip(times["gdsl"], times["torch"])]
    print(f"RNN-RBM epoch, CD-{k}, {len(train)} pieces, batch {batch}, {threads} thread(s): gdsl {g:.2f} s, "
          f"PyTorch {torch.__version__} {t:.2f} s (medians of {epochs}); PyTorch / gdsl = {t / g:.2f} "
          f"(median of the epochs' ratios {np.median(ratios):.2f}: {', '.join(f'{r:.2f}' for r in ratios)})")


def pictures(m, seed: int = 0) -> None:
    """Three generated chorale fragments as piano rolls (docs/chorale_samples.png) and the
    first as a MIDI file (docs/chorale_sample.mid, church organ)."""
    from gdsl import music, plot

    docs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
    m._rng = np.random.default_rng(seed)
    rolls = m.sample(3, length=48)["v"]
    plot.piano_rolls(rolls, path=os.path.join(docs, "chorale_samples.png"),
                     titles=[f"RNN-NADE sample {i + 1} (48 quarter notes)" for i in range(3)])
    count = music.to_midi(rolls[0], os.path.join(docs, "chorale_sample.mid"), program=19)
    print(f"docs/chorale_samples.png, docs/chorale_sample.mid ({count} notes, "
          f"{os.path.getsize(os.path.join(docs, 'chorale_sample.mid'))} bytes)")


def harmonise(train, test, epochs: int, k: int, lr: float, batch: int, seed: int) -> None:
    """Train the RNN-RBM by CD-k with BPTT, then (the harmonisation task) give it the soprano of
    the first test piece, the highest sounding key of each frame with every key above it off,
    and let it draw the voices below; docs/harmonisation.png shows the piece and the model's
    version, docs/harmonisation.mid the latter."""
    from gdsl import music, plot

    docs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
    m = gdsl.load("models/rnnrbm.gdl", seed=seed)
    t0 = time.perf_counter()
    history = m.fit({"v": train}, method="cd", k=k, epochs=epochs, lr=lr, batch_size=batch, progress=False)
    print(f"RNN-RBM: {epochs} epochs of CD-{k} in {time.perf_counter() - t0:.0f} s; free-energy gap "
          f"{-history[0]['train_objective']:.2f} -> {-history[-1]['train_objective']:.2f} per piece")
    piece = test[0]
    top = np.array([np.max(np.nonzero(f)[0]) if f.any() else 0 for f in piece])
    mask = np.arange(piece.shape[1])[None, :] >= top[:, None]
    out = m.sample(1, length=len(piece), clamp={"v": piece[None]}, mask={"v": mask[None]}, k=50)["v"][0]
    assert np.array_equal(out[mask], piece[mask])
    plot.piano_rolls([piece, out], path=os.path.join(docs, "harmonisation.png"),
                     titles=[f"a test chorale ({TEST_NAMES[0]})",
                             "RNN-RBM harmonisation of its soprano (keys at and above the soprano clamped)"])
    count = music.to_midi(out, os.path.join(docs, "harmonisation.mid"), program=19)
    print(f"docs/harmonisation.png, docs/harmonisation.mid ({count} notes)")


TEST_NAMES = []


def rnnrbm_ais(train, test, a) -> None:
    """The test log-likelihood per frame of `a.model` (the RNN-RBM, or the conditional RBM), every
    frame's log Z(past) estimated by AIS (`log_prob(method="ais")`), once per schedule length in
    `a.temperatures`: the parameters from `a.params` when that file exists, else trained here by
    CD-k (with BPTT for the RNN-RBM) and saved there."""
    from gdsl.runtime.ais import standard_schedule

    name = {"rnnrbm": "RNN-RBM", "crbm": f"CRBM of order {a.order}"}[a.model]
    m = gdsl.load(f"models/{a.model}.gdl", seed=a.seed, **({"n": a.order} if a.model == "crbm" else {}))
    if a.params and os.path.exists(a.params):
        m.load_params(a.params)
        print(f"{name} parameters from {a.params}")
    else:
        t0 = time.perf_counter()
        history = m.fit({"v": train}, method="cd", k=a.k, epochs=a.epochs, lr=a.lr, batch_size=a.batch,
                        progress=False)
        print(f"{name}: {a.epochs} epochs of CD-{a.k} (lr {a.lr:g}, {a.batch} pieces a minibatch) in "
              f"{time.perf_counter() - t0:.0f} s; free-energy gap {-history[0]['train_objective']:.2f} -> "
              f"{-history[-1]['train_objective']:.2f} per piece", flush=True)
        if a.params:
            m.save(a.params)
    frames = sum(len(s) for s in test)
    for count in a.temperatures:
        t0 = time.perf_counter()
        est = m.log_prob({"v": test}, method="ais", runs=a.runs, betas=standard_schedule(count), progress=False)
        seconds = time.perf_counter() - t0
        sd_frames = m.last_ais["sd"]
        print(f"AIS, {a.runs} runs x {frames} frames, {count} temperatures ({seconds:.0f} s): test "
              f"{np.sum(est.log_prob) / frames:.3f} +- {np.sqrt(np.sum(est.sd ** 2)) / frames:.3f} nats per frame; "
              f"per-frame sd of log Z: median {np.median(sd_frames):.3f}, max {np.max(sd_frames):.3f}", flush=True)


def autoregressive_keys(train, valid, test, l2: float = 1.0):
    """Logistic regressions of each key on the previous frame and on the keys below it in the
    same frame (an FVSBN per frame conditioned on the previous one), fitted jointly by L-BFGS
    with the L2 penalty the previous-frame model chose on validation. Returns (valid, test)."""
    from scipy.optimize import minimize

    X, Y = previous_frames(train)
    k = X.shape[1]
    below = np.triu(np.ones((k, k)), 1)  # below[i, j] = 1: key i of the frame feeds key j > i

    def unpack(theta):
        return theta[:k * k].reshape(k, k), theta[k * k:2 * k * k].reshape(k, k) * below, theta[2 * k * k:]

    def f(theta):
        W, U, b = unpack(theta)
        a = X @ W + Y @ U + b
        p = 1 / (1 + np.exp(-a))
        ll = np.sum(Y * a - np.logaddexp(0, a)) - 0.5 * l2 * (np.sum(W * W) + np.sum(U * U))
        g = Y - p
        return -ll, -np.concatenate([(X.T @ g - l2 * W).ravel(), ((Y.T @ g - l2 * U) * below).ravel(), g.sum(0)])

    W, U, b = unpack(minimize(f, np.zeros(2 * k * k + k), jac=True, method="L-BFGS-B",
                              options={"maxiter": 1500}).x)
    out = []
    for seqs in (valid, test):
        Xa, Ya = previous_frames(seqs)
        a = Xa @ W + Ya @ U + b
        out.append(float(np.sum(Ya * a - np.logaddexp(0, a)) / len(Ya)))
    return tuple(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--speed", action="store_true", help="time RNN-RBM epochs against PyTorch instead")
    ap.add_argument("--pictures", default=None, help="only draw samples of an RNN-NADE saved in this file")
    ap.add_argument("--harmonise", action="store_true", help="train the RNN-RBM and harmonise a soprano line")
    ap.add_argument("--ais", action="store_true",
                    help="the test log-likelihood of --model, each frame's log Z by AIS (trained here unless --params)")
    ap.add_argument("--params", default=None, help="--ais: the model's parameters (loaded if the file exists, else saved)")
    ap.add_argument("--model", default="rnnrbm", choices=("rnnrbm", "crbm"), help="--ais: which per-step energy model")
    ap.add_argument("--order", type=int, default=2, help="--ais --model crbm: the frames each step sees (n)")
    ap.add_argument("--runs", type=int, default=20, help="--ais: AIS chains per frame")
    ap.add_argument("--temperatures", type=int, nargs="+", default=[1000],
                    help="--ais: schedule lengths (the standard schedule's shape), one estimate each")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--k", type=int, default=15)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint", default=None, help="checkpoint file (resumed from when it exists)")
    ap.add_argument("--out", default=None, help="append the table to this markdown file")
    a = ap.parse_args()
    if a.pictures:
        m = gdsl.load("models/rnn_nade.gdl")
        m.load_params(a.pictures)
        pictures(m, a.seed)
        return
    d = np.load(DATA)
    train, valid, test = pieces(d, "train"), pieces(d, "valid"), pieces(d, "test")
    if a.speed:
        speed(train, a.threads, min(a.epochs, 5), a.k, a.batch)
        return
    if a.ais:
        rnnrbm_ais(train, test, a)
        return
    if a.harmonise:
        TEST_NAMES[:] = list(d["test_names"])
        harmonise(train, test, a.epochs, a.k, a.lr, a.batch, a.seed)
        return
    print(f"chorales: {len(train)} / {len(valid)} / {len(test)} pieces, "
          f"{sum(map(len, train))} / {sum(map(len, valid))} / {sum(map(len, test))} frames")
    rows = [("independent keys", independent(train, test), "")]
    t0 = time.perf_counter()
    lin, l2 = linear_autoregressive(train, valid, test)
    rows.append(("linear autoregressive (previous frame)", lin, f"L2 {l2:g}, {time.perf_counter() - t0:.0f} s"))
    t0 = time.perf_counter()
    _, keys = autoregressive_keys(train, valid, test, l2)
    rows.append(("linear autoregressive (previous frame and the keys below)", keys,
                 f"L2 {l2:g}, {time.perf_counter() - t0:.0f} s"))
    print(rows)

    m = gdsl.load("models/rnn_nade.gdl", seed=a.seed)
    best = {"valid": -np.inf, "params": None, "epoch": 0}

    def keep_best(model, record):
        v = per_frame(model.log_prob({"v": valid}), valid)
        record["valid_per_frame"] = v
        print(f"epoch {record['epoch']}: train {record['train_objective'] / np.mean([len(s) for s in train]):.3f}"
              f" valid {v:.3f} per frame", flush=True)
        if v > best["valid"]:
            best.update(valid=v, params={k: x.copy() for k, x in model.params.items()}, epoch=record["epoch"])

    t0 = time.perf_counter()
    resume = a.checkpoint if a.checkpoint and os.path.exists(a.checkpoint) else None
    m.fit({"v": train}, epochs=a.epochs, lr=a.lr, batch_size=a.batch, progress=False, callback=keep_best,
          checkpoint=a.checkpoint, resume=resume)
    seconds = time.perf_counter() - t0
    m.params = best["params"]
    if a.checkpoint:
        m.save(a.checkpoint.replace(".npz", "") + "-best.npz")
    rnn_nade = per_frame(m.log_prob({"v": test}), test)
    pictures(m, a.seed)
    rows.append(("RNN-NADE (gdsl, models/rnn_nade.gdl)", rnn_nade,
                 f"epoch {best['epoch']} of {a.epochs} (best validation), {seconds:.0f} s"))
    lines = ["| model | test log-likelihood per frame (nats) | notes |", "| --- | --- | --- |"]
    lines += [f"| {name} | {v:.2f} | {note} |" for name, v, note in rows]
    lines += [f"| {name} | {v:.2f} | published, JSB split |" for name, v in PUBLISHED.items()]
    text = "\n".join(lines)
    print(text)
    print(f"RNN-NADE minus the best linear autoregressive model: {rnn_nade - max(lin, keys):+.2f} nats per frame")
    if a.out:
        with open(a.out, "a") as f:
            f.write(f"\n`python bench/sequences.py --epochs {a.epochs} --lr {a.lr:g} --batch {a.batch}`\n\n"
                    + text + "\n")


if __name__ == "__main__":
    main()
