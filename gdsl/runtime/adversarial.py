"""Adversarial training of a model with a discriminator (a GAN, Goodfellow et al. 2014):
`fit(data, method="adversarial", ...)`.

The model is the generator: every group is drawn as mean + std * noise in ancestral order
(the compiled `generate_forward`), so a drawn x is a differentiable function of the
generator's parameters. The discriminator block gives a logit l(x) per row, D(x) =
sigmoid(l(x)) the probability that x is data (`discriminate_forward`). Two losses, each a
mean over a minibatch of m real rows and m generated ones:

  discriminator   L_D = mean softplus(-l(x_data)) + mean softplus(l(x_fake))
                      (the cross-entropy with labels data = 1, sample = 0)
  generator       non-saturating (default): L_G = mean softplus(-l(x_fake)) = -mean log D(G(z))
                  minimax:                  L_G = -mean softplus(l(x_fake)) = mean log(1 - D(G(z)))

Reverse mode: dL/dl is a per-row seed; `discriminate_backward` turns it into the gradient
for the discriminator's parameters and into adjoints on the rows it reads (dL/dx), and
`generate_backward` takes those adjoints on the drawn x back through the reparameterised
draw into the generator's parameters. Each minibatch is one discriminator step; after every
k of them comes one generator step (on fresh noise). Both use Adam (beta1 = 0.5 by default,
as is usual for GANs), each on its own parameters.

History (one record per epoch): `d_loss` and `g_loss` (means over the epoch's steps),
`d_real` and `d_fake` (the mean of D on the data and on the samples, in the discriminator
steps). Progress, checkpoints, resume, callbacks and Ctrl-C behave as in the other fits.
"""
from __future__ import annotations

import sys
from typing import Callable, Mapping

import numpy as np

from .checks import real, refuse_nothing_to_learn, whole
from .dlearn import OPTIMIZERS, Optimizer, _NonFinite
from .learn import TrainingError, _EpochBar, diverged, divergence_scale, kept_text, learning_rate
from .notebook import History

LOSSES = ("non-saturating", "minimax")


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * a))  # no overflow for large |a|


def _softplus(a: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, a)


def _generator_seed(logit: np.ndarray, loss: str, m: int):
    """(L_G, dL_G/dlogit per row) for the generated rows' logits."""
    if loss == "non-saturating":
        return float(np.mean(_softplus(-logit))), -_sigmoid(-logit) / m
    return float(-np.mean(_softplus(logit))), -_sigmoid(logit) / m


def _both(real_rows: dict, fake_rows: dict) -> dict:
    return {g: np.ascontiguousarray(np.concatenate([real_rows[g], fake_rows[g]])) for g in real_rows}


def _discriminator_pass(model, real_rows: dict, fake_rows: dict, n: int, m: int):
    """L_D, dL_D/dparams (the discriminator's), and the mean of D on the real and the fake rows."""
    rows = _both(real_rows, fake_rows)
    logit = model._discriminate(rows, n + m)
    lr, lf = logit[:n], logit[n:]
    d_loss = float(np.mean(_softplus(-lr)) + np.mean(_softplus(lf)))
    seed = np.concatenate([-_sigmoid(-lr) / n, _sigmoid(lf) / m])
    _, grads, _ = model._discriminate_backward(rows, seed, n + m)
    return d_loss, {p: grads[p] for p in model.PARAMS_D}, float(np.mean(_sigmoid(lr))), float(np.mean(_sigmoid(lf)))


def _generator_pass(model, noise: dict, m: int, loss: str):
    """L_G and dL_G/dparams (the generator's) for the rows drawn from `noise`."""
    fake = model._generate(noise, m)
    logit = model._discriminate(fake, m)
    g_loss, seed = _generator_seed(logit, loss, m)
    _, _, dx = model._discriminate_backward(fake, seed, m)
    grads = model._generate_backward(noise, {g: dx[g] for g in model.DISCRIMINATOR}, m)
    return g_loss, {p: grads[p] for p in model.PARAMS_P}


def losses_and_gradients(model, data_rows: dict, noise: dict, n: int, loss: str = "non-saturating") -> dict:
    """On n data rows and n rows drawn from `noise`: {"d_loss", "g_loss", "d_grads", "g_grads",
    "d_real", "d_fake"}, the gradients those of the losses themselves (dL/dparam; training
    descends them), d_grads for the discriminator's parameters, g_grads for the generator's."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}: use 'non-saturating' or 'minimax'")
    fake = model._generate(noise, n)
    d_loss, d_grads, d_real, d_fake = _discriminator_pass(model, data_rows, fake, n, n)
    g_loss, g_grads = _generator_pass(model, noise, n, loss)
    return {"d_loss": d_loss, "g_loss": g_loss, "d_grads": d_grads, "g_grads": g_grads, "d_real": d_real,
            "d_fake": d_fake}


def _ascent(grads: dict) -> dict:
    """The optimiser ascends: the gradients of -L."""
    return {k: -v for k, v in grads.items()}


def fit_adversarial(model, data: Mapping, k: int = 1, lr: float = 2e-4, lr_d: float | None = None,
                    lr_g: float | None = None, epochs: int = 10, batch_size: int = 100, beta1: float = 0.5,
                    beta2: float = 0.999, loss: str = "non-saturating", optimizer: str = "adam",
                    momentum: float = 0.0, weight_decay: float = 0.0, lr_schedule=None,
                    callback: Callable | None = None, progress: bool | None = None, checkpoint=None,
                    checkpoint_every: int = 1, resume=None) -> History:
    """Train the generator and the discriminator against each other; return the history. See
    the module docstring. lr_d and lr_g (default lr) are the two learning rates; lr_schedule
    scales both."""
    refuse_nothing_to_learn(model)
    if not model.DISCRIMINATOR:
        raise ValueError(f"method 'adversarial' needs a discriminator: {model.NAME} has no "
                         f"'discriminator {{ ... }}' block (see docs/directed.md)")
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}: use 'non-saturating' or 'minimax'")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}: use 'adam' or 'sgd'")
    epochs, batch_size, k = whole(epochs, "epochs"), whole(batch_size, "batch_size", 1), whole(k, "k", 1)
    checkpoint_every = whole(checkpoint_every, "checkpoint_every", 1)
    rates = {}
    for name, value in (("lr", lr), ("lr_d", lr_d if lr_d is not None else lr),
                        ("lr_g", lr_g if lr_g is not None else lr)):
        rates[name] = real(value, name, 0.0, low_open=True)
    beta1 = real(beta1, "beta1", 0.0, 1.0, high_open=True)
    beta2 = real(beta2, "beta2", 0.0, 1.0, high_open=True)
    momentum = real(momentum, "momentum", 0.0, 1.0, high_open=True)
    weight_decay = real(weight_decay, "weight_decay", 0.0)
    n = model._n_of(data)
    missing = [g for g in model.DISCRIMINATOR if g not in data]
    extra = [g for g in data if g in model.all_domains and g not in model.visible]
    if missing or extra:
        raise ValueError(f"method 'adversarial' takes the data the discriminator reads "
                         f"({', '.join(model.DISCRIMINATOR)})"
                         + (f"; missing: {', '.join(missing)}" if missing else "")
                         + (f"; {', '.join(extra)} {'is' if len(extra) == 1 else 'are'} latent" if extra else ""))
    arrays = {g: np.ascontiguousarray(model._array(g, v, n), dtype=np.float64) for g, v in data.items()}
    params_d, params_g = tuple(model.PARAMS_D), tuple(model.PARAMS_P)
    opt_d = Optimizer(optimizer, {p: model.params[p] for p in params_d}, rates["lr_d"], momentum, beta1=beta1,
                      beta2=beta2, weight_decay=weight_decay)
    opt_g = Optimizer(optimizer, {p: model.params[p] for p in params_g}, rates["lr_g"], momentum, beta1=beta1,
                      beta2=beta2, weight_decay=weight_decay)
    config = {"method": "adversarial", "optimizer": optimizer, "lr": float(lr), "lr_d": rates["lr_d"],
              "lr_g": rates["lr_g"], "epochs": int(epochs), "batch_size": int(batch_size), "k": int(k),
              "loss": loss, "beta1": beta1, "beta2": beta2}
    state = {"epoch": 0, "history": History()}
    if resume is not None:
        _resume(model, resume, config, state, opt_d, opt_g)
    bar = _EpochBar(epochs, progress, first=state["epoch"])
    scale = divergence_scale(model.params, arrays)
    zeros = {g: np.zeros((batch_size,) + model._shapes[g]) for g in model.group_names if g not in arrays}
    undo = None
    try:
        while state["epoch"] < epochs:
            epoch = state["epoch"]
            factor = learning_rate(1.0, lr_schedule, epoch, epochs)
            undo = _snapshot(model, opt_d, opt_g)
            try:
                record = _epoch(model, arrays, zeros, n, batch_size, k, loss, opt_d, opt_g, params_d, params_g,
                                rates["lr_d"] * factor, rates["lr_g"] * factor)
            except _NonFinite as e:
                _undo(model, opt_d, opt_g, undo)
                raise TrainingError(f"epoch {epoch + 1}: parameter {e.args[0]} became NaN or infinite; the "
                                    f"parameters and optimiser states {kept_text(epoch)} are kept. Lower the "
                                    f"learning rates (lr_d={rates['lr_d'] * factor:g}, "
                                    f"lr_g={rates['lr_g'] * factor:g})") from None
            record = {"epoch": epoch + 1, "lr": rates["lr"] * factor, **record}
            problem = diverged(model.params, scale, epoch)
            bad = [key for key, v in record.items() if not np.isfinite(v)]
            if problem is None and bad:
                problem = f"epoch {epoch + 1}: {', '.join(bad)} is {record[bad[0]]!r}"
            if problem is not None:
                _undo(model, opt_d, opt_g, undo)
                undo = None
                raise TrainingError(f"{problem}; the parameters and optimiser states {kept_text(epoch)} are "
                                    f"kept. Lower the learning rates")
            state["history"].append(record)
            state["epoch"] = epoch + 1
            undo = None
            bar(record)
            if checkpoint is not None and (state["epoch"] % checkpoint_every == 0 or state["epoch"] == epochs):
                _save(model, checkpoint, config, state, opt_d, opt_g)
            if callback is not None and callback(model, record) is False:
                break
    except KeyboardInterrupt:
        if undo is not None:
            _undo(model, opt_d, opt_g, undo)
        print(f"\ninterrupted after epoch {state['epoch']}; parameters kept"
              + (f", checkpoint in {checkpoint}" if checkpoint is not None else ""), file=sys.stderr)
        if checkpoint is not None:
            _save(model, checkpoint, config, state, opt_d, opt_g)
    return History(state["history"])


def _epoch(model, arrays, zeros, n, batch_size, k, loss, opt_d, opt_g, params_d, params_g, rate_d, rate_g) -> dict:
    """One pass over the data in minibatches: a discriminator step per minibatch, a generator
    step after every k of them. Returns the epoch's means."""
    order = model._rng.permutation(n)
    d_losses, g_losses, d_real, d_fake, weights = [], [], [], [], []
    for step, start in enumerate(range(0, n, batch_size)):
        rows = order[start:start + batch_size]
        m = len(rows)
        batch = {g: v[rows] for g, v in arrays.items()}
        batch.update({g: z[:m] for g, z in zeros.items()})
        fake = model._generate(model._gan_noise(m), m)
        d_loss, grads, real_mean, fake_mean = _discriminator_pass(model, batch, fake, m, m)
        opt_d.step(model, _ascent(grads), params_d, rate_d)
        d_losses.append(d_loss)
        d_real.append(real_mean)
        d_fake.append(fake_mean)
        weights.append(m)
        if (step + 1) % k == 0:
            g_loss, grads = _generator_pass(model, model._gan_noise(batch_size), batch_size, loss)
            opt_g.step(model, _ascent(grads), params_g, rate_g)
            g_losses.append(g_loss)
    if not g_losses:  # fewer than k minibatches in the epoch: one generator step all the same
        g_loss, grads = _generator_pass(model, model._gan_noise(batch_size), batch_size, loss)
        opt_g.step(model, _ascent(grads), params_g, rate_g)
        g_losses.append(g_loss)
    w = np.asarray(weights, dtype=np.float64)
    return {"d_loss": float(np.average(d_losses, weights=w)), "g_loss": float(np.mean(g_losses)),
            "d_real": float(np.average(d_real, weights=w)), "d_fake": float(np.average(d_fake, weights=w))}


# undo, checkpoints -------------------------------------------------------------------------------
def _snapshot(model, opt_d, opt_g):
    def opt(o):
        return {k: v.copy() for k, v in o.m.items()}, {k: v.copy() for k, v in o.v.items()}, o.t

    return {k: v.copy() for k, v in model.params.items()}, model._rng.bit_generator.state, opt(opt_d), opt(opt_g)


def _undo(model, opt_d, opt_g, undo) -> None:
    params, rng, d, g = undo
    model.params = params
    model._rng.bit_generator.state = rng
    for o, (m, v, t) in ((opt_d, d), (opt_g, g)):
        o.m, o.v, o.t = m, v, t


def _save(model, path, config, state, opt_d, opt_g) -> None:
    extra = dict(opt_d.state())  # the two optimisers' parameters are disjoint: one namespace
    extra.update(opt_g.state())
    extra["training"] = {"epoch": state["epoch"], "history": list(state["history"]), "config": config,
                         "rng": model._rng.bit_generator.state, "opt_t_d": opt_d.t, "opt_t_g": opt_g.t}
    model.save(path, _extra=extra)


def _resume(model, path, config, state, opt_d, opt_g) -> None:
    saved, data = model._read_checkpoint(path, config, ("method", "optimizer", "batch_size", "k", "loss"))
    model._rng.bit_generator.state = saved["rng"]
    opt_d.load(data, saved["opt_t_d"])
    opt_g.load(data, saved["opt_t_g"])
    state.update(epoch=saved["epoch"], history=History(saved["history"]))
