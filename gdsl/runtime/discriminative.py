"""Discriminative and hybrid training of a class label (Larochelle & Bengio 2008).

`fit(data, method="discriminative", target="y")` maximises the exact conditional
log-likelihood sum log p(y | v); `method="hybrid"` maximises log p(y | v) + alpha log p(v, y).

With every group other than the data and the label summed out (F is the free energy),
    -d log p(y | v)/dθ = sum_k (δ_{k,y} - p(k | v)) dF(v, k)/dθ,
and dF/dθ = E[dE/dθ | v, k] is dE/dθ at the conditional means of the summed groups (the
energy is linear in each of their elements). So one minibatch costs one free-energy call and
one conditional-mean pass over its n x K (sample, class) rows, and one `energy_grad_rows`
call weighting each row by (δ - p) / n. The generative part of the hybrid objective is the
usual stochastic-maximum-likelihood gradient (positive phase at the data with the summed
groups at their means, negative phase from persistent chains after k Gibbs sweeps).

The loop over minibatches is Python; every step inside it is a compiled kernel over the
whole minibatch.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from .checks import real, whole
from .learn import divergence_scale
from .minibatch import MomentumSGD, run_epochs


def fit_discriminative(model, data: Mapping, target: str | None = None, hybrid: bool = False, alpha: float = 0.01,
                       lr: float = 0.05, epochs: int = 10, batch_size: int = 100, momentum: float = 0.0,
                       weight_decay: float = 0.0, lr_schedule=None, k: int = 1, chains: int | None = None,
                       validation: Mapping | None = None, callback: Callable | None = None,
                       progress: bool | None = None, checkpoint=None) -> list:
    target = _label(model, data, target)
    epochs, batch_size, k = whole(epochs, "epochs"), whole(batch_size, "batch_size", 1), whole(k, "k", 1)
    lr = lr if callable(lr_schedule) else real(lr, "lr", 0.0, low_open=True)
    momentum = real(momentum, "momentum", 0.0, 1.0, high_open=True)
    weight_decay = real(weight_decay, "weight_decay", 0.0)
    alpha = real(alpha, "alpha", 0.0)
    n = model._n_of(data)
    arrays = {g: model._array(g, v, n) for g, v in data.items()}
    labels = arrays[target].argmax(-1)
    inputs = {g: a for g, a in arrays.items() if g != target}
    summed = tuple(g for g in model.domains if g not in arrays)
    if validation is not None:
        nv = model._n_of(validation)
        validation = {g: model._array(g, v, nv) for g, v in validation.items()}
        _label(model, validation, target)
    chains = batch_size if chains is None else whole(chains, "chains", 1)
    state = {"chains": model.random_state(chains) if hybrid else None}
    sgd = MomentumSGD(model, momentum, weight_decay)

    def minibatch(rows, rate):
        batch = {g: a[rows] for g, a in inputs.items()}
        sgd.zero()
        _conditional_gradient(model, batch, labels[rows], target, summed, sgd.grads)
        if hybrid:
            state["chains"] = _generative_gradient(model, {**batch, target: arrays[target][rows]}, summed,
                                                   state["chains"], k, alpha, sgd.grads)
        sgd.step(rate)

    def measure():
        record = _scores(model, inputs, labels, target, "train")
        if validation is not None:
            vlabels = validation[target].argmax(-1)
            record.update(_scores(model, {g: a for g, a in validation.items() if g != target}, vlabels, target,
                                  "valid"))
        return record

    return run_epochs(model, n, batch_size, epochs, lr, lr_schedule, divergence_scale(model.params, arrays),
                      minibatch, measure, progress, checkpoint, callback)


def _label(model, data: Mapping, target: str | None) -> str:
    """The label group: `target`, or the one one-hot group of one row among the data."""
    if target is None:
        labels = [g for g in data if g in model.domains and model._categories.get(g) is not None
                  and len(model.shape(g)) == 1]
        if len(labels) != 1:
            raise ValueError("say which group is the class label: fit(..., target='y') (the data hold "
                             f"{len(labels)} one-hot groups of one row)")
        target = labels[0]
    model._target_states(target)  # a one-hot group of one row, or a clear error
    if target not in data:
        raise ValueError(f"the data must hold the labels {target!r}")
    return target


def _class_rows(model, batch: Mapping, target: str) -> tuple[dict, int]:
    """Every (sample, class) pair as a row: the inputs repeated K times, the label cycling."""
    _, states = model._target_states(target)
    m = len(next(iter(batch.values())))
    rows = {g: np.repeat(a, len(states), axis=0) for g, a in batch.items()}
    rows[target] = np.ascontiguousarray(np.tile(states, (m, 1)))
    return rows, len(states)


def _conditional_gradient(model, batch, labels, target, summed, grads) -> None:
    """grads += the gradient of the mean of -log p(label | inputs) over the batch."""
    rows, kk = _class_rows(model, batch, target)
    m = len(labels)
    logits = -model._free_energy(rows, summed).reshape(m, kk)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.zeros_like(p)
    onehot[np.arange(m), labels] = 1.0
    weights = ((onehot - p) / m).reshape(-1).astype(model.dtype)
    full = _with_means(model, rows, summed)
    model.call("energy_grad_rows", state=full, weights=np.ascontiguousarray(weights), grads=grads)


def _generative_gradient(model, batch, summed, state, k, alpha, grads):
    """grads += alpha * the SML gradient of the mean of -log p(batch): data with the summed groups at
    their conditional means, minus the persistent chains after k sweeps. Returns the chains."""
    m = len(next(iter(batch.values())))
    full = _with_means(model, batch, summed)
    model.call("energy_grad", state=full, alpha=float(alpha) / m, grads=grads)
    state = model.gibbs(state, steps=k)
    model.call("energy_grad", state=state, alpha=-float(alpha) / len(next(iter(state.values()))), grads=grads)
    return state


def _with_means(model, rows: Mapping, summed) -> dict:
    """The rows with each summed group at its exact conditional mean (they do not share terms,
    so one mean-field pass from any start is exact)."""
    if not summed:
        return {g: np.ascontiguousarray(rows[g], dtype=model.dtype) for g in model.domains}
    means = model.mean_field(rows, max_iter=1, tol=0.0)
    return {g: np.ascontiguousarray(means[g], dtype=model.dtype) for g in model.domains}


def _scores(model, inputs, labels, target, prefix: str) -> dict:
    p = model.predict_proba(inputs, target)
    picked = np.clip(p[np.arange(len(labels)), labels], 1e-300, None)
    return {f"{prefix}_cll": float(np.mean(np.log(picked))),
            f"{prefix}_error": float(np.mean(p.argmax(1) != labels))}
