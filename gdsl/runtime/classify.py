"""Class labels: the exact conditional p(y | rest) of a one-hot group (issue 21, item 5).

When every free group other than the label y can be summed out, p(y = k | v) is a softmax
over k of minus the free energy F(v, y = k) (Larochelle & Bengio 2008's classification RBM):
one free-energy kernel call over the n * K rows of (data, class) pairs.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from .. import abi

MAX_CLASS_ROWS = 2 ** 22  # (samples x classes) rows of one free-energy call, then in chunks


class ClassifyMixin:
    def predict_proba(self, data: Mapping, target: str) -> np.ndarray:
        """p(target | data) for each sample: (n, K) for a categorical(K) group of one row, with a last
        column for the all-zero row of a categorical(K, off) group. Exact: the groups neither in
        `data` nor the target are summed out analytically (they must be summable together)."""
        k, states = self._target_states(target)
        n = self._n_of(data)
        self._energy_names(data)
        if target in data:
            raise ValueError(f"{target} is the target: leave it out of the data")
        arrays = {g: self._array(g, v, n) for g, v in data.items()}
        summed = tuple(g for g in self.domains if g not in arrays and g != target)
        why = self.why_not_summable(summed)
        if why:
            raise ValueError(f"p({target} | {', '.join(arrays)}) is exact only when the other groups can be "
                             f"summed out: {why}")
        per = max(1, MAX_CLASS_ROWS // len(states))
        out = np.empty((n, len(states)))
        for start in range(0, n, per):
            rows = slice(start, min(n, start + per))
            m = rows.stop - rows.start
            st = {g: np.repeat(a[rows], len(states), axis=0) for g, a in arrays.items()}
            st[target] = np.ascontiguousarray(np.tile(states, (m,) + (1,) * (states.ndim - 1)))
            logits = -self._free_energy(st, summed).reshape(m, len(states))
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            out[rows] = p / p.sum(axis=1, keepdims=True)
        return out

    def predict(self, data: Mapping, target: str) -> np.ndarray:
        """The most probable class of `target` per sample (K: the all-zero row of categorical(K, off))."""
        return self.predict_proba(data, target).argmax(axis=1)

    def _target_states(self, target: str):
        if target not in self.domains:
            raise ValueError(f"{self.NAME} has no variable {target!r}; its variables are "
                             f"{', '.join(self.domains)}")
        domain, shape = self.domains[target], self._shapes[target]
        if domain not in abi.ONE_HOT or len(shape) != 1:
            raise ValueError(f"predict_proba needs a class label: a categorical(K) group of one row; "
                             f"{target} is {domain} of shape {shape}")
        k = self._categories[target]
        states = np.eye(abi.row_states(domain, k), dtype=self.dtype)[:, :k]
        return k, states
