"""Vector math: the scalar functions of the operator table that compiled code calls
(sigmoid, softplus, relu, step, log_sigmoid), exp, sigmoid and tanh over whole arrays in
SIMD blocks (vexp_inplace, vsigmoid_inplace, vtanh_inplace), and in-place scaling of fields
(temper, scale).
"""
from __future__ import annotations

import math

import numba
import numpy as np


# scalar functions (the operator table names them as _k.<name>) -------------------------------
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


# in-place scaling of fields (tempering) ---------------------------------------------------
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


@numba.njit(cache=True)
def scaled_copy(x, factor, out):
    """out = factor * x, over flat arrays (a field at one temperature, the raw field kept)."""
    for j in range(x.shape[0]):
        out[j] = factor * x[j]


# vectorisable exp: llvmlite here has no vector math library, so math.exp stays scalar
# (~5 ns). Range reduction, a polynomial and the 2^k factor built from the exponent bits
# are plain arithmetic that LLVM turns into SIMD code. The 2^k bits go through an integer
# scratch block viewed as floats. float64 arrays get a degree-13 polynomial (~2 ulp, about
# 1.2 ns per sigmoid with AVX-512, 2.5 ns with AVX2); float32 arrays a degree-7 one in float32 (relative error ~1.5e-7,
# twice the SIMD lanes: about 0.65 ns).
_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238
_LN2_LO = 1.9082149292705877e-10
_LN2_HI32 = 0.693359375  # ln 2 split so that k * _LN2_HI32 is exact in float32
_LN2_LO32 = -2.12194440e-4


# fused multiply-adds in the polynomials (LLVM contracts a * b + c only when allowed): about 1.5x
# faster float64 exp on AVX2, and no less accurate (one rounding instead of two). Only
# contraction: full fastmath would reassociate the round-by-shift of _exp_poly64 away.
CONTRACT = {"contract"}

_BLOCK = 2048
BLOCK = _BLOCK  # for generated code: the size of the scratch block callers pass
_EXP, _SIGMOID, _TANH = 0, 1, 2


_ROUND64 = 6755399441055744.0  # 1.5 * 2^52: x + _ROUND64 holds round(x) in its low mantissa bits
_EXPONENT64 = 1023 - (1 << 51)  # the bias, less the 2^51 mantissa bit that _ROUND64 leaves


@numba.njit(cache=True, inline="always")
def _exp_poly64(blk, factor, bits):
    """blk[i] <- q with exp(factor * blk[i]) = q * 2^k, and 2^k's bits in bits[i].

    k = round(v / ln 2) by the 1.5 * 2^52 shift, not math.floor: a float64 -> int64 conversion
    has no SIMD instruction before AVX-512, and LLVM left the whole loop scalar on AVX2 machines
    (6 ns a sigmoid instead of about 1). The shifted value's bits give 2^k's with integer adds
    and shifts, which vectorise everywhere."""
    shifted = bits.view(np.float64)
    for i in range(blk.shape[0]):
        v = min(max(factor * blk[i], -708.0), 708.0)
        t = v * _LOG2E + _ROUND64
        k = t - _ROUND64
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
        shifted[i] = t
    for i in range(blk.shape[0]):
        bits[i] = (bits[i] + _EXPONENT64) << 52


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


@numba.njit(cache=True, error_model="numpy", fastmath=CONTRACT)  # numpy errors: the divisions vectorise
def _exp_family(x, mode, bits):
    """In place: exp(x), sigmoid(x) or tanh(x) by mode, in x's precision, in cache-sized
    blocks of two SIMD loops. bits is an int64 scratch block of _BLOCK elements (the
    caller's, so loops over many rows allocate it once)."""
    flat = x.reshape(-1)
    factor = 1.0 if mode == _EXP else -1.0 if mode == _SIGMOID else 2.0
    for start in range(0, flat.size, _BLOCK):
        _exp_block(flat[start:start + min(_BLOCK, flat.size - start)], factor, mode, bits)


@numba.njit(cache=True, inline="always")
def _exp_block(blk, factor, mode, bits):
    """One block in place, in its own precision: exp, sigmoid or tanh (mode) of factor * blk."""
    if blk.itemsize == 4:  # float32 (both branches compile; one runs)
        bits32 = bits.view(np.int32)
        _exp_poly32(blk, factor, bits32)
        _exp_finish(blk, mode, bits32.view(np.float32))
    else:
        _exp_poly64(blk, factor, bits)
        _exp_finish(blk, mode, bits.view(np.float64))


@numba.njit(cache=True, error_model="numpy", fastmath=CONTRACT)
def vexp_scaled_inplace(x, factor, bits):
    """x = exp(factor * x) over a flat array in its own precision, in SIMD blocks; bits is an
    int64 scratch block of _BLOCK elements (the caller's: a lattice sweep calls this once per
    row, on a row in the model's dtype: float32 rows take the 3x cheaper float32 exp)."""
    for start in range(0, x.size, _BLOCK):
        _exp_block(x[start:start + min(_BLOCK, x.size - start)], factor, _EXP, bits)


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


# vectorisable softplus sums: the free energies of two-state units ------------------------------
@numba.njit(cache=True, inline="always")
def _log1p_unit(u):
    """log(1 + u) for u in [0, 1] in float64 arithmetic only (no library call, so loops of it
    vectorise): 2 atanh(s) with s = u / (2 + u) in [0, 1/3], its odd series to s^35 (the first
    term left out is below 2e-19 relative)."""
    s = u / (2.0 + u)
    t = s * s
    p = 1.0 / 35.0
    for d in range(33, 0, -2):  # Horner over 1/33, 1/31, ..., 1/1 (a fixed count: LLVM unrolls it)
        p = p * t + 1.0 / d
    return 2.0 * s * p


@numba.njit(cache=True, inline="always")
def _softplus_into(a, u, bits):
    """u[i] = softplus(a[i]) = max(a, 0) + log1p(exp(-|a|)) over a block, in SIMD loops."""
    k = a.shape[0]
    for i in range(k):
        u[i] = -abs(a[i])
    _exp_poly64(u, 1.0, bits)
    scale = bits.view(np.float64)
    for i in range(k):
        u[i] = max(a[i], 0.0) + _log1p_unit(u[i] * scale[i])


@numba.njit(cache=True, inline="always")
def _block_sum(u):
    """The sum of a block in four running sums (one chain of adds would wait on each add)."""
    k = u.shape[0]
    s0 = s1 = s2 = s3 = 0.0
    i = 0
    while i + 4 <= k:
        s0 += u[i]
        s1 += u[i + 1]
        s2 += u[i + 2]
        s3 += u[i + 3]
        i += 4
    while i < k:
        s0 += u[i]
        i += 1
    return (s0 + s1) + (s2 + s3)


@numba.njit(cache=True, error_model="numpy", fastmath=CONTRACT)
def softplus_row_sums(f, gap, out):
    """out[c] = sum over j of softplus(gap * f[c, j]), in float64, in SIMD blocks (the block exp
    above and _log1p_unit): about 4x faster here than the scalar softplus, whose math.log1p and
    math.exp are library calls, one element at a time; within a few ulp of it."""
    n, m = f.shape
    w = min(m, _BLOCK)
    a = np.empty(w)
    u = np.empty(w)
    bits = np.empty(w, dtype=np.int64)
    for c in range(n):
        total = 0.0
        for start in range(0, m, w):
            k = min(w, m - start)
            for i in range(k):
                a[i] = gap * f[c, start + i]
            _softplus_into(a[:k], u[:k], bits[:k])
            total += _block_sum(u[:k])
        out[c] = total


@numba.njit(cache=True, error_model="numpy", fastmath=CONTRACT)
def two_state_lognorm_pair(f, beta_a, beta_b, out_a, out_b, t, low):
    """The log-normalisers of two-state units at two temperatures from one raw field f (an AIS
    step): out_x[c] -= sum over j of low beta_x f + softplus((1 - low) beta_x f), for x = a, b;
    and t = beta_b f, the field of the draw that follows. One pass over f for both."""
    n, m = f.shape
    w = min(m, _BLOCK)
    a = np.empty(w)
    b = np.empty(w)
    ua = np.empty(w)
    ub = np.empty(w)
    bits = np.empty(w, dtype=np.int64)
    ga, gb = (1.0 - low) * beta_a, (1.0 - low) * beta_b
    for c in range(n):
        ta = tb = lin = 0.0
        for start in range(0, m, w):
            k = min(w, m - start)
            for i in range(k):
                x = np.float64(f[c, start + i])
                a[i] = ga * x
                b[i] = gb * x
                t[c, start + i] = beta_b * x
            if low != 0.0:
                lin += _block_sum(f[c, start:start + k].astype(np.float64))
            _softplus_into(a[:k], ua[:k], bits[:k])
            _softplus_into(b[:k], ub[:k], bits[:k])
            ta += _block_sum(ua[:k])
            tb += _block_sum(ub[:k])
        out_a[c] -= low * beta_a * lin + ta
        out_b[c] -= low * beta_b * lin + tb
