"""Compiled building blocks shared by every generated model.

Random numbers come from one xoroshiro128+ stream per chain (`rng[c]`, two
uint64 words), seeded from the model's numpy Generator on every call: results
depend only on the seed, the draws are cheap (a few ns), and chains never share
state. Arrays are laid out (chains, elements); generated code reshapes to that.
"""
from __future__ import annotations

import math

import numba
from numba.extending import overload
import numpy as np
from numba import uint64

_TWO_POW_M53 = 1.0 / 9007199254740992.0
_TWO_POW_M24 = 1.0 / 16777216.0
LOG_PI = math.log(math.pi)


@numba.njit(cache=True, inline="always")
def _rotl(x, k):
    return (x << uint64(k)) | (x >> uint64(64 - k))


@numba.njit(cache=True, inline="always")
def uniform(rng, c):
    """One draw from U[0, 1) on chain c's stream."""
    s0 = rng[c, 0]
    s1 = rng[c, 1]
    r = s0 + s1
    s1 ^= s0
    rng[c, 0] = _rotl(s0, 24) ^ s1 ^ (s1 << uint64(16))
    rng[c, 1] = _rotl(s1, 37)
    return float(r >> uint64(11)) * _TWO_POW_M53


@numba.njit(cache=True, inline="always")
def next_uniform(s0, s1):
    """(u, s0, s1): a U[0, 1) draw and the advanced state, for loops that keep the state in registers."""
    r = s0 + s1
    s1 ^= s0
    return float(r >> uint64(11)) * _TWO_POW_M53, _rotl(s0, 24) ^ s1 ^ (s1 << uint64(16)), _rotl(s1, 37)


@numba.njit(cache=True, inline="always")
def next_uniform_pair32(s0, s1):
    """(u, v, s0, s1): two float32 U[0, 1) draws of 24 bits each (all a float32 holds) from one
    output of the stream, and the advanced state: float32 draws need half the stream's steps,
    and those steps are a serial dependency. The top 48 bits are used (the lowest are the
    generator's weakest)."""
    r = s0 + s1
    s1 ^= s0
    u = np.float32(r >> uint64(40)) * np.float32(_TWO_POW_M24)
    v = np.float32((r >> uint64(16)) & uint64(0xFFFFFF)) * np.float32(_TWO_POW_M24)
    return u, v, _rotl(s0, 24) ^ s1 ^ (s1 << uint64(16)), _rotl(s1, 37)


@numba.njit(cache=True, inline="always")
def _keep(new, old, mr, j):
    """new where the mask lets it through (mr None: no mask), else old."""
    if mr is None:
        return new
    return new if mr[j] == 0 else old


def _fill_uniforms(u, count, s0, s1):
    """u[:count] = the stream's next uniforms; returns the stream's state. u must have room
    for count + 1. float32 buffers take two 24-bit uniforms per step of the stream
    (next_uniform_pair32; for an odd count the last step's second one is left in the spare
    slot), float64 ones one 53-bit uniform. The stream is a serial dependency and scalar, so
    it runs alone here, and the comparisons that use the uniforms run afterwards as SIMD code
    (half the time of a 10 x 64 draw done element by element). Compiled code only: the
    overload below picks the loop by dtype when it is typed. Two shapes of loop were 1.6x
    slower: a run-time test of u.itemsize, and a separate step for an odd count."""
    raise NotImplementedError("_fill_uniforms runs inside compiled kernels only")


@overload(_fill_uniforms, inline="always")
def _fill_uniforms_typed(u, count, s0, s1):
    if u.dtype == numba.types.float32:
        def fill32(u, count, s0, s1):
            for k in range((count + 1) // 2):
                a, b, s0, s1 = next_uniform_pair32(s0, s1)
                u[2 * k] = a
                u[2 * k + 1] = b
            return s0, s1
        return fill32

    def fill64(u, count, s0, s1):
        for j in range(count):
            a, s0, s1 = next_uniform(s0, s1)
            u[j] = a
        return s0, s1
    return fill64


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


@numba.njit(cache=True, inline="always")
def normal(rng, c):
    u1 = 1.0 - uniform(rng, c)
    u2 = uniform(rng, c)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@numba.njit(cache=True, inline="always")
def sigmoid(a):
    if a >= 0:
        return 1.0 / (1.0 + math.exp(-a))
    e = math.exp(a)
    return e / (1.0 + e)


@numba.njit(cache=True, inline="always")
def softplus(a):
    if a > 0:
        return a + math.log1p(math.exp(-a))
    return math.log1p(math.exp(a))


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


@numba.njit(cache=True)
def two_state_draw(f, x, mask, rng, low):
    """Units with values {low, 1} and energy -f x: P(x = 1) = sigmoid((1 - low) f).

    low = 0 gives Bernoulli units, low = -1 spins (P(+1) = sigmoid(2 f)). Rows are taken a
    block at a time: their probabilities first from the SIMD sigmoid (in f's precision),
    then the draws, each chain's stream kept in registers across its row."""
    n, m = f.shape
    zero = f.dtype.type(0.0)
    one = f.dtype.type(1.0)
    lower = f.dtype.type(low)
    gap = f.dtype.type(1.0 - low)
    rows = _rows_per_block(m)
    blk = np.empty((min(n, rows), m), f.dtype)
    bits = np.empty(_BLOCK, dtype=np.int64)
    u = np.empty(m + 1, x.dtype)
    for c0 in range(0, n, rows):
        c1 = min(n, c0 + rows)
        _sigmoid_rows(f, c0, c1, gap, blk, bits)
        for c in range(c0, c1):
            rng[c, 0], rng[c, 1] = _draw_masked_row(blk[c - c0], zero, one, x[c], mask[c], one, lower,
                                                    rng[c, 0], rng[c, 1], u)


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
def _row_normaliser(f, c, r):
    """(max, sum of exp(f - max)) of row r of chain c: a softmax without overflow."""
    k = f.shape[2]
    top = f[c, r, 0]
    for j in range(1, k):
        top = max(top, f[c, r, j])
    total = 0.0
    for j in range(k):
        total += math.exp(f[c, r, j] - top)
    return top, total


@numba.njit(cache=True)
def categorical_draw(f, x, mask, rng):
    """f, x, mask are (chains, rows, K): each row of x becomes one-hot, softmax(f row)."""
    n, rows, k = f.shape
    for c in range(n):
        for r in range(rows):
            if mask[c, r, 0] != 0:
                continue
            top, total = _row_normaliser(f, c, r)
            u = uniform(rng, c) * total
            chosen = k - 1
            acc = 0.0
            for j in range(k):
                acc += math.exp(f[c, r, j] - top)
                if u < acc:
                    chosen = j
                    break
            for j in range(k):
                x[c, r, j] = 1.0 if j == chosen else 0.0


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


@numba.njit(cache=True)
def categorical_mean(f, x, mask, damping):
    n, rows, k = f.shape
    delta = 0.0
    for c in range(n):
        for r in range(rows):
            if mask[c, r, 0] != 0:
                continue
            top, total = _row_normaliser(f, c, r)
            for j in range(k):
                new = damping * x[c, r, j] + (1.0 - damping) * math.exp(f[c, r, j] - top) / total
                delta = max(delta, abs(new - x[c, r, j]))
                x[c, r, j] = new
    return delta


# log-normalisers: out[c] -= sum over elements of log sum_x exp(f x - q x^2) -------------
@numba.njit(cache=True)
def two_state_lognorm(f, out, low):
    """log(exp(low f) + exp(f)) = low f + softplus((1 - low) f) per element."""
    n, m = f.shape
    gap = 1.0 - low
    for c in range(n):
        acc = 0.0
        for j in range(m):
            acc += low * f[c, j] + softplus(gap * f[c, j])
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


@numba.njit(cache=True)
def categorical_lognorm(f, out):
    n, rows, k = f.shape
    for c in range(n):
        acc = 0.0
        for r in range(rows):
            top, total = _row_normaliser(f, c, r)
            acc += top + math.log(total)
        out[c] -= acc


@numba.njit(cache=True)
def seed_streams(seeds, rng):
    """Fill rng (chains, 2) from one 64-bit seed per chain with splitmix64."""
    for c in range(seeds.shape[0]):
        z = seeds[c]
        for w in range(2):
            z += uint64(0x9E3779B97F4A7C15)
            y = z
            y = (y ^ (y >> uint64(30))) * uint64(0xBF58476D1CE4E5B9)
            y = (y ^ (y >> uint64(27))) * uint64(0x94D049BB133111EB)
            rng[c, w] = y ^ (y >> uint64(31))


@numba.njit(cache=True)
def temper(f, base, beta):
    """f[c] = beta * f[c] + (1 - beta) * base, for every chain c (base has one row)."""
    n, m = f.shape
    if beta == 1.0:
        return
    for c in range(n):
        for j in range(m):
            f[c, j] = beta * f[c, j] + (1.0 - beta) * base[j]


@numba.njit(cache=True)
def scale(x, factor):
    for j in range(x.shape[0]):
        x[j] *= factor


# products that skip zeros ------------------------------------------------------------------
SPARSE_BELOW = 0.25  # fraction of nonzeros under which row sums beat a BLAS call
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


@numba.njit(cache=True, inline="always")
def relu(a):
    return a if a > 0.0 else 0.0


@numba.njit(cache=True, inline="always")
def step(a):
    """d relu / da (0 at 0)."""
    return 1.0 if a > 0.0 else 0.0


@numba.njit(cache=True, inline="always")
def log_sigmoid(a):
    """log(sigmoid(a)) without overflow: -softplus(-a)."""
    return -softplus(-a)


# vectorisable exp: llvmlite here has no vector math library, so math.exp stays scalar
# (~5 ns). Range reduction, a polynomial and the 2^k factor built from the exponent bits
# are plain arithmetic that LLVM turns into SIMD code. The 2^k bits go through an integer
# scratch block viewed as floats. float64 arrays get a degree-13 polynomial (~2 ulp, about
# 1.2 ns per sigmoid); float32 arrays a degree-7 one in float32 (relative error ~1.5e-7,
# twice the SIMD lanes: about 0.65 ns).
_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238
_LN2_LO = 1.9082149292705877e-10
_LN2_HI32 = 0.693359375  # ln 2 split so that k * _LN2_HI32 is exact in float32
_LN2_LO32 = -2.12194440e-4


_BLOCK = 2048
BLOCK = _BLOCK  # for generated code: the size of the scratch block callers pass
_EXP, _SIGMOID, _TANH = 0, 1, 2


@numba.njit(cache=True, inline="always")
def _exp_poly64(blk, factor, bits):
    """blk[i] <- q with exp(factor * blk[i]) = q * 2^k, and 2^k's bits in bits[i]."""
    for i in range(blk.shape[0]):
        v = min(max(factor * blk[i], -708.0), 708.0)
        k = math.floor(v * _LOG2E + 0.5)
        r = (v - k * _LN2_HI) - k * _LN2_LO
        q = 1.0 / 6227020800.0
        q = q * r + 1.0 / 479001600.0
        q = q * r + 1.0 / 39916800.0
        q = q * r + 1.0 / 3628800.0
        q = q * r + 1.0 / 362880.0
        q = q * r + 1.0 / 40320.0
        q = q * r + 1.0 / 5040.0
        q = q * r + 1.0 / 720.0
        q = q * r + 1.0 / 120.0
        q = q * r + 1.0 / 24.0
        q = q * r + 1.0 / 6.0
        q = q * r + 0.5
        q = q * r + 1.0
        blk[i] = q * r + 1.0
        bits[i] = (np.int64(k) + 1023) << 52


@numba.njit(cache=True, inline="always")
def _exp_poly32(blk, factor, bits):
    """The float32 twin of _exp_poly64 (int32 bits); every constant is float32 so that no
    operation widens to float64."""
    f = np.float32(factor)
    for i in range(blk.shape[0]):
        v = min(max(f * blk[i], np.float32(-87.0)), np.float32(87.0))
        # np.floor keeps float32: math.floor gives an int64, which widened all that follows to float64
        k = np.floor(v * np.float32(_LOG2E) + np.float32(0.5))
        r = (v - k * np.float32(_LN2_HI32)) - k * np.float32(_LN2_LO32)
        q = np.float32(1.0 / 5040.0)
        q = q * r + np.float32(1.0 / 720.0)
        q = q * r + np.float32(1.0 / 120.0)
        q = q * r + np.float32(1.0 / 24.0)
        q = q * r + np.float32(1.0 / 6.0)
        q = q * r + np.float32(0.5)
        q = q * r + np.float32(1.0)
        blk[i] = q * r + np.float32(1.0)
        bits[i] = (np.int32(k) + np.int32(127)) << np.int32(23)


@numba.njit(cache=True, inline="always")
def _exp_finish(blk, mode, scale):
    """From q and 2^k (scale) to exp, sigmoid or tanh of the original values."""
    one = blk.dtype.type(1.0)
    two = blk.dtype.type(2.0)
    if mode == _EXP:
        for i in range(blk.shape[0]):
            blk[i] = blk[i] * scale[i]
    elif mode == _SIGMOID:
        for i in range(blk.shape[0]):
            blk[i] = one / (one + blk[i] * scale[i])
    else:
        for i in range(blk.shape[0]):
            blk[i] = one - two / (blk[i] * scale[i] + one)


@numba.njit(cache=True, error_model="numpy")  # no ZeroDivisionError branch: the divisions vectorise
def _exp_family(x, mode, bits):
    """In place: exp(x), sigmoid(x) or tanh(x) by mode, in x's precision, in cache-sized
    blocks of two SIMD loops. bits is an int64 scratch block of _BLOCK elements (the
    caller's, so loops over many rows allocate it once)."""
    flat = x.reshape(-1)
    factor = 1.0 if mode == _EXP else -1.0 if mode == _SIGMOID else 2.0
    for start in range(0, flat.size, _BLOCK):
        blk = flat[start:start + min(_BLOCK, flat.size - start)]
        if flat.itemsize == 4:  # float32 (both branches compile; one runs)
            bits32 = bits.view(np.int32)
            _exp_poly32(blk, factor, bits32)
            _exp_finish(blk, mode, bits32.view(np.float32))
        else:
            _exp_poly64(blk, factor, bits)
            _exp_finish(blk, mode, bits.view(np.float64))


@numba.njit(cache=True)
def vexp_inplace(x):
    """x = exp(x) element-wise (x contiguous, any shape), vectorised."""
    _exp_family(x, _EXP, np.empty(_BLOCK, dtype=np.int64))


@numba.njit(cache=True)
def vsigmoid_inplace(x):
    """x = 1 / (1 + exp(-x)) element-wise, vectorised."""
    _exp_family(x, _SIGMOID, np.empty(_BLOCK, dtype=np.int64))


@numba.njit(cache=True)
def vtanh_inplace(x):
    """x = tanh(x) = 1 - 2 / (exp(2x) + 1) element-wise, vectorised."""
    _exp_family(x, _TANH, np.empty(_BLOCK, dtype=np.int64))
