"""numba kernels over bf16 bit patterns (uint16) for `master_weights`: one memory pass each, vectorised.

numba, not a C++ extension: wheels for every platform torch supports, no compiler on the user's
machine, and the compiled code is cached on disk (`cache=True`), so only the first run on a machine
pays the ~2 s compilation.
"""

from __future__ import annotations

import numpy as np

from acceltune.extras import require

numba = require("numba", "cpu")  # without it master_weights falls back to autocast
from llvmlite import ir  # noqa: E402  (numba's own dependency)
from numba import njit, prange, types  # noqa: E402
from numba.extending import intrinsic  # noqa: E402

BLOCK = 1 << 14
"""Elements per parallel chunk: large enough to amortise the thread hand-off, small enough to split weights."""


@intrinsic
def _bits_to_f32(typingctx, bits):
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.uint32), codegen


@intrinsic
def _f32_to_bits(typingctx, x):
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(types.float32), codegen


@njit(inline="always")
def _bf16_to_f32(h):
    return _bits_to_f32(np.uint32(h) << np.uint32(16))


@njit(inline="always")
def _f32_to_bf16(x):
    """Round to nearest even, as torch's .to(torch.bfloat16) (finite values)."""
    u = _f32_to_bits(x)
    return np.uint16((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))


@njit(parallel=True, cache=True, fastmath=True)
def sum_of_squares(grad_bf16):
    """Sum of squares of a bf16 array: fp32 within each chunk, fp64 across chunks."""
    n = grad_bf16.size
    chunks = (n + BLOCK - 1) // BLOCK
    partial = np.zeros(chunks, np.float64)
    for c in prange(chunks):
        g = grad_bf16[c * BLOCK:min(n, (c + 1) * BLOCK)]  # slices: indices provably >= 0, so LLVM vectorises
        s = np.float32(0.0)
        for i in range(g.size):
            x = _bf16_to_f32(g[i])
            s += x * x
        partial[c] = s
    return partial.sum()


@njit(parallel=True, cache=True)
def adamw_update(weight_bf16, weight, exp_avg, exp_avg_sq, grad_bf16, grad_factor, lr, beta1, beta2, eps,
                 weight_decay, bias_correction1, bias_correction2_sqrt):
    """torch's fused AdamW step on fp32 `weight` from a bf16 gradient times grad_factor; writes bf16(weight)."""
    n = grad_bf16.size
    chunks = (n + BLOCK - 1) // BLOCK
    decay = np.float32(1.0 - lr * weight_decay)
    step_size = np.float32(lr / bias_correction1)
    b2 = np.float32(beta2)
    one_minus_b1, one_minus_b2 = np.float32(1.0 - beta1), np.float32(1.0 - beta2)  # in fp64 first, as torch
    factor, e, bc2 = np.float32(grad_factor), np.float32(eps), np.float32(bias_correction2_sqrt)
    for c in prange(chunks):
        lo, hi = c * BLOCK, min(n, (c + 1) * BLOCK)
        w16, w, m, v, g = weight_bf16[lo:hi], weight[lo:hi], exp_avg[lo:hi], exp_avg_sq[lo:hi], grad_bf16[lo:hi]
        for i in range(g.size):
            gi = _bf16_to_f32(g[i]) * factor
            mi = m[i] + one_minus_b1 * (gi - m[i])
            vi = b2 * v[i] + one_minus_b2 * gi * gi
            wi = w[i] * decay - step_size * mi / (np.sqrt(vi) / bc2 + e)
            m[i], v[i], w[i] = mi, vi, wi
            w16[i] = _f32_to_bf16(wi)


def warm_up(threads: int | None = None) -> None:
    """Compile (or load from the cache) both kernels and match numba's threads to torch's."""
    import torch

    numba.set_num_threads(max(1, min(threads or torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    h = np.zeros(4, np.uint16)
    f = np.zeros(4, np.float32)
    sum_of_squares(h)
    adamw_update(h, f, f.copy(), f.copy(), h, 1.0, 1e-3, 0.9, 0.999, 1e-8, 0.0, 0.1, 0.1)
