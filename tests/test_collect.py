"""mamba_jax.collect: the jitted collection scan and how its outputs line up."""
import jax
import jax.numpy as jnp
import numpy as np

from envs.meta import make_meta
from mamba_jax import collect as collect_lib

K, H, N = 3, 5, 4


def _rollout(seed=0):
    meta = make_meta("point_robot", K=K, H=H)
    policy = collect_lib.random_policy(meta)
    rollout, _ = jax.jit(lambda k: collect_lib.collect(meta, policy, None, k, N))(
        jax.random.PRNGKey(seed))
    return meta, rollout


def test_shapes_and_action_alignment():
    meta, r = _rollout()
    T = K * H
    assert r.data["state"].shape == (N, T, meta.obs_dim)
    assert r.data["action"].shape == (N, T, meta.action_dim)
    assert r.rewards.shape == (N, T) and r.sub_idx.shape == (N, T)
    # action[t] is the action that led to step t: zero at the meta-episode start
    np.testing.assert_array_equal(np.asarray(r.data["action"][:, 0]), 0.0)
    assert bool(np.all(np.asarray(r.data["is_first"][:, 0])))
    assert not bool(np.any(np.asarray(r.data["is_first"][:, 1:])))
    # the reward observed at t+1 is the reward of the transition taken at t
    np.testing.assert_allclose(np.asarray(r.data["reward"][:, 1:]), np.asarray(r.rewards[:, :-1]))
    # point robot: position += 0.1 * action within a sub-episode
    pos, act = np.asarray(r.data["state"]), np.asarray(r.data["action"])
    np.testing.assert_allclose(pos[:, 1:H] - pos[:, :H - 1], 0.1 * np.clip(act[:, 1:H], -1, 1),
                               atol=1e-6)


def test_sub_episode_returns_sum_each_transition_once():
    _, r = _rollout(1)
    per_sub = np.asarray(collect_lib.sub_episode_returns(r, K))
    assert per_sub.shape == (N, K)
    np.testing.assert_allclose(per_sub.sum(-1), np.asarray(r.rewards).sum(-1), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(r.sub_idx[0]), np.repeat(np.arange(K), H))


def test_observed_sub_idx_labels_the_state_where_a_transition_ended():
    _, r = _rollout(2)
    obs_sub = np.asarray(collect_lib.observed_sub_idx(r))
    # the state observed at t = H is the (pre-reset) end of sub-episode 1 (spec 3.2)
    np.testing.assert_array_equal(obs_sub[0], np.concatenate([[0], np.repeat(np.arange(K), H)[:-1]]))
    assert obs_sub[0, H] == 0 and obs_sub[0, H + 1] == 1


def test_keep_states_returns_the_state_after_each_transition():
    meta = make_meta("point_robot", K=K, H=H)
    policy = collect_lib.random_policy(meta)
    run = lambda keep: jax.jit(lambda k: collect_lib.collect(
        meta, policy, None, k, N, keep_states=keep))(jax.random.PRNGKey(3))[0]
    plain, kept = run(False), run(True)
    assert plain.env_states is None
    np.testing.assert_array_equal(np.asarray(plain.data["state"]), np.asarray(kept.data["state"]))
    obs = np.asarray(kept.env_states.obs)  # [N, T, 2]: the position after transition t
    assert obs.shape == (N, K * H, meta.obs_dim)
    # within a sub-episode the next observed state is the state after the transition; at a
    # boundary the env state is already the next sub-episode's start
    inner = [t for t in range(K * H - 1) if (t + 1) % H != 0]
    np.testing.assert_allclose(obs[:, inner], np.asarray(kept.data["state"])[:, [t + 1 for t in inner]])
    np.testing.assert_allclose(obs[:, H - 1], 0.0, atol=1e-6)  # point robot restarts at the origin
