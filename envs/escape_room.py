"""Escape Room (spec 10.3): leave a walled unit disc through a hidden door.

The wall is the closed annulus ``R_IN <= |p| <= R_OUT`` (0.999 and 1.0) except for the door, an arc
of angular width pi/8 centred at the task angle phi ~ U[0, pi]. Each step proposes
``p' = p + 0.1 * clip(a)``. If the segment p -> p' touches the annulus, the touch point nearest to
p decides: if its polar angle beta = atan2(y, x) (in (-pi, pi]) lies in [phi - pi/16, phi + pi/16]
the move is accepted, otherwise the robot lands at ``0.99 * p'/|p'|``, just inside the wall (also
when it tried to re-enter from outside). Reward is 1 whenever ``|p| > 1``.

Which circle gives the nearest touch point (the official code intersects a polygon; we do it
analytically with |p + t (p' - p)|^2 = r^2):
  * p inside the inner circle (|p| < 0.999): the exit point through r = 0.999, if |p'| >= 0.999;
  * p outside (|p| > 1): the first entry point through r = 1.0, if the segment reaches it;
  * p inside the annulus itself (possible after a door crossing or a start at u >= 0.999): p.
Only the direction of the touch point matters, so the door test is done with a dot product
against the door's unit vector (|angle - phi| <= pi/16), plus a rule that rejects the third
quadrant (x < 0 and y < 0): there beta is near -pi, below phi - pi/16 >= -pi/16, so the official
angle window never accepts it even when the door straddles angle pi. This equals the atan2 test
except for rounding exactly at the door's edges, and is cheaper.

Shapes: obs = position [2] f32; action [2] f32; task = {'door': [] f32 angle, 'door_dir': [2] f32}.
NaN action components are treated as 0 (see ``envs.point_robot.clean_action``).
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from envs.core import Env, EnvState, register
from envs.point_robot import STEP_SIZE, clean_action

R_IN = 0.999
R_OUT = 1.0
TELEPORT_RADIUS = 0.99


@dataclasses.dataclass(frozen=True)
class EscapeRoom(Env):
    """Point robot in a walled unit disc with a door on the upper half (spec 10.3).

    Attributes:
        door_width: angular width of the door arc (radians).
    """

    door_width: float = math.pi / 8

    name = "escape_room"
    obs_dim = 2
    action_dim = 2
    discrete = False
    default_K = 2
    default_H = 60

    def __post_init__(self):
        if not (isinstance(self.door_width, (int, float)) and 0 < self.door_width <= 2 * math.pi):
            raise ValueError(f"{self.name}: door_width must be in (0, 2*pi], got {self.door_width!r}")

    def sample_task(self, key: jax.Array) -> dict:
        phi = jax.random.uniform(key, (), jnp.float32, 0.0, math.pi)
        return {"door": phi, "door_dir": jnp.stack([jnp.cos(phi), jnp.sin(phi)])}

    def reset(self, key: jax.Array, task: dict) -> EnvState:
        """Start p = u * (sin a, cos a), u ~ U[0, 1), a ~ U[-pi, pi) (the whole disc)."""
        key, k_u, k_a = jax.random.split(key, 3)
        u = jax.random.uniform(k_u, (), jnp.float32)
        alpha = jax.random.uniform(k_a, (), jnp.float32, -math.pi, math.pi)
        return EnvState(
            obs=u * jnp.stack([jnp.sin(alpha), jnp.cos(alpha)]),
            reward=jnp.zeros((), jnp.float32),
            done=jnp.zeros((), jnp.bool_),
            task=task,
            inner=(),
            key=key,
        )

    def wall_hit(self, pos: jax.Array, proposal: jax.Array):
        """First touch of the segment pos -> proposal with the wall annulus.

        Returns (hit [] bool, point [2] f32): ``point`` is meaningful only where ``hit``.
        """
        d = proposal - pos
        pp = jnp.sum(pos * pos)
        qq = jnp.sum(proposal * proposal)
        dd = jnp.sum(d * d)
        b = jnp.sum(pos * d)
        inside = pp < R_IN * R_IN
        outside = pp > R_OUT * R_OUT
        r2 = jnp.where(inside, R_IN * R_IN, R_OUT * R_OUT)
        c = pp - r2  # < 0 inside, > 0 outside
        disc = b * b - dd * c
        s = jnp.sqrt(jnp.maximum(disc, 0.0))
        # Stable forms of the two roots of dd t^2 + 2 b t + c = 0:
        #   inside: the positive root -c / (b + s) (b + s > 0 since c < 0);
        #   outside: the smaller root c / (s - b), entering only when b < 0.
        t_exit = -c / jnp.maximum(b + s, 1e-30)
        t_enter = c / jnp.maximum(s - b, 1e-30)
        hit_inside = inside & (qq >= R_IN * R_IN)
        hit_outside = outside & (b < 0) & (disc >= 0) & (t_enter <= 1.0)
        t = jnp.where(inside, t_exit, jnp.where(outside, t_enter, 0.0))
        t = jnp.where(hit_inside | hit_outside, t, 0.0)
        hit = hit_inside | hit_outside | ~(inside | outside)
        return hit, pos + t * d

    def in_door(self, point: jax.Array, task: dict) -> jax.Array:
        """Whether the direction of ``point`` [2] is accepted by the door (see module doc)."""
        cos_half = math.cos(self.door_width / 2)
        norm = jnp.sqrt(jnp.sum(point * point))
        within = jnp.sum(point * task["door_dir"]) >= cos_half * norm
        third_quadrant = (point[0] < 0) & (point[1] < 0)
        return within & ~third_quadrant

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        action = clean_action(self.check_action(action))
        pos = state.obs
        proposal = pos + STEP_SIZE * action
        hit, point = self.wall_hit(pos, proposal)
        blocked = hit & ~self.in_door(point, state.task)
        qq = jnp.sum(proposal * proposal)
        inv = jax.lax.rsqrt(jnp.maximum(qq, 1e-12))
        new_pos = jnp.where(blocked, (TELEPORT_RADIUS * inv) * proposal, proposal)
        reward = (jnp.sum(new_pos * new_pos) > R_OUT * R_OUT).astype(jnp.float32)
        return state.replace(obs=new_pos, reward=reward)

    def positions(self, obs: jax.Array) -> jax.Array:
        """Plane position of observations [..., 2] -> [..., 2] (the identity here)."""
        return obs


register("escape_room", EscapeRoom)
