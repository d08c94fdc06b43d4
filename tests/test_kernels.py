"""The shared compiled kernels against numpy: the SIMD exp family, the zero-skipping
products and the two-state means and draws every binary/spin model uses."""
import numpy as np
import pytest

from gdsl.runtime import kernels as K

# (dtype, largest relative error allowed): ~2 ulp in float64; float32 polynomial ~1.5e-7
PRECISION = [(np.float64, 1e-14), (np.float32, 5e-7)]


def _exp_family(x, mode):
    y = x.copy()
    K._exp_family(y, mode, np.empty(K._BLOCK, np.int64))
    return y


@pytest.mark.parametrize("dtype, tol", PRECISION)
def test_exp_and_sigmoid_match_numpy_in_both_precisions(dtype, tol):
    # more than one block, values across the whole useful range
    x = np.linspace(-60.0, 60.0, 3 * K._BLOCK + 17).astype(dtype)
    wide = x.astype(np.float64)
    exp = _exp_family(x, K._EXP)
    assert exp.dtype == dtype
    assert np.max(np.abs(exp - np.exp(wide)) / np.exp(wide)) < tol
    sig = _exp_family(x, K._SIGMOID)
    ref = 1.0 / (1.0 + np.exp(-wide))
    assert np.max(np.abs(sig - ref) / ref) < tol


@pytest.mark.parametrize("dtype, tol", PRECISION)
def test_tanh_matches_numpy_in_absolute_error(dtype, tol):
    x = np.linspace(-20.0, 20.0, 4001).astype(dtype)
    assert np.max(np.abs(_exp_family(x, K._TANH) - np.tanh(x.astype(np.float64)))) < 4 * tol


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exp_family_saturates_without_nan(dtype):
    x = np.array([-1e6, -800.0, -100.0, 100.0, 800.0, 1e6], dtype)
    sig = _exp_family(x, K._SIGMOID)
    assert np.all(np.isfinite(sig))
    assert np.all(sig[:3] < 1e-30) and np.all(sig[3:] == 1.0)
    tanh = _exp_family(x, K._TANH)
    assert np.array_equal(tanh, np.array([-1, -1, -1, 1, 1, 1], dtype))


def _binary(rng, shape, density, dtype=np.float32):
    return (rng.random(shape) < density).astype(dtype)


@pytest.mark.parametrize("n, k, m, density", [(10, 64, 64, 0.5), (7, 13, 5, 0.3), (3, 9, 11, 0.0), (5, 6, 7, 1.0),
                                              (12, 100, 90, 0.3)])  # the last: g past SMALL_OUTER, by columns
def test_sparse_products_equal_dense_products(n, k, m, density):
    rng = np.random.default_rng(0)
    a = _binary(rng, (n, k), density)
    a[a != 0] *= rng.uniform(-2, 2, int(np.count_nonzero(a))).astype(np.float32)  # any values, not only 1
    p = rng.standard_normal((k, m)).astype(np.float32)
    out = rng.standard_normal((n, m)).astype(np.float32)
    expect = out + 0.5 * (a.astype(np.float64) @ p)
    K.sparse_dot(a, p, out, 0.5)
    np.testing.assert_allclose(out, expect, rtol=1e-5, atol=1e-5)

    x = rng.standard_normal((n, m)).astype(np.float32)
    g = rng.standard_normal((k, m)).astype(np.float32)
    expect = g - 0.25 * (a.T.astype(np.float64) @ x)
    K.sparse_outer(a, x, g, -0.25)
    np.testing.assert_allclose(g, expect, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n, k, m, density", [(30, 150, 88, 0.87), (7, 13, 5, 0.9), (5, 6, 7, 1.0), (4, 9, 3, 0.8)])
def test_complement_product_equals_the_dense_product(dtype, n, k, m, density):
    """a @ p.T for a binary a mostly of ones, as the row sums of p less its columns at a's zeros
    (mostly_ones says when: binary and over 75% ones), every remainder of four rows included."""
    rng = np.random.default_rng(3)
    a = _binary(rng, (n, k), density, dtype)
    p = rng.standard_normal((m, k)).astype(dtype)
    out = rng.standard_normal((n, m)).astype(dtype)
    assert K.mostly_ones(a) == (a.mean() > 0.75)
    expect = out + 0.5 * (a.astype(np.float64) @ p.T.astype(np.float64))
    K.complement_dot_t(a, p, out, 0.5)
    np.testing.assert_allclose(out, expect, rtol=1e-4, atol=1e-4)
    assert not K.mostly_ones(np.where(a == 1, 0.9, 0.0).astype(dtype))  # means, not bits
    assert not K.mostly_ones(1 - a) or (1 - a).mean() > 0.75
    late = a.copy()
    late[-1, -1] = 0.5  # one value not a bit, in the last row the scan reads
    assert not K.mostly_ones(late)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n, k, m", [(10, 64, 64), (7, 33, 30), (1, 4, 9), (2, 1, 3), (3, 5, 6)])
def test_dot_t_equals_the_dense_product(dtype, n, k, m):
    """Blocks of two chains and four rows, and every remainder of both."""
    rng = np.random.default_rng(2)
    a = rng.standard_normal((n, k)).astype(dtype)
    p = rng.standard_normal((m, k)).astype(dtype)
    out = rng.standard_normal((n, m)).astype(dtype)
    expect = out + 0.5 * (a.astype(np.float64) @ p.T.astype(np.float64))
    K.dot_t(a, p, out, 0.5)
    np.testing.assert_allclose(out, expect, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("low", [0.0, -1.0])
def test_two_state_mean_follows_the_damped_update_and_keeps_masked_units(dtype, low):
    rng = np.random.default_rng(1)
    n, m = 5, 3000  # rows longer than a block, and several rows per block below
    for shape in ((n, m), (40, 70)):
        f = rng.normal(0, 3, shape).astype(dtype)
        x = rng.random(shape).astype(dtype)
        mask = (rng.random(shape) < 0.3).astype(np.uint8)
        damping = 0.25
        gap = 1.0 - low
        target = low + gap / (1.0 + np.exp(-gap * f.astype(np.float64)))
        expect = np.where(mask != 0, x, damping * x + (1 - damping) * target)
        before = x.copy()
        delta = K.two_state_mean(f, x, mask, damping, low)
        np.testing.assert_allclose(x, expect, rtol=1e-5, atol=1e-6)
        assert np.array_equal(x[mask != 0], before[mask != 0])
        assert delta == pytest.approx(np.max(np.abs(x.astype(np.float64) - before)), rel=1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_two_state_draw_frequencies_match_sigmoid(dtype):
    """Each unit drawn 4000 times (chains x repeats); every frequency within 5 standard errors
    of sigmoid(f), and masked units never change."""
    rng = np.random.default_rng(2)
    m, chains, repeats = 37, 200, 20
    f = np.tile(rng.normal(0, 2, m), (chains, 1)).astype(dtype)
    mask = np.zeros((chains, m), np.uint8)
    mask[:, 0] = 1
    x = np.zeros((chains, m), dtype)
    x[:, 0] = 7.0  # a masked unit keeps even an impossible value
    streams = np.empty((chains, 2), np.uint64)
    K.seed_streams(rng.integers(1, 2**63, chains).astype(np.uint64), streams)
    total = np.zeros(m)
    for _ in range(repeats):
        K.two_state_draw(f, x, mask, streams, 0.0)
        assert set(np.unique(x[:, 1:])) <= {0.0, 1.0}
        total += x.sum(axis=0)
    assert np.all(x[:, 0] == 7.0)
    p = 1.0 / (1.0 + np.exp(-f[0, 1:].astype(np.float64)))
    freq = total[1:] / (chains * repeats)
    se = np.sqrt(p * (1 - p) / (chains * repeats)) + 1e-12
    assert np.all(np.abs(freq - p) < 5 * se + 1e-9)


@pytest.mark.parametrize("low", [0.0, -1.0])
def test_float64_draws_from_float32_sigmoids_are_the_float64_draws(low):
    """float64 units are drawn against float32 sigmoids, and against the float64 sigmoid only where a
    uniform is within SURE_BEYOND of the float32 one: every draw (a million, some of them that close,
    masked ones kept) is the draw against float64 sigmoids (the SIMD kernel's), bit for bit."""
    from gdsl.runtime import npkernels as NK
    from gdsl.runtime.samplers import SURE_BEYOND
    from gdsl.runtime.vecmath import vsigmoid_inplace

    rng = np.random.default_rng(9)
    n, m = 1000, 1001
    f = np.concatenate([rng.normal(0, 3, n * m // 2), rng.uniform(-60, 60, n * m - n * m // 2)]).reshape(n, m)
    f[:, ::97] = 0.0
    mask = (rng.random((n, m)) < 0.2).astype(np.uint8)
    streams = np.empty((n, 2), np.uint64)
    K.seed_streams(np.arange(n, dtype=np.uint64) + 3, streams)
    x = rng.choice([low, 1.0], size=(n, m))
    u = NK.row_uniforms(streams.copy(), m, np.float64)  # the uniforms the draws take
    p64 = (1 - low) * f
    vsigmoid_inplace(p64)
    p32 = ((1 - low) * f).astype(np.float32)
    vsigmoid_inplace(p32)
    assert np.abs(p32 - p64).max() < SURE_BEYOND / 20  # what makes a far uniform decide alone
    close = (np.abs(u - p32) <= SURE_BEYOND) & (mask == 0)
    assert close.sum() >= 3  # the exact path runs
    expect = np.where(mask == 0, np.where(u < p64, 1.0, low), x)
    after = streams.copy()
    NK.row_uniforms(after, m, np.float64)
    K.two_state_draw(f, x, mask, streams, low)
    np.testing.assert_array_equal(x, expect)
    np.testing.assert_array_equal(streams, after)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("low", [0.0, -1.0])
def test_mask_free_training_kernels(dtype, low):
    """two_state_means_into writes every mean; two_state_draw_from_means draws every unit with
    P(x = 1) = (mean - low) / (1 - low) (frequencies within 5 standard errors)."""
    rng = np.random.default_rng(3)
    chains, m, repeats = 301, 29, 20  # odd: the draws go two chains at a time, plus one
    f = np.tile(rng.normal(0, 1.5, m), (chains, 1)).astype(dtype)
    mean = np.empty_like(f)
    K.two_state_means_into(f, mean, np.empty(K.BLOCK, np.int64), low)
    gap = 1.0 - low
    expect = low + gap / (1.0 + np.exp(-gap * f.astype(np.float64)))
    np.testing.assert_allclose(mean, expect, rtol=1e-5, atol=1e-6)
    streams = np.empty((chains, 2), np.uint64)
    K.seed_streams(rng.integers(1, 2**63, chains).astype(np.uint64), streams)
    x = np.zeros_like(f)
    ones = np.zeros(m)
    for _ in range(repeats):
        K.two_state_draw_from_means(mean, x, streams, low)
        assert set(np.unique(x)) <= {low, 1.0}
        ones += (x == 1.0).sum(axis=0)
    p = (expect[0] - low) / gap
    se = np.sqrt(p * (1 - p) / (chains * repeats))
    assert np.all(np.abs(ones / (chains * repeats) - p) < 5 * se + 1e-9)


def test_float32_uniform_pairs_are_uniform_and_uncorrelated():
    """next_uniform_pair32 splits one 64-bit output into two 24-bit uniforms: both halves
    uniform (every tenth within 5 standard errors of its share) and uncorrelated."""
    s0, s1 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9)
    n = 40000
    u = np.empty(n)
    v = np.empty(n)
    for i in range(n):
        u[i], v[i], s0, s1 = K.next_uniform_pair32(np.uint64(s0), np.uint64(s1))  # numba returns ints
    for w in (u, v):
        assert w.min() >= 0.0 and w.max() < 1.0
        counts = np.histogram(w, bins=10, range=(0, 1))[0]
        assert np.all(np.abs(counts - n / 10) < 5 * np.sqrt(n * 0.1 * 0.9))
    assert abs(np.corrcoef(u, v)[0, 1]) < 5 / np.sqrt(n)
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 5 / np.sqrt(n)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("m", [28, 29])
def test_masked_and_mask_free_draws_take_the_same_uniforms(dtype, m):
    """With nothing masked, two_state_draw_from_mean and two_state_draw_from_means give the
    same draws and leave the streams in the same state (odd and even rows, odd chain count)."""
    rng = np.random.default_rng(4)
    chains = 7
    mean = rng.random((chains, m)).astype(dtype)
    seeds = rng.integers(1, 2**63, chains).astype(np.uint64)
    a_streams = np.empty((chains, 2), np.uint64)
    K.seed_streams(seeds, a_streams)
    b_streams = a_streams.copy()
    a = np.zeros((chains, m), dtype)
    b = np.zeros((chains, m), dtype)
    for _ in range(3):
        K.two_state_draw_from_mean(mean, a, np.zeros((chains, m), np.uint8), a_streams, 0.0)
        K.two_state_draw_from_means(mean, b, b_streams, 0.0)
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a_streams, b_streams)


def _softplus_sums(f, gap):
    import math

    return np.array([math.fsum(np.logaddexp(0.0, gap * row.astype(np.float64))) for row in f])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vectorised_softplus_sums_match_the_exact_sums(dtype):
    """The SIMD softplus (block exp and a division-and-series log1p) against numpy's logaddexp
    summed exactly, over fields from 1e-20 to 800 in size, rows longer than one block (the block
    is 2048 elements), and the spin lognorm's linear part."""
    rng = np.random.default_rng(3)
    f = np.concatenate([rng.normal(0, 3, (6, 5000)), rng.normal(0, 300, (2, 5000)), np.zeros((1, 5000)),
                        np.full((1, 5000), 1e-20), np.full((1, 5000), 700.0), np.full((1, 5000), -700.0)])
    f = f.astype(dtype)
    out = np.empty(len(f))
    K.softplus_row_sums(f, 0.7, out)
    ref = _softplus_sums(f, 0.7)
    assert np.allclose(out, ref, rtol=1e-13, atol=1e-280)
    spin = np.full(len(f), 5.0)
    K.two_state_lognorm(f, spin, -1.0)  # log(exp(-f) + exp(f)) = -f + softplus(2f)
    exact = 5.0 - (_softplus_sums(f, 2.0) - f.astype(np.float64).sum(1))
    assert np.allclose(spin, exact, rtol=1e-13, atol=1e-9)


@pytest.mark.parametrize("low", [0.0, -1.0])
def test_lognorm_pair_equals_two_lognorms_at_the_two_temperatures(low):
    rng = np.random.default_rng(4)
    f = rng.normal(0, 4, (5, 300)).astype(np.float32)
    out_a, out_b, t = np.full(5, 1.0), np.full(5, 2.0), np.empty_like(f)
    K.two_state_lognorm_pair(f, 0.25, 0.2501, out_a, out_b, t, low)
    ref_a, ref_b = np.full(5, 1.0), np.full(5, 2.0)
    K.two_state_lognorm((0.25 * f.astype(np.float64)), ref_a, low)
    K.two_state_lognorm((0.2501 * f.astype(np.float64)), ref_b, low)
    assert np.allclose(out_a, ref_a, rtol=1e-13) and np.allclose(out_b, ref_b, rtol=1e-13)
    assert np.array_equal(t, (np.float64(0.2501) * f.astype(np.float64)).astype(np.float32))
