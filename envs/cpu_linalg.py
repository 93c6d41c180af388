"""Work around a deadlock of batched LAPACK kernels in jaxlib < 0.11.2 on CPU.

jaxlib 0.10.x's CPU LAPACK custom calls (``lapack_spotrf_ffi``, ...) split a large batch into
chunks, queue the chunks on XLA's intra-op thread pool and block until they finish. When XLA's
thunk executor runs as many such calls at once as the pool has threads (two on a 2-core machine),
every pool thread waits for chunks that no free thread can run: the process sleeps forever at 0%
CPU. MJX can hit this: a step factorises the mass matrix and, independently, the implicit-damping
matrix (then the Newton Hessian). Humanoid at 256 parallel envs hung 3 times out of 3 on a quiet
machine; a gdb backtrace showed both pool threads in ``jax::ParallelBatchMap`` ->
``BlockingCounter::Wait`` under ``CholeskyFactorization`` (``lapack_spotrf_ffi``). jaxlib 0.11.2
builds that parallel path out, but needs Python 3.12.

``use_xla_linalg_on_cpu()`` keeps LAPACK for batches below ``LAPACK_MAX_BATCH`` (run inline) and
lowers larger batched ``cholesky`` / ``triangular_solve`` without any LAPACK call:
* ``cholesky`` up to ``UNROLL_MAX`` wide: ``unrolled_cholesky`` (static slices, elementwise ops
  that XLA fuses); wider matrices use XLA's own Cholesky expansion (a loop in the program).
* ``triangular_solve``: XLA's own expansion (as fast as LAPACK at MJX's sizes).
Batch 256 on the 2-core Xeon (float32, per call): 27x27 potrf 0.43 ms with LAPACK, 1.5 ms
unrolled, 13.9 ms with XLA's expansion; 9x9: 0.10 / 0.08 / 1.0 ms. So Humanoid's MJX step gets
slower (README, Environments), HalfCheetah's and Reacher's do not.
The MJX tasks call it when they are imported. It is process-wide; ``MAMBA_JAX_KEEP_LAPACK=1``
keeps jaxlib's LAPACK lowering (faster for Humanoid, with the risk of the hang).
"""
from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp

_DONE = False
UNROLL_MAX = 64  # widest matrix factorised by the unrolled code (graph size grows with n)
# Batches smaller than this keep LAPACK. Timing potrf per call on the 2-core VM, cost grows
# linearly up to batch 16 (27x27: 27 us at 8, 45 us at 16) and jumps at 32 (199 us), where jaxlib
# starts splitting the batch over the pool; the deadlock needs that split.
LAPACK_MAX_BATCH = 16


def unrolled_cholesky(a: jax.Array) -> jax.Array:
    """Lower Cholesky factor L of symmetric positive-definite ``a`` [..., n, n] (L @ L^T = a).

    Right-looking and unrolled over the n columns with static slices: take the first column of
    the remaining block, scale it by the square root of its pivot, subtract its outer product from
    the trailing block, recurse on that block. Only elementwise ops (no tiny batched dots), which
    XLA fuses. Entries above the diagonal are 0. A matrix that is not positive definite gives NaN
    (as the LAPACK path does).
    """
    n = a.shape[-1]
    pad = [(0, 0)] * (a.ndim - 2)
    cols = []
    rest = a
    for j in range(n):
        col = rest[..., :, 0] / jnp.sqrt(rest[..., 0:1, 0])  # [..., n - j]
        cols.append(jnp.pad(col, pad + [(j, 0)]))
        rest = rest[..., 1:, 1:] - col[..., 1:, None] * col[..., None, 1:]
    return jnp.stack(cols, axis=-1)


def _batch(aval) -> int:
    return math.prod(aval.shape[:-2])


def _cholesky_cpu_lowering(ctx, x):
    from jax._src.interpreters import mlir
    from jax._src.lax import linalg as lax_linalg

    if _batch(ctx.avals_in[0]) < LAPACK_MAX_BATCH:
        return lax_linalg._cholesky_cpu_lowering(ctx, x)
    if ctx.avals_in[0].shape[-1] <= UNROLL_MAX:
        return mlir.lower_fun(unrolled_cholesky, multiple_results=False)(ctx, x)
    return lax_linalg._cholesky_lowering(ctx, x)


def _triangular_solve_cpu_lowering(ctx, a, b, **params):
    from jax._src.lax import linalg as lax_linalg

    if _batch(ctx.avals_in[0]) < LAPACK_MAX_BATCH:
        return lax_linalg._triangular_solve_cpu_lower(ctx, a, b, **params)
    return lax_linalg._triangular_solve_lowering(ctx, a, b, **params)


def needs_workaround() -> bool:
    """True for jaxlib versions with the blocking parallel batch path (< 0.11.2)."""
    from jax import lib

    version = tuple(int(p) for p in lib.__version__.split(".")[:3] if p.isdigit())
    return version < (0, 11, 2)


def use_xla_linalg_on_cpu() -> bool:
    """Register LAPACK-free lowerings of batched Cholesky / triangular solve for the CPU.

    Returns True when the lowerings were replaced (now or by an earlier call). Call before the
    first compilation that contains these ops; programs compiled earlier keep LAPACK.
    """
    global _DONE
    if _DONE:
        return True
    if os.environ.get("MAMBA_JAX_KEEP_LAPACK") == "1" or not needs_workaround():
        return False
    from jax._src.interpreters import mlir
    from jax._src.lax import linalg as lax_linalg

    mlir.register_lowering(lax_linalg.cholesky_p, _cholesky_cpu_lowering, platform="cpu")
    mlir.register_lowering(lax_linalg.triangular_solve_p, _triangular_solve_cpu_lowering,
                           platform="cpu")
    jax.clear_caches()  # programs traced before now must not reuse the LAPACK lowering
    _DONE = True
    return True
