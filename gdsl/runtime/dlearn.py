"""Learning for directed and guided models: `fit(method="ml" | "elbo" | "iwae" | "reinforce" |
"wake-sleep" | "greedy")` with Adam or SGD (`"adversarial"`, for a model with a discriminator,
is in adversarial.py).

Each minibatch is one call of a compiled reverse-mode kernel, which returns the
gradients of  sum_r seed_p[r] log p_r + seed_q[r] log q_r;  the methods differ only in
which rows they feed (data, guide draws, model draws) and which seeds:

  ml          log p(x) of fully observed data              seed_p = 1/B
  elbo        reparameterised ELBO                          seed_p = 1/B, seed_q = -1/B
  iwae        importance-weighted bound with k draws        seeds = +-(normalised weights)/B
  reinforce   score function for discrete latents:          seed_p = 1/B (the model),
              signal l = log p - log q, moving-average       seed_q = (l - b) / sd / B (the guide)
              baseline b and running sd (variance normalisation)
  wake-sleep  wake: h ~ q(h|x), model step on log p(x, h); sleep: (x, h) ~ p, guide step on log q(h|x)

Progress, history, checkpoints, resume and Ctrl-C behave as for energy models
(docs/learning.md): an interrupted epoch is undone, the last completed one is kept.
"""
from __future__ import annotations

import math
import sys
from typing import Callable, Mapping

import numba
import numpy as np

from .checks import real, refuse_nothing_to_learn, whole
from .learn import TrainingError, _EpochBar, diverged, divergence_scale, kept_text, learning_rate

METHODS = ("ml", "elbo", "iwae", "reinforce", "wake-sleep", "greedy", "adversarial")
OPTIMIZERS = ("adam", "sgd")


def default_method(model, data) -> str:
    if getattr(model, "DISCRIMINATOR", ()):
        return "adversarial"
    if all(g in data for g in model.group_names) and not model.UNDIRECTED:
        return "ml"
    if model.REPARAM:
        return "elbo"
    if model.GUIDE:
        return "reinforce"
    if model.UNDIRECTED:
        return "greedy"
    raise ValueError(f"{model.NAME} has latent variables but no guide: give every variable in the data "
                     f"(method='ml'), or add a guide block for elbo/iwae/reinforce/wake-sleep training")


class Optimizer:
    """Adam (Kingma & Ba 2015) or SGD with momentum, as gradient *ascent* on the objective."""

    def __init__(self, kind: str, params: dict, lr: float, momentum: float = 0.0, beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0):
        if kind not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {kind!r}: use 'adam' or 'sgd'")
        self.kind, self.lr, self.momentum = kind, lr, momentum
        self.beta1, self.beta2, self.eps, self.decay = beta1, beta2, eps, weight_decay
        self.m = {k: np.zeros_like(v, dtype=np.float64) for k, v in params.items()}
        self.v = {k: np.zeros_like(v, dtype=np.float64) for k, v in params.items()}
        self.t = 0

    def step(self, model, grads: dict, names, rate: float) -> None:
        self.t += 1
        new = {}
        for k in names:
            p = np.asarray(model.params[k], dtype=np.float64)
            if self.kind == "sgd":
                g = grads[k] - self.decay * p
                self.m[k] = self.momentum * self.m[k] + g
                new[k] = p + rate * self.m[k]
            else:
                new[k] = self._adam(k, p, grads[k], rate)
        for k, v in new.items():
            with np.errstate(over="ignore"):  # finite in float64 but not in the model's dtype counts too
                bad = ~np.isfinite(np.asarray(v, dtype=model.dtype))
            if bad.any():
                raise _NonFinite(k)
        model.params.update(new)  # all or nothing (checked above)

    def _adam(self, k: str, p: np.ndarray, g, rate: float) -> np.ndarray:
        """The new value of parameter k; its moments are updated in place (checkpoints and the undo of
        an interrupted epoch take copies)."""
        flat = np.ascontiguousarray(p).reshape(-1)
        out = np.empty_like(flat)
        _adam_update(flat, np.ascontiguousarray(g, dtype=np.float64).reshape(-1), self.m[k].reshape(-1),
                     self.v[k].reshape(-1), rate, self.beta1, self.beta2, self.eps, self.decay,
                     1 - self.beta1 ** self.t, 1 - self.beta2 ** self.t, out)
        return out.reshape(p.shape)

    def state(self) -> dict:
        # as arrays: the moments of a scalar parameter are numpy scalars after a step, which a
        # checkpoint would otherwise keep in its JSON metadata, where resume does not look
        out = {f"opt_m/{k}": np.array(v) for k, v in self.m.items()}  # copies: the moments change in place
        out.update({f"opt_v/{k}": np.array(v) for k, v in self.v.items()})
        return out

    def load(self, arrays: dict, t: int) -> None:
        for k in self.m:
            if f"opt_m/{k}" in arrays:
                self.m[k] = np.array(arrays[f"opt_m/{k}"], dtype=np.float64)
                self.v[k] = np.array(arrays[f"opt_v/{k}"], dtype=np.float64)
        self.t = t


class _NonFinite(Exception):
    pass


@numba.njit(cache=True, nogil=True)
def _adam_update(p, g, m, v, rate, beta1, beta2, eps, decay, c1, c2, out):
    """One Adam step of a flat parameter, in one pass: m, v updated in place and out = the new
    value, each element by the same operations in the same order as numpy's array expressions
    (so the same rounding), without their ten temporaries and calls per parameter, which were 4%
    of an RNN-RBM epoch. c1, c2: the bias corrections 1 - beta^t."""
    for i in range(p.shape[0]):
        gi = g[i] - decay * p[i]
        m[i] = beta1 * m[i] + (1 - beta1) * gi
        v[i] = beta2 * v[i] + (1 - beta2) * gi * gi
        out[i] = p[i] + rate * (m[i] / c1) / (math.sqrt(v[i] / c2) + eps)


def fit_directed(model, data: Mapping, method: str | None = None, optimizer: str = "adam", lr: float | None = None,
                 epochs: int = 10, batch_size: int = 100, k: int = 5, momentum: float = 0.0,
                 weight_decay: float = 0.0, lr_schedule=None, baseline_decay: float = 0.9,
                 validation: Mapping | None = None, callback: Callable | None = None, progress: bool | None = None,
                 checkpoint=None, checkpoint_every: int = 1, resume=None, **greedy_options) -> list:
    """Train a directed model; return the history (one dict per epoch). See the module docstring."""
    refuse_nothing_to_learn(model)
    method = method or default_method(model, data)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if method == "adversarial":  # a GAN (runtime/adversarial.py); DirectedModel.fit sends it there directly
        raise TypeError("method 'adversarial' is trained by model.fit(data, method='adversarial', ...), whose "
                        "options differ (k discriminator steps per generator step, beta1, loss)")
    if method == "greedy":
        from .dgreedy import fit_dbn_greedy

        return fit_dbn_greedy(model, data, epochs=epochs, batch_size=batch_size, progress=progress,
                              lr=0.05 if lr is None else lr, **greedy_options)
    if greedy_options:
        raise TypeError(f"unexpected options {', '.join(greedy_options)} for method {method!r}")
    epochs, batch_size, k = whole(epochs, "epochs"), whole(batch_size, "batch_size", 1), whole(k, "k", 1)
    checkpoint_every = whole(checkpoint_every, "checkpoint_every", 1)
    lr = (1e-3 if optimizer == "adam" else 0.01) if lr is None else lr
    lr = lr if callable(lr_schedule) else real(lr, "lr", 0.0, low_open=True)
    momentum = real(momentum, "momentum", 0.0, 1.0, high_open=True)
    weight_decay = real(weight_decay, "weight_decay", 0.0)
    baseline_decay = real(baseline_decay, "baseline_decay", 0.0, 1.0)
    step_fn = _STEPS[method]
    _check_method(model, data, method)
    n = model._n_of(data)
    arrays = {g: np.ascontiguousarray(model._array(g, v, n), dtype=np.float64) for g, v in data.items()}
    if validation is not None:  # checked now, not after the first epoch
        nv = model._n_of(validation)
        validation = {g: np.ascontiguousarray(model._array(g, v, nv), dtype=np.float64)
                      for g, v in validation.items()}
    opt = Optimizer(optimizer, model.params, lr, momentum, weight_decay=weight_decay)
    config = {"method": method, "optimizer": optimizer, "lr": float(lr), "epochs": int(epochs),
              "batch_size": int(batch_size), "k": int(k)}
    state = {"epoch": 0, "history": [], "baseline": [0.0, 1.0, 0]}
    if resume is not None:
        _resume(model, resume, config, state, opt)
    bar = _EpochBar(epochs, progress, first=state["epoch"])
    probe = {g: v[:min(n, 1000)] for g, v in arrays.items()}
    undo = None
    scale = divergence_scale(model.params, arrays)
    try:
        while state["epoch"] < epochs:
            epoch = state["epoch"]
            rate = learning_rate(lr, lr_schedule, epoch, epochs)
            undo = ({k_: v.copy() for k_, v in model.params.items()}, model._rng.bit_generator.state,
                    {k_: v.copy() for k_, v in opt.m.items()}, {k_: v.copy() for k_, v in opt.v.items()}, opt.t,
                    list(state["baseline"]))
            order = model._rng.permutation(n)
            total = 0.0
            try:
                for start in range(0, n, batch_size):
                    rows = order[start:start + batch_size]
                    batch = model._minibatch(arrays, rows)
                    total += step_fn(model, batch, opt, rate, k, state, baseline_decay) * len(rows)
            except _NonFinite as e:
                _undo(model, opt, state, undo)
                raise TrainingError(f"epoch {epoch + 1}: parameter {e.args[0]} became NaN or infinite; the "
                                    f"parameters and optimiser state {kept_text(epoch)} are kept. Lower the "
                                    f"learning rate (lr={rate:g})") from None
            record = {"epoch": epoch + 1, "lr": rate, "train_objective": total / n}
            problem = diverged(model.params, scale, epoch)
            if problem is None:
                record.update(_measure(model, method, probe, "train", k))
                bad = [key for key, v in record.items() if not np.isfinite(v)]
                if bad:
                    problem = f"epoch {epoch + 1}: {', '.join(bad)} is {record[bad[0]]!r}"
            if problem is not None:
                _undo(model, opt, state, undo)
                undo = None
                raise TrainingError(f"{problem}; the parameters and optimiser state {kept_text(epoch)} are "
                                    f"kept. Lower the learning rate (lr={rate:g})")
            if validation is not None:
                record.update(_measure(model, method, validation, "valid", k))
            state["history"].append(record)
            state["epoch"] = epoch + 1
            undo = None
            bar(record)
            if checkpoint is not None and (state["epoch"] % checkpoint_every == 0 or state["epoch"] == epochs):
                _save(model, checkpoint, config, state, opt)
            if callback is not None and callback(model, record) is False:
                break
    except KeyboardInterrupt:
        if undo is not None:
            _undo(model, opt, state, undo)
        print(f"\ninterrupted after epoch {state['epoch']}; parameters kept"
              + (f", checkpoint in {checkpoint}" if checkpoint is not None else ""), file=sys.stderr)
        if checkpoint is not None:
            _save(model, checkpoint, config, state, opt)
    return state["history"]


def _check_method(model, data, method) -> None:
    missing = [g for g in model.group_names if g not in data]
    if method == "ml":
        if missing or model.UNDIRECTED:
            raise ValueError(f"method 'ml' needs every variable in the data (missing: {', '.join(missing)}); "
                             + ("use method='greedy' for a DBN" if model.UNDIRECTED else
                                "with latent variables use elbo, iwae, reinforce or wake-sleep and a guide"))
        return
    if not model.GUIDE:
        raise ValueError(f"method {method!r} needs a guide: add 'guide {{ ... }}' defining q(latents | visibles)")
    extra = [g for g in data if g not in model.visible]
    if extra:
        raise ValueError(f"method {method!r} takes the visible variables only; {', '.join(extra)} are latent")
    if method in ("elbo", "iwae") and (not model.REPARAM or len(model.REPARAM) != len(model.GUIDE)):
        others = [g for g in model.GUIDE if g not in model.REPARAM]
        mixtures = [g for g in others if model.GUIDE_FAMILIES.get(g) == "mixture"]
        what = (f"{', '.join(mixtures)} from a mixture, which is not reparameterised" if mixtures else
                f"discrete ones ({', '.join(others)})")
        raise ValueError(f"method {method!r} reparameterises normal latents; this guide draws {what}: use "
                         f"'reinforce' or 'wake-sleep'")
    if method in ("reinforce", "wake-sleep") and model.REPARAM:
        raise ValueError(f"method {method!r} is for discrete latents; for the normal latents "
                         f"{', '.join(model.REPARAM)} use 'elbo' or 'iwae'")


# one minibatch per method: returns the batch's mean objective --------------------------------------
def _step_ml(model, batch, opt, rate, k, state, decay) -> float:
    n = len(next(iter(batch.values())))
    logp, _, grads = model._backward("joint", batch, model._eps_zeros(n), n, 1.0 / n, 0.0)
    opt.step(model, grads, model.PARAMS_P, rate)
    return float(logp.mean())


def _step_bound(model, batch, opt, rate, k, state, decay, iw: bool) -> float:
    kk = int(k) if iw else 1
    value, grads = model.gradients(batch, "iwae" if iw else "elbo", k=kk)
    opt.step(model, grads, tuple(model._p), rate)
    return value


def _step_reinforce(model, batch, opt, rate, k, state, decay) -> float:
    st = model.sample_guide(batch)
    n = len(next(iter(batch.values())))
    logp, logq = model._forward("joint", st, {}, n)
    signal = logp - logq
    mean, var, seen = state["baseline"]
    centred = signal - (mean if seen else signal.mean())
    scale = max(1.0, float(np.sqrt(var))) if seen else max(1.0, float(centred.std()))
    _, _, grads = model._backward("joint", st, {}, n, 1.0 / n, centred / scale / n)
    opt.step(model, grads, tuple(model._p), rate)
    # moving averages of the signal's mean and variance (the baseline and the normaliser)
    batch_mean, batch_var = float(signal.mean()), float(signal.var())
    if seen:
        mean = decay * mean + (1 - decay) * batch_mean
        var = decay * var + (1 - decay) * batch_var
    else:
        mean, var = batch_mean, batch_var
    state["baseline"] = [mean, var, seen + 1]
    return float(signal.mean())


def _step_wake_sleep(model, batch, opt, rate, k, state, decay) -> float:
    n = len(next(iter(batch.values())))
    st = model.sample_guide(batch)  # wake: latents from q, a model step on log p(x, h)
    logp, logq, grads = model._backward("joint", st, {}, n, 1.0 / n, 0.0)
    dream = {g: np.zeros((n,) + model._shapes[g]) for g in model.group_names}
    model._ancestral(dream, {}, n)  # sleep: fantasies from p, a guide step on log q(h | x)
    _, _, sleep = model._backward("joint", dream, {}, n, 0.0, 1.0 / n)
    grads.update({g: sleep[g] for g in model.PARAMS_Q})
    opt.step(model, grads, tuple(model._p), rate)
    return float((logp - logq).mean())


_STEPS = {"ml": _step_ml, "elbo": lambda *a: _step_bound(*a, iw=False), "iwae": lambda *a: _step_bound(*a, iw=True),
          "reinforce": _step_reinforce, "wake-sleep": _step_wake_sleep}


def _measure(model, method, data, prefix, k) -> dict:
    """The objective on a fixed subset after the epoch: log-likelihood (ml) or the bound."""
    own = getattr(model, "_epoch_measure", None)  # a model may measure its own way (a sequence RNN-RBM)
    if own is not None:
        return own(data, prefix)
    if method == "ml":
        return {f"{prefix}_loglik": float(np.mean(model.log_prob(data)))}
    out = {f"{prefix}_elbo": float(np.mean(model.elbo(data, k=1)))}
    if method == "iwae":
        out[f"{prefix}_iwae{k}"] = float(np.mean(model.elbo(data, k=k)))
    return out


# checkpoints ---------------------------------------------------------------------------------------
def _undo(model, opt, state, undo) -> None:
    params, rng, m, v, t, baseline = undo
    model.params = params
    model._rng.bit_generator.state = rng
    opt.m, opt.v, opt.t = m, v, t
    state["baseline"] = baseline


def _save(model, path, config, state, opt) -> None:
    extra = dict(opt.state())
    extra["training"] = {"epoch": state["epoch"], "history": state["history"], "config": config,
                         "rng": model._rng.bit_generator.state, "opt_t": opt.t, "baseline": state["baseline"]}
    model.save(path, _extra=extra)


def _resume(model, path, config, state, opt) -> None:
    saved, data = model._read_checkpoint(path, config, ("method", "optimizer", "batch_size", "k"))
    model._rng.bit_generator.state = saved["rng"]
    opt.load(data, saved["opt_t"])
    state.update(epoch=saved["epoch"], history=saved["history"], baseline=saved["baseline"])
