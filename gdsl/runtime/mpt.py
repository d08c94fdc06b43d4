"""Multi-prediction training (Goodfellow, Mirza, Courville & Bengio 2013).

`fit(data, method="mpt")` trains an energy model so that mean-field inference answers any
question about the data: for each example a random subset of the data's elements is given
(clamped), mean field runs `mf_iters` sweeps over everything else, and the loss is the
cross-entropy of the remaining data elements under their final means. The gradient is exact
for that unrolled computation: reverse mode through every block update.

Reverse mode needs nothing new from the compiler. In an energy that is linear in each element
of a group g (binary, spin and one-hot groups without lateral terms), the field of g is
f_g = -dE/dx_g, and for any vector d
    d . f_g(x) = -(E(x with x_g = d) - E(x with x_g = 0)),
so the adjoint reaching another group h is field_h(x_g = d) - field_h(x_g = 0) and the one
reaching the parameters is -(dE/dθ(x_g = d) - dE/dθ(x_g = 0)). Each backward step is therefore
one call of the compiled `field_h` and one of `energy_grad_rows` on the minibatch twice over
(once with x_g = d, once with x_g = 0). Only the loop over updates is Python.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from .. import abi
from .checks import mapping, real, whole
from .learn import divergence_scale
from .minibatch import MomentumSGD, run_epochs

DOMAINS = ("binary", "spin") + abi.ONE_HOT
PROBE_ROWS = 1000  # the fixed training subset each epoch's loss is measured on


def refusal(model) -> str | None:
    """Why multi-prediction training cannot run on `model`, or None."""
    for g, domain in model.domains.items():
        if domain not in DOMAINS:
            return (f"multi-prediction training runs mean field through binary, spin and categorical groups; "
                    f"{g} is {domain}")
        if g not in model.SUMMABLE:
            return (f"multi-prediction training updates each group as a block; {g} has lateral terms "
                    f"(elements of {g} multiplied together)")
    return None


def fit_multi_prediction(model, data: Mapping, lr: float = 0.01, epochs: int = 10, batch_size: int = 100,
                         momentum: float = 0.0, weight_decay: float = 0.0, lr_schedule=None, mf_iters: int = 10,
                         mf_damping: float = 0.0, input_fraction: float = 0.5, validation: Mapping | None = None,
                         callback: Callable | None = None, progress: bool | None = None, checkpoint=None) -> list:
    why = refusal(model)
    if why:
        raise ValueError(why)
    epochs, batch_size = whole(epochs, "epochs"), whole(batch_size, "batch_size", 1)
    mf_iters = whole(mf_iters, "mf_iters", 1)
    damping = real(mf_damping, "mf_damping", 0.0, 1.0, high_open=True)
    lr = lr if callable(lr_schedule) else real(lr, "lr", 0.0, low_open=True)
    momentum = real(momentum, "momentum", 0.0, 1.0, high_open=True)
    weight_decay = real(weight_decay, "weight_decay", 0.0)
    input_fraction = real(input_fraction, "input_fraction", 0.0, 1.0, high_open=True)
    arrays = _data(model, data)
    n = len(next(iter(arrays.values())))
    probe = {g: a[:PROBE_ROWS] for g, a in arrays.items()}
    # fixed questions for the per-epoch measurements, so epochs are comparable
    probe_inputs = random_inputs(model, probe, input_fraction, np.random.default_rng(0))
    if validation is not None:
        validation = _data(model, validation)
        valid_inputs = random_inputs(model, validation, input_fraction, np.random.default_rng(1))
    sgd = MomentumSGD(model, momentum, weight_decay)

    def minibatch(rows, rate):
        batch = {g: a[rows] for g, a in arrays.items()}
        inputs = random_inputs(model, batch, input_fraction, model._rng)
        sgd.zero()
        loss_and_gradient(model, batch, inputs, mf_iters, sgd.grads, damping)
        sgd.step(rate)

    def measure():
        record = {"train_mp_loss": _mean_loss(model, probe, probe_inputs, mf_iters, damping)}
        if validation is not None:
            record["valid_mp_loss"] = _mean_loss(model, validation, valid_inputs, mf_iters, damping)
        return record

    return run_epochs(model, n, batch_size, epochs, lr, lr_schedule, divergence_scale(model.params, arrays),
                      minibatch, measure, progress, checkpoint, callback)


def _mean_loss(model, data, inputs, mf_iters, damping) -> float:
    return float(np.mean(loss_and_gradient(model, data, inputs, mf_iters, damping=damping)))


def _data(model, data: Mapping) -> dict:
    data = mapping(data, "data")
    if not data:
        raise ValueError("multi-prediction training needs data for at least one group")
    model._energy_names(data)
    n = model._n_of(data)
    return {g: model._array(g, v, n) for g, v in data.items()}


def random_inputs(model, data: Mapping, fraction: float, rng) -> dict:
    """Per data group, a boolean mask of the given (clamped) elements: each element, or each row of
    a one-hot group, independently with probability `fraction`."""
    out = {}
    for g, a in data.items():
        shape = a.shape[:-1] if model.domains[g] in abi.ONE_HOT else a.shape
        given = rng.random(shape) < fraction
        out[g] = np.broadcast_to(given[..., None], a.shape) if model.domains[g] in abi.ONE_HOT else given
    return out


def loss_and_gradient(model, data: Mapping, inputs: Mapping, mf_iters: int, grads: Mapping | None = None,
                      damping: float = 0.0):
    """The multi-prediction loss of each row (float64): the cross-entropy of the data elements not
    in `inputs` under their means after `mf_iters` mean-field sweeps with the inputs clamped (each
    update keeps `damping` of the old means). With `grads`, also add the gradient of the mean loss
    over the rows to them."""
    free = {g: _free_mask(model, g, data, inputs) for g in model.domains}
    state = _start(model, data, free)
    tape = _forward(model, state, free, mf_iters, damping)
    loss = _loss(model, data, free, tape)
    if grads is not None:
        _backward(model, data, free, tape, grads, damping)
    return loss


def _free_mask(model, g, data, inputs):
    """1.0 where mean field updates g, 0.0 where it stays clamped (model dtype, group shape)."""
    n = len(next(iter(data.values())))
    shape = (n,) + model._shapes[g]
    if g not in data:
        return np.ones(shape, model.dtype)
    given = np.asarray(inputs.get(g, np.zeros(shape, bool)), dtype=bool)
    if given.shape != shape:
        raise ValueError(f"the inputs mask of {g} must have shape {shape}, not {given.shape}")
    return (~given).astype(model.dtype)


def _start(model, data, free) -> dict:
    """The clamped data where given, the uninformed means (1/2, 0, uniform rows) elsewhere."""
    state = {}
    for g, domain in model.domains.items():
        shape = free[g].shape
        if domain == "binary":
            start = np.full(shape, 0.5, model.dtype)
        elif domain == "spin":
            start = np.zeros(shape, model.dtype)
        else:
            start = np.full(shape, 1.0 / abi.row_states(domain, model._categories[g]), model.dtype)
        if g in data:
            start = np.where(free[g] > 0, start, data[g]).astype(model.dtype)
        state[g] = np.ascontiguousarray(start)
    return state


def _order(model):
    """The groups in the order mean field updates them: block by block, as the compiled kernel does."""
    return [g for block in model.BLOCKS for g in block]


def _forward(model, state, free, mf_iters, damping) -> list:
    """Run the sweeps; return the tape: (group, state before the update, the undamped means, field) per
    update."""
    tape = []
    updated = [g for g in _order(model) if free[g].any()]
    for _ in range(mf_iters):
        for g in updated:
            f = np.empty_like(state[g])
            model.call(f"field_{g}", state=state, f=f)
            mu = _mean(model, g, f)
            tape.append((g, state, mu, f))
            new = np.where(free[g] > 0, damping * state[g] + (1.0 - damping) * mu, state[g])
            state = {**state, g: np.ascontiguousarray(new.astype(model.dtype))}
    return tape


def _last_updates(tape) -> dict:
    return {g: u for u, (g, _, _, _) in enumerate(tape)}


def _loss(model, data, free, tape) -> np.ndarray:
    """Cross-entropy of each row's unclamped data elements under the means their last update computed
    (undamped; from the field, for accuracy near 0 and 1)."""
    n = len(next(iter(data.values())))
    loss = np.zeros(n)
    for g, u in _last_updates(tape).items():
        if g not in data:
            continue
        f = tape[u][3].astype(np.float64).reshape(n, -1)
        t = data[g].astype(np.float64).reshape(n, -1)
        target = free[g].reshape(n, -1) > 0
        domain = model.domains[g]
        if domain == "binary":
            per = np.logaddexp(0.0, f) - t * f
        elif domain == "spin":  # p(x = t) = sigmoid(2 t f)
            per = np.logaddexp(0.0, -2.0 * t * f)
        else:
            per = _one_hot_cross_entropy(model, g, f, t, n)
        loss += np.where(target, per, 0.0).sum(1)
    return loss


def _one_hot_cross_entropy(model, g, f, t, n):
    """Per element, spread so that each row's cross-entropy sums once over its K elements."""
    k = model._categories[g]
    f3, t3 = f.reshape(n, -1, k), t.reshape(n, -1, k)
    top = f3.max(-1, keepdims=True)
    if model.domains[g] == "categorical_off":  # the all-zero state has field 0
        top = np.maximum(top, 0.0)
        log_z = top[..., 0] + np.log(np.exp(-top[..., 0]) + np.exp(f3 - top).sum(-1))
    else:
        log_z = top[..., 0] + np.log(np.exp(f3 - top).sum(-1))
    per_row = log_z - (t3 * f3).sum(-1)
    return np.repeat(per_row / k, k, axis=-1).reshape(n, -1)


def _mean(model, g, f):
    domain = model.domains[g]
    if domain == "binary":
        return 0.5 * (1.0 + np.tanh(0.5 * f))
    if domain == "spin":
        return np.tanh(f)
    top = f.max(-1, keepdims=True)
    if domain == "categorical_off":
        top = np.maximum(top, 0.0)
        e = np.exp(f - top)
        return e / (np.exp(-top) + e.sum(-1, keepdims=True))
    e = np.exp(f - top)
    return e / e.sum(-1, keepdims=True)


def _mean_vjp(model, g, mu, a):
    """a . d(mean)/d(field): the adjoint of the field from the adjoint of the means."""
    domain = model.domains[g]
    if domain == "binary":
        return a * mu * (1.0 - mu)
    if domain == "spin":
        return a * (1.0 - mu * mu)
    return mu * (a - (mu * a).sum(-1, keepdims=True))


def _backward(model, data, free, tape, grads, damping) -> None:
    n = len(next(iter(data.values())))
    adjoint = {g: np.zeros(free[g].shape, np.float64) for g in model.domains}
    last = _last_updates(tape)
    neighbours = {g: {h for pair in model.COUPLED for h in pair if g in pair and h != g} for g in model.domains}
    weights = np.concatenate([np.full(n, -1.0 / n), np.full(n, 1.0 / n)]).astype(model.dtype)
    for u in range(len(tape) - 1, -1, -1):
        g, before, mu, _ = tape[u]
        # new = old where clamped, damping * old + (1 - damping) * mean(field) where free
        d = (1.0 - damping) * _mean_vjp(model, g, mu.astype(np.float64), adjoint[g])
        if g in data and last[g] == u:  # d(cross-entropy)/d(field) = mean - target for every domain here
            d = d + (mu - data[g]).astype(np.float64)
        d *= free[g]
        adjoint[g] *= 1.0 - (1.0 - damping) * free[g]
        if not d.any():
            continue
        twice = {h: np.concatenate([x, x]) for h, x in before.items() if h != g}
        twice[g] = np.ascontiguousarray(np.concatenate([d, np.zeros_like(d)]).astype(model.dtype))
        for h in neighbours[g]:
            if not free[h].any():  # never updated: its adjoint is not needed
                continue
            f = np.empty_like(twice[h])
            model.call(f"field_{h}", state=twice, f=f)
            adjoint[h] += f[:n].astype(np.float64) - f[n:]
        model.call("energy_grad_rows", state=twice, weights=weights, grads=grads)
