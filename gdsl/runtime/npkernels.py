"""The numpy tier's helpers: the domain kernels of samplers.py and the streams of rng.py in
vectorised numpy, for the kernels a generated module also writes in numpy (`np_gibbs`...).

They answer while numba compiles (gdsl.load(..., jit="background")), so nothing here may be
compiled by numba. Each function has the semantics of its numba namesake, and the draws take
the same uniforms from the same xoroshiro128+ streams in the same order: for the same seed the
two tiers give the same samples, except where a probability computed by numpy's exp and by
the SIMD exp of vecmath.py falls on different sides of a uniform (a few ulps apart: in float32,
about one draw in ten million).

Streams are (chains, 2) uint64 arrays, stepped for all chains at once (one chain's stream is a
serial dependency, chains are independent).
"""
from __future__ import annotations

import math

import numpy as np

_U64 = np.uint64
_TWO_POW_M53 = 1.0 / 9007199254740992.0
_TWO_POW_M24 = np.float32(1.0 / 16777216.0)
LOG_PI = math.log(math.pi)


# the streams ------------------------------------------------------------------------
def seed_streams(seeds: np.ndarray, rng: np.ndarray) -> None:
    """rng[c] = two splitmix64 outputs from seeds[c] (rng.seed_streams)."""
    z = seeds.astype(np.uint64)
    for w in range(2):
        z = z + _U64(0x9E3779B97F4A7C15)
        y = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        y = (y ^ (y >> _U64(27))) * _U64(0x94D049BB133111EB)
        rng[:, w] = y ^ (y >> _U64(31))


_SHIFT = {k: _U64(k) for k in (11, 16, 24, 27, 37, 40)}


def _outputs(rng: np.ndarray, steps: int, live=None) -> np.ndarray:
    """(steps, chains): the next `steps` outputs of every chain's stream, the streams advanced
    in place (a chain whose live[k] is False at step k keeps its state: it takes fewer steps).
    Ten in-place array operations a step, no allocations: the chains are few, so the
    operations' fixed cost is what counts."""
    n = rng.shape[0]
    out = np.empty((steps, n), np.uint64)
    a, b = rng[:, 0].copy(), rng[:, 1].copy()
    t = np.empty(n, np.uint64)
    if live is not None:
        a0, b0 = np.empty(n, np.uint64), np.empty(n, np.uint64)
    for k in range(steps):
        if live is not None:
            a0[...], b0[...] = a, b
        np.add(a, b, out=out[k])
        np.bitwise_xor(b, a, out=b)  # s1 ^= s0
        np.left_shift(a, _SHIFT[24], out=t)  # s0 = rotl(s0, 24) ^ s1 ^ (s1 << 16)
        np.right_shift(a, _SHIFT[40], out=a)
        np.bitwise_or(a, t, out=a)
        np.bitwise_xor(a, b, out=a)
        np.left_shift(b, _SHIFT[16], out=t)
        np.bitwise_xor(a, t, out=a)
        np.left_shift(b, _SHIFT[37], out=t)  # s1 = rotl(s1, 37)
        np.right_shift(b, _SHIFT[27], out=b)
        np.bitwise_or(b, t, out=b)
        if live is not None:
            np.copyto(a, a0, where=~live[k])
            np.copyto(b, b0, where=~live[k])
    rng[:, 0], rng[:, 1] = a, b
    return out


def row_uniforms(rng: np.ndarray, m: int, dtype) -> np.ndarray:
    """(chains, m) uniforms, every chain's stream advanced as rng._fill_uniforms advances it:
    float64 rows take m steps of 53 bits, float32 rows (m + 1) // 2 steps of two 24-bit draws."""
    n = rng.shape[0]
    if np.dtype(dtype) == np.float32:
        r = _outputs(rng, (m + 1) // 2).T
        u = np.empty((n, 2 * r.shape[1]), np.float32)
        u[:, 0::2] = (r >> _SHIFT[40]).astype(np.float32)
        u[:, 1::2] = ((r >> _SHIFT[16]) & _U64(0xFFFFFF)).astype(np.float32)
        u *= _TWO_POW_M24
        return u[:, :m]
    return (_outputs(rng, m).T >> _SHIFT[11]).astype(np.float64) * _TWO_POW_M53


def counted_uniforms(rng: np.ndarray, need: np.ndarray) -> np.ndarray:
    """(chains, max need) float64 uniforms (rng.uniform), chain c's stream advanced need[c] steps
    (its row past need[c] is not meaningful)."""
    top = int(need.max()) if need.size else 0
    live = np.arange(top)[:, None] < need[None, :]
    return (_outputs(rng, top, live).T >> _SHIFT[11]).astype(np.float64) * _TWO_POW_M53


# functions of the operator table on arrays and scalars (ops.Function.numpy) ------------------------
def sigmoid(a):
    a = np.asarray(a)
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(a.dtype if a.dtype.kind == "f" else np.float64)


def softplus(a):
    a = np.asarray(a)
    return np.maximum(a, 0) + np.log1p(np.exp(-np.abs(a)))


def log_sigmoid(a):
    return -softplus(-np.asarray(a))


def relu(a):
    return np.where(np.asarray(a) > 0, a, 0.0 * a)


def step(a):
    a = np.asarray(a)
    return np.where(a > 0, 1.0, np.where(a != a, np.nan, 0.0))


def log(a):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(a)


def sqrt(a):
    with np.errstate(invalid="ignore"):
        return np.sqrt(a)


def exp(a):
    with np.errstate(over="ignore"):
        return np.exp(a)


# draws: f, x, mask are (chains, m), categorical ones (chains, rows, K); mask != 0 keeps x ----------
def two_state_draw(f, x, mask, rng, low) -> None:
    """samplers.two_state_draw: P(x = 1) = sigmoid((1 - low) f), else low; every element takes
    its uniform, clamped ones too (so the stream does not depend on the mask)."""
    p = sigmoid(f.dtype.type(1.0 - low) * f)
    u = row_uniforms(rng, f.shape[1], x.dtype)
    new = np.where(u < p, x.dtype.type(1.0), x.dtype.type(low))
    x[...] = np.where(mask == 0, new, x)


def gaussian_draw(f, q, x, mask, rng) -> bool:
    """samplers.gaussian_draw: x ~ N(f / 2q, 1 / 2q) where free; False if some free q <= 0
    (those elements take no draw)."""
    draw = (mask == 0) & (q > 0)
    ok = not bool(((mask == 0) & ~(q > 0)).any())
    need = 2 * draw.sum(axis=1)
    u = counted_uniforms(rng, need)
    n, m = f.shape
    slot = np.cumsum(draw, axis=1) - 1  # the k-th drawn element of a row takes uniforms 2k, 2k + 1
    rows = np.arange(n)[:, None]
    k = np.where(draw, slot, 0)
    u1 = 1.0 - (u[rows, 2 * k] if u.shape[1] else np.zeros((n, m)))
    u2 = u[rows, 2 * k + 1] if u.shape[1] else np.zeros((n, m))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)
        prec = 2.0 * q.astype(np.float64)
        new = f / prec + z / np.sqrt(prec)
    x[...] = np.where(draw, new, x)
    return ok


def _logits(f, off: bool):
    """(top, shares, total) of each row: a softmax without overflow, with the all-zero state of
    logit 0 when `off` (samplers._row_normaliser)."""
    f = f.astype(np.float64)
    top = f.max(axis=2)
    if off:
        top = np.maximum(top, 0.0)
    shares = np.exp(f - top[..., None])
    total = shares.sum(axis=2) + (np.exp(-top) if off else 0.0)
    return top, shares, total


def categorical_draw(f, x, mask, rng, off=False) -> None:
    """samplers.categorical_draw (off: categorical_off_draw): one uniform per free row, in row order."""
    free = mask[:, :, 0] == 0
    u = counted_uniforms(rng, free.sum(axis=1))
    n, rows, k = f.shape
    slot = np.where(free, np.cumsum(free, axis=1) - 1, 0)
    un = u[np.arange(n)[:, None], slot] if u.shape[1] else np.zeros((n, rows))
    top, shares, total = _logits(f, off)
    below = np.cumsum(shares, axis=2) <= (un * total)[..., None]  # u past a unit's running share
    chosen = below.sum(axis=2)
    chosen = np.where(chosen >= k, -1 if off else k - 1, chosen)
    new = (np.arange(k) == chosen[..., None]).astype(x.dtype)
    x[...] = np.where(free[..., None], new, x)


def categorical_off_draw(f, x, mask, rng) -> None:
    categorical_draw(f, x, mask, rng, True)


# mean-field updates: x <- damping x + (1 - damping) E[x | f] where free; return the max change ------------
def _damped(x, new, free, damping) -> float:
    new = np.where(free, damping * x + (1.0 - damping) * new, x).astype(x.dtype)
    delta = float(np.abs(new - x).max()) if x.size else 0.0
    x[...] = new
    return delta


def two_state_mean(f, x, mask, damping, low) -> float:
    gap = 1.0 - low
    return _damped(x, low + gap * sigmoid(f.dtype.type(gap) * f), mask == 0, damping)


def gaussian_mean(f, q, x, mask, damping) -> float:
    free = mask == 0
    if (free & ~(q > 0)).any():
        return -1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return _damped(x, f / (2.0 * q), free, damping)


def categorical_mean(f, x, mask, damping, off=False) -> float:
    _, shares, total = _logits(f, off)
    return _damped(x, shares / total[..., None], (mask[:, :, :1] == 0), damping)


def categorical_off_mean(f, x, mask, damping) -> float:
    return categorical_mean(f, x, mask, damping, True)


# log-normalisers: out[c] -= the sum over a chain's elements ------------------------------------
def two_state_lognorm(f, out, low) -> None:
    f = f.astype(np.float64)
    out -= (low * f + softplus((1.0 - low) * f)).sum(axis=1)


def gaussian_lognorm(f, q, out) -> bool:
    f, q = f.astype(np.float64), q.astype(np.float64)
    good = q > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(good, f * f / (4.0 * q) + 0.5 * (LOG_PI - np.log(np.where(good, q, 1.0))), 0.0)
    out -= terms.sum(axis=1)
    return bool(good.all())


def categorical_lognorm(f, out, off=False) -> None:
    top, _, total = _logits(f, off)
    out -= (top + np.log(total)).sum(axis=1)


def categorical_off_lognorm(f, out) -> None:
    categorical_lognorm(f, out, True)


# a coloured group's site sweep (lateral couplings), one colour at a time: a, x, mask are (chains, sites) ------
def colours(shape, a, count) -> np.ndarray:
    """The colour a . k mod count of every site k of a group of this shape."""
    grid = np.indices(tuple(shape)) if len(shape) else np.zeros((0,), int)
    return sum(int(w) * g for w, g in zip(a, grid)) % count


def site_draw(a, x, mask, sites, rng, low) -> None:
    """numba's draw_binary / draw_spin at each free site of the colour (`sites`), in site order,
    one uniform each: x = 1 if u (1 + exp(-(1 - low) a)) < 1, else low."""
    free = (mask == 0) & sites[None, :]
    u = counted_uniforms(rng, free.sum(axis=1))
    slot = np.where(free, np.cumsum(free, axis=1) - 1, 0)
    un = u[np.arange(a.shape[0])[:, None], slot] if u.shape[1] else np.zeros(a.shape)
    with np.errstate(over="ignore"):
        new = np.where(un * (1.0 + np.exp(-(1.0 - low) * a)) < 1.0, 1.0, low)
    x[...] = np.where(free, new, x)


def site_mean(a, x, mask, sites, damping, low) -> float:
    """numba's site mean-field update at the colour's free sites; the largest change."""
    mean = sigmoid(a) if low == 0.0 else np.tanh(a)
    return _damped(x, mean, (mask == 0) & sites[None, :], damping)
