"""The LAPACK-free batched Cholesky / triangular solve used on CPU (envs/cpu_linalg.py)."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs  # noqa: F401  (importing the MJX tasks installs the lowering)
from envs import cpu_linalg


def _spd(rng, batch, n):
    a = rng.normal(size=batch + (n, n))
    return (a @ np.swapaxes(a, -1, -2) + n * np.eye(n)).astype(np.float32)


@pytest.mark.parametrize("batch,n", [((), 1), ((5,), 2), ((3, 4), 9), ((2,), 27)])
def test_unrolled_cholesky_matches_numpy(batch, n):
    a = _spd(np.random.default_rng(n), batch, n)
    got = np.asarray(jax.jit(cpu_linalg.unrolled_cholesky)(a))
    want = np.linalg.cholesky(a.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    assert np.all(np.triu(got, 1) == 0)


def test_unrolled_cholesky_gives_nan_for_a_matrix_that_is_not_positive_definite():
    bad = np.diag([1.0, 1.0, -1.0, 1.0]).astype(np.float32)
    assert np.isnan(np.asarray(cpu_linalg.unrolled_cholesky(bad))).all()


def test_no_lapack_call_is_split_over_the_pool_and_results_match():
    if not cpu_linalg.needs_workaround() or jax.default_backend() != "cpu":
        pytest.skip("workaround only applies to jaxlib < 0.11.2 on CPU")
    assert cpu_linalg.install_deadlock_free_linalg()  # already installed by `import envs`

    def solve(a, b):
        c = jax.scipy.linalg.cho_factor(a)
        return jax.scipy.linalg.cho_solve(c, b)

    rng = np.random.default_rng(0)
    # 27x27 potrf: jaxlib would split batches of 32 and more (its 2e5-FLOP rule); they become
    # inline-sized LAPACK chunks. 4x4 batches of 16+ use the fused code (faster), smaller LAPACK;
    # 9x9 (HalfCheetah) stays on LAPACK, in chunks beyond 823 matrices.
    for batch, n, lapack_expected in [(32, 27, True), (64, 27, True), (16, 27, True),
                                      (4, 27, True), (16, 4, False), (8, 4, True),
                                      (256, 9, True), (1024, 9, True)]:
        inline = batch <= 823 if n == 9 else (batch < 32 or n < 27)
        assert cpu_linalg.lapack_runs_inline(batch, n ** 3 // 3) == inline
        a = _spd(rng, (batch,), n)
        b = rng.normal(size=(batch, n)).astype(np.float32)
        f = jax.jit(jax.vmap(solve))
        hlo = f.lower(a, b).compile().as_text()
        calls = re.findall(r'custom_call_target="(lapack_\w+)"', hlo)
        assert ("lapack_spotrf_ffi" in calls) == lapack_expected, (batch, n, calls)
        assert cpu_linalg.splitting_lapack_calls(hlo) == [], (batch, n)
        want = np.linalg.solve(a.astype(np.float64), b.astype(np.float64)[..., None])[..., 0]
        np.testing.assert_allclose(np.asarray(f(a, b)), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.complex64])
def test_other_dtypes_and_wide_matrices_match_numpy_without_split_calls(dtype):
    if not cpu_linalg.needs_workaround() or jax.default_backend() != "cpu":
        pytest.skip("workaround only applies to jaxlib < 0.11.2 on CPU")
    rng = np.random.default_rng(2)
    for batch, n in [(64, 27), (4, 70), (24, 9), (24, 4)]:  # LAPACK; (24, 4) real: fused code
        a = rng.normal(size=(batch, n, n)) + (1j * rng.normal(size=(batch, n, n))
                                              if np.iscomplexobj(dtype(0)) else 0)
        a = (a @ np.conj(np.swapaxes(a, -1, -2)) + n * np.eye(n)).astype(dtype)
        f = jax.jit(jnp.linalg.cholesky)
        assert cpu_linalg.splitting_lapack_calls(f.lower(a).compile().as_text()) == []
        want = np.linalg.cholesky(a.astype(np.complex128 if np.iscomplexobj(a) else np.float64))
        np.testing.assert_allclose(np.asarray(f(a)), want, rtol=1e-4, atol=1e-4)


def test_a_failed_factorisation_is_all_nan_like_lapack():
    bad = np.tile(np.diag([1.0, 1.0, -1.0, 1.0]).astype(np.float32), (64, 1, 1))
    fused = np.asarray(jax.jit(jnp.linalg.cholesky)(bad))  # batch 64 of 4x4: fused code
    lapack = np.asarray(jax.jit(jnp.linalg.cholesky)(bad[:2]))  # batch 2: LAPACK
    low = np.tril_indices(4)
    assert np.isnan(lapack[:, low[0], low[1]]).all() and np.isnan(fused[:, low[0], low[1]]).all()


def test_gradients_through_the_fused_code_match_lapack():
    a = jnp.asarray(_spd(np.random.default_rng(1), (32,), 4))  # batch 32 of 4x4: fused code
    grad = jax.jit(jax.grad(lambda a: jnp.sum(jnp.sin(jnp.linalg.cholesky(a)))))
    fused = np.asarray(grad(a))
    lapack = np.concatenate([np.asarray(grad(a[i:i + 2])) for i in range(0, 32, 2)])  # batch 2
    np.testing.assert_allclose(fused, lapack, rtol=1e-4, atol=1e-6)


def test_splitting_lapack_calls_reads_compiled_hlo():
    split = ('%c = (f32[64,27,27]{1,2,0}, s32[64]{0}) custom-call(%x), '
             'custom_call_target="lapack_spotrf_ffi", operand_layout_constraints={f32[64,27,27]{1,2,0}}')
    inline = split.replace("64", "8")
    solve = ('%t = f32[512,9,1]{1,2,0} custom-call(%a, %b), custom_call_target="lapack_strsm_ffi", '
             'operand_layout_constraints={f32[512,9,9]{1,2,0}, f32[512,9,1]{1,2,0}}')
    assert cpu_linalg.splitting_lapack_calls(split) == [("potrf", [(64, 27, 27)])]
    assert cpu_linalg.splitting_lapack_calls(inline + "\n" + solve) == []
    assert cpu_linalg.splitting_lapack_calls(solve.replace("512", "4096"))  # 4096*81 > 2e5
