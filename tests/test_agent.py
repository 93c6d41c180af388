"""Tests for mamba_jax.agent: interface, learning on a fixed batch, no retracing, acting, bf16."""
import chex
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mamba_jax.agent import Agent, TrainState
from mamba_jax.config import agent_config

# tests compile many small programs: XLA's backend optimisation level 0 halves compile time
tjit = functools.partial(jax.jit, compiler_options={'xla_backend_optimization_level': 0})


B, T, OBS, A = 2, 20, 2, 2


def make_batch(seed=0, b=B, t=T):
    rng = np.random.default_rng(seed)
    is_first = np.zeros((b, t), bool)
    is_first[:, 0] = True
    action = rng.uniform(-1, 1, size=(b, t, A)).astype(np.float32)
    action[:, 0] = 0
    pos = np.cumsum(0.1 * action, 1)
    return {'state': pos.astype(np.float32),
            'reward': (-np.linalg.norm(pos - 0.3, axis=-1)).astype(np.float32),
            'time_step': np.tile(np.arange(t) / t, (b, 1)).astype(np.float32),
            'is_first': is_first, 'is_terminal': np.zeros((b, t), bool), 'action': action}


@pytest.fixture(scope='module')
def agent():
    # a larger model learning rate so that 50 updates show a clear decrease
    return Agent(agent_config('tiny', model_lr=1e-3), obs_dim=OBS, action_dim=A, discrete=False)


@pytest.fixture(scope='module')
def train_fn(agent):
    @tjit
    @chex.assert_max_traces(n=1)
    def step(state, batch, key, wm_horizon):
        return agent.train_step(state, batch, key, wm_horizon)
    return step


def test_wm_update_then_ac_update_as_two_programs_equals_train_step(agent, train_fn):
    """The training loop compiles the update as two executables (trainer.SplitUpdate): the world-
    model half's output fed to the actor-critic half gives train_step's state and metrics."""
    state = agent.init(jax.random.key(0))
    batch, key, wm_h = make_batch(1), jax.random.key(5), jnp.int32(T - 3)
    wm_out = tjit(agent.wm_update)(state, batch, key, wm_h)
    assert wm_out['post']['deter'].shape[:2] == (B, T) and int(wm_out['wm_horizon']) == T - 3
    assert set(wm_out['metrics']) >= {'wm/loss', 'grad_norm/wm', 'wm/horizon'}
    split_state, split_metrics = tjit(agent.ac_update)(state, wm_out, key)
    fused_state, fused_metrics = train_fn(state, batch, key, wm_h)
    assert set(split_metrics) == set(fused_metrics)
    chex.assert_trees_all_close(split_metrics, fused_metrics, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(split_state, fused_state, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_equal(split_state.params['wm'], wm_out['params'])


def test_agent_is_hashable_and_init(agent):
    hash(agent)
    state = agent.init(jax.random.key(0))
    assert isinstance(state, TrainState)
    assert set(state.params) == {'wm', 'actor', 'critic', 'slow_critic'}
    assert set(state.opt_state) == {'wm', 'actor', 'critic'}
    chex.assert_trees_all_equal(state.params['critic'], state.params['slow_critic'])
    assert state.retnorm.shape == (2,) and int(state.step) == 0


def test_train_step_learns_and_does_not_retrace(agent, train_fn):
    state = agent.init(jax.random.key(0))
    batch = make_batch()
    losses = []
    for i in range(50):
        # traced wm_horizon: different values must not retrace
        state, metrics = train_fn(state, batch, jax.random.key(i), jnp.int32(T - (i % 3)))
        losses.append(float(metrics['wm/loss']))
    assert int(state.step) == 50
    for name in ('wm/loss', 'wm/kl_dyn', 'wm/decoder_state', 'wm/reward', 'wm/cont',
                 'ac/actor_loss', 'ac/critic_loss', 'ac/return_mean', 'ac/entropy',
                 'ac/retnorm_scale', 'grad_norm/wm', 'grad_norm/actor', 'grad_norm/critic'):
        assert metrics[name].dtype == jnp.float32 and np.isfinite(metrics[name]), name
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), (losses[:5], losses[-5:])
    # the slow critic moved towards the critic, the return normaliser was updated
    assert not np.allclose(state.retnorm, 0.0)


def test_policy_step(agent):
    state = agent.init(jax.random.key(0))
    n = 3
    carry = agent.initial_carry(state, n)
    obs = {'state': jnp.ones((n, OBS)), 'reward': jnp.zeros((n,)), 'time_step': jnp.zeros((n,)),
           'is_first': jnp.array([True, True, True])}

    @functools.partial(tjit, static_argnames='mode')
    @chex.assert_max_traces(n=2)  # one per value of the static ``mode``
    def act(state, obs, carry, key, mode):
        return agent.policy_step(state, obs, carry, key, mode)
    action, carry1 = act(state, obs, carry, jax.random.key(1), mode=False)
    assert action.shape == (n, A) and carry1[1].shape == (n, A)
    np.testing.assert_array_equal(carry1[1], action)
    assert carry1[0]['deter'].shape == (n, agent.config.dyn_deter)
    # mode: the actor is deterministic given the latent, the latent sample still uses the key
    a1, _ = act(state, obs, carry, jax.random.key(2), mode=True)
    a2, _ = act(state, obs, carry, jax.random.key(2), mode=True)
    np.testing.assert_array_equal(a1, a2)
    assert np.all(np.abs(a1) <= 1.0)  # mode = tanh(mu)
    # is_first resets: a carry with garbage gives the same result as the initial carry
    junk = jax.tree.map(lambda x: x + 5.0, carry1)
    b1, c1 = act(state, obs, junk, jax.random.key(3), mode=False)
    b2, c2 = act(state, obs, carry, jax.random.key(3), mode=False)
    np.testing.assert_allclose(b1, b2, rtol=1e-6)
    # without is_first the carry matters
    obs2 = dict(obs, is_first=jnp.array([False, False, False]))
    b3, _ = act(state, obs2, junk, jax.random.key(3), mode=False)
    assert not np.allclose(b3, b2)
    for _ in range(3):  # no retracing across calls
        act(state, obs2, c1, jax.random.key(4), mode=False)


def test_discrete_policy_step():
    agent = Agent(agent_config('tiny', actor_dist='onehot', imag_gradient='reinforce'),
                  obs_dim=0, action_dim=4, discrete=True)
    state = agent.init(jax.random.key(0))
    obs = {'state': jnp.zeros((2, 0)), 'reward': jnp.zeros((2,)), 'time_step': jnp.zeros((2,)),
           'is_first': jnp.array([True, False])}
    action, _ = tjit(agent.policy_step, static_argnames='mode')(
        state, obs, agent.initial_carry(state, 2), jax.random.key(1), mode=False)
    assert action.shape == (2, 4)
    np.testing.assert_allclose(action.sum(-1), 1.0, rtol=1e-6)


def test_bf16_compute_close_to_f32():
    batch = make_batch(1)
    losses = {}
    for dtype in ('float32', 'bfloat16'):
        agent = Agent(agent_config('tiny', compute_dtype=dtype, reconstruction_window=0),
                      obs_dim=OBS, action_dim=A, discrete=False)
        state = agent.init(jax.random.key(0))
        assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))
        loss, _ = tjit(agent.wm.loss)(state.params['wm'], batch, jax.random.key(1), jnp.int32(T))
        losses[dtype] = float(loss)
    assert np.isfinite(losses['bfloat16'])
    np.testing.assert_allclose(losses['bfloat16'], losses['float32'], rtol=0.05)


def test_optimizers_use_each_parts_learning_rate():
    from mamba_jax.agent import optimizers

    cfg = agent_config('tiny', model_lr=1e-3, actor_lr=2e-3, critic_lr=4e-3)
    opts = optimizers(cfg)
    assert set(opts) == {'wm', 'actor', 'critic'}
    params = {'x': jnp.zeros(2)}
    grad = {'x': jnp.array([3.0, -4.0])}
    for name, lr in (('wm', 1e-3), ('actor', 2e-3), ('critic', 4e-3)):
        upd, _ = opts[name].update(grad, opts[name].init(params), params)
        # Adam's first step moves every coordinate by ~lr against the gradient's sign
        np.testing.assert_allclose(upd['x'], [-lr, lr], rtol=1e-3)


def test_start_context_draws_the_starts_from_a_short_belief_pass():
    """agent.start_context = L: the world-model step is unchanged, the actor-critic half starts
    imagination from WorldModel.chunk_posteriors (belief restarted every L steps)."""
    base = Agent(agent_config('tiny', model_lr=1e-3), obs_dim=OBS, action_dim=A, discrete=False)
    short = Agent(agent_config('tiny', model_lr=1e-3, start_context=4), obs_dim=OBS, action_dim=A,
                  discrete=False)
    state = base.init(jax.random.key(0))
    batch, key, wm_h = make_batch(2), jax.random.key(6), jnp.int32(T)
    out0 = tjit(base.wm_update)(state, batch, key, wm_h)
    out1 = tjit(short.wm_update)(state, batch, key, wm_h)
    chex.assert_trees_all_equal(out0['params'], out1['params'])  # same world-model step
    k_wm = jax.random.split(key, 3)[0]
    expect = base.wm.chunk_posteriors(state.params['wm'], batch, jax.random.fold_in(k_wm, 1), 4)
    chex.assert_trees_all_close(out1['post'], expect, rtol=1e-5, atol=1e-6)
    assert not np.allclose(out0['post']['deter'], out1['post']['deter'])
    new, metrics = tjit(short.ac_update)(state, out1, key)
    assert all(np.isfinite(v) for v in jax.tree.leaves(metrics))
    assert int(new.step) == 1
    with pytest.raises(ValueError, match='start_context'):
        agent_config('tiny', start_context=-1)
