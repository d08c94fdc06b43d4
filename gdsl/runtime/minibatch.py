"""The epoch loop of the learners that are Python around compiled kernels (discriminative and
hybrid training, multi-prediction training): minibatches in a fresh order each epoch, momentum
SGD, and what every fit promises: a failed or interrupted epoch leaves the parameters of the
last good one, a record per epoch, the progress bar, checkpoints and the callback."""
from __future__ import annotations

from typing import Callable

import numpy as np

from .learn import TrainingError, _EpochBar, diverged, kept_text, learning_rate
from .notebook import History


class MomentumSGD:
    """Gradient buffers (`grads`, in the model's dtype, for the kernels to add to) and the step
    v = momentum v - rate (g + decay W), weight decay on matrices only, as `fit` does."""

    def __init__(self, model, momentum: float, weight_decay: float):
        self.model = model
        self.momentum, self.decay = momentum, weight_decay
        self.names = list(model.params)
        self.velocity = {p: np.zeros(np.shape(model.params[p])) for p in self.names}
        self.grads = {p: np.zeros(model.shape(p) or (1,), model.dtype) for p in self.names}

    def zero(self) -> None:
        for g in self.grads.values():
            g.fill(0.0)

    def step(self, rate: float) -> None:
        values = {}
        for p in self.names:
            cur = np.asarray(self.model.params[p], dtype=np.float64)
            g = self.grads[p].reshape(cur.shape).astype(np.float64)
            if cur.ndim >= 2 and self.decay:
                g = g + self.decay * cur
            self.velocity[p] = self.momentum * self.velocity[p].reshape(cur.shape) - rate * g
            values[p] = cur + self.velocity[p]
        self.model.params.update(values)


def run_epochs(model, n: int, batch_size: int, epochs: int, lr, lr_schedule, scale: float,
               minibatch: Callable, measure: Callable, progress=None, checkpoint=None,
               callback: Callable | None = None) -> History:
    """`minibatch(rows, rate)` once per minibatch of row indices; `measure()` after each epoch gives
    the record's measurements."""
    bar = _EpochBar(epochs, progress)
    history = History()
    for epoch in range(1, epochs + 1):
        # the parameters to go back to: everything else of the epoch lives in the caller's call only
        kept = {name: np.array(value) for name, value in model.params.items()}
        rate = learning_rate(lr, lr_schedule, epoch - 1, epochs)
        order = model._rng.permutation(n)
        try:
            for start in range(0, n, batch_size):
                minibatch(order[start:start + batch_size], rate)
        except KeyboardInterrupt:
            model.params.update(kept)
            bar.close()
            raise
        problem = _problem(model, epoch, scale)
        if problem:
            model.params.update(kept)
            bar.close()
            raise TrainingError(f"{problem}; the parameters {kept_text(epoch - 1)} are kept. Lower the learning "
                                f"rate (lr={rate:g})")
        record = {"epoch": epoch, "lr": rate, **measure()}
        history.append(record)
        bar(record)
        if checkpoint is not None:
            model.save(checkpoint)
        if callback is not None and callback(model, record) is False:
            break
    bar.close()
    return history


def _problem(model, epoch: int, scale: float) -> str | None:
    for name, value in model.params.items():
        if not np.all(np.isfinite(value)):
            return f"parameter {name} became NaN or infinite in epoch {epoch}"
    return diverged(model.params, scale, epoch)
