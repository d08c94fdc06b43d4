"""The domain samplers: draws, mean-field means and log-normalisers of binary, spin, real
and categorical units, given the field f (and, for real units, the quadratic coefficient q)
of their energy.

Arrays are laid out (chains, elements) (categorical ones (chains, rows, K)); generated code
reshapes to that. A mask element != 0 keeps x as it is. Two-state units ({low, 1}: bits
for low = 0, spins for low = -1) take their probabilities from the SIMD sigmoid of
vecmath.py a block of rows at a time.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from .rng import _fill_uniforms, normal, uniform
from .vecmath import _BLOCK, _SIGMOID, _exp_family, softplus, softplus_row_sums

LOG_PI = math.log(math.pi)


@numba.njit(cache=True, inline="always")
def _keep(new, old, mr, j):
    """new where the mask lets it through (mr None: no mask), else old."""
    if mr is None:
        return new
    return new if mr[j] == 0 else old


@numba.njit(cache=True, inline="always")
def _draw_masked_row(prob, shift, scale, xr, mr, one, lower, s0, s1, u):
    """xr[j] = one with probability (prob[j] - shift) * scale, else lower, where mr[j] == 0
    (everywhere if mr is None); returns the stream's state. u: a scratch row of xr's dtype,
    one longer than xr. Masked elements take their uniforms too, so the stream does not
    depend on the mask."""
    s0, s1 = _fill_uniforms(u, xr.shape[0], s0, s1)
    for j in range(xr.shape[0]):
        xr[j] = _keep(one if u[j] < (prob[j] - shift) * scale else lower, xr[j], mr, j)
    return s0, s1


# one element -------------------------------------------------------------------
@numba.njit(cache=True, inline="always")
def draw_binary(a, rng, c):
    return 1.0 if uniform(rng, c) * (1.0 + math.exp(-a)) < 1.0 else 0.0


@numba.njit(cache=True, inline="always")
def draw_spin(a, rng, c):
    return 1.0 if uniform(rng, c) * (1.0 + math.exp(-2.0 * a)) < 1.0 else -1.0


# whole arrays: f, x, mask are (chains, m); mask != 0 keeps x as it is -----------------
@numba.njit(cache=True, inline="always")
def _rows_per_block(m):
    """How many rows of m elements one _exp_family block holds (at least one)."""
    return max(1, _BLOCK // max(m, 1))


@numba.njit(cache=True, inline="always")
def _sigmoid_rows(f, c0, c1, gap, blk, bits):
    """blk[c - c0] = sigmoid(gap * f[c]) for the rows c0 <= c < c1, one SIMD pass over all.

    Rows are indexed as views: an index like blk[base + j] could be negative as far as
    numba knows, and its wraparound check turned the loops into gathers."""
    for c in range(c0, c1):
        row = blk[c - c0]
        fr = f[c]
        for j in range(fr.shape[0]):
            row[j] = gap * fr[j]
    _exp_family(blk[:c1 - c0], _SIGMOID, bits)


# a float64 draw compares its uniform with a float32 sigmoid first, which is within 1e-7 of the
# float64 one (tests/test_kernels.py), so a uniform further than this from it decides the draw alone
SURE_BEYOND = 4e-6


@numba.njit(cache=True, inline="always")
def _draw_sure(p32, u, xr, mr, one, lower):
    """xr[j] = one if u[j] < p, else lower, where the mask lets it through and u[j] is further than
    SURE_BEYOND from p32[j] (p's float32 value), so that p's float64 value gives the same answer;
    returns how many elements were left (the rest of the row is a SIMD loop)."""
    left = 0
    for j in range(xr.shape[0]):
        d = u[j] - p32[j]
        sure = abs(d) > SURE_BEYOND  # False for NaN: left to the exact pass
        new = one if d < 0.0 else lower
        xr[j] = new if (sure and mr[j] == 0) else xr[j]
        left += not sure
    return left


@numba.njit(cache=True)
def _draw_unsure(fr, gap, p32, u, xr, mr, one, lower, bits):
    """The elements _draw_sure left: each against its float64 sigmoid, computed as the SIMD float64
    kernel computes it (a one-element block of the same loop)."""
    one_p = np.empty(1, fr.dtype)
    for j in range(xr.shape[0]):
        if abs(u[j] - p32[j]) > SURE_BEYOND or mr[j] != 0:
            continue
        one_p[0] = gap * fr[j]
        _exp_family(one_p, _SIGMOID, bits)
        xr[j] = one if u[j] < one_p[0] else lower


@numba.njit(cache=True)
def two_state_draw(f, x, mask, rng, low):
    """Units with values {low, 1} and energy -f x: P(x = 1) = sigmoid((1 - low) f).

    low = 0 gives Bernoulli units, low = -1 spins (P(+1) = sigmoid(2 f)). Rows are taken a
    block at a time: their probabilities first from the SIMD sigmoid, then the draws, each
    chain's stream kept in registers across its row. float64 rows go through _draw_rows64 (a
    function of its own: numba's inlining of the uniforms' overload inside a branch of this one
    tripped its internal SSA check)."""
    if f.itemsize == 8:  # float64 (both branches compile; one runs)
        _draw_rows64(f, x, mask, rng, low)
    else:
        _draw_rows(f, x, mask, rng, low)


@numba.njit(cache=True, inline="always")
def _draw_setup(f, x, low, blk_dtype):
    """(one, lower, gap, rows a block, the sigmoids' block, the exp scratch, a row of uniforms)."""
    n, m = f.shape
    rows = _rows_per_block(m)
    return (f.dtype.type(1.0), f.dtype.type(low), f.dtype.type(1.0 - low), rows,
            np.empty((min(n, rows), m), blk_dtype), np.empty(_BLOCK, dtype=np.int64), np.empty(m + 1, x.dtype))


@numba.njit(cache=True)
def _draw_rows(f, x, mask, rng, low):
    one, lower, gap, rows, blk, bits, u = _draw_setup(f, x, low, f.dtype)
    zero = f.dtype.type(0.0)
    for c0 in range(0, f.shape[0], rows):
        c1 = min(f.shape[0], c0 + rows)
        _sigmoid_rows(f, c0, c1, gap, blk, bits)
        for c in range(c0, c1):
            rng[c, 0], rng[c, 1] = _draw_masked_row(blk[c - c0], zero, one, x[c], mask[c], one, lower,
                                                    rng[c, 0], rng[c, 1], u)


@numba.njit(cache=True)
def _draw_rows64(f, x, mask, rng, low):
    """_draw_rows for float64 rows, from float32 sigmoids (16 lanes a vector instead of 8, and a
    shorter polynomial): the float64 sigmoid is computed only for a uniform within SURE_BEYOND of
    the float32 one (a few in a million), so the draws are those of float64 sigmoids, bit for bit."""
    one, lower, gap, rows, blk32, bits, u = _draw_setup(f, x, low, np.float32)
    for c0 in range(0, f.shape[0], rows):
        c1 = min(f.shape[0], c0 + rows)
        _sigmoid_rows(f, c0, c1, np.float32(gap), blk32, bits)
        for c in range(c0, c1):
            rng[c, 0], rng[c, 1] = _fill_uniforms(u, f.shape[1], rng[c, 0], rng[c, 1])
            if _draw_sure(blk32[c - c0], u, x[c], mask[c], one, lower):
                _draw_unsure(f[c], gap, blk32[c - c0], u, x[c], mask[c], one, lower, bits)


@numba.njit(cache=True)
def two_state_draw_from_mean(mean, x, mask, rng, low):
    """Like two_state_draw, from E[x] already computed: P(x = 1) = (E[x] - low) / (1 - low)."""
    n, m = mean.shape
    one = x.dtype.type(1.0)
    lower = x.dtype.type(low)
    inv_gap = mean.dtype.type(1.0 / (1.0 - low))
    u = np.empty(m + 1, x.dtype)
    for c in range(n):
        rng[c, 0], rng[c, 1] = _draw_masked_row(mean[c], lower, inv_gap, x[c], mask[c], one, lower,
                                                rng[c, 0], rng[c, 1], u)


@numba.njit(cache=True)
def two_state_means_into(f, out, bits, low):
    """out = E[x] = low + (1 - low) sigmoid((1 - low) f) for every element of (chains, m)
    arrays, out contiguous: two_state_mean without mask, damping or change measure, for the
    training sweeps, whose masks are whole groups. bits: the SIMD sigmoid's scratch."""
    n, m = f.shape
    gap = out.dtype.type(1.0 - low)
    lower = out.dtype.type(low)
    _sigmoid_rows(f, 0, n, gap, out, bits)
    if low != 0.0:
        for c in range(n):
            o = out[c]
            for j in range(m):
                o[j] = lower + gap * o[j]


@numba.njit(cache=True)
def two_state_draw_from_means(mean, x, rng, low):
    """x = 1 with probability (E[x] - low) / (1 - low), else low, for every element: the
    mask-free two_state_draw_from_mean (the same uniforms, in the same order)."""
    n, m = mean.shape
    one = x.dtype.type(1.0)
    lower = x.dtype.type(low)
    inv_gap = mean.dtype.type(1.0 / (1.0 - low))
    u = np.empty(m + 1, x.dtype)
    for c in range(n):
        rng[c, 0], rng[c, 1] = _draw_masked_row(mean[c], lower, inv_gap, x[c], None, one, lower,
                                                rng[c, 0], rng[c, 1], u)


@numba.njit(cache=True)
def gaussian_draw(f, q, x, mask, rng):
    """x ~ N(f / 2q, 1 / 2q) from the energy q x^2 - f x; False if some q <= 0."""
    n, m = f.shape
    ok = True
    for c in range(n):
        for j in range(m):
            if mask[c, j] == 0:
                if q[c, j] <= 0.0:
                    ok = False
                    continue
                prec = 2.0 * q[c, j]
                x[c, j] = f[c, j] / prec + normal(rng, c) / math.sqrt(prec)
    return ok


@numba.njit(cache=True, inline="always")
def _row_normaliser(f, c, r, off):
    """(max, sum of exp(f - max)) of row r of chain c: a softmax without overflow. With `off`
    the row has a K+1-th state, all zero, whose logit is 0 (probabilistic max pooling)."""
    k = f.shape[2]
    top = f[c, r, 0]
    for j in range(1, k):
        top = max(top, f[c, r, j])
    if off:
        top = max(top, 0.0)
    total = 0.0
    for j in range(k):
        total += math.exp(f[c, r, j] - top)
    if off:
        total += math.exp(-top)
    return top, total


@numba.njit(cache=True, inline="always")
def _categorical_draw(f, x, mask, rng, off):
    n, rows, k = f.shape
    for c in range(n):
        for r in range(rows):
            if mask[c, r, 0] != 0:
                continue
            top, total = _row_normaliser(f, c, r, off)
            u = uniform(rng, c) * total
            chosen = -1 if off else k - 1  # u past every unit's share: the off state (or rounding)
            acc = 0.0
            for j in range(k):
                acc += math.exp(f[c, r, j] - top)
                if u < acc:
                    chosen = j
                    break
            for j in range(k):
                x[c, r, j] = 1.0 if j == chosen else 0.0


@numba.njit(cache=True)
def categorical_draw(f, x, mask, rng):
    """f, x, mask are (chains, rows, K): each row of x becomes one-hot, softmax(f row)."""
    _categorical_draw(f, x, mask, rng, False)


@numba.njit(cache=True)
def categorical_off_draw(f, x, mask, rng):
    """categorical(K, off): each row one-hot with probability exp(f_j) / (1 + sum exp f), all zero
    with probability 1 / (1 + sum exp f)."""
    _categorical_draw(f, x, mask, rng, True)


# mean-field updates: x <- damping * x + (1 - damping) * E[x | f]; return max change -------
@numba.njit(cache=True)
def two_state_mean(f, x, mask, damping, low):
    """E[x] = low + (1 - low) sigmoid((1 - low) f): sigmoid(f) for bits, tanh(f) for spins.

    Rows a block at a time, as in two_state_draw: the SIMD sigmoids, then the damped update."""
    n, m = f.shape
    gap = f.dtype.type(1.0 - low)
    lower = x.dtype.type(low)
    keep = x.dtype.type(damping)
    take = x.dtype.type(1.0 - damping)
    delta = x.dtype.type(0.0)
    rows = _rows_per_block(m)
    blk = np.empty((min(n, rows), m), f.dtype)
    bits = np.empty(_BLOCK, dtype=np.int64)
    for c0 in range(0, n, rows):
        c1 = min(n, c0 + rows)
        _sigmoid_rows(f, c0, c1, gap, blk, bits)
        for c in range(c0, c1):
            pr = blk[c - c0]
            xr = x[c]
            mr = mask[c]
            for j in range(m):  # selects, not branches
                old = xr[j]
                new = keep * old + take * (lower + gap * pr[j])
                new = new if mr[j] == 0 else old
                delta = max(delta, abs(new - old))
                xr[j] = new
    return float(delta)


@numba.njit(cache=True)
def gaussian_mean(f, q, x, mask, damping):
    n, m = f.shape
    delta = 0.0
    for c in range(n):
        for j in range(m):
            if mask[c, j] == 0:
                if q[c, j] <= 0.0:
                    return -1.0
                new = damping * x[c, j] + (1.0 - damping) * f[c, j] / (2.0 * q[c, j])
                delta = max(delta, abs(new - x[c, j]))
                x[c, j] = new
    return delta


@numba.njit(cache=True, inline="always")
def _categorical_mean(f, x, mask, damping, off):
    n, rows, k = f.shape
    delta = 0.0
    for c in range(n):
        for r in range(rows):
            if mask[c, r, 0] != 0:
                continue
            top, total = _row_normaliser(f, c, r, off)
            for j in range(k):
                new = damping * x[c, r, j] + (1.0 - damping) * math.exp(f[c, r, j] - top) / total
                delta = max(delta, abs(new - x[c, r, j]))
                x[c, r, j] = new
    return delta


@numba.njit(cache=True)
def categorical_mean(f, x, mask, damping):
    return _categorical_mean(f, x, mask, damping, False)


@numba.njit(cache=True)
def categorical_off_mean(f, x, mask, damping):
    """The means of a categorical(K, off) row: exp(f_j) / (1 + sum exp f); they sum to at most 1."""
    return _categorical_mean(f, x, mask, damping, True)


# log-normalisers: out[c] -= sum over elements of log sum_x exp(f x - q x^2) -------------
@numba.njit(cache=True)
def two_state_lognorm(f, out, low):
    """log(exp(low f) + exp(f)) = low f + softplus((1 - low) f) per element (the softplus sums
    vectorised: this is most of an RBM's free energy and of every AIS step)."""
    n, m = f.shape
    sums = np.empty(n)
    softplus_row_sums(f, 1.0 - low, sums)
    for c in range(n):
        acc = sums[c]
        if low != 0.0:
            for j in range(m):
                acc += low * f[c, j]
        out[c] -= acc


@numba.njit(cache=True)
def gaussian_lognorm(f, q, out):
    """Integral of exp(f x - q x^2) dx = sqrt(pi / q) exp(f^2 / 4q); False if some q <= 0."""
    n, m = f.shape
    ok = True
    for c in range(n):
        acc = 0.0
        for j in range(m):
            if q[c, j] <= 0.0:
                ok = False
                continue
            acc += f[c, j] * f[c, j] / (4.0 * q[c, j]) + 0.5 * (LOG_PI - math.log(q[c, j]))
        out[c] -= acc
    return ok


@numba.njit(cache=True, inline="always")
def _categorical_lognorm(f, out, off):
    n, rows, k = f.shape
    for c in range(n):
        acc = 0.0
        for r in range(rows):
            top, total = _row_normaliser(f, c, r, off)
            acc += top + math.log(total)
        out[c] -= acc


@numba.njit(cache=True)
def categorical_lognorm(f, out):
    _categorical_lognorm(f, out, False)


@numba.njit(cache=True)
def categorical_off_lognorm(f, out):
    """log(1 + sum_j exp f_j) per row: the off state contributes exp(0)."""
    _categorical_lognorm(f, out, True)


# the blocked spike-and-slab draw: a binary spike with its Gaussian slab summed out --------
@numba.njit(cache=True)
def add_slab_integral(f, f0, q0, f1, q1):
    """f += log Z(f1, q1) - log Z(f0, q0) per element, Z(f, q) = integral of exp(f x - q x^2) dx
    = sqrt(pi / q) exp(f^2 / 4q): the spike's logit gains the slab's log-normaliser with the
    spike on minus with it off. False if a precision is not positive."""
    n, m = f.shape
    for c in range(n):
        for j in range(m):
            if q0[c, j] <= 0.0 or q1[c, j] <= 0.0:
                return False
            on = f1[c, j] * f1[c, j] / (4.0 * q1[c, j]) - 0.5 * math.log(q1[c, j])
            off = f0[c, j] * f0[c, j] / (4.0 * q0[c, j]) - 0.5 * math.log(q0[c, j])
            f[c, j] += on - off
    return True


@numba.njit(cache=True)
def any_clamped(mask):
    """Whether some element of a group is clamped (its mask is not zero)."""
    flat = mask.reshape(-1)
    for j in range(flat.shape[0]):
        if flat[j] != 0:
            return True
    return False


@numba.njit(cache=True)
def spike_slab_lognorm(f, f0, q0, f1, q1, out):
    """out[c] -= sum over elements of log(Z(f0, q0) + exp(f) Z(f1, q1)): a binary spike of field f
    and its Gaussian slab (field and quadratic coefficient f0, q0 with the spike off, f1, q1 with
    it on) summed out together. False if a precision is not positive."""
    n, m = f.shape
    for c in range(n):
        acc = 0.0
        for j in range(m):
            if q0[c, j] <= 0.0 or q1[c, j] <= 0.0:
                return False
            off = f0[c, j] * f0[c, j] / (4.0 * q0[c, j]) + 0.5 * (LOG_PI - math.log(q0[c, j]))
            on = f1[c, j] * f1[c, j] / (4.0 * q1[c, j]) + 0.5 * (LOG_PI - math.log(q1[c, j]))
            acc += off + softplus(f[c, j] + on - off)
        out[c] -= acc
    return True


# real groups coupled to themselves: a multivariate Gaussian per chain ------------------------
# E = -f.x + sum q x^2 + x.P.x / 2 over the free elements gives the precision A = P + 2 diag(q)
# and the mean A^-1 (f - P_fc x_c) given the clamped ones; one Cholesky factor per chain.
@numba.njit(cache=True)
def _block_system(f, q, pp, x, mask, c, a, b, free):
    """A and b of chain c over its free elements (their indices in free[:k]); returns k."""
    m = f.shape[1]
    k = 0
    for j in range(m):
        if mask[c, j] == 0:
            free[k] = j
            k += 1
    for r in range(k):
        jr = free[r]
        for s in range(k):
            a[r, s] = pp[c, jr, free[s]]
        a[r, r] += 2.0 * q[c, jr]
        acc = f[c, jr]
        for j in range(m):
            if mask[c, j] != 0:
                acc -= pp[c, jr, j] * x[c, j]
        b[r] = acc
    return k


@numba.njit(cache=True)
def _cholesky(a, k):
    """In place: the lower Cholesky factor of a[:k, :k]; False if it is not positive definite."""
    for j in range(k):
        s = a[j, j]
        for p in range(j):
            s -= a[j, p] * a[j, p]
        if not s > 0.0:  # also catches NaN
            return False
        d = math.sqrt(s)
        a[j, j] = d
        for i in range(j + 1, k):
            t = a[i, j]
            for p in range(j):
                t -= a[i, p] * a[j, p]
            a[i, j] = t / d
    return True


@numba.njit(cache=True)
def _solve_lower(a, y, k):
    """y <- L^-1 y, L the lower factor in a."""
    for i in range(k):
        t = y[i]
        for p in range(i):
            t -= a[i, p] * y[p]
        y[i] = t / a[i, i]


@numba.njit(cache=True)
def _solve_upper(a, y, k):
    """y <- L^-T y."""
    for i in range(k - 1, -1, -1):
        t = y[i]
        for p in range(i + 1, k):
            t -= a[p, i] * y[p]
        y[i] = t / a[i, i]


@numba.njit(cache=True)
def gaussian_block_draw(f, q, pp, x, mask, rng):
    """Each chain's free elements from N(A^-1 b, A^-1); False if some A is not positive definite."""
    n, m = f.shape
    a = np.empty((m, m))
    b = np.empty(m)
    z = np.empty(m)
    free = np.empty(m, dtype=np.int64)
    for c in range(n):
        k = _block_system(f, q, pp, x, mask, c, a, b, free)
        if k == 0:
            continue
        if not _cholesky(a, k):
            return False
        _solve_lower(a, b, k)
        _solve_upper(a, b, k)  # the mean
        for r in range(k):
            z[r] = normal(rng, c)
        _solve_upper(a, z, k)  # L^-T z has covariance A^-1
        for r in range(k):
            x[c, free[r]] = b[r] + z[r]
    return True


@numba.njit(cache=True)
def gaussian_block_mean(f, q, pp, x, mask, damping):
    """x <- damping x + (1 - damping) A^-1 b per chain; the largest change, or -1.0 if some A is
    not positive definite."""
    n, m = f.shape
    a = np.empty((m, m))
    b = np.empty(m)
    free = np.empty(m, dtype=np.int64)
    delta = 0.0
    for c in range(n):
        k = _block_system(f, q, pp, x, mask, c, a, b, free)
        if k == 0:
            continue
        if not _cholesky(a, k):
            return -1.0
        _solve_lower(a, b, k)
        _solve_upper(a, b, k)
        for r in range(k):
            old = x[c, free[r]]
            new = damping * old + (1.0 - damping) * b[r]
            delta = max(delta, abs(new - old))
            x[c, free[r]] = new
    return delta


@numba.njit(cache=True)
def gaussian_block_lognorm(f, q, pp, out):
    """out[c] -= log of the integral of exp(f.x - x.A.x / 2) dx = f.A^-1.f / 2 + (m/2) log 2 pi
    - log det A / 2; False if some A is not positive definite."""
    n, m = f.shape
    a = np.empty((m, m))
    y = np.empty(m)
    for c in range(n):
        for r in range(m):
            for s in range(m):
                a[r, s] = pp[c, r, s]
            a[r, r] += 2.0 * q[c, r]
            y[r] = f[c, r]
        if not _cholesky(a, m):
            return False
        _solve_lower(a, y, m)
        acc = 0.5 * m * (LOG_PI + math.log(2.0))
        for r in range(m):
            acc += 0.5 * y[r] * y[r] - math.log(a[r, r])
        out[c] -= acc
    return True
