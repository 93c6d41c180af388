"""Jitted meta-episode collection: ``lax.scan`` over time, ``vmap`` over environments.

One call plays N complete meta-episodes (each on its own task) with a policy inside the scan, and
returns them in replay layout. There are no host round trips per step.

Replay layout of one meta-episode of length T = K*H (spec section 3.3, final transition dropped):
index t holds the observation seen before the t-th action and the action that LED to it
(zeros at t = 0); ``is_first`` is True only at t = 0.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
from flax import struct

# policy(obs: dict of [N, ...], carry, key) -> (action [N, A], carry)
PolicyFn = Callable[[Dict[str, jax.Array], Any, jax.Array], Tuple[jax.Array, Any]]

REPLAY_OBS_KEYS = ("state", "reward", "time_step", "is_first", "is_terminal")


@struct.dataclass
class Rollout:
    """N collected meta-episodes.

    data: replay fields, key -> [N, T, ...].
    rewards: [N, T] reward of transition t (the one the t-th action produced).
    sub_idx: [N, T] sub-episode each transition belongs to.
    tasks: the task pytree, leaves [N, ...].
    env_states: the environment state AFTER each transition, leaves [N, T, ...] (``collect`` with
        ``keep_states=True``, e.g. to render MuJoCo frames); None otherwise.
    """

    data: Dict[str, jax.Array]
    rewards: jax.Array
    sub_idx: jax.Array
    tasks: Any
    env_states: Any = None


def collect(meta, policy: PolicyFn, carry, key: jax.Array, num_envs: int,
            tasks: Optional[Any] = None, keep_states: bool = False) -> Tuple[Rollout, Any]:
    """Plays ``num_envs`` meta-episodes of ``meta.length`` steps.

    Args:
        meta: an ``envs.MetaEpisode``.
        policy: see ``PolicyFn``; called once per step on the batch of N observations.
        carry: the policy's recurrent state for N environments (any pytree).
        key: PRNG key.
        num_envs: N.
        tasks: optional task pytree with leaves [N, ...] (e.g. fixed evaluation tasks);
            fresh tasks are sampled when None.
        keep_states: also return every step's environment state (``Rollout.env_states``).
    Returns:
        (Rollout, final carry).
    """
    k_reset, k_task, k_steps = jax.random.split(key, 3)
    reset_keys = jax.random.split(k_reset, num_envs)
    if tasks is None:
        tasks = jax.vmap(meta.env.sample_task)(jax.random.split(k_task, num_envs))
    mstate = jax.vmap(meta.reset)(reset_keys, tasks)
    prev_action = jnp.zeros((num_envs, meta.action_dim), jnp.float32)

    def body(c, k):
        ms, pcarry, prev_a = c
        obs = ms.obs
        record = {name: obs[name] for name in REPLAY_OBS_KEYS}
        record["action"] = prev_a
        action, pcarry = policy(obs, pcarry, k)
        ms = jax.vmap(meta.step)(ms, action)
        out = (record, ms.reward, ms.sub_idx, ms.env_state if keep_states else None)
        return (ms, pcarry, action.astype(jnp.float32)), out

    step_keys = jax.random.split(k_steps, meta.length)
    (_, carry, _), (records, rewards, sub_idx, env_states) = jax.lax.scan(
        body, (mstate, carry, prev_action), step_keys)
    swap = lambda x: jnp.swapaxes(x, 0, 1)  # [T, N, ...] -> [N, T, ...]
    rollout = Rollout(data=jax.tree.map(swap, records), rewards=swap(rewards),
                      sub_idx=swap(sub_idx), tasks=tasks,
                      env_states=jax.tree.map(swap, env_states))
    return rollout, carry


def sub_episode_returns(rollout: Rollout, K: int) -> jax.Array:
    """Exact per-sub-episode returns [N, K] (each transition's reward in its own sub-episode)."""
    onehot = jax.nn.one_hot(rollout.sub_idx, K, dtype=rollout.rewards.dtype)  # [N, T, K]
    return jnp.einsum("nt,ntk->nk", rollout.rewards, onehot)


def observed_sub_idx(rollout: Rollout) -> jax.Array:
    """Sub-episode of each OBSERVED state [N, T]: ``rollout.sub_idx[:, t]`` labels the transition
    taken at t, while ``data['state'][:, t]`` is where transition t-1 ended (0 at t = 0)."""
    sub = rollout.sub_idx
    return jnp.concatenate([jnp.zeros_like(sub[:, :1]), sub[:, :-1]], axis=1)


def random_policy(meta) -> PolicyFn:
    """Uniform actions in the action box (uniform one-hot for discrete tasks); carry unused."""
    def policy(obs, carry, key):
        n = obs["reward"].shape[0]
        if meta.discrete:
            idx = jax.random.randint(key, (n,), 0, meta.action_dim)
            return jax.nn.one_hot(idx, meta.action_dim, dtype=jnp.float32), carry
        return jax.random.uniform(key, (n, meta.action_dim), minval=-1.0, maxval=1.0), carry
    return policy


def agent_policy(agent, train_state, mode: bool) -> PolicyFn:
    """The agent's acting policy (``mode=True``: deterministic actor mode, as in evaluation)."""
    def policy(obs, carry, key):
        return agent.policy_step(train_state, obs, carry, key, mode)
    return policy
