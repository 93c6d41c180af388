"""Tests for mamba_jax.actor_critic: lambda returns (spec 6.4), weights, return normalisation,
and where gradients stop."""
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mamba_jax import actor_critic as ac_lib
from mamba_jax import rssm as rssm_lib
from mamba_jax.config import agent_config
from mamba_jax.nets import symexp, symlog
from mamba_jax.world_model import WorldModel

# tests compile many small programs: XLA's backend optimisation level 0 halves compile time
tjit = functools.partial(jax.jit, compiler_options={'xla_backend_optimization_level': 0})



def _numpy_lambda(r, c, v, lam):
    i = r.shape[0]
    out = np.zeros((i - 1,) + r.shape[1:])
    nxt = v[-1]
    for k in reversed(range(i - 1)):
        nxt = r[k + 1] + c[k + 1] * ((1 - lam) * v[k + 1] + lam * nxt)
        out[k] = nxt
    return out


def test_lambda_return_spec_vector():
    r = jnp.array([[0.0], [1.0], [2.0]])
    c = jnp.array([[0.98703], [0.9], [0.9]])
    v = jnp.array([[0.5], [1.0], [2.0]])
    ret = ac_lib.lambda_returns(r, c, v, 0.95)
    np.testing.assert_allclose(ret[:, 0], [4.294, 3.8], rtol=1e-6)
    # full weight vector (1, c0, c0 c1) == w for I = 4 restricted to its first three entries
    w = ac_lib.return_weights(jnp.concatenate([c, c[-1:]], 0))
    np.testing.assert_allclose(w[:, 0], [1.0, 0.98703, 0.888327], rtol=1e-6)
    assert ac_lib.return_weights(c).shape == (2, 1)


def test_lambda_return_vs_numpy():
    rng = np.random.default_rng(0)
    for i in (2, 5, 11):
        r, v = rng.normal(size=(i, 7)), rng.normal(size=(i, 7))
        c = rng.uniform(0.5, 1.0, size=(i, 7))
        ret = ac_lib.lambda_returns(jnp.asarray(r, jnp.float32), jnp.asarray(c, jnp.float32),
                                    jnp.asarray(v, jnp.float32), 0.95)
        np.testing.assert_allclose(ret, _numpy_lambda(r, c, v, 0.95), rtol=1e-5, atol=1e-5)
    # I = 2: one-step TD target
    np.testing.assert_allclose(_numpy_lambda(r[:2], c[:2], v[:2], 0.95), r[1:2] + c[1:2] * v[1:2])


def test_retnorm_update():
    returns = jnp.linspace(0.0, 100.0, 101)
    new, scale = ac_lib.update_retnorm(jnp.zeros(2), returns, 0.01, (5.0, 95.0), 1.0)
    np.testing.assert_allclose(new, [0.05, 0.95], rtol=1e-5)
    np.testing.assert_allclose(scale, 1.0)  # max(1, 0.9)
    new, scale = ac_lib.update_retnorm(jnp.array([0.0, 200.0]), returns, 0.01, (5.0, 95.0), 1.0)
    np.testing.assert_allclose(scale, 0.99 * 200 + 0.95 - 0.05, rtol=1e-5)


def test_slow_update_is_an_ema_towards_the_critic():
    slow = {'w': jnp.zeros(3), 'b': jnp.array(10.0)}
    fast = {'w': jnp.ones(3), 'b': jnp.array(0.0)}
    new = ac_lib.slow_update(slow, fast, 0.02)
    np.testing.assert_allclose(new['w'], 0.02)
    np.testing.assert_allclose(new['b'], 9.8)
    for _ in range(2000):  # converges to the critic
        new = ac_lib.slow_update(new, fast, 0.02)
    np.testing.assert_allclose(new['w'], 1.0, atol=1e-5)


@pytest.fixture(scope='module', params=[('normal', 'dynamics'), ('onehot', 'reinforce')])
def setup(request):
    dist_name, grad = request.param
    discrete = dist_name == 'onehot'
    cfg = ml_collections.FrozenConfigDict(
        agent_config('tiny', actor_dist=dist_name, imag_gradient=grad))
    wm = WorldModel(cfg, obs_dim=3, action_dim=2)
    ac = ac_lib.ActorCritic(cfg, action_dim=2, discrete=discrete)
    wm_params = tjit(wm.init)(jax.random.key(0))
    # non-zero reward/critic outputs so that every path carries signal
    bump = lambda p: jax.tree.map(lambda x: x + 0.05, p)
    wm_params = dict(wm_params, reward=bump(wm_params['reward']))
    params = tjit(ac.init, static_argnums=1)(jax.random.key(1), wm.feat_dim)
    params = dict(params, critic=bump(params['critic']), slow_critic=bump(params['slow_critic']))
    start = rssm_lib.initial_state(wm.rssm, wm_params['rssm'], (6,))
    start = dict(start, deter=jax.random.normal(jax.random.key(2), start['deter'].shape))
    return wm, ac, wm_params, params, start


def test_actor_loss_gradients_only_to_actor(setup):
    wm, ac, wm_params, params, start = setup
    f = lambda a, w, c: ac.actor_loss(a, wm, w, c, start, jax.random.key(3), jnp.zeros(2))[0]
    g_a, g_w, g_c = tjit(jax.grad(f, argnums=(0, 1, 2)))(params['actor'], wm_params,
                                                            params['critic'])
    assert all(np.all(x == 0) for x in jax.tree.leaves(g_w))  # world model frozen
    assert all(np.all(x == 0) for x in jax.tree.leaves(g_c))  # critic frozen
    assert any(np.any(x != 0) for x in jax.tree.leaves(g_a))


def test_critic_loss_gradients_only_to_critic(setup):
    wm, ac, wm_params, params, start = setup
    loss, aux = tjit(ac.actor_loss, static_argnums=1)(params['actor'], wm, wm_params,
                                                      params['critic'], start, jax.random.key(3),
                                                      jnp.zeros(2))
    i = ac.config.imag_horizon
    assert aux['feats'].shape == (i, 6, wm.feat_dim) and aux['returns'].shape == (i - 1, 6)

    def f(critic, slow, feats, returns):
        return ac.critic_loss(critic, slow, feats, returns, aux['weights'])

    g_c, g_s, g_f, g_r = tjit(jax.grad(f, argnums=(0, 1, 2, 3)))(params['critic'], params['slow_critic'],
                                                          aux['feats'], aux['returns'])
    assert any(np.any(x != 0) for x in jax.tree.leaves(g_c))
    assert all(np.all(x == 0) for x in jax.tree.leaves(g_s))
    assert np.all(g_f == 0) and np.all(g_r == 0)  # nothing flows back into actor/imagination


def test_precomputed_start_projection_is_equivalent(setup):
    wm, ac, wm_params, params, start = setup
    proj = wm.deter_proj(wm_params, start['deter'])
    loss = tjit(lambda *a: ac.actor_loss(a[0], wm, *a[1:]))
    args = (params['actor'], wm_params, params['critic'], start, jax.random.key(5), jnp.zeros(2))
    l1, a1 = loss(*args)
    l2, a2 = loss(*args, proj)
    np.testing.assert_allclose(l1, l2, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(a1['returns'], a2['returns'], rtol=1e-5, atol=1e-6)


def test_mse_critic_regresses_symlog_returns_and_the_slow_critic():
    """agent.critic_head='mse': the critic (and its slow copy) has one output, its value is
    symexp(out), and its loss is mean w [(out - symlog R)^2 + (out - symlog slow value)^2]."""
    cfg = ml_collections.FrozenConfigDict(agent_config('tiny', critic_head='mse'))
    ac = ac_lib.ActorCritic(cfg, action_dim=2, discrete=False)
    params = tjit(ac.init, static_argnums=1)(jax.random.key(1), 8)
    assert params['critic']['out']['kernel'].shape[-1] == 1
    params = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(jax.random.key(2), x.shape), params)
    ks = jax.random.split(jax.random.key(3), 3)
    feats = jax.random.normal(ks[0], (4, 5, 8))
    returns = 3.0 * jax.random.normal(ks[1], (3, 5))
    weights = jax.random.uniform(ks[2], (3, 5))
    out = ac.critic.apply({'params': params['critic']}, feats[:-1])[..., 0]
    slow = ac.critic.apply({'params': params['slow_critic']}, feats[:-1])[..., 0]
    np.testing.assert_allclose(ac.value(params['critic'], feats[:-1]), symexp(out), rtol=1e-5)
    expect = jnp.mean(weights * ((out - symlog(returns))**2 + (out - slow)**2))
    loss = tjit(ac.critic_loss)(params['critic'], params['slow_critic'], feats, returns, weights)
    np.testing.assert_allclose(loss, expect, rtol=1e-5)
