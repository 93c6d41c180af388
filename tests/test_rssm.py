"""Tests for mamba_jax.rssm: learned initial state, is_first resets, observe == stepping."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mamba_jax import rssm as rssm_lib

# tests compile many small programs: XLA's backend optimisation level 0 halves compile time
tjit = functools.partial(jax.jit, compiler_options={'xla_backend_optimization_level': 0})


B, T, E, A = 2, 6, 5, 2


@pytest.fixture(scope='module')
def model():
    m = rssm_lib.RSSM(deter=8, stoch=3, classes=4, hidden=6, action_dim=A, embed_dim=E)
    state = {'deter': jnp.zeros((1, 8)), 'stoch': jnp.zeros((1, 3, 4))}
    params = tjit(m.init)(jax.random.key(0), state, jnp.zeros((1, A)), jnp.zeros((1, E)))['params']
    # make the learned initial deter non-trivial (it is tanh(0) = 0 at init)
    params = dict(params, init_deter=0.5 * jnp.ones((8,)))
    return m, params


def _data(key):
    k1, k2 = jax.random.split(key)
    embed = jax.random.normal(k1, (B, T, E))
    action = jax.random.uniform(k2, (B, T, A), minval=-2, maxval=2)
    is_first = np.zeros((B, T), bool)
    is_first[:, 0] = True
    is_first[1, 3] = True
    return embed, action, jnp.asarray(is_first)


def test_initial_state_at_init():
    m = rssm_lib.RSSM(deter=8, stoch=3, classes=4, hidden=6, action_dim=A, embed_dim=E)
    state = {'deter': jnp.zeros((1, 8)), 'stoch': jnp.zeros((1, 3, 4))}
    p = tjit(m.init)(jax.random.key(0), state, jnp.zeros((1, A)), jnp.zeros((1, E)))['params']
    assert np.all(p['init_deter'] == 0)
    init = tjit(lambda p: rssm_lib.initial_state(m, p, (B,)))(p)
    assert init['deter'].shape == (B, 8) and np.all(init['deter'] == 0)
    assert init['stoch'].shape == (B, 3, 4)
    np.testing.assert_allclose(init['stoch'].sum(-1), 1.0, atol=1e-6)
    # z0 is the prior mode at h0
    logits = m.apply({'params': p}, init['deter'], method=rssm_lib.RSSM.prior_logits)
    np.testing.assert_array_equal(jnp.argmax(init['stoch'], -1), jnp.argmax(logits, -1))


def test_initial_stoch_is_straight_through(model):
    """z0 = one-hot prior mode in value, with the probabilities' gradient (spec 4.2)."""
    m, p = model
    w = jax.random.normal(jax.random.key(3), (3, 4))

    def loss(p):
        return jnp.sum(rssm_lib.initial_state(m, p, (1,))['stoch'][0] * w)

    g = tjit(jax.grad(loss))(p)
    init = tjit(lambda p: rssm_lib.initial_state(m, p, (1,)))(p)['stoch'][0]
    np.testing.assert_allclose(init, jax.nn.one_hot(jnp.argmax(init, -1), 4), atol=1e-6)
    # the loss depends on z0 only: a gradient reaches h0's parameters and the prior head
    assert float(jnp.abs(g['init_deter']).sum()) > 0
    assert any(float(jnp.abs(x).sum()) > 0 for x in jax.tree.leaves(g['img_logits']))


def test_observe_matches_obs_step(model):
    m, p = model
    embed, action, is_first = _data(jax.random.key(1))
    key = jax.random.key(2)
    post, post_logits, prior_logits = tjit(
        lambda p: rssm_lib.observe(m, p, embed, action, is_first, key))(p)
    assert post['deter'].shape == (B, T, 8) and post['stoch'].shape == (B, T, 3, 4)
    assert post_logits.shape == prior_logits.shape == (B, T, 3, 4)

    @tjit
    def loop(p):
        uniform = jax.random.uniform(key, (T, B, 3))  # observe draws its noise like this
        state = rssm_lib.initial_state(m, p, (B,))
        out = []
        for t in range(T):
            state, logits = rssm_lib.obs_step(m, p, state, action[:, t], embed[:, t], is_first[:, t],
                                              None, uniform=uniform[t])
            out.append((state, logits))
        return out

    for t, (state, logits) in enumerate(loop(p)):
        np.testing.assert_allclose(state['deter'], post['deter'][:, t], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(state['stoch'], post['stoch'][:, t], atol=1e-6)
        np.testing.assert_allclose(logits, post_logits[:, t], rtol=1e-4, atol=1e-5)


def test_reset_at_is_first(model):
    """At an is_first step the state depends on nothing before it, and the previous action is 0."""
    m, p = model
    embed, action, is_first = _data(jax.random.key(3))
    key = jax.random.key(4)

    def deter_at_3(embed, action):
        post, _, _ = rssm_lib.observe(m, p, embed, action, is_first, key)
        return post['deter'][1, 3].sum() + post['stoch'][1, 3].sum()

    g_e, g_a = tjit(jax.grad(deter_at_3, argnums=(0, 1)))(embed, action)
    assert np.all(g_e[1, :3] == 0) and np.all(g_a[1, :4] == 0)  # action[3] is zeroed too
    assert np.any(g_e[1, 3] != 0)

    @tjit
    def reference(p):
        # the deter after the reset equals one core step from (h0, z0) with zero action
        post, _, _ = rssm_lib.observe(m, p, embed, action, is_first, key)
        init = rssm_lib.initial_state(m, p, (1,))
        a0 = m.apply({'params': p}, jnp.zeros((1, A)), method=rssm_lib.RSSM.action_proj)
        h = m.apply({'params': p}, init['stoch'], a0, init['deter'], method=rssm_lib.RSSM.core)
        return post, h

    post, h = reference(p)
    np.testing.assert_allclose(post['deter'][1, 3], h[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(post['deter'][0, 0], h[0], rtol=1e-5, atol=1e-6)
    # row 0 has no reset at t=3: different state
    assert not np.allclose(post['deter'][0, 3], h[0])


def test_action_rescaling(model):
    """a' = a / max(1, |a|): actions beyond [-1, 1] act like their clipped value."""
    m, p = model
    a = jnp.array([[3.0, -0.5]])
    np.testing.assert_allclose(
        m.apply({'params': p}, a, method=rssm_lib.RSSM.action_proj),
        m.apply({'params': p}, jnp.array([[1.0, -0.5]]), method=rssm_lib.RSSM.action_proj),
        rtol=1e-6)


def test_img_step_shapes(model):
    m, p = model
    state = rssm_lib.initial_state(m, p, (7,))
    nxt, logits = tjit(lambda p, s: rssm_lib.img_step(m, p, s, jnp.zeros((7, A)),
                                                      jax.random.key(0)))(p, state)
    assert nxt['deter'].shape == (7, 8) and nxt['stoch'].shape == (7, 3, 4)
    assert logits.shape == (7, 3, 4)
    np.testing.assert_allclose(nxt['stoch'].sum(-1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("remat", ["none", "dots", "nothing"])
def test_observe_gradients_match_stepping(model, remat):
    """The custom VJP of the posterior scan (kernel gradient outside the loop) is exact, with any
    rematerialisation policy for the loop's residuals."""
    m, p = model
    embed, action, is_first = _data(jax.random.key(5))
    key = jax.random.key(6)
    w = jax.random.normal(jax.random.key(7), (T, B, 8 + 12))

    def loss_scan(p, embed):
        post, post_logits, prior_logits = rssm_lib.observe(m, p, embed, action, is_first, key,
                                                           remat=remat)
        f = jnp.swapaxes(rssm_lib.feat(post), 0, 1)
        return jnp.sum(f * w) + jnp.sum(jnp.sin(post_logits)) + jnp.sum(prior_logits**2)

    def loss_loop(p, embed):
        uniform = jax.random.uniform(key, (T, B, 3))
        state = rssm_lib.initial_state(m, p, (B,))
        total = 0.0
        for t in range(T):
            state, logits = rssm_lib.obs_step(m, p, state, action[:, t], embed[:, t], is_first[:, t],
                                              None, uniform=uniform[t])
            prior = m.apply({'params': p}, state['deter'], method=rssm_lib.RSSM.prior_logits)
            total += jnp.sum(rssm_lib.feat(state) * w[t]) + jnp.sum(jnp.sin(logits)) + jnp.sum(prior**2)
        return total

    g1 = tjit(jax.grad(loss_scan, argnums=(0, 1)))(p, embed)
    g2 = tjit(jax.grad(loss_loop, argnums=(0, 1)))(p, embed)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5), g1, g2)
    assert np.any(g1[0]['gru']['kernel'] != 0)


def test_dots_remat_policy_saves_bf16_matmul_outputs():
    """The 'dots' scan policy keeps bf16 matmul outputs (a custom_vjp, invisible to XLA's dot
    policy) instead of recomputing the matmul in the backward pass: 1 forward + 2 backward dots."""
    from mamba_jax import nets

    def dots_in_grad(policy):
        f = jax.checkpoint(lambda x, k: jnp.sum(jnp.sin(nets.matmul(x, k))), policy=policy)
        x, k = jnp.ones((4, 8), jnp.bfloat16), jnp.ones((8, 3), jnp.bfloat16)
        return str(jax.make_jaxpr(jax.grad(f, argnums=(0, 1)))(x, k)).count('dot_general')

    assert dots_in_grad(rssm_lib.REMAT_POLICIES['dots']) == 3
    # XLA's policy alone recomputes the forward matmul
    assert dots_in_grad(jax.checkpoint_policies.dots_with_no_batch_dims_saveable) == 4


def test_reset_where_replaces_only_the_flagged_rows():
    state = {'deter': jnp.arange(6.0).reshape(3, 2), 'stoch': jnp.ones((3, 2, 4))}
    init = {'deter': jnp.array([-1.0, -2.0]), 'stoch': jnp.zeros((2, 4))}  # broadcast over rows
    out = rssm_lib.reset_where(jnp.array([False, True, False]), state, init)
    np.testing.assert_array_equal(out['deter'], [[0, 1], [-1, -2], [4, 5]])
    np.testing.assert_array_equal(out['stoch'][1], 0.0)
    np.testing.assert_array_equal(np.asarray(out['stoch'])[[0, 2]], 1.0)


def test_sample_stoch_mode_sample_and_unimix():
    logits = jnp.log(jnp.array([[[0.05, 0.9, 0.05]]]))  # [N=1, S=1, C=3]
    mode = rssm_lib.sample_stoch(jax.random.key(0), logits, unimix=0.01, sample=False)
    np.testing.assert_allclose(mode, [[[0.0, 1.0, 0.0]]], atol=1e-6)
    many = jnp.broadcast_to(logits, (20000, 1, 3))
    draws = np.asarray(rssm_lib.sample_stoch(jax.random.key(1), many, unimix=0.3))
    assert draws.shape == (20000, 1, 3)
    np.testing.assert_array_equal(draws.sum(-1), 1.0)  # one-hot per categorical
    # unimix 0.3: p = 0.7 p_logits + 0.3 / 3
    np.testing.assert_allclose(draws.mean((0, 1)), [0.135, 0.73, 0.135], atol=0.015)
