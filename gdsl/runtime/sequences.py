"""Compiled helpers of the loops along time (gdsl/codegen/sequence.py)."""
from __future__ import annotations

import numba


@numba.njit(cache=True, nogil=True)
def active_rows(lengths, t):
    """How many sequences are still running at step t: rows are sorted longest first, so
    they are the first ones (a binary search for the first length <= t)."""
    lo, hi = 0, lengths.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if lengths[mid] > t:
            lo = mid + 1
        else:
            hi = mid
    return lo
