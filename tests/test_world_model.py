"""Tests for mamba_jax.world_model: KL balancing/free bits, gradient stops, masking, schedule,
multi-head pairing."""
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mamba_jax import rssm as rssm_lib
from mamba_jax import world_model as wm_lib
from mamba_jax.config import agent_config
from mamba_jax.nets import symexp, symlog

# tests compile many small programs: XLA's backend optimisation level 0 halves compile time
tjit = functools.partial(jax.jit, compiler_options={'xla_backend_optimization_level': 0})



@pytest.mark.parametrize('frames, total, initial, reach, expect', [
    (1e6, 100, 50, 5e6, 60),  # rooms
    (5e6, 100, 50, 5e6, 100),
    (1e6, 900, 50, 5e6, 220),  # dmc_proprio_goal
    (2.5e6, 900, 50, 5e6, 475),
    (5e6, 900, 50, 5e6, 900),
    (9e6, 900, 50, 5e6, 900),
    (5e6, 400, 50, 15e6, 167),  # humanoiddir
    (1e6, 150, 50, 5e6, 70),  # panda
    (0, 150, 50, 5e6, 50),
    (123456, 300, 300, -1, 300),  # no schedule
])
def test_wm_horizon_at(frames, total, initial, reach, expect):
    assert wm_lib.wm_horizon_at(frames, total, initial, reach) == expect
    assert int(wm_lib.wm_horizon_at(jnp.float32(frames), total, initial, reach)) == expect


def _logits(key, shape):
    return 2.0 * jax.random.normal(key, shape)


def test_kl_balance_free_bits_hand_values():
    # identical post and prior: both KLs are 0 -> clipped to 1 nat -> 0.5 + 0.1, zero gradient
    logits = _logits(jax.random.key(0), (2, 3, 4, 5))
    kl_loss = tjit(wm_lib.kl_loss, static_argnums=(2, 3, 4, 5))
    loss, g = tjit(jax.value_and_grad(wm_lib.kl_loss), static_argnums=(2, 3, 4, 5))(
        logits, logits, 0.01, 1.0, 0.5, 0.1)
    np.testing.assert_allclose(loss, 0.6, rtol=1e-6)
    np.testing.assert_allclose(g, 0.0, atol=1e-8)
    # a single latent with a large KL: value from numpy
    post = jnp.array([[[8.0, 0.0, 0.0]]])
    prior = jnp.array([[[0.0, 0.0, 8.0]]])
    p = np.exp(np.array([8.0, 0, 0])) / np.exp(np.array([8.0, 0, 0])).sum() * 0.99 + 0.01 / 3
    q = p[::-1]
    kl = np.sum(p * np.log(p / q))
    assert kl > 1
    np.testing.assert_allclose(kl_loss(post, prior, 0.01, 1.0, 0.5, 0.1), 0.6 * kl,
                               rtol=1e-5)
    # free bits apply per step: mean of max(1, kl_t), not max(1, mean kl_t)
    post2 = jnp.concatenate([post, prior], 0)  # step 2 has KL 0
    np.testing.assert_allclose(kl_loss(post2, jnp.concatenate([prior, prior], 0), 0.01,
                                       1.0, 0.5, 0.1), 0.6 * (kl + 1.0) / 2, rtol=1e-5)


def test_kl_gradient_stops():
    post = _logits(jax.random.key(1), (4, 3, 5))
    prior = _logits(jax.random.key(2), (4, 3, 5))
    dyn = lambda po, pr: wm_lib.kl_terms(po, pr, 0.01)[0].sum()
    rep = lambda po, pr: wm_lib.kl_terms(po, pr, 0.01)[1].sum()
    g_post, g_prior = tjit(jax.grad(dyn, argnums=(0, 1)))(post, prior)
    assert np.all(g_post == 0) and np.any(g_prior != 0)  # dyn trains only the prior
    g_post, g_prior = tjit(jax.grad(rep, argnums=(0, 1)))(post, prior)
    assert np.all(g_prior == 0) and np.any(g_post != 0)  # rep trains only the posterior


def test_multi_window_pairing():
    b, t, n, w = 1, 10, 2, 3
    feat = jnp.arange(t, dtype=jnp.float32)[None, :, None]  # feat_t = t
    embed = 100 + jnp.arange(t, dtype=jnp.float32)[None, :, None]
    targets = {'reward': jnp.arange(t, dtype=jnp.float32)[None]}
    idx = jnp.array([[0, 7]])
    pos, e, tg, m = wm_lib.multi_window(embed, targets, idx, jnp.int32(8), w, 'official_tiled')
    f = wm_lib._gather(wm_lib._gather(feat, idx), pos)
    # interleaved windows: (s0,w0) (s0,w1) (s0,w2) (s1,w0) (s1,w1) (s1,w2)
    np.testing.assert_array_equal(tg['reward'][0], [0, 1, 2, 7, 8, 9])
    np.testing.assert_array_equal(m[0], [0, 1, 1, 1, 0, 0])  # index 0 and >= wm_horizon masked
    np.testing.assert_array_equal(e[0, :, 0], [100, 100, 101, 106, 107, 100])  # -1/>=8 -> e_0
    np.testing.assert_array_equal(f[0, :, 0], [0, 7, 0, 7, 0, 7])  # tiled
    pos, *_ = wm_lib.multi_window(embed, targets, idx, jnp.int32(8), w, 'aligned')
    f = wm_lib._gather(wm_lib._gather(feat, idx), pos)
    np.testing.assert_array_equal(f[0, :, 0], [0, 0, 0, 7, 7, 7])


@pytest.fixture(scope='module')
def tiny_wm():
    cfg = ml_collections.FrozenConfigDict(agent_config('tiny'))
    wm = wm_lib.WorldModel(cfg, obs_dim=3, action_dim=2)
    return wm, tjit(wm.init)(jax.random.key(0))


def _batch(key, b=2, t=12, obs_dim=3):
    ks = jax.random.split(key, 4)
    is_first = np.zeros((b, t), bool)
    is_first[:, 0] = True
    return {'state': jax.random.normal(ks[0], (b, t, obs_dim)),
            'reward': jax.random.normal(ks[1], (b, t)),
            'time_step': jnp.tile(jnp.arange(t) / t, (b, 1)),
            'is_first': jnp.asarray(is_first), 'is_terminal': jnp.zeros((b, t), bool),
            'action': jax.random.uniform(ks[2], (b, t, 2), minval=-1, maxval=1)}


def test_wm_loss_names_and_masking(tiny_wm):
    """Only [0, wm_horizon) matters: changing data beyond it leaves loss and gradients unchanged."""
    wm, params = tiny_wm
    batch = _batch(jax.random.key(1))
    loss_fn = tjit(jax.value_and_grad(wm.loss, has_aux=True))
    (loss, (post, metrics)), grads = loss_fn(params, batch, jax.random.key(2), jnp.int32(7))
    for name in ('wm/loss', 'wm/kl_dyn', 'wm/kl_rep', 'wm/decoder_state', 'wm/decoder_reward',
                 'wm/decoder_time_step', 'wm/reward', 'wm/cont', 'wm/multi_decoder_state',
                 'wm/multi_reward', 'wm/multi_cont', 'wm/rewarded_frac',
                 'wm/reward_pred_x_rewarded', 'wm/reward_pred_x_unrewarded'):
        assert name in metrics and np.isfinite(metrics[name]), name
    assert post['deter'].shape == (2, 12, 32)
    batch2 = dict(batch)
    for k in ('state', 'reward', 'action'):
        batch2[k] = batch[k].at[:, 7:].set(123.0)
    batch2['is_terminal'] = batch['is_terminal'].at[:, 9].set(True)
    (loss2, (_, metrics2)), grads2 = loss_fn(params, batch2, jax.random.key(2), jnp.int32(7))
    np.testing.assert_allclose(loss2, loss, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), grads,
                 grads2)
    # and it does change when the horizon covers the modified steps
    (loss3, _), _ = loss_fn(params, batch2, jax.random.key(2), jnp.int32(12))
    assert abs(float(loss3) - float(loss)) > 1e-3


def test_obs_reward_shift_moves_the_observed_reward_only(tiny_wm):
    """agent.obs_reward_shift = s on rewards r + s: the encoder and the decoder see r (same
    posteriors and reconstruction losses as the unshifted model on r), the reward head is trained
    on r + s."""
    wm, params = tiny_wm
    # the reward head's output layer starts at zero (uniform over bins): give it weights
    out = params['reward']['out']
    params = dict(params, reward=dict(params['reward'], out=jax.tree.map(
        lambda x: x + 0.3 * jax.random.normal(jax.random.key(5), x.shape), out)))
    cfg = agent_config('tiny', obs_reward_shift=9.0)
    shifted = wm_lib.WorldModel(ml_collections.FrozenConfigDict(cfg), obs_dim=3, action_dim=2)
    batch = _batch(jax.random.key(1))
    up = dict(batch, reward=batch['reward'] + 9.0)
    loss = tjit(shifted.loss)
    _, (post_s, m_s) = loss(params, up, jax.random.key(2), jnp.int32(12))
    _, (post, m) = tjit(wm.loss)(params, batch, jax.random.key(2), jnp.int32(12))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), post_s, post)
    for k in ('wm/decoder_reward', 'wm/decoder_state', 'wm/decoder_time_step', 'wm/kl_dyn'):
        np.testing.assert_allclose(m_s[k], m[k], rtol=1e-5, atol=1e-6)
    # same features, but the reward head's target is the environment's reward r + 9, not r
    assert abs(float(m_s['wm/reward']) - float(m['wm/reward'])) > 0.1
    with pytest.raises(ValueError, match='obs_reward_shift'):
        agent_config('tiny', obs_reward_shift=float('nan'))


def test_reward_head_shift_moves_the_head_target_and_adds_it_back(tiny_wm):
    """agent.reward_head_shift = obs_reward_shift = s on rewards r + s is the unshifted model on
    r, loss for loss, and its reward prediction is the unshifted one + s."""
    wm, params = tiny_wm
    out = params['reward']['out']
    params = dict(params, reward=dict(params['reward'], out=jax.tree.map(
        lambda x: x + 0.3 * jax.random.normal(jax.random.key(5), x.shape), out)))
    cfg = agent_config('tiny', obs_reward_shift=9.0, reward_head_shift=9.0)
    shifted = wm_lib.WorldModel(ml_collections.FrozenConfigDict(cfg), obs_dim=3, action_dim=2)
    batch = _batch(jax.random.key(1))
    up = dict(batch, reward=batch['reward'] + 9.0)
    _, (post_s, m_s) = tjit(shifted.loss)(params, up, jax.random.key(2), jnp.int32(12))
    _, (post, m) = tjit(wm.loss)(params, batch, jax.random.key(2), jnp.int32(12))
    for k in ('wm/reward', 'wm/decoder_reward', 'wm/decoder_state', 'wm/kl_dyn'):
        np.testing.assert_allclose(m_s[k], m[k], rtol=1e-5, atol=1e-6)
    f = rssm_lib.feat(post)
    np.testing.assert_allclose(shifted.reward(params, f), wm.reward(params, f) + 9.0,
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match='reward_head_shift'):
        agent_config('tiny', reward_head_shift=float('inf'))


def test_reward_hit_diagnostics_give_conditional_means_over_a_round():
    # two batches of one round: 1 of 4 steps rewarded, then 2 of 4; the round's mean prediction
    # at rewarded steps weights each rewarded step once (not each batch once)
    pred = [jnp.array([[0.5, 0.1], [0.1, 0.1]]), jnp.array([[0.8, 0.2], [0.2, 0.0]])]
    rew = [jnp.array([[1.0, 0.0], [0.0, 0.0]]), jnp.array([[0.9, 0.0], [0.0, 0.7]])]
    per_update = [wm_lib.reward_hit_products(p, r) for p, r in zip(pred, rew)]
    np.testing.assert_allclose(per_update[0]['wm/rewarded_frac'], 0.25)
    averaged = jax.tree.map(lambda *m: jnp.mean(jnp.stack(m), 0), *per_update)
    averaged['wm/loss'] = jnp.float32(1.0)
    out = wm_lib.conditional_reward_means(averaged)
    np.testing.assert_allclose(out['wm/reward_pred_rewarded'], (0.5 + 0.8 + 0.0) / 3, rtol=1e-6)
    np.testing.assert_allclose(out['wm/reward_pred_unrewarded'], (0.3 + 0.4) / 5, rtol=1e-6)
    np.testing.assert_allclose(out['wm/rewarded_frac'], 3 / 8)
    assert 'wm/reward_pred_x_rewarded' not in out and out['wm/loss'] == 1.0
    # no rewarded step in the round: 0 (read with rewarded_frac = 0), not NaN; per-seed [S] too
    none = wm_lib.reward_hit_products(jnp.full((2, 3), 0.01), jnp.zeros((2, 3)))
    out = wm_lib.conditional_reward_means(none)
    assert float(out['wm/reward_pred_rewarded']) == 0.0
    np.testing.assert_allclose(out['wm/reward_pred_unrewarded'], 0.01, rtol=1e-6)
    seeds = jax.vmap(wm_lib.reward_hit_products)(jnp.stack(pred), jnp.stack(rew))
    out = wm_lib.conditional_reward_means(seeds)
    np.testing.assert_allclose(out['wm/reward_pred_rewarded'], [0.5, 0.4], rtol=1e-6)
    # metrics without the products (e.g. a collection-only dict) pass through unchanged
    assert wm_lib.conditional_reward_means({'a': 1.0}) == {'a': 1.0}


def test_image_observations_loss_and_gradients():
    cfg = ml_collections.FrozenConfigDict(agent_config('tiny', image_obs=True, cnn_depth=2))
    wm = wm_lib.WorldModel(cfg, obs_dim=0, action_dim=2)
    params = tjit(wm.init)(jax.random.key(0))
    assert 'image_decoder' in params and 'multi_image_decoder' in params
    batch = _batch(jax.random.key(1), b=1, t=5, obs_dim=0)
    batch['image'] = jax.random.randint(jax.random.key(2), (1, 5, 64, 64, 3), 0, 256).astype(
        jnp.uint8)
    (loss, (_, metrics)), grads = tjit(jax.value_and_grad(wm.loss, has_aux=True))(
        params, batch, jax.random.key(3), jnp.int32(5))
    assert np.isfinite(loss) and 'wm/decoder_image' in metrics and 'wm/decoder_state' not in metrics
    assert metrics['wm/decoder_image'] > 100  # summed over 64x64x3 pixels
    assert any(np.any(g != 0) for g in jax.tree.leaves(grads['encoder']['cnn']))


def test_restart_mask():
    is_first = np.zeros((2, 10), bool)
    is_first[:, 0] = True
    mask = np.asarray(wm_lib.restart_mask(jnp.asarray(is_first), jnp.array([0, 3]), 4))
    np.testing.assert_array_equal(np.flatnonzero(mask[0]), [0, 4, 8])
    np.testing.assert_array_equal(np.flatnonzero(mask[1]), [0, 3, 7])


def test_chunk_posteriors_hold_no_history_from_before_a_restart(tiny_wm):
    """agent.start_context: a belief restarted every L steps. Changing the observations before a
    sequence's first restart point leaves its chunk posteriors from that point on unchanged, while
    the training pass's posteriors there do change (their belief spans the whole sequence)."""
    wm, params = tiny_wm
    batch = _batch(jax.random.key(3))
    key, every = jax.random.key(4), 5
    phase = jax.random.randint(jax.random.split(key)[0], (2,), 0, every)  # as chunk_posteriors draws it
    restart = np.asarray(wm_lib.restart_mask(batch['is_first'], phase, every))
    first_restart = [int(np.flatnonzero(r[1:])[0]) + 1 for r in restart]
    before = jnp.asarray(np.arange(12)[None, :] < np.array(first_restart)[:, None])  # [B, T]
    other = dict(batch, state=batch['state'] + 5.0 * before[..., None])
    chunk = tjit(wm.chunk_posteriors, static_argnums=3)
    a, b = chunk(params, batch, key, every), chunk(params, other, key, every)
    full = tjit(lambda x: wm.loss(params, x, jax.random.key(2), jnp.int32(12))[1][0])
    fa, fb = full(batch), full(other)
    for i, s in enumerate(first_restart):
        for k in ('deter', 'stoch'):
            np.testing.assert_array_equal(a[k][i, s:], b[k][i, s:])
        assert not np.allclose(fa['deter'][i, s:], fb['deter'][i, s:])
    assert a['deter'].shape == (2, 12, 32) and a['stoch'].shape == fa['stoch'].shape


def test_mse_reward_head_regresses_symlog_reward():
    """agent.reward_head='mse': one output, the loss is mean (out - symlog r)^2 over the batch and
    the prediction symexp(out); the decoder and dynamics losses are the two-hot model's."""
    cfg = ml_collections.FrozenConfigDict(agent_config('tiny', reward_head='mse'))
    wm = wm_lib.WorldModel(cfg, obs_dim=3, action_dim=2)
    params = tjit(wm.init)(jax.random.key(0))
    assert params['reward']['out']['kernel'].shape[-1] == 1
    params = dict(params, reward=dict(params['reward'], out=jax.tree.map(
        lambda x: x + 0.3 * jax.random.normal(jax.random.key(5), x.shape), params['reward']['out'])))
    batch = _batch(jax.random.key(1))
    _, (post, m) = tjit(wm.loss)(params, batch, jax.random.key(2), jnp.int32(12))
    f = rssm_lib.feat(post)
    out = wm.apply_head(params, 'reward', f)[..., 0]
    # the loss's positions: hidden_states_subsample draws per sequence (as in WorldModel.loss)
    idx = jax.random.randint(jax.random.split(jax.random.key(2))[1],
                             (2, cfg.hidden_states_subsample), 0, 12)
    sq = jnp.take_along_axis((out - symlog(batch['reward']))**2, idx, 1)
    np.testing.assert_allclose(m['wm/reward'], jnp.mean(sq), rtol=1e-5)
    np.testing.assert_allclose(wm.reward(params, f), symexp(out), rtol=1e-5)
    twohot = wm_lib.WorldModel(ml_collections.FrozenConfigDict(agent_config('tiny')), 3, 2)
    base = tjit(twohot.init)(jax.random.key(0))
    heads = {k: base[k] for k in ('reward', 'multi_reward') if k in base}
    _, (_, m2) = tjit(twohot.loss)(dict(params, **heads), batch, jax.random.key(2), jnp.int32(12))
    for k in ('wm/decoder_state', 'wm/kl_dyn', 'wm/cont'):
        np.testing.assert_allclose(m[k], m2[k], rtol=1e-5)
    with pytest.raises(ValueError, match="reward_head: must be 'twohot' or 'mse', got 'l1'"):
        agent_config('tiny', reward_head='l1')
