"""Denoising autoencoders as generative Markov chains (Bengio, Yao, Alain & Vincent 2013) and
generative stochastic networks (Bengio, Thibodeau-Laforest, Alain & Yosinski 2014): a model
with a `denoiser { ... }` block.

The block's first `~` is the corruption C(x~ | x), its last the reconstruction p(x | x~),
and any `~` between them draws a latent state h (a GSN's), which may read its own value one
chain step back, `prev(h)` (the implicit group `prev_h`: zero at the first step, or the
parameter h0 of `prev(h, h0)`, which is trained through the unrolled steps too). The
compiler lowers the corruption and the states as q conditionals and the reconstruction as
p's conditional, so the kernels are those of every directed model:

  sample_guide     corrupt: draw x~ (and the states) given x (and prev_h)
  sample_model     draw x from p(x | x~, h)
  joint_backward   d/dparams of sum_r seed_p[r] log p(x_r | x~_r): x~ is an input
  chain_forward    (with states) the states drawn as mean + std * eps (reparameterised)
  chain_backward   (with states) the reverse mode of one chain step: seed_p on log p, adjoints
                   on the drawn states in, adjoints on the prev groups out

The chain x -> x~ -> (h) -> x' -> ... is `sample(n, steps=...)`; clamped elements of x are
kept at every step (inpainting). Training maximises log p(x | x~) for x~ drawn from the
corruption of the data ("denoising"), and with `walkbacks=k` ("walkback") also for x~ drawn
from the corruption of the chain's own samples started at the data: from each row x0, k
steps x~_1 ~ C(x0), x_1 ~ p(x | x~_1), x~_2 ~ C(x_1), ..., every step's reconstruction
trained to give x0. With latent states the k steps are unrolled and back-propagated through
(h_t depends on h_{t-1} through prev(h)); the draws of x and x~ are not differentiated.
"""
from __future__ import annotations

import sys
from typing import Callable, Mapping

import numpy as np

from .checks import mapping, real, refuse_nothing_to_learn, whole
from .dlearn import OPTIMIZERS, Optimizer, _NonFinite
from .learn import TrainingError, _EpochBar, diverged, divergence_scale, kept_text, learning_rate
from .notebook import History

METHODS = ("denoising", "walkback")


def need_denoiser(model, what: str) -> dict:
    d = getattr(model, "DENOISER", None)
    if not d:
        raise ValueError(f"{what} needs a denoiser: {model.NAME} has no 'denoiser {{ ... }}' block "
                         f"(see docs/directed.md)")
    return d


# one chain step -----------------------------------------------------------------------------------
def _zeros(model, n: int) -> dict:
    return {g: np.zeros((n,) + model._shapes[g]) for g in model.group_names}


def _guide_masks(model, n: int, draw_states: bool) -> dict:
    d = model.DENOISER
    return {g: (np.zeros if (g == d["corrupt"] or draw_states) else np.ones)((n,) + model._shapes[g], np.uint8)
            for g in model.GUIDE}


def _corrupt(model, st: dict, n: int, draw_states: bool = True) -> None:
    """x~ ~ C(x~ | x) into st (and, with draw_states, the states given x~ and prev), in row blocks."""
    masks = _guide_masks(model, n, draw_states)
    rng = model._streams(n)
    for sl in model._chunks(n):
        rows = sl.stop - sl.start
        model._dcall("sample_guide", rows, {g: v[sl] for g, v in st.items()}, model._eps_zeros(rows),
                     guide_masks={g: v[sl] for g, v in masks.items()}, rng=rng[sl])


def _reconstruct(model, st: dict, n: int, keep: np.ndarray | None = None) -> None:
    """x ~ p(x | x~, states) into st, elements where `keep` is set left as they are."""
    x = model.DENOISER["visible"]
    keep = keep if keep is not None else np.zeros((n,) + model._shapes[x], np.uint8)
    rng = model._streams(n)
    for sl in model._chunks(n):
        rows = sl.stop - sl.start
        model._dcall("sample_model", rows, {g: v[sl] for g, v in st.items()}, model._eps_zeros(rows),
                     directed_masks={x: keep[sl]}, rng=rng[sl])


def _initial_states(model, st: dict, given=()) -> None:
    """Each prev group before the first step: its parameter (prev(h, h0)), else zero."""
    for implicit, param in model.DENOISER.get("init", {}).items():
        if implicit not in given:
            st[implicit][:] = np.asarray(model.params[param], dtype=np.float64)


def _carry(model, st: dict) -> None:
    for implicit, state in model.DENOISER["prev"].items():
        st[implicit][:] = st[state]


def _start(model, n: int, init) -> np.ndarray:
    """The chains' first x: given rows, or a draw from a simple law of x's domain."""
    x = model.DENOISER["visible"]
    shape = (n,) + model._shapes[x]
    if init is not None:
        if isinstance(init, Mapping):
            unknown = [k for k in init if k != x]
            if unknown:
                raise ValueError(f"init gives the chains' first {x}; {', '.join(map(str, unknown))} is not it")
            init = init.get(x)
        arr = np.asarray(model._array(x, model._with_sample_axis(x, init, n), n), dtype=np.float64)
        return np.ascontiguousarray(arr)
    domain = model.all_domains[x]
    if domain == "binary":
        return (model._rng.random(shape) < 0.5).astype(np.float64)
    if domain == "spin":
        return np.where(model._rng.random(shape) < 0.5, -1.0, 1.0)
    if domain == "categorical":
        k = shape[-1]
        return np.eye(k)[model._rng.integers(0, k, size=shape[:-1])]
    return model._rng.standard_normal(shape)


def sample_chain(model, n: int, steps: int = 100, burn_in: int = 0, clamp: Mapping | None = None,
                 mask: Mapping | None = None, init=None, progress: bool = False) -> dict:
    """n chains of `burn_in + steps` steps x -> x~ -> (states) -> x, started at `init` (rows of
    x, or one row for every chain) or at a draw from a simple law (bits of probability 1/2,
    standard normals); clamped elements of x are set before the first step and kept at
    every step. Returns every group at the last step."""
    d = need_denoiser(model, "the denoising chain")
    x = d["visible"]
    n, steps, burn_in = whole(n, "n", 1), whole(steps, "steps", 1), whole(burn_in, "burn_in")
    clamp, mask = dict(mapping(clamp, "clamp")), dict(mapping(mask, "mask"))
    for k in list(clamp) + list(mask):
        if k != x:
            raise ValueError(f"cannot clamp {k!r}: the chain of {model.NAME} clamps the data, {x}")
    for k in mask:
        if k not in clamp:
            raise ValueError(f"mask given for {k} but {k} is not clamped")
    st = _zeros(model, n)
    st[x] = _start(model, n, init)
    _initial_states(model, st)
    keep = None
    if x in clamp:
        arr = np.asarray(model._array(x, model._with_sample_axis(x, clamp[x], n), n, check_domain=False),
                         np.float64)
        keep = np.ascontiguousarray(model._mask(x, mask.get(x, True), n))
        st[x] = np.ascontiguousarray(np.where(keep.astype(bool), arr, st[x]))
        model._check_domain(x, st[x])
    from .model import _progress

    total = burn_in + steps
    bar = _progress(total, progress, "chain")
    for step in range(total):
        _corrupt(model, st, n)
        _reconstruct(model, st, n, keep)
        _carry(model, st)
        bar(step + 1)
    if hasattr(bar, "close"):
        bar.close()
    return {g: st[g].astype(model.dtype) if model.dtype != np.float64 else st[g] for g in model.group_names}


def reconstruction_mean(model, state: Mapping) -> np.ndarray:
    """E[x | x~ (, states)] under the reconstruction, per row: sigmoid(logits) (or probs) of a
    bernoulli, the mean of a normal; from the arguments `joint_values` computes."""
    d = need_denoiser(model, "reconstruction_mean")
    if "mean" not in d:
        raise ValueError(f"the reconstruction of {model.NAME} is not a bernoulli or normal without free indices: "
                         f"average draws of sample(..., steps=1) instead")
    family, where = d["mean"]
    x = d["visible"]
    st, n = model._state64(state, [d["corrupt"], *d["states"]])
    out = np.empty((n,) + model._shapes[x])
    for sl in model._chunks(n):
        rows = sl.stop - sl.start
        values = model._dcall("joint_values", rows, {g: v[sl] for g, v in st.items()}, model._eps_zeros(rows))
        if family == "normal":
            arg = values[where["mean"]]
        elif "probs" in where:
            arg = values[where["probs"]]
        else:
            arg = 0.5 * (1.0 + np.tanh(0.5 * values[where["logits"]]))
        out[sl] = np.broadcast_to(arg, (rows,) + model._shapes[x])
    return out


# the objective and its gradient ----------------------------------------------------------------------
def _draws(model, x0: np.ndarray, walkbacks: int) -> list[tuple]:
    """The random part of `walkbacks` chain steps from the rows x0: per step the corrupted x~
    and the standard normal noise of the states (the x drawn between steps is used only to
    corrupt it again)."""
    d = model.DENOISER
    x, n = d["visible"], x0.shape[0]
    st = _zeros(model, n)
    st[x] = x0.copy()
    _initial_states(model, st)
    out = []
    for t in range(walkbacks):
        _corrupt(model, st, n, draw_states=False)
        eps = {g: model._rng.standard_normal((n,) + model._shapes[g]) for g in model.REPARAM}
        out.append((st[d["corrupt"]].copy(), eps))
        if t + 1 == walkbacks:
            break
        if d["states"]:
            model.call("chain_forward", n_rows=n, all_state=st, eps=eps, params=model._p64)
        _reconstruct(model, st, n)
        _carry(model, st)
    return out


def objective_and_gradients(model, x0: np.ndarray, draws: list[tuple]):
    """(per-row sum over the steps of log p(x0 | step t), d/dparams of its mean over rows), the
    draws (x~_t and the states' noise) fixed: with states, h_t = mean(x~_t, h_{t-1}) + std * eps_t
    unrolled from h_0 = 0 and back-propagated through."""
    d = model.DENOISER
    x, n = d["visible"], x0.shape[0]
    grads, flat = model._grads()
    seed = np.full(n, 1.0 / n)
    logp_total = np.zeros(n)
    if not d["states"]:
        st = _zeros(model, n)
        st[x] = x0
        for xt, _ in draws:
            st[d["corrupt"]] = np.ascontiguousarray(xt)
            logp, _, g = model._backward("joint", st, model._eps_zeros(n), n, seed, 0.0)
            logp_total += logp
            for k in grads:
                grads[k] += g[k]
        return logp_total, grads
    # forward through the unrolled states, keeping each step's inputs
    st = _zeros(model, n)
    st[x] = x0
    _initial_states(model, st)
    inputs = []
    for xt, eps in draws:
        st[d["corrupt"]] = np.ascontiguousarray(xt)
        inputs.append({k: st[k].copy() for k in d["prev"]})
        model.call("chain_forward", n_rows=n, all_state=st, eps=eps, params=model._p64)
        _carry(model, st)
    # backward, last step first: the adjoint on h_t comes from step t + 1's prev(h)
    adj = {g: np.zeros((n,) + model._shapes[g]) for g in model.group_names}
    for t in range(len(draws) - 1, -1, -1):
        xt, eps = draws[t]
        st[d["corrupt"]] = np.ascontiguousarray(xt)
        for k, v in inputs[t].items():
            st[k] = v
        dx = {g: np.zeros((n,) + model._shapes[g]) for g in model.group_names}
        for implicit, state in d["prev"].items():
            dx[state] = adj[implicit]
        logp = np.empty(n)
        model.call("chain_backward", n_rows=n, all_state=st, eps=eps, params=model._p64, seed_p=seed, logp=logp,
                   grads=flat, adjoints=dx)
        logp_total += logp
        adj = dx
    for implicit, param in d.get("init", {}).items():  # prev(h, h0): h0's adjoint, summed over rows
        grads[param] += adj[implicit].sum(axis=0)
    return logp_total, grads


def denoising_gradients(model, data: Mapping, walkbacks: int = 1):
    """(mean over rows of sum over the walkbacks of log p(x | x~_t), its gradient) for fresh draws."""
    d = need_denoiser(model, "denoising_gradients")
    x = d["visible"]
    walkbacks = whole(walkbacks, "walkbacks", 1)
    st, n = model._state64(data, [x])
    draws = _draws(model, st[x], walkbacks)
    logp, grads = objective_and_gradients(model, st[x], draws)
    return float(logp.mean()), grads


# training -------------------------------------------------------------------------------------------
def fit_denoising(model, data: Mapping, method: str = "denoising", walkbacks: int | None = None,
                  optimizer: str = "adam", lr: float | None = None, epochs: int = 10, batch_size: int = 100,
                  momentum: float = 0.0, weight_decay: float = 0.0, beta1: float = 0.9, beta2: float = 0.999,
                  lr_schedule=None, validation: Mapping | None = None, callback: Callable | None = None,
                  progress: bool | None = None, checkpoint=None) -> History:
    """Train the denoiser by minibatch gradient ascent on the mean of log p(x | x~) (see the
    module docstring). "denoising": one corruption of each row (walkbacks = 1);
    "walkback": `walkbacks` steps of the chain from each row (default 5). Adam (default lr
    1e-3) or SGD (0.01). History: `train_objective` (the mean over the epoch's minibatches of
    log p(x0 | x~) per step) and, with `validation`, `valid_objective` (one corruption of up
    to 1000 rows). `checkpoint` saves the parameters after every epoch (no resume)."""
    need_denoiser(model, f"method {method!r}")
    refuse_nothing_to_learn(model)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} for a denoiser: use 'denoising' or 'walkback'")
    if walkbacks is None:
        walkbacks = 1 if method == "denoising" else 5
    walkbacks = whole(walkbacks, "walkbacks", 1)
    if method == "denoising" and walkbacks != 1:
        raise ValueError("method 'denoising' trains on one corruption of each row; for walkbacks > 1 use "
                         "method='walkback'")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}: use 'adam' or 'sgd'")
    epochs, batch_size = whole(epochs, "epochs"), whole(batch_size, "batch_size", 1)
    lr = real(lr if lr is not None else (1e-3 if optimizer == "adam" else 0.01), "lr", 0.0, low_open=True)
    momentum = real(momentum, "momentum", 0.0, 1.0, high_open=True)
    weight_decay = real(weight_decay, "weight_decay", 0.0)
    x = model.DENOISER["visible"]
    extra = [g for g in data if g != x]
    if extra:
        raise ValueError(f"a denoiser is trained on its data, {x}; {', '.join(map(str, extra))} is not it")
    arrays, n = model._state64(data, [x])
    xs = arrays[x]
    valid = None
    if validation is not None:
        vst, _ = model._state64(validation, [x])
        valid = vst[x][:1000]
    names = tuple(model.params)
    opt = Optimizer(optimizer, {p: model.params[p] for p in names}, lr, momentum, beta1=beta1, beta2=beta2,
                    weight_decay=weight_decay)
    bar = _EpochBar(epochs, progress)
    scale = divergence_scale(model.params, {x: xs})
    history = History()
    epoch = 0
    try:
        while epoch < epochs:
            rate = learning_rate(lr, lr_schedule, epoch, epochs)
            undo = _snapshot(model, opt)
            try:
                objective = _epoch(model, xs, n, batch_size, walkbacks, opt, names, rate)
            except (_NonFinite, KeyboardInterrupt) as e:
                _undo(model, opt, undo)
                if isinstance(e, KeyboardInterrupt):
                    raise
                raise TrainingError(f"epoch {epoch + 1}: parameter {e.args[0]} became NaN or infinite; the "
                                    f"parameters {kept_text(epoch)} are kept. Lower the learning rate "
                                    f"(lr={rate:g})") from None
            problem = diverged(model.params, scale, epoch)
            if problem is None and not np.isfinite(objective):
                problem = f"epoch {epoch + 1}: the objective is {objective!r}"
            if problem is not None:
                _undo(model, opt, undo)
                raise TrainingError(f"{problem}; the parameters {kept_text(epoch)} are kept. Lower the learning "
                                    f"rate (lr={rate:g})")
            record = {"epoch": epoch + 1, "lr": rate, "train_objective": objective}
            if valid is not None:
                record["valid_objective"] = denoising_gradients(model, {x: valid})[0]
            history.append(record)
            epoch += 1
            bar(record)
            if checkpoint is not None:
                model.save(checkpoint)
            if callback is not None and callback(model, record) is False:
                break
    except KeyboardInterrupt:
        print(f"\ninterrupted after epoch {epoch}; parameters kept", file=sys.stderr)
    bar.close()
    return history


def _epoch(model, xs: np.ndarray, n: int, batch_size: int, walkbacks: int, opt, names, rate: float) -> float:
    order = model._rng.permutation(n)
    total, rows = 0.0, 0
    for start in range(0, n, batch_size):
        x0 = np.ascontiguousarray(xs[order[start:start + batch_size]])
        draws = _draws(model, x0, walkbacks)
        logp, grads = objective_and_gradients(model, x0, draws)
        opt.step(model, {k: g / walkbacks for k, g in grads.items()}, names, rate)
        total += float(logp.sum()) / walkbacks
        rows += x0.shape[0]
    return total / rows


def _snapshot(model, opt):
    return ({k: np.array(v) for k, v in model.params.items()}, model._rng.bit_generator.state,
            {k: v.copy() for k, v in opt.m.items()}, {k: v.copy() for k, v in opt.v.items()}, opt.t)


def _undo(model, opt, undo) -> None:
    params, rng, m, v, t = undo
    model.params = params
    model._rng.bit_generator.state = rng
    opt.m, opt.v, opt.t = m, v, t
