"""Random numbers: one xoroshiro128+ stream per chain, and uniform and normal draws from it.

A model's streams are an array `rng` of (chains, 2) uint64 words, seeded from the model's
numpy Generator on every call (seed_streams, splitmix64): results depend only on the seed,
the draws are cheap (a few ns), and chains never share state. `uniform(rng, c)` and
`normal(rng, c)` draw on chain c's stream; `next_uniform` and `next_uniform_pair32` step a
stream whose state a loop keeps in registers, and `_fill_uniforms` fills a row with draws.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import uint64
from numba.extending import overload

_TWO_POW_M53 = 1.0 / 9007199254740992.0
_TWO_POW_M24 = 1.0 / 16777216.0


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
def normal(rng, c):
    u1 = 1.0 - uniform(rng, c)
    u2 = uniform(rng, c)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


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
