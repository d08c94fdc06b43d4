"""All joint configurations of some discrete groups, in chunks (mixed-radix counting)."""
from __future__ import annotations

import numpy as np

from ..abi import ONE_HOT, row_states


class Enumeration:
    """groups: list of (name, domain, shape, categories) with a discrete domain. A one-hot row is
    one digit of base K (K + 1 for categorical_off, whose digit K is the all-zero row)."""

    def __init__(self, groups):
        self.groups = groups
        self.digits = []  # (group, base, positions) in counting order
        count = 1
        for name, domain, shape, k in groups:
            size = int(np.prod(shape, dtype=np.int64))
            if domain in ONE_HOT:
                rows, base = size // k, row_states(domain, k)
                self.digits.append((name, base, rows))
                count *= base ** rows
            else:
                self.digits.append((name, 2, size))
                count *= 2 ** size
        self.count = count

    def decode(self, idx: np.ndarray) -> dict:
        out = {}
        rem = idx.astype(np.int64)
        for (name, domain, shape, k), (_, base, positions) in zip(self.groups, self.digits):
            digits = np.empty((len(idx), positions), dtype=np.int64)
            for p in range(positions):
                digits[:, p] = rem % base
                rem = rem // base
            if domain == "binary":
                x = digits.astype(np.float64)
            elif domain == "spin":
                x = 2.0 * digits - 1.0
            else:
                x = np.eye(base)[digits][..., :k]
            out[name] = np.ascontiguousarray(x.reshape((len(idx),) + tuple(shape)))
        return out

    def chunks(self, size: int):
        for start in range(0, self.count, size):
            idx = np.arange(start, min(start + size, self.count), dtype=np.int64)
            yield start, self.decode(idx)
