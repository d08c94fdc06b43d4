"""Compiled building blocks shared by every generated model, under the one name they use.

Generated modules import this module as `_k` and call `_k.<name>`; the operator table
(gdsl/ops.py) names its numba callables the same way. The blocks live by topic:

    rng.py       the per-chain random streams, uniform and normal draws
    samplers.py  draws, mean-field means and log-normalisers of each domain
    products.py  products that skip zeros, and loops for small ones
    vecmath.py   scalar functions, SIMD exp/sigmoid/tanh over arrays, field scaling

Arrays are laid out (chains, elements); generated code reshapes to that.
"""
from __future__ import annotations

from .products import (SMALL_OUTER, SMALL_PRODUCT, SPARSE_BELOW, complement_dot_t, density, dot_t, mostly_ones,
                       sparse_dot, sparse_outer, use_loops)
from .multispin import count_word, heat_bath_word, heat_bath_word2
from .multispin import thresholds as packed_thresholds
from .multispin import thresholds2 as packed_thresholds2
from .rng import next_uniform, next_uniform_pair32, normal, seed_streams, uniform
from .sequences import active_rows
from .sync import abort, barrier
from .samplers import (LOG_PI, add_slab_integral, any_clamped, gaussian_block_draw, gaussian_block_lognorm,
                       gaussian_block_mean, spike_slab_lognorm, categorical_draw, categorical_lognorm, categorical_mean, categorical_off_draw,
                       categorical_off_lognorm, categorical_off_mean, draw_binary, draw_spin,
                       gaussian_draw, gaussian_lognorm, gaussian_mean, two_state_draw, two_state_draw_from_mean,
                       two_state_draw_from_means, two_state_lognorm, two_state_mean, two_state_means_into)
from .vecmath import (BLOCK, log_sigmoid, relu, scale, scaled_copy, sigmoid, softplus, softplus_row_sums, step,
                      temper, two_state_lognorm_pair, vexp_inplace, vexp_scaled_inplace, vsigmoid_inplace, vtanh_inplace)
from .vecmath import _BLOCK, _EXP, _SIGMOID, _TANH, _exp_family  # noqa: F401 (the SIMD exp family, for its tests)

__all__ = [
    # rng
    "uniform", "normal", "next_uniform", "next_uniform_pair32", "seed_streams",
    # multispin
    "count_word", "heat_bath_word", "heat_bath_word2", "packed_thresholds", "packed_thresholds2",
    # sequences
    "active_rows",
    # sync (an epoch cut over threads)
    "barrier", "abort",
    # samplers
    "LOG_PI", "draw_binary", "draw_spin", "two_state_draw", "two_state_draw_from_mean", "two_state_draw_from_means",
    "two_state_means_into", "two_state_mean", "two_state_lognorm", "gaussian_draw", "gaussian_mean",
    "gaussian_lognorm", "categorical_draw", "categorical_mean", "categorical_lognorm",
    "categorical_off_draw", "categorical_off_mean", "categorical_off_lognorm", "add_slab_integral", "any_clamped",
    "spike_slab_lognorm", "gaussian_block_draw", "gaussian_block_mean", "gaussian_block_lognorm",
    # products
    "SPARSE_BELOW", "SMALL_PRODUCT", "SMALL_OUTER", "use_loops", "density", "dot_t", "sparse_dot", "sparse_outer",
    "mostly_ones", "complement_dot_t",
    # vecmath
    "sigmoid", "softplus", "relu", "step", "log_sigmoid", "BLOCK", "vexp_inplace", "vsigmoid_inplace",
    "vtanh_inplace", "temper", "scale", "scaled_copy", "softplus_row_sums", "two_state_lognorm_pair", "vexp_scaled_inplace",
]
