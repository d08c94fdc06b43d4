"""A barrier for compiled kernels that run as parts on several threads (a training epoch cut over
the cores: every part samples its rows, all wait, every part updates its share of the parameters,
all wait again).

Python's threading primitives would need the GIL at every minibatch; a thread waiting for the
GIL back can lose a whole switch interval (5 ms, longer than a minibatch's work). This barrier
lives in compiled code: a shared int64 array, atomic read-modify-writes (LLVM `atomicrmw`,
through numba intrinsics: numba has no CPU atomics of its own), spinning briefly and then
yielding the core (`sched_yield`), so a part that waits does not starve the one it waits for
when the machine has fewer free cores than parts. The intrinsics compile into the calling
kernel: nothing process-specific is baked in, so the kernels stay in numba's on-disk cache.

The sync array: [0] parts arrived, [1] generation, [2] aborted (a part that stops early sets
it, so the others leave their wait instead of spinning forever).
"""
from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

SYNC_SIZE = 4
SPINS_BEFORE_YIELD = 2000  # about 10 us of spinning: a balanced barrier completes well within it


def new_sync() -> np.ndarray:
    return np.zeros(SYNC_SIZE, np.int64)


def _element_pointer(context, builder, sig, args):
    ary = context.make_array(sig.args[0])(context, builder, args[0])
    return cgutils.get_item_pointer(context, builder, sig.args[0], ary, [args[1]])


@intrinsic
def atomic_add(typingctx, arr, index, value):
    """arr[index] += value atomically (sequentially consistent); returns the old value."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        return None
    sig = types.int64(arr, index, value)

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig, args)
        delta = context.cast(builder, args[2], sig.args[2], types.int64)
        return builder.atomic_rmw("add", ptr, delta, "seq_cst")
    return sig, codegen


@intrinsic
def atomic_load(typingctx, arr, index):
    """arr[index], read atomically (acquire: later reads see what the writer wrote before)."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        return None
    sig = types.int64(arr, index)

    def codegen(context, builder, sig, args):
        return builder.load_atomic(_element_pointer(context, builder, sig, args), "acquire", 8)
    return sig, codegen


@intrinsic
def yield_core(typingctx):
    """sched_yield(): let another runnable thread have this core (libc, found by name at load)."""
    sig = types.int32()

    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
        return builder.call(fn, [])
    return sig, codegen


@numba.njit(cache=True, nogil=True)
def barrier(sync, parts):
    """Wait until all `parts` threads have arrived. False if a part aborted (then leave too)."""
    if parts == 1:
        return atomic_load(sync, 2) == 0
    generation = atomic_load(sync, 1)
    if atomic_add(sync, 0, 1) == parts - 1:  # the last to arrive opens the next generation
        atomic_add(sync, 0, -parts)
        atomic_add(sync, 1, 1)
    else:
        spins = 0
        while atomic_load(sync, 1) == generation:
            if atomic_load(sync, 2) != 0:
                return False
            spins += 1
            if spins > SPINS_BEFORE_YIELD:
                yield_core()
    return atomic_load(sync, 2) == 0


@numba.njit(cache=True, nogil=True)
def abort(sync):
    """Tell the other parts to stop waiting (this part leaves early); returns False."""
    atomic_add(sync, 2, 1)
    return False
