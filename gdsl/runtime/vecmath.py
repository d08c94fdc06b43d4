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
