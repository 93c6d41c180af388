"""Point Robot Navigation (spec 10.1) and its wind variant (spec 10.2).

A point in the plane starts at the origin each sub-episode and must find a goal on the upper unit
half-circle. The reward is sparse: ``1 - d`` inside the goal disc (radius 0.2), 0 outside.

Shapes (single environment): obs = position [2] f32; action [2] f32; task = {'goal': [2] f32}.

NaN actions: every NaN component is treated as 0 (no push) and +-inf saturates at +-1, via
``jnp.nan_to_num`` before the clip. A policy that emits NaN therefore stalls instead of poisoning
the state; tests pin this.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from envs.core import Env, EnvState, register

STEP_SIZE = 0.1  # p <- p + 0.1 * clip(a)


def counter_normals(key: jax.Array, counter: jax.Array, n: int) -> jax.Array:
    """n standard normals [n] f32 for step ``counter`` of a stream keyed by ``key``.

    Counter-based: the bits are the key data of ``fold_in(key, counter)`` (one PRF evaluation,
    about 3x cheaper than ``split`` + ``normal``, which dominated the wind step), turned into
    normals by the inverse error function. Works with typed and raw uint32 keys.
    """
    sub = jax.random.fold_in(key, counter)
    typed = jnp.issubdtype(sub.dtype, jax.dtypes.prng_key)
    data = jax.random.key_data(sub) if typed else sub
    if data.dtype == jnp.uint32 and data.shape[-1] >= n:
        bits = data[:n]
    else:  # other key implementations
        bits = jax.random.bits(sub, (n,), jnp.uint32)
    # 23 random mantissa bits -> uniform (k + 1/2) / 2^22 - 1 in the open interval (-1, 1).
    unit = jax.lax.bitcast_convert_type((bits >> 9) | jnp.uint32(0x3F800000), jnp.float32)
    v = 2.0 * unit - 3.0 + 2.0 ** -23
    return math.sqrt(2.0) * jax.lax.erf_inv(v)


def clean_action(action: jax.Array) -> jax.Array:
    """NaN -> 0 and +-inf -> +-1, then clip every component to [-1, 1]."""
    return jnp.clip(jnp.nan_to_num(action, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)


@dataclasses.dataclass(frozen=True)
class PointRobot(Env):
    """Sparse-reward point navigation to a goal on the upper half unit circle (spec 10.1).

    Attributes:
        goal_radius: reward is ``1 - d`` when the distance ``d`` to the goal is <= this, else 0.
        reward_offset: added to the reward inside the goal disc (a diagnostic knob, 0 in every
            paper task): with ``goal_radius=10, reward_offset=9`` the dense control's reward
            ``1 - d`` in [-9, 1] becomes ``10 - d`` in [0, 10], same slope, never negative.
    """

    goal_radius: float = 0.2
    reward_offset: float = 0.0

    name = "point_robot"
    obs_dim = 2
    action_dim = 2
    discrete = False
    default_K = 3
    default_H = 100

    def __post_init__(self):
        if not (isinstance(self.goal_radius, (int, float)) and self.goal_radius > 0):
            raise ValueError(f"{self.name}: goal_radius must be a positive number, got {self.goal_radius!r}")
        if not (isinstance(self.reward_offset, (int, float)) and math.isfinite(self.reward_offset)):
            raise ValueError(f"{self.name}: reward_offset must be a finite number, got {self.reward_offset!r}")

    def sample_task(self, key: jax.Array) -> dict:
        """Goal (cos th, sin th) with th ~ U[0, pi]."""
        theta = jax.random.uniform(key, (), jnp.float32, 0.0, math.pi)
        return {"goal": jnp.stack([jnp.cos(theta), jnp.sin(theta)])}

    def reset(self, key: jax.Array, task: dict) -> EnvState:
        return EnvState(
            obs=jnp.zeros((2,), jnp.float32),
            reward=jnp.zeros((), jnp.float32),
            done=jnp.zeros((), jnp.bool_),
            task=task,
            inner=(),
            key=key,
        )

    def _action(self, state: EnvState, action: jax.Array):
        """Returns (clipped action [2], next inner state). The wind variant overrides this."""
        return clean_action(action), state.inner

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        action = self.check_action(action)
        action, inner = self._action(state, action)
        pos = state.obs + STEP_SIZE * action
        delta = pos - state.task["goal"]
        dist = jnp.sqrt(jnp.sum(delta * delta))
        reward = jnp.where(dist <= self.goal_radius, 1.0 - dist + self.reward_offset,
                           0.0).astype(jnp.float32)
        return state.replace(obs=pos, reward=reward, inner=inner)

    def positions(self, obs: jax.Array) -> jax.Array:
        """Plane position of observations [..., 2] -> [..., 2] (the identity here)."""
        return obs


@dataclasses.dataclass(frozen=True)
class PointRobotWind(PointRobot):
    """Point robot with i.i.d. Gaussian action noise ("wind"), added before the clip (spec 10.2).

    The noise of step n of a sub-episode is drawn from ``fold_in(state.key, n)``; the step counter
    n is ``inner['n']`` (uint32) and ``state.key`` stays fixed within a sub-episode (every reset
    brings a fresh key).

    Attributes:
        wind_force: standard deviation of the per-component noise.
    """

    wind_force: float = 0.3

    name = "point_robot_wind"

    def __post_init__(self):
        super().__post_init__()
        if not (isinstance(self.wind_force, (int, float)) and self.wind_force >= 0):
            raise ValueError(f"{self.name}: wind_force must be >= 0, got {self.wind_force!r}")

    def reset(self, key: jax.Array, task: dict) -> EnvState:
        return super().reset(key, task).replace(inner={"n": jnp.zeros((), jnp.uint32)})

    def _action(self, state: EnvState, action: jax.Array):
        n = state.inner["n"]
        noise = self.wind_force * counter_normals(state.key, n, 2)
        # NaN is zeroed before the noise is added, so a NaN action still feels the wind.
        action = jnp.nan_to_num(action, nan=0.0, posinf=1.0, neginf=-1.0) + noise
        return jnp.clip(action, -1.0, 1.0), {"n": n + jnp.uint32(1)}


register("point_robot", PointRobot)
register("point_robot_wind", PointRobotWind)
