"""Products for small or mostly-zero operands: loops where a BLAS call costs more.

Binary samples and data are mostly zeros, so `a @ p` is cheaper as a sum of the rows of p
picked by a's nonzeros (sparse_dot, sparse_outer); small dense products are plain row dot
products (dot_t). Generated code asks use_loops (or compares with SMALL_PRODUCT) whether a
product takes these loops or a BLAS call (np.dot).
"""
from __future__ import annotations

import numba
import numpy as np

SPARSE_BELOW = 0.25  # fraction of nonzeros under which row sums beat a BLAS call
ONES_ABOVE = 0.75  # fraction of ones over which a binary operand's complement is the sparse one
SMALL_PRODUCT = 1 << 16  # multiply-adds under which plain loops beat a BLAS call's overhead


@numba.njit(cache=True)
def use_loops(a, m):
    """Whether a @ (k x m) is cheaper as loops than through BLAS: a small or mostly-zero a."""
    return a.shape[0] * a.shape[1] * m < SMALL_PRODUCT or density(a) < SPARSE_BELOW


@numba.njit(cache=True, fastmath=True)
def dot_t(a, p, out, alpha):
    """out += alpha * a @ p.T as row dot products (contiguous in both), for small sizes.

    fastmath lets the sum be reassociated into SIMD lanes (7x faster; only rounding changes)."""
    n, k = a.shape
    m = p.shape[0]
    for c in range(n):
        for i in range(m):
            acc = p.dtype.type(0.0)
            for j in range(k):
                acc += a[c, j] * p[i, j]
            out[c, i] += alpha * acc


@numba.njit(cache=True)
def density(a):
    """Fraction of nonzero entries of a 2-d array (binary samples and data are mostly 0)."""
    n, k = a.shape
    nz = 0
    for c in range(n):
        for i in range(k):
            if a[c, i] != 0:
                nz += 1
    return nz / max(1, n * k)


@numba.njit(cache=True)
def mostly_ones(a):
    """Whether a 2-d array is binary (every value 0 or 1) with more than ONES_ABOVE of it ones: then
    a @ p is the sum of p's rows less the rows at a's zeros, and those are few (the hidden units of
    a trained RNN-RBM are about 87% on). Each row is counted without a branch per element (a test
    per element kept the scan scalar and cost about as much as the product it was to save); a row
    with other values, or enough zeros seen, stops the scan, so a field of samples mostly 0 (an
    RBM's) costs a row or two."""
    n, k = a.shape
    allowed = (1.0 - ONES_ABOVE) * n * k  # more zeros than this: not mostly ones
    zeros = 0
    for c in range(n):
        row = a[c]
        z = 0
        o = 0
        for i in range(k):
            z += row[i] == 0
            o += row[i] == 1
        if z + o != k:
            return False
        zeros += z
        if zeros >= allowed:
            return False
    return zeros < allowed


@numba.njit(cache=True)
def complement_dot_t(a, p, out, alpha):
    """out += alpha * a @ p.T for a binary a that is mostly ones (mostly_ones): for each chain,
    the row sums of p less p's columns at a's zeros. p (m, k) is transposed once into
    contiguous rows (m * k copies, against n * m * k multiply-adds for the product)."""
    n, k = a.shape
    m = p.shape[0]
    pt = np.ascontiguousarray(p.T)
    total = np.zeros(m, out.dtype)
    for j in range(k):
        row = pt[j]
        for i in range(m):
            total[i] += row[i]
    idx = np.empty(k, dtype=np.int64)
    ones = np.ones(k, p.dtype)
    for c in range(n):
        count = _zero_positions(a[c], idx)
        oc = out[c]
        for i in range(m):
            oc[i] += alpha * total[i]
        _add_scaled_rows(oc, pt, ones, idx, count, -alpha)


@numba.njit(cache=True, inline="always")
def _zero_positions(x, idx):
    """idx[:count] = the positions of x's zeros; returns count (no branch, as _nonzero_positions)."""
    count = 0
    for i in range(x.shape[0]):
        idx[count] = i
        count += x[i] == 0
    return count


@numba.njit(cache=True, inline="always")
def _nonzero_positions(x, idx):
    """idx[:count] = the positions of x's nonzeros; returns count. No branch per element:
    binary samples are random, so a branch would be mispredicted about half the time (on a
    10 x 64 product that tripled the time)."""
    count = 0
    for i in range(x.shape[0]):
        idx[count] = i
        count += x[i] != 0
    return count


@numba.njit(cache=True, inline="always")
def _add_scaled_rows(target, rows, w, idx, count, alpha):
    """target += alpha * sum over t < count of w[idx[t]] * rows[idx[t]], four rows per pass
    over target: a quarter of its loads and stores, which bound the one-row loop."""
    m = target.shape[0]
    t = 0
    while t + 4 <= count:
        i0, i1, i2, i3 = idx[t], idx[t + 1], idx[t + 2], idx[t + 3]
        s0 = target.dtype.type(alpha * w[i0])
        s1 = target.dtype.type(alpha * w[i1])
        s2 = target.dtype.type(alpha * w[i2])
        s3 = target.dtype.type(alpha * w[i3])
        for j in range(m):
            target[j] += (s0 * rows[i0, j] + s1 * rows[i1, j]) + (s2 * rows[i2, j] + s3 * rows[i3, j])
        t += 4
    while t < count:
        i = idx[t]
        s = target.dtype.type(alpha * w[i])
        for j in range(m):
            target[j] += s * rows[i, j]
        t += 1


@numba.njit(cache=True)
def sparse_dot(a, p, out, alpha):
    """out += alpha * a @ p by adding rows of p for the nonzeros of a (any values; only the
    rounding differs from a dense product)."""
    n, k = a.shape
    idx = np.empty(k, dtype=np.int64)
    for c in range(n):
        count = _nonzero_positions(a[c], idx)
        _add_scaled_rows(out[c], p, a[c], idx, count, alpha)


SMALL_OUTER = 1 << 13  # elements of g: at most this, and g stays in L1 (32 KB of float32)


@numba.njit(cache=True)
def sparse_outer(a, x, g, alpha):
    """g += alpha * a.T @ x, adding rows of x for the nonzeros of a.

    A large g is visited once: row i gathers the rows of x whose chain has a[c, i] != 0,
    four at a time. A small g (in L1) is cheaper chain by chain: one loop over the nonzeros
    of each row of a, instead of one per column, each with a random trip count whose
    exit the branch predictor misses (10 x 64 x 64 at 32% density: 0.9 us against 1.2)."""
    n, k = a.shape
    if k * x.shape[1] <= SMALL_OUTER:
        _outer_by_chain(a, x, g, alpha)
        return
    idx = np.empty(n, dtype=np.int64)
    for i in range(k):
        col = a[:, i]
        count = _nonzero_positions(col, idx)
        _add_scaled_rows(g[i], x, col, idx, count, alpha)


@numba.njit(cache=True, inline="always")
def _outer_by_chain(a, x, g, alpha):
    n, k = a.shape
    m = x.shape[1]
    idx = np.empty(k, dtype=np.int64)
    for c in range(n):
        ac = a[c]
        xc = x[c]
        count = _nonzero_positions(ac, idx)
        for t in range(count):
            i = idx[t]
            s = g.dtype.type(alpha * ac[i])
            gi = g[i]
            for j in range(m):
                gi[j] += s * xc[j]
