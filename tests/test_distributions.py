"""Tests for mamba_jax.distributions: two-hot (spec 4.3 test vectors), categoricals, normal."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mamba_jax import distributions as dist
from mamba_jax.nets import symlog


@pytest.mark.parametrize('r, lo, hi, w_lo', [
    (1.0, 131, 132, 0.598515),
    (-0.1, 126, 127, 0.60522),
    (5.0, 138, 139, 0.622327),
])
def test_twohot_spec_vectors(r, lo, hi, w_lo):
    w = np.asarray(dist.twohot_encode(symlog(jnp.float32(r)), dist.bins()))
    assert w.shape == (255,)
    np.testing.assert_allclose(w[lo], w_lo, atol=2e-5)
    np.testing.assert_allclose(w[hi], 1 - w_lo, atol=2e-5)
    assert np.count_nonzero(w) == 2


def test_twohot_zero_and_bin_values():
    c = np.asarray(dist.bins())
    np.testing.assert_allclose(c[1] - c[0], 40 / 254, rtol=1e-6)
    np.testing.assert_allclose([c[131], c[132]], [0.629921, 0.787402], atol=1e-6)
    w = np.asarray(dist.twohot_encode(jnp.float32(0.0), dist.bins()))
    assert w[127] == 1.0 and np.count_nonzero(w) == 1


def test_twohot_out_of_range_clips():
    w = np.asarray(dist.twohot_encode(jnp.array([25.0, -25.0]), dist.bins()))
    assert w[0, 254] == 1.0 and w[1, 0] == 1.0


def test_twohot_round_trip_expectation_equals_target():
    y = jax.random.uniform(jax.random.key(0), (1000,), minval=-1e3, maxval=1e3)
    y = jnp.concatenate([y, jnp.array([0.0, 1.0, -0.1, 5.0, 1e5])])
    w = dist.twohot_encode(symlog(y), dist.bins())
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)
    # the expectation of the two-hot weights is the symlog target ...
    np.testing.assert_allclose(w @ dist.bins(), symlog(y), atol=2e-5)
    # ... and a head whose softmax equals the two-hot weights decodes the target
    logits = jnp.log(jnp.maximum(w, 1e-30))
    np.testing.assert_allclose(dist.twohot_mean(logits), y, rtol=1e-3, atol=1e-4)


def test_twohot_log_prob_is_cross_entropy():
    logits = jax.random.normal(jax.random.key(0), (4, 255))
    target = jnp.array([0.0, 1.0, -0.1, 5.0])
    w = dist.twohot_encode(symlog(target), dist.bins())
    expect = np.sum(np.asarray(w) * np.asarray(jax.nn.log_softmax(logits)), -1)
    np.testing.assert_allclose(dist.twohot_log_prob(logits, target), expect, rtol=1e-5)


def test_unimix_and_straight_through_sample():
    logits = jnp.array([[10.0, 0.0, -10.0, 0.0]])
    p = dist.unimix_probs(logits, 0.01)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-6)
    assert float(p.min()) >= 0.01 / 4 - 1e-7
    s = dist.onehot_sample(jax.random.key(0), p)
    np.testing.assert_allclose(s.sum(-1), 1.0, rtol=1e-6)
    assert set(np.round(np.asarray(s), 5).ravel()) <= {0.0, 1.0}
    # straight-through: d sample / d probs = identity
    g = jax.grad(lambda q: jnp.sum(dist.onehot_sample(jax.random.key(0), q) * jnp.arange(4.0)))(p)
    np.testing.assert_allclose(g, [[0.0, 1.0, 2.0, 3.0]])
    m = dist.onehot_mode(p)
    np.testing.assert_allclose(m, [[1.0, 0.0, 0.0, 0.0]], atol=1e-6)


def test_categorical_kl_hand_values():
    p = jnp.array([0.5, 0.5])
    q = jnp.array([0.25, 0.75])
    expect = 0.5 * np.log(0.5 / 0.25) + 0.5 * np.log(0.5 / 0.75)
    np.testing.assert_allclose(dist.categorical_kl(p, q), expect, rtol=1e-6)
    np.testing.assert_allclose(dist.categorical_kl(p, p), 0.0, atol=1e-7)
    np.testing.assert_allclose(dist.categorical_entropy(p), np.log(2), rtol=1e-6)


def test_bounded_normal():
    out = jnp.array([[0.0, 100.0, -100.0, 0.0]])  # mu = (0, 100), s = (-100, 0)
    mean, std = dist.normal_params(out)
    np.testing.assert_allclose(mean, [[0.0, 1.0]], atol=1e-6)
    np.testing.assert_allclose(std, [[0.1, 0.9 / (1 + np.exp(-2.0)) + 0.1]], rtol=1e-6)
    x = jnp.array([[0.3, 0.2]])
    ref = sum(-0.5 * ((x[0, i] - mean[0, i]) / std[0, i])**2 - np.log(std[0, i])
              - 0.5 * np.log(2 * np.pi) for i in range(2))
    np.testing.assert_allclose(dist.normal_log_prob(mean, std, x), [ref], rtol=1e-5)
    ent = np.sum(0.5 * np.log(2 * np.pi * np.e * np.asarray(std)**2))
    np.testing.assert_allclose(dist.normal_entropy(std), [ent], rtol=1e-5)


def test_onehot_from_uniform_is_an_exact_inverse_cdf_draw():
    """k = #(cdf_j <= u): class k exactly when cdf_{k-1} <= u < cdf_k; always a valid one-hot."""
    p = jnp.array([0.1, 0.2, 0.3, 0.4])
    u = jnp.array([0.0, 0.0999, 0.1, 0.2999, 0.3, 0.5999, 0.6, 0.9999999, 1.0])
    s = np.asarray(dist.onehot_from_uniform(u, jnp.broadcast_to(p, (u.shape[0], 4))))
    assert np.all(s.sum(-1) == 1.0) and set(s.ravel()) <= {0.0, 1.0}
    np.testing.assert_array_equal(s.argmax(-1), [0, 0, 1, 1, 2, 2, 3, 3, 3])
    # frequencies over many draws match the probabilities (straight-through sampler)
    probs = dist.unimix_probs(jnp.array([[2.0, 0.0, -1.0, 0.5, -3.0]]), 0.01)
    draws = dist.onehot_sample(jax.random.key(3), jnp.broadcast_to(probs, (200_000, 5)))
    freq = np.asarray(draws.mean(0))
    np.testing.assert_allclose(freq, np.asarray(probs[0]), atol=4e-3)


def test_onehot_sample_uniform_is_inverse_cdf_with_straight_through_gradient():
    probs = jnp.array([0.2, 0.5, 0.3])
    # cdf = 0.2, 0.7, 1.0: u picks the first class whose cumulative probability exceeds u
    for u, k in [(0.0, 0), (0.19, 0), (0.2, 1), (0.69, 1), (0.7, 2), (0.999, 2)]:
        x = dist.onehot_sample_uniform(jnp.float32(u), probs)
        np.testing.assert_allclose(x, np.eye(3)[k], atol=1e-7, err_msg=str(u))
    # straight-through: d/dprobs sum(w * sample) = w whatever the draw
    w = jnp.array([1.0, -2.0, 3.0])
    g = jax.grad(lambda p: jnp.sum(w * dist.onehot_sample_uniform(jnp.float32(0.5), p)))(probs)
    np.testing.assert_allclose(g, w)


def test_onehot_sample_frequencies_follow_probs():
    probs = jnp.broadcast_to(jnp.array([0.1, 0.6, 0.3]), (20000, 3))
    x = dist.onehot_sample(jax.random.key(3), probs)
    np.testing.assert_allclose(np.asarray(x).mean(0), [0.1, 0.6, 0.3], atol=0.015)


def test_onehot_log_prob_picks_the_chosen_class():
    probs = jnp.array([[0.25, 0.75], [0.9, 0.1]])
    x = jnp.array([[0.0, 1.0], [1.0, 0.0]])
    np.testing.assert_allclose(dist.onehot_log_prob(probs, x), np.log([0.75, 0.9]), rtol=1e-6)


def test_normal_sample_moments_and_reparameterised_gradient():
    mean = jnp.full((50000, 2), jnp.array([0.5, -1.0]))
    std = jnp.full((50000, 2), jnp.array([0.1, 2.0]))
    x = np.asarray(dist.normal_sample(jax.random.key(0), mean, std))
    assert x.shape == (50000, 2) and x.dtype == np.float32
    np.testing.assert_allclose(x.mean(0), [0.5, -1.0], atol=0.03)
    np.testing.assert_allclose(x.std(0), [0.1, 2.0], rtol=0.02)
    # reparameterised: dx/dmean = 1, dx/dstd = eps = (x - mean) / std
    m, s = jnp.array([0.5]), jnp.array([2.0])
    key = jax.random.key(1)
    eps = (dist.normal_sample(key, m, s) - m) / s
    gm, gs = jax.grad(lambda a, b: dist.normal_sample(key, a, b).sum(), (0, 1))(m, s)
    np.testing.assert_allclose(gm, [1.0])
    np.testing.assert_allclose(gs, eps, rtol=1e-6)


def test_scalar_heads_of_both_kinds():
    """'twohot' heads are the two-hot functions; an 'mse' head has one output, predicts symexp of
    it and is scored by (out - symlog y)^2; an unknown kind is refused by name."""
    assert dist.head_outputs('twohot') == dist.NUM_BINS and dist.head_outputs('mse') == 1
    with pytest.raises(ValueError, match="'gauss'"):
        dist.head_outputs('gauss')
    logits = jax.random.normal(jax.random.key(0), (4, dist.NUM_BINS))
    y = jnp.array([-3.0, 0.0, 0.5, 40.0])
    np.testing.assert_allclose(dist.head_mean('twohot', logits), dist.twohot_mean(logits))
    np.testing.assert_allclose(dist.head_nll('twohot', logits, y), -dist.twohot_log_prob(logits, y))
    out = symlog(y)[:, None]
    np.testing.assert_allclose(dist.head_mean('mse', out), y, rtol=1e-5)
    np.testing.assert_allclose(dist.head_nll('mse', out, y), 0.0, atol=1e-10)
    np.testing.assert_allclose(dist.head_nll('mse', out + 0.5, y), 0.25, rtol=1e-5)
    g = jax.grad(lambda o: jnp.sum(dist.head_nll('mse', o, y)))(out + 0.5)
    np.testing.assert_allclose(g, 1.0, rtol=1e-5)  # d/do (o - t)^2 = 2 (o - t)
