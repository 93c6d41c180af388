"""Meta-episodes (spec sections 2-3): one task, K sub-episodes of at most H steps each.

``MetaEpisode`` is the JAX counterpart of the official wrapper stack
``MetaLearningEnv(TimeAugmentedState(RewardObs(...)))``:

* ``reset(key, task=None)`` samples a task (unless given), resets the base env and emits
  ``obs = {state, reward=0, time_step=0, is_first=True, is_terminal=False}``.
* ``step`` steps the base env; ``t`` counts env steps since the meta-episode reset and
  ``time_step = t / (K*H)`` (exactly 1.0 on the last step of a full-length meta-episode).
* A sub-episode ends when its step counter reaches H or the base env reports ``done``
  (``sub_done``, the official ``meta_episode_reset``). The base state is then replaced by a fresh
  start state of the SAME task, but the observation emitted for that step is the PRE-reset one
  (spec 3.2 boundary quirk): the start state of sub-episodes 2..K is never observed.
* ``is_first`` is True only at the meta-episode reset; ``is_terminal`` = base ``done``.
* The meta-episode is over (``done``) when K sub-episodes have ended. For tasks without early
  termination (all the pure-JAX ones) that is exactly t == K*H; a task that can fall (humanoid)
  ends earlier, as in the official code (spec 10.6).
* Stepping a finished meta-episode is a no-op: the state is returned unchanged except
  ``reward = 0`` and ``sub_done = False`` (so sums over a longer scan are unaffected and ``done``
  stays True). Call ``reset`` to start a new meta-episode.

Speed: the K sub-episode start states are drawn once in ``reset`` (``MetaState.starts``, stacked
on a leading [K] axis) instead of calling ``env.reset`` inside every step; a boundary then only
selects a pre-drawn state. This is the same distribution as resetting on the spot.
"""
from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from envs.core import Env, EnvState, make

PyTree = Any


@struct.dataclass
class MetaState:
    """State of one meta-episode (no batch axis; vmap for many).

    Attributes:
        env_state: base environment state (after a boundary: the next sub-episode's start state).
        t: [] int32 env steps since the meta-episode reset (0..K*H).
        sub_t: [] int32 steps taken in the current sub-episode (0 at reset and right after a
            boundary, when ``env_state`` already is the next sub-episode's start state).
        sub_idx: [] int32 index of the sub-episode the last transition belonged to (0 at reset).
        obs: dict(state=[obs_dim] f32, reward=[] f32, time_step=[] f32, is_first=[] bool,
             is_terminal=[] bool), what the agent sees.
        reward: [] f32 reward of the last transition (0 at reset).
        done: [] bool the meta-episode is over.
        sub_done: [] bool the last step ended a sub-episode (official ``meta_episode_reset``).
        starts: EnvState fields (obs, inner, key) of the K pre-drawn sub-episode start states,
            each with a leading [K] axis.
    """

    env_state: EnvState
    t: jax.Array
    sub_t: jax.Array
    sub_idx: jax.Array
    obs: dict
    reward: jax.Array
    done: jax.Array
    sub_done: jax.Array
    starts: PyTree


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class MetaEpisode:
    """A base ``Env`` played as meta-episodes of K sub-episodes of H steps (hashable, static)."""

    env: Env
    K: int
    H: int

    def __post_init__(self):
        if not isinstance(self.env, Env):
            raise ValueError(f"MetaEpisode: env must be an envs.Env, got {type(self.env).__name__}")
        for name in ("K", "H"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"MetaEpisode: {name} must be an int >= 1, got {value!r}")
            object.__setattr__(self, name, int(value))

    # -- static properties --------------------------------------------------------------------
    @property
    def length(self) -> int:
        """K*H, the number of steps of a full meta-episode."""
        return self.K * self.H

    @property
    def obs_dim(self) -> int:
        return self.env.obs_dim

    @property
    def action_dim(self) -> int:
        return self.env.action_dim

    @property
    def discrete(self) -> bool:
        return self.env.discrete

    def _time_table(self) -> jax.Array:
        """[K*H + 1] f32 table of t / (K*H), correctly rounded (NumPy division).

        A lookup instead of an in-graph division: XLA:CPU's float32 division is not always
        correctly rounded (1 ulp off for ~1/4 of t at K*H = 300), while the official code's
        values are exact divisions. The last entry is exactly 1.0.
        """
        return jnp.asarray(np.arange(self.length + 1, dtype=np.float32) / np.float32(self.length))

    # -- pure functions -----------------------------------------------------------------------
    def _obs(self, state, reward, t, is_first, is_terminal) -> dict:
        return {
            "state": state,
            "reward": reward,
            "time_step": self._time_table()[t],
            "is_first": is_first,
            "is_terminal": is_terminal,
        }

    def reset(self, key: jax.Array, task: Optional[PyTree] = None) -> MetaState:
        """Starts a meta-episode; samples the task from ``key`` when ``task`` is None."""
        k_task, k_starts = jax.random.split(key)
        if task is None:
            task = self.env.sample_task(k_task)
        starts = jax.vmap(self.env.reset, in_axes=(0, None))(jax.random.split(k_starts, self.K), task)
        env_state = jax.tree_util.tree_map(lambda x: x[0], starts)
        env_state = env_state.replace(task=task)
        zero_i = jnp.zeros((), jnp.int32)
        false = jnp.zeros((), jnp.bool_)
        reward = jnp.zeros((), jnp.float32)
        return MetaState(
            env_state=env_state,
            t=zero_i,
            sub_t=zero_i,
            sub_idx=zero_i,
            obs=self._obs(env_state.obs, reward, zero_i, jnp.ones((), jnp.bool_), false),
            reward=reward,
            done=false,
            sub_done=false,
            starts={"obs": starts.obs, "inner": starts.inner, "key": starts.key},
        )

    def _next_start(self, starts: PyTree, cur: jax.Array) -> PyTree:
        """Pre-drawn start state of sub-episode cur + 1 (clamped to K - 1).

        A chain of K - 1 selects rather than a dynamic index: K is small and, once vmapped, a
        gather costs more than the selects on CPU.
        """
        def pick(x):
            out = x[self.K - 1]
            for k in range(self.K - 2, 0, -1):
                out = jnp.where(cur + 1 == k, x[k], out)
            return out
        return jax.tree_util.tree_map(pick, starts)

    def step(self, mstate: MetaState, action: jax.Array) -> MetaState:
        """One env step; resets the base state (same task) at sub-episode boundaries."""
        action = self.env.check_action(action)
        stepped = self.env.step(mstate.env_state, action)
        # Index of the sub-episode this transition belongs to.
        cur = mstate.sub_idx + mstate.sub_done.astype(jnp.int32)
        t = mstate.t + 1
        sub_t = mstate.sub_t + 1
        sub_done = (sub_t >= self.H) | stepped.done
        done = sub_done & (cur >= self.K - 1)
        # Start state of the next sub-episode (clamped: after the last one nothing is used).
        start = self._next_start(mstate.starts, cur)
        reset = sub_done & ~done
        sel = lambda a, b: jnp.where(reset, a, b)  # noqa: E731
        env_state = stepped.replace(
            obs=sel(start["obs"], stepped.obs),
            inner=jax.tree_util.tree_map(sel, start["inner"], stepped.inner),
            key=sel(start["key"], stepped.key),
            reward=jnp.where(reset, 0.0, stepped.reward).astype(jnp.float32),
            done=stepped.done & ~reset,
        )
        new = MetaState(
            env_state=env_state,
            t=t,
            sub_t=jnp.where(sub_done, 0, sub_t),
            sub_idx=cur,
            obs=self._obs(stepped.obs, stepped.reward, t, jnp.zeros((), jnp.bool_), stepped.done),
            reward=stepped.reward,
            done=done,
            sub_done=sub_done,
            starts=None,
        )
        # A finished meta-episode stays frozen (reward 0, no boundary).
        frozen = mstate.replace(reward=jnp.zeros((), jnp.float32), sub_done=jnp.zeros((), jnp.bool_),
                                starts=None)
        out = jax.tree_util.tree_map(lambda f, n: jnp.where(mstate.done, f, n), frozen, new)
        return out.replace(starts=mstate.starts)


def make_meta(name: str, K: Optional[int] = None, H: Optional[int] = None, **overrides) -> MetaEpisode:
    """``MetaEpisode(make(name, **overrides), K, H)``; K and H default to the task's defaults."""
    env = make(name, **overrides)
    return MetaEpisode(env, env.default_K if K is None else K, env.default_H if H is None else H)


def random_action(meta, key: jax.Array, batch_shape: tuple = ()) -> jax.Array:
    """Uniform random action(s) [*batch_shape, action_dim] f32 for a MetaEpisode or an Env.

    Continuous: uniform in [-1, 1]^A. Discrete: a uniformly chosen one-hot vector.
    """
    shape = tuple(batch_shape)
    if meta.discrete:
        index = jax.random.randint(key, shape, 0, meta.action_dim)
        return jax.nn.one_hot(index, meta.action_dim, dtype=jnp.float32)
    return jax.random.uniform(key, shape + (meta.action_dim,), jnp.float32, -1.0, 1.0)
