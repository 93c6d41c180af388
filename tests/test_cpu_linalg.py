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
    bad = -np.eye(3, dtype=np.float32)
    assert np.isnan(np.asarray(cpu_linalg.unrolled_cholesky(bad))).any()


def test_large_batches_compile_without_lapack_calls_and_small_ones_keep_lapack():
    if not cpu_linalg.needs_workaround() or jax.default_backend() != "cpu":
        pytest.skip("workaround only applies to jaxlib < 0.11.2 on CPU")
    assert cpu_linalg.use_xla_linalg_on_cpu()  # already installed by `import envs`

    def solve(a, b):
        c = jax.scipy.linalg.cho_factor(a)
        return jax.scipy.linalg.cho_solve(c, b)

    rng = np.random.default_rng(0)
    for batch, lapack_expected in [(cpu_linalg.LAPACK_MAX_BATCH, False), (64, False), (4, True)]:
        a = _spd(rng, (batch,), 27)
        b = rng.normal(size=(batch, 27)).astype(np.float32)
        f = jax.jit(jax.vmap(solve))
        hlo = f.lower(a, b).compile().as_text()
        calls = re.findall(r'custom_call_target="(lapack_\w+)"', hlo)
        assert bool(calls) == lapack_expected, (batch, calls)
        want = np.linalg.solve(a.astype(np.float64), b.astype(np.float64)[..., None])[..., 0]
        np.testing.assert_allclose(np.asarray(f(a, b)), want, rtol=1e-4, atol=1e-5)


def test_gradients_flow_through_the_replaced_lowering():
    a = _spd(np.random.default_rng(1), (32,), 5)
    g = jax.grad(lambda a: jnp.sum(jnp.linalg.cholesky(a)))(jnp.asarray(a))
    assert g.shape == a.shape and np.isfinite(np.asarray(g)).all()
