"""Work around a deadlock of batched LAPACK kernels in jaxlib < 0.11.2 on CPU.

jaxlib 0.10.x's CPU LAPACK custom calls split a batch whose work exceeds ~2e5 FLOP into chunks,
queue the chunks on XLA's intra-op thread pool and block until they finish. When XLA's thunk
executor runs as many such calls at once as the pool has threads (two on a 2-core machine), every
pool thread waits for chunks that no free thread can run: the process sleeps forever at 0% CPU.
MJX can hit this: a step factorises the mass matrix and, independently, the implicit-damping
matrix (then the Newton Hessian). Humanoid at 256 parallel envs hung 3 times out of 3 on a quiet
machine; a gdb backtrace showed both pool threads in ``jax::ParallelBatchMap`` ->
``BlockingCounter::Wait`` under ``CholeskyFactorization`` (``lapack_spotrf_ffi``). jaxlib 0.11.2
builds that parallel path out, but needs Python 3.12.

``install_deadlock_free_linalg()`` covers the two LAPACK kernels MJX uses, Cholesky (potrf) and the
triangular solve (trsm), with jaxlib's own work rule (``lapack_runs_inline``):
* a batch that jaxlib runs inline keeps its single LAPACK call;
* a batch it would split becomes several LAPACK calls on consecutive chunks, each small enough to
  run inline (``_in_chunks``). The chunks are independent, so XLA still spreads them over the
  pool's threads, but no thread ever waits for the pool;
* batches of 16 or more small real matrices use fused code instead, because it is faster than
  LAPACK's per-matrix calls: ``unrolled_cholesky`` (static slices, elementwise ops) up to 4x4,
  and XLA's own triangular-solve expansion up to 12x12. Larger Cholesky factorisations stay on
  LAPACK (inline or chunked): inside an MJX step the fused 9x9 code was slower than LAPACK, see
  ``FUSED_CHOLESKY_N``.
Other batched LAPACK kernels (LU, QR, eigh, ...) are untouched and keep the hazard.
``splitting_lapack_calls(hlo_text)`` lists the potrf/trsm calls in a compiled program that could
still block. Speed in MJX steps (README, Performance): Reacher got faster; Humanoid, whose 23x23
factorisations are now chunked, is within ~10% of jaxlib's own lowering.
The MJX tasks call it when they are imported (``import envs`` does, when mujoco is installed). It
is process-wide and clears JAX's caches, so jitted functions recompile with the new lowering (an
already compiled ``jax.stages.Compiled`` keeps the old one). ``MAMBA_JAX_KEEP_LAPACK=1`` keeps
jaxlib's lowering, with the risk of the hang.
"""
from __future__ import annotations

import math
import os
import re

import jax
import jax.numpy as jnp

_DONE = False
_MIN_WORK = 200_000  # jaxlib's kMinWorkPerTask: a batch with less work (FLOP) stays on one thread
# Small matrices in batches: the fused code is also faster than LAPACK's per-matrix calls
# (batch 256, 9x9: potrf 0.08 vs 0.10 ms, cho_solve 0.04 vs 0.09 ms; Reacher's 2x2 MJX step
# 1.1-1.5x faster), so it is used there even where LAPACK would run inline.
FUSED_SMALL_N, FUSED_SMALL_MIN_BATCH = 12, 16
# ... but only up to 4x4 for the Cholesky factorisation itself. Measured alone, the fused 9x9 code
# beats LAPACK (above; 0.09 vs 0.23 ms here), but inside HalfCheetah's MJX step (six 9x9
# factorisations per physics step: mass matrix, Newton Hessian x4, implicit damping) its ~27
# fusions per matrix cost more than one LAPACK call: a jax.profiler trace at 256 envs put the
# fused Cholesky, with its triangular solves, at ~28% of the step. With LAPACK potrf (triangular
# solves unchanged) cheetah_vel (bench_mjx's loop, A/B in one process, 5 rounds) at 256 parallel
# ran 1.28-1.46x faster per CPU-second (median 7.3k -> 10.4k env steps) with jaxlib's default
# XLA flags and 1.09-1.27x (9.6k -> 11.9k) with the training process's flags
# (mamba_jax/memory.py); at 1024 parallel, where the LAPACK call is chunked, no change
# (0.96-1.1x). Reacher's 2x2 keeps the fused code (LAPACK there was 0.8-1.0x).
FUSED_CHOLESKY_N = 4


def lapack_runs_inline(batch: int, cost_per_matrix: int) -> bool:
    """Whether jaxlib 0.10.2 runs a batched LAPACK call on the calling thread (no pool waits).

    Its chunk size is max(ceil(batch / threads), ceil(2e5 / cost)); the call stays inline when
    that covers the whole batch, for any thread count when ceil(2e5 / cost) >= batch.
    """
    return batch <= 1 or _inline_chunk(cost_per_matrix) >= batch


def _inline_chunk(cost_per_matrix: int) -> int:
    """The largest batch jaxlib runs inline for this per-matrix cost."""
    return -(-_MIN_WORK // max(int(cost_per_matrix), 1))


def _potrf_cost(n: int, is_complex: bool) -> int:
    """jaxlib's FLOP estimate of one n x n Cholesky (complex: 3x)."""
    return n ** 3 // 3 * (3 if is_complex else 1)


def _trsm_cost(rows: int, cols: int, is_complex: bool) -> int:
    """jaxlib's estimate of one triangular solve with a rows x cols right-hand side,
    rows * cols * (rows or cols, by side), bounded above by the larger of the two."""
    return rows * cols * max(rows, cols) * (3 if is_complex else 1)


def unrolled_cholesky(a: jax.Array) -> jax.Array:
    """Lower Cholesky factor L of symmetric positive-definite ``a`` [..., n, n] (L @ L^T = a).

    Right-looking and unrolled over the n columns with static slices: take the first column of
    the remaining block, scale it by the square root of its pivot, subtract its outer product from
    the trailing block, recurse on that block. Only elementwise ops (no tiny batched dots), which
    XLA fuses. Real dtypes only (no conjugation). Entries above the diagonal are 0. A matrix that
    is not positive definite comes back all NaN, as from the LAPACK path.
    """
    n = a.shape[-1]
    pad = [(0, 0)] * (a.ndim - 2)
    cols = []
    rest = a
    for j in range(n):
        col = rest[..., :, 0] / jnp.sqrt(rest[..., 0:1, 0])  # [..., n - j]
        cols.append(jnp.pad(col, pad + [(j, 0)]))
        rest = rest[..., 1:, 1:] - col[..., 1:, None] * col[..., None, 1:]
    out = jnp.stack(cols, axis=-1)
    failed = jnp.isnan(out).any(axis=(-2, -1), keepdims=True)
    return jnp.where(failed, jnp.nan, out)


def _batch(aval) -> int:
    return math.prod(aval.shape[:-2])


def _complex(aval) -> bool:
    return jnp.issubdtype(aval.dtype, jnp.complexfloating)


def _small(batch: int, n: int) -> bool:
    return n <= FUSED_SMALL_N and batch >= FUSED_SMALL_MIN_BATCH


def _in_chunks(bind, chunk: int, *operands):
    """``bind`` on consecutive batch chunks of ``operands`` [..., r, c] (same batch dims), each
    small enough that jaxlib runs it inline; the chunks are independent, so XLA may still run
    them on both pool threads at once, and none of them waits for the pool."""
    batch = operands[-1].shape[:-2]
    flat = [x.reshape((-1,) + x.shape[-2:]) for x in operands]
    total = flat[0].shape[0]
    outs = [bind(*(x[i:i + chunk] for x in flat)) for i in range(0, total, chunk)]
    out = jnp.concatenate(outs, axis=0)
    return out.reshape(batch + out.shape[-2:])


def _cholesky_cpu_lowering(ctx, x):
    from jax._src.interpreters import mlir
    from jax._src.lax import linalg as lax_linalg

    aval = ctx.avals_in[0]
    n = aval.shape[-1]
    supported = aval.dtype in (jnp.float32, jnp.float64, jnp.complex64, jnp.complex128)
    cost = _potrf_cost(n, _complex(aval))
    batch = _batch(aval)
    if not supported or n == 0:
        return lax_linalg._cholesky_cpu_lowering(ctx, x)
    if _small(batch, n) and n <= FUSED_CHOLESKY_N and not _complex(aval):
        return mlir.lower_fun(unrolled_cholesky, multiple_results=False)(ctx, x)
    if lapack_runs_inline(batch, cost):
        return lax_linalg._cholesky_cpu_lowering(ctx, x)
    chunked = lambda x: _in_chunks(lax_linalg.cholesky_p.bind, _inline_chunk(cost), x)  # noqa: E731
    return mlir.lower_fun(chunked, multiple_results=False)(ctx, x)


def _triangular_solve_cpu_lowering(ctx, a, b, **params):
    from jax._src.interpreters import mlir
    from jax._src.lax import linalg as lax_linalg

    b_aval = ctx.avals_in[1]
    batch = _batch(b_aval)
    if _small(batch, ctx.avals_in[0].shape[-1]):
        return lax_linalg._triangular_solve_lowering(ctx, a, b, **params)
    cost = _trsm_cost(*b_aval.shape[-2:], _complex(b_aval))
    if lapack_runs_inline(batch, cost):
        return lax_linalg._triangular_solve_cpu_lower(ctx, a, b, **params)
    bind = lambda a, b: lax_linalg.triangular_solve_p.bind(a, b, **params)  # noqa: E731
    chunked = lambda a, b: _in_chunks(bind, _inline_chunk(cost), a, b)  # noqa: E731
    return mlir.lower_fun(chunked, multiple_results=False)(ctx, a, b)


_CALL = re.compile(r'custom_call_target="lapack_([a-z])(potrf|trsm)_ffi", '
                   r'operand_layout_constraints=\{(.*?\})\}')
_SHAPE = re.compile(r"[a-z]+\d*\[([\d,]*)\]")


def splitting_lapack_calls(hlo_text: str) -> list:
    """The potrf/trsm LAPACK calls of a compiled program's HLO text that jaxlib 0.10.2 would split
    over the thread pool (the calls that can deadlock); [] means the program is safe from them.
    Each entry is (kernel, operand shapes). The trsm cost is bounded from above (side unknown)."""
    found = []
    for kind, kernel, operands in _CALL.findall(hlo_text):
        shapes = [tuple(int(d) for d in m.split(",") if d) for m in _SHAPE.findall(operands)]
        *batch, rows, cols = shapes[-1]
        is_complex = kind in "cz"
        cost = _potrf_cost(rows, is_complex) if kernel == "potrf" else _trsm_cost(rows, cols,
                                                                                  is_complex)
        if not lapack_runs_inline(math.prod(batch), cost):
            found.append((kernel, shapes))
    return found


def needs_workaround() -> bool:
    """True for jaxlib versions with the blocking parallel batch path (< 0.11.2)."""
    from jax import lib

    version = tuple(int(p) for p in lib.__version__.split(".")[:3] if p.isdigit())
    return version < (0, 11, 2)


def install_deadlock_free_linalg() -> bool:
    """Register CPU lowerings of batched Cholesky / triangular solve that never block the pool.

    Returns True when the lowerings were replaced (now or by an earlier call). Clears JAX's
    caches, so jitted functions lower again; only already compiled objects keep LAPACK.
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
