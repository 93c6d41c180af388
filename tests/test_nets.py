"""Tests for mamba_jax.nets: symlog, initialisers, DenseLN, GRU equations, image nets."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import flax.linen as nn

from mamba_jax import nets

# tests compile many small programs: XLA's backend optimisation level 0 halves compile time
tjit = functools.partial(jax.jit, compiler_options={'xla_backend_optimization_level': 0})



def test_symlog_symexp_inverse():
    x = jnp.array([-1e4, -20.0, -1.0, -0.1, 0.0, 0.1, 1.0, 20.0, 1e4])
    np.testing.assert_allclose(nets.symexp(nets.symlog(x)), x, rtol=1e-5)
    np.testing.assert_allclose(nets.symlog(jnp.array([1.0, -1.0])), [np.log(2), -np.log(2)],
                               rtol=1e-6)


def test_trunc_normal_init_std_and_truncation():
    w = nets.trunc_normal_init()(jax.random.key(0), (512, 256))
    fan_avg = (512 + 256) / 2
    std = np.sqrt(1 / fan_avg) / 0.87962566
    assert np.max(np.abs(w)) <= 2 * std + 1e-6
    # a unit normal truncated at +-2 has std 0.8796; so the result has std sqrt(1/fan_avg)
    np.testing.assert_allclose(np.std(w), np.sqrt(1 / fan_avg), rtol=0.02)
    # fan_in override: one part of a split layer is initialised like the whole layer
    w2 = nets.trunc_normal_init(fan_in=512)(jax.random.key(1), (64, 256))
    np.testing.assert_allclose(np.std(w2), np.sqrt(1 / fan_avg), rtol=0.05)


def test_uniform_init():
    w = nets.uniform_init(1.0)(jax.random.key(0), (128, 255))
    lim = np.sqrt(3 / ((128 + 255) / 2))
    assert np.max(np.abs(w)) <= lim and np.max(np.abs(w)) > 0.95 * lim
    assert np.all(nets.uniform_init(0.0)(jax.random.key(0), (128, 255)) == 0)


def test_dense_ln_no_bias_and_layernorm_eps():
    m = nets.DenseLN(8)
    x = jax.random.normal(jax.random.key(0), (3, 5))
    p = m.init(jax.random.key(1), x)['params']
    assert set(p) == {'kernel', 'LayerNorm_0'}  # no bias
    y = m.apply({'params': p}, x)
    h = np.asarray(x @ p['kernel'])
    h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-3)
    np.testing.assert_allclose(y, h / (1 + np.exp(-h)), rtol=1e-4, atol=1e-5)


def test_gru_ln_equations():
    cell = nets.GRULN(4, 3)
    x = jax.random.normal(jax.random.key(0), (2, 3))
    h = jax.random.normal(jax.random.key(1), (2, 4))
    p = cell.init(jax.random.key(2), x, h)['params']
    p = jax.tree.map(lambda v: v + 0.1 * jax.random.normal(jax.random.key(3), v.shape), p)
    out = cell.apply({'params': p}, x, h)
    w = np.asarray(p['kernel'])
    assert w.shape == (3 + 4, 12)
    # the split path (precomputed h-part) gives the same result
    hp = cell.apply({'params': p}, h, method=nets.GRULN.project_h)
    np.testing.assert_allclose(cell.apply({'params': p}, x, h, hp), out, rtol=1e-5, atol=1e-6)
    parts = np.concatenate([x, h], -1) @ w
    mu, var = parts.mean(-1, keepdims=True), parts.var(-1, keepdims=True)
    parts = (parts - mu) / np.sqrt(var + 1e-3) * np.asarray(p['norm']['scale']) + np.asarray(
        p['norm']['bias'])
    reset, cand, update = np.split(parts, 3, -1)
    sig = lambda v: 1 / (1 + np.exp(-v))
    c = np.tanh(sig(reset) * cand)
    u = sig(update - 1)
    np.testing.assert_allclose(out, u * c + (1 - u) * np.asarray(h), rtol=1e-4, atol=1e-5)


def test_dense_ln_parts_and_gather_equal_concat():
    m = nets.DenseLN(6)
    a = jax.random.normal(jax.random.key(0), (2, 4, 3))
    e = jax.random.normal(jax.random.key(1), (2, 8, 5))
    pos = jnp.array([[0, 1, 2, 3, 0, 1, 2, 3], [3, 3, 2, 2, 1, 1, 0, 0]])
    full = jnp.concatenate([jnp.take_along_axis(a, pos[..., None], 1), e], -1)
    p = m.init(jax.random.key(2), full)['params']
    np.testing.assert_allclose(m.apply({'params': p}, (a, e), (pos, None)),
                               m.apply({'params': p}, full), rtol=1e-5, atol=1e-6)


def test_mlp_output_zero_init():
    m = nets.MLP(2, 16, out=255, out_scale=0.0)
    p = m.init(jax.random.key(0), jnp.zeros((1, 7)))['params']
    assert np.all(p['out']['kernel'] == 0) and np.all(p['out']['bias'] == 0)


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_conv_encoder_decoder_shapes(dtype):
    enc = nets.ConvEncoder(depth=4, dtype=dtype)
    img = jnp.zeros((2, 3, 64, 64, 3), jnp.uint8)
    p = tjit(enc.init)(jax.random.key(0), img)['params']
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(p))
    e = tjit(enc.apply)({'params': p}, img)
    assert e.shape == (2, 3, 4 * 4 * 32)
    dec = nets.ConvDecoder(depth=4, dtype=dtype)
    pd = tjit(dec.init)(jax.random.key(1), jnp.zeros((2, 3, 10)))['params']
    out = tjit(dec.apply)({'params': pd}, jnp.ones((2, 3, 10)))
    assert out.shape == (2, 3, 64, 64, 3) and out.dtype == jnp.float32


@pytest.mark.parametrize("shape", [(5,), (7, 5), (3, 4, 5)])
def test_matmul_is_dot_over_the_last_axis(shape):
    x = jax.random.normal(jax.random.key(0), shape)
    k = jax.random.normal(jax.random.key(1), (5, 6))
    y = nets.matmul(x, k)
    assert y.shape == shape[:-1] + (6,)
    np.testing.assert_allclose(y, jnp.dot(x, k), rtol=1e-5, atol=1e-5)


def test_dense_keeps_flax_names_params_and_outputs():
    x = jax.random.normal(jax.random.key(0), (3, 4, 5))

    class Two(nn.Module):
        dense: type

        @nn.compact
        def __call__(self, x):
            return self.dense(6)(x) + self.dense(6, use_bias=False)(x)

    p_ours = Two(nets.Dense).init(jax.random.key(1), x)
    p_flax = Two(nn.Dense).init(jax.random.key(1), x)
    assert jax.tree_util.tree_structure(p_ours) == jax.tree_util.tree_structure(p_flax)
    assert sorted(p_ours['params']) == ['Dense_0', 'Dense_1']
    jax.tree.map(np.testing.assert_array_equal, p_ours, p_flax)
    np.testing.assert_allclose(Two(nets.Dense).apply(p_ours, x), Two(nn.Dense).apply(p_flax, x),
                               rtol=1e-5, atol=1e-6)


def test_mlp_gradient_has_no_transposed_cotangent_copy():
    """The reason for nets.matmul: XLA:CPU must not write a [units, T*B] transposed copy of a
    layer's output cotangent for the kernel gradient (see its docstring)."""
    mlp = nets.MLP(layers=2, units=64)
    x = jnp.ones((6, 50, 3))
    params = mlp.init(jax.random.key(0), x)
    hlo = jax.jit(jax.grad(lambda p: jnp.sum(mlp.apply(p, x) ** 2))).lower(params).compile().as_text()
    transposed = [line for line in hlo.splitlines() if 'f32[64,300]' in line and 'fusion(' in line]
    assert not transposed, transposed


def test_layer_norm_float32_statistics_and_output_dtype():
    ln = nets.layer_norm(jnp.bfloat16)
    x = jax.random.normal(jax.random.key(0), (4, 64)) * 5.0 + 3.0
    params = ln.init(jax.random.key(1), x)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    y = ln.apply(params, x)
    assert y.dtype == jnp.bfloat16
    y = np.asarray(y, np.float32)
    np.testing.assert_allclose(y.mean(-1), 0.0, atol=0.02)
    np.testing.assert_allclose(y.std(-1), 1.0, atol=0.02)


def test_linear_initialisers_and_dtypes():
    x = jnp.ones((2, 8))
    zero = nets.linear(3, jnp.float32, init='uniform', scale=0.0, use_bias=True)
    p = zero.init(jax.random.key(0), x)
    assert p['params']['kernel'].shape == (8, 3) and p['params']['bias'].shape == (3,)
    np.testing.assert_array_equal(zero.apply(p, x), 0.0)  # zero-initialised output layer
    trunk = nets.linear(3, jnp.bfloat16)
    p = trunk.init(jax.random.key(0), x)
    assert 'bias' not in p['params'] and p['params']['kernel'].dtype == jnp.float32
    assert trunk.apply(p, x).dtype == jnp.bfloat16
    assert np.abs(np.asarray(p['params']['kernel'])).max() > 0


def test_vector_inputs_order_and_empty_state():
    obs = {'state': jnp.array([[1.0, 2.0]]), 'reward': jnp.array([0.5]),
           'time_step': jnp.array([0.25])}
    np.testing.assert_array_equal(nets.vector_inputs(obs), [[1.0, 2.0, 0.5, 0.25]])
    obs['state'] = jnp.zeros((1, 0))  # tasks without a state vector (e.g. image-only)
    np.testing.assert_array_equal(nets.vector_inputs(obs), [[0.5, 0.25]])
