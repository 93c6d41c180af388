"""Rooms-N (spec 10.4): a row of N 3x3 rooms joined by 3-cell corridors; visit one goal per room
in order.

Grid coordinates: room i is x in {6i, 6i+1, 6i+2}, y in {-1, 0, 1}; the corridor after room i is
x in {6i+3, 6i+4, 6i+5} at y = 0; the grid is W = 6N - 3 columns wide. The agent starts at (0, 0)
every sub-episode. Actions (one-hot [5], the argmax is taken so probability vectors work too):
0 noop, 1 up (y + 1), 2 right (x + 1), 3 down (y - 1), 4 left (x - 1). In a corridor only left and
right move; from a room a move is applied if the target is inside the grid and, when the target is
a corridor column, only at y = 0.

Task: for each room one goal among its 4 corners (4^N tasks). Reward: -0.1 per step, replaced by
+1.0 on the goal of room i if the goals of rooms 0..i-1 were reached earlier in this sub-episode
and (goal i is not yet reached or i is the last room). ``inner['reached']`` [N] holds the flags;
a goal becomes "reached" only on a step where it pays, so standing on room 1's goal before room
0's is done neither pays nor counts. The flags are cleared by ``reset`` (i.e. at every
sub-episode boundary).

Observation ``state`` = ((x + 2) * 2/W - 1, (y + 2) * 2/3 - 1) [2] f32.

Default K = 3 sub-episodes follows the paper's Figure 1 (the official config uses K = 1);
H = 100 as in the official config. NaN entries of the action vector count as 0 before the argmax.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from envs.core import Env, EnvState, register

STEP_REWARD = -0.1
GOAL_REWARD = 1.0


@dataclasses.dataclass(frozen=True)
class Rooms(Env):
    """Sequential goal search over ``num_rooms`` rooms (spec 10.4).

    Attributes:
        num_rooms: N, the number of 3x3 rooms in the row.
    """

    num_rooms: int = 3

    name = "rooms"
    obs_dim = 2
    action_dim = 5
    discrete = True
    default_K = 3
    default_H = 100

    def __post_init__(self):
        n = self.num_rooms
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"{self.name}: num_rooms must be an int >= 1, got {n!r}")

    @property
    def width(self) -> int:
        return 6 * self.num_rooms - 3

    def sample_task(self, key: jax.Array) -> dict:
        """Goals [N, 2] int32: room i's goal is (6i + 2*bx, 2*by - 1), bx, by ~ U{0, 1}."""
        corners = jax.random.randint(key, (self.num_rooms, 2), 0, 2, jnp.int32)
        base = jnp.stack([6 * jnp.arange(self.num_rooms, dtype=jnp.int32),
                          jnp.full((self.num_rooms,), -1, jnp.int32)], axis=-1)
        return {"goals": base + 2 * corners}

    def observe(self, xy: jax.Array) -> jax.Array:
        """Grid cell [..., 2] int -> normalised observation [..., 2] f32."""
        xy = xy.astype(jnp.float32)
        return jnp.stack([(xy[..., 0] + 2.0) * (2.0 / self.width) - 1.0,
                          (xy[..., 1] + 2.0) * (2.0 / 3.0) - 1.0], axis=-1)

    def positions(self, obs: jax.Array) -> jax.Array:
        """Inverse of ``observe``: observation [..., 2] -> grid cell [..., 2] f32 (rounded)."""
        obs = jnp.asarray(obs, jnp.float32)
        x = (obs[..., 0] + 1.0) * (self.width / 2.0) - 2.0
        y = (obs[..., 1] + 1.0) * 1.5 - 2.0
        return jnp.round(jnp.stack([x, y], axis=-1))

    def reset(self, key: jax.Array, task: dict) -> EnvState:
        xy = jnp.zeros((2,), jnp.int32)
        return EnvState(
            obs=self.observe(xy),
            reward=jnp.zeros((), jnp.float32),
            done=jnp.zeros((), jnp.bool_),
            task=task,
            inner={"xy": xy, "reached": jnp.zeros((self.num_rooms,), jnp.bool_)},
            key=key,
        )

    def move(self, xy: jax.Array, action_index: jax.Array) -> jax.Array:
        """Grid dynamics: cell [2] int32, action index [] -> next cell [2] int32."""
        x, y = xy[0], xy[1]
        # Comparisons instead of a table lookup: a gather is slow once vmapped on CPU.
        dx = (action_index == 2).astype(jnp.int32) - (action_index == 4).astype(jnp.int32)
        dy = (action_index == 1).astype(jnp.int32) - (action_index == 3).astype(jnp.int32)
        nx, ny = x + dx, y + dy
        in_corridor = (x % 6) >= 3
        target_corridor = (nx % 6) >= 3
        in_grid = (nx >= 0) & (nx < self.width) & (ny >= -1) & (ny <= 1)
        ok_from_room = in_grid & (~target_corridor | (ny == 0))
        ok = jnp.where(in_corridor, dy == 0, ok_from_room)
        return jnp.where(ok, jnp.stack([nx, ny]), xy)

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        action = jnp.nan_to_num(self.check_action(action), nan=0.0)
        action_index = jnp.argmax(action)
        xy = self.move(state.inner["xy"], action_index)
        reached = state.inner["reached"]
        goals = state.task["goals"]
        on_goal = (goals[:, 0] == xy[0]) & (goals[:, 1] == xy[1])  # [N]
        # Room i's goal pays if rooms 0..i-1 are reached and (i not reached or i is the last).
        prefix = jnp.concatenate([jnp.ones((1,), jnp.bool_),
                                  jnp.cumprod(reached[:-1].astype(jnp.int32)).astype(jnp.bool_)])
        not_last = jnp.arange(self.num_rooms) < self.num_rooms - 1
        pays = on_goal & prefix & ~(reached & not_last)
        reward = jnp.where(jnp.any(pays), GOAL_REWARD, STEP_REWARD).astype(jnp.float32)
        return state.replace(
            obs=self.observe(xy),
            reward=reward,
            inner={"xy": xy, "reached": reached | pays},
        )


register("rooms", Rooms)
