"""Multi-spin coding: 64 chains of a two-state lattice in the bits of one uint64 per site.

The state of c chains is a (words, *lattice) uint64 array, chain 64 w + l in bit l of word w
(`pack`, `unpack`). A heat-bath update of one site in 64 chains at once (`heat_bath_word`):

1. count, in every bit lane, how many of the site's neighbours are up: a 4-bit counter kept
   as four words, one per bit (`count_word` adds a neighbour word with ripple carries);
2. each lane's probability of up is then one of a few numbers, p[nb, u] for a site of nb
   neighbours of which u are up (`thresholds`: floor(p 2^64) as uint64);
3. draw U < p in every lane with bit-serial comparison: U's bits come one word at a time from
   the chain word's stream, the most significant first, against the same bit of each lane's
   threshold; a lane is decided at the first bit where they differ. All 64 lanes are decided
   after about 8 words on average (never more than 64), and each lane is exactly a draw with
   probability floor(p 2^64) / 2^64 (p itself is a float64, so 53 bits of it are exact).

Each word of 64 chains has its own stream, xoroshiro128** (the scrambler makes every output
bit usable, where xoroshiro128+'s low bits are weak), so chains never share random bits, and
words can be split over threads with the same result.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import uint64

ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_TWO_POW_64 = 18446744073709551616.0


@numba.njit(cache=True, inline="always")
def _rotl(x, k):
    return (x << uint64(k)) | (x >> uint64(64 - k))


@numba.njit(cache=True, inline="always")
def next_word(s0, s1):
    """(64 random bits, s0, s1): xoroshiro128** on a stream kept in registers."""
    r = _rotl(s0 * uint64(5), 7) * uint64(9)
    s1 ^= s0
    return r, _rotl(s0, 24) ^ s1 ^ (s1 << uint64(16)), _rotl(s1, 37)


@numba.njit(cache=True, inline="always")
def count_word(c0, c1, c2, c3, w):
    """Add the bits of w to the bit-sliced counters (c0 the lowest bit of every lane's count)."""
    carry = c0 & w
    c0 ^= w
    nxt = c1 & carry
    c1 ^= carry
    carry = c2 & nxt
    c2 ^= nxt
    c3 ^= carry
    return c0, c1, c2, c3


@numba.njit(cache=True)
def _threshold(p):
    if not p > 0.0:
        return uint64(0)
    if p >= 1.0:
        return uint64(0xFFFFFFFFFFFFFFFF)
    return uint64(p * _TWO_POW_64)


@numba.njit(cache=True)
def _up(logit):
    """sigmoid(logit) without overflow."""
    if logit >= 0.0:
        return 1.0 / (1.0 + math.exp(-logit))
    e = math.exp(logit)
    return e / (1.0 + e)


@numba.njit(cache=True)
def thresholds(coupling, bias, neighbours, spin):
    """T[nb, u] = floor(P(up | nb neighbours, u of them up) 2^64) for the energy
    coupling * sum over bonds s s' + bias * sum s. A spin unit's field is
    coupling (2u - nb) + bias and P(up) = sigmoid(-2 field); a binary unit's is
    coupling u + bias and P(1) = sigmoid(-field)."""
    table = np.zeros((neighbours + 1, neighbours + 1), dtype=np.uint64)
    for nb in range(neighbours + 1):
        for u in range(nb + 1):
            if spin:
                p = _up(-2.0 * (coupling * (2 * u - nb) + bias))
            else:
                p = _up(-(coupling * u + bias))
            table[nb, u] = _threshold(p)
    return table


@numba.njit(cache=True)
def thresholds2(coupling0, coupling1, bias, neighbours0, neighbours1, spin):
    """T[nb0, u0, nb1, u1]: as `thresholds` for two classes of bonds with their own couplings (an
    anisotropic lattice, or nearest and next-nearest neighbours): the field is the sum of both
    classes' parts."""
    table = np.zeros((neighbours0 + 1, neighbours0 + 1, neighbours1 + 1, neighbours1 + 1), dtype=np.uint64)
    for nb0 in range(neighbours0 + 1):
        for u0 in range(nb0 + 1):
            for nb1 in range(neighbours1 + 1):
                for u1 in range(nb1 + 1):
                    if spin:
                        f = coupling0 * (2 * u0 - nb0) + coupling1 * (2 * u1 - nb1) + bias
                        p = _up(-2.0 * f)
                    else:
                        p = _up(-(coupling0 * u0 + coupling1 * u1 + bias))
                    table[nb0, u0, nb1, u1] = _threshold(p)
    return table


@numba.njit(cache=True, inline="always")
def _lanes_of_count(c0, c1, c2, c3, u):
    """The lanes whose bit-sliced count is u."""
    m = c0 if u & 1 else ~c0
    m &= c1 if u & 2 else ~c1
    m &= c2 if u & 4 else ~c2
    m &= c3 if u & 8 else ~c3
    return m


@numba.njit(cache=True, inline="always")
def _draw_lanes(masks, thr, count, s0, s1):
    """(word, s0, s1): lane l up with probability thr[k] / 2^64, k the one mask among masks[:count]
    holding l; U < T compared bit-serially, the most significant bit first."""
    out = uint64(0)
    undecided = uint64(0xFFFFFFFFFFFFFFFF)
    for b in range(63, -1, -1):
        r, s0, s1 = next_word(s0, s1)
        t = uint64(0)  # bit b of every lane's threshold
        for k in range(count):
            t |= masks[k] & (uint64(0) - ((thr[k] >> uint64(b)) & uint64(1)))
        out |= undecided & t & ~r  # U's bit 0 where the threshold's is 1: U < T
        undecided &= ~(t ^ r)
        if undecided == uint64(0):
            break
    return out, s0, s1


@numba.njit(cache=True, inline="always")
def heat_bath_word(c0, c1, c2, c3, table, nb, eq, s0, s1):
    """(the site's new word, s0, s1): in every lane, up with probability table[nb, u] / 2^64 where
    u is the lane's count. eq is scratch of at least nb + 1 words."""
    for u in range(nb + 1):
        eq[u] = _lanes_of_count(c0, c1, c2, c3, u)
    return _draw_lanes(eq, table[nb], nb + 1, s0, s1)  # the table's row: no copy


@numba.njit(cache=True, inline="always")
def heat_bath_word2(c0, c1, c2, c3, d0, d1, d2, d3, table, nb0, nb1, eq, thr, s0, s1):
    """heat_bath_word for two classes of bonds: counts u0 (c*) and u1 (d*), probability
    table[nb0, u0, nb1, u1] / 2^64. eq and thr are scratch of (nb0 + 1) (nb1 + 1) words."""
    k = 0
    for u0 in range(nb0 + 1):
        m0 = _lanes_of_count(c0, c1, c2, c3, u0)
        for u1 in range(nb1 + 1):
            eq[k] = m0 & _lanes_of_count(d0, d1, d2, d3, u1)
            thr[k] = table[nb0, u0, nb1, u1]
            k += 1
    return _draw_lanes(eq, thr, k, s0, s1)


def pack(x: np.ndarray, words: int) -> np.ndarray:
    """(chains, *lattice) states of a two-state group -> (words, *lattice) uint64, chain 64 w + l in
    bit l of word w (up: bit set); lanes past the last chain are 0."""
    chains, lattice = x.shape[0], x.shape[1:]
    bits = np.zeros((words * 64,) + lattice, dtype=np.uint8)
    bits[:chains] = x > 0
    bits = bits.reshape((words, 64) + lattice)
    packed = np.packbits(bits, axis=1, bitorder="little")  # (words, 8, *lattice): byte k holds lanes 8k..8k+7
    return np.ascontiguousarray(np.moveaxis(packed, 1, -1)).view("<u8").reshape((words,) + lattice).astype(np.uint64)


def unpack(packed: np.ndarray, chains: int, low: float, dtype) -> np.ndarray:
    """The inverse of pack: (chains, *lattice) of 1.0 (bit set) and `low` (-1 for spins, 0 for binary)."""
    words, lattice = packed.shape[0], packed.shape[1:]
    as_bytes = np.ascontiguousarray(packed.astype("<u8")).view(np.uint8).reshape((words,) + lattice + (8,))
    bits = np.unpackbits(np.moveaxis(as_bytes, -1, 1), axis=1, bitorder="little")  # (words, 64, *lattice)
    bits = bits.reshape((words * 64,) + lattice)[:chains]
    return np.where(bits != 0, 1.0, low).astype(dtype)


class PackedLattice:
    """Multi-spin sampling of a model's lattice group (model.MULTISPIN): packs the chains, runs
    `gibbs_packed` over the words (split over the model's threads; each word has its own stream,
    so the result does not depend on the thread count) and unpacks what is recorded."""

    def __init__(self, model, group: str, low: float):
        self.model, self.group, self.low = model, group, low

    def start(self, state: dict):
        """(packed state, one stream per word) for the chains of `state`."""
        x = state[self.group]
        self.chains = x.shape[0]
        words = -(-self.chains // 64)
        return pack(x, words), self.model._streams(words)

    def run(self, packed: np.ndarray, rng: np.ndarray, steps: int) -> None:
        from .rows import in_parts

        if steps <= 0:
            return
        m = self.model
        in_parts(lambda a, b: m.call("gibbs_packed", packed=packed[a:b], rng=rng[a:b], steps=steps),
                 packed.shape[0], m.threads, min_rows=1)

    def state(self, packed: np.ndarray) -> dict:
        return {self.group: unpack(packed, self.chains, self.low, self.model.dtype)}

    def sample(self, state: dict, n: int, steps: int, burn_in: int, bar) -> dict:
        """As ModelBase.sample: `burn_in` sweeps, then a sample of every chain every `steps` sweeps."""
        packed, rng = self.start(state)
        per_chain = n // self.chains
        out = np.empty((n,) + packed.shape[1:], dtype=self.model.dtype)
        self.run(packed, rng, burn_in)
        for r in range(per_chain):
            self.run(packed, rng, steps)
            out[r::per_chain] = unpack(packed, self.chains, self.low, self.model.dtype)
            bar(r + 1)
        return {self.group: out}
