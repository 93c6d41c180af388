"""Scripted explore-then-exploit reference policies (yardsticks for the learned agent).

Each ``make_*`` returns ``(policy, initial_carry(n))`` in the ``mamba_jax.collect.PolicyFn``
form: ``policy(obs, carry, key) -> (action [N, A], carry)``, batched over N meta-episodes. They
see only what the agent sees (position, last reward, time), and keep their memory across
sub-episodes like the agent's recurrent state.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _towards(pos, target, speed=0.1):
    """Largest clipped action moving ``pos`` towards ``target`` (stops on it)."""
    return jnp.clip((target - pos) / speed, -1.0, 1.0)


def _straight_towards(pos, target, speed=0.1):
    """Like ``_towards`` but keeps the direction (scaled down instead of clipped per axis)."""
    d = (target - pos) / speed
    return d / jnp.maximum(1.0, jnp.max(jnp.abs(d), -1, keepdims=True))


def make_point_robot_sweep(arc_step: float = 0.14, fine_step: float = 0.02):
    """Point Robot Navigation: sweep the upper half circle until the reward appears, climb the
    reward to its maximum, then go straight to that point in every later sub-episode.

    Carry per meta-episode: found (a reward was seen), best_r (highest reward so far),
    best_pos [2] (where it was seen), locked (the reward started to fall: best_pos is final).
    """
    def init(n):
        return {"found": jnp.zeros((n,), bool), "locked": jnp.zeros((n,), bool),
                "best_r": jnp.zeros((n,)), "best_pos": jnp.zeros((n, 2))}

    def policy(obs, carry, key):
        del key
        pos, r = obs["state"], obs["reward"]
        better = r > carry["best_r"]
        found = carry["found"] | (r > 0)
        # the reward falls after rising: we just passed the best point of the sweep
        locked = carry["locked"] | (carry["found"] & ~better & (r < carry["best_r"]))
        best_r = jnp.where(better & ~carry["locked"], r, carry["best_r"])
        best_pos = jnp.where((better & ~carry["locked"])[:, None], pos, carry["best_pos"])
        radius = jnp.linalg.norm(pos, axis=-1, keepdims=True)
        angle = jnp.arctan2(pos[:, 1], pos[:, 0])
        # sweep: reach the circle at angle 0, then move anticlockwise along it
        on_arc = radius[:, 0] > 0.9
        step = jnp.where(found, fine_step, arc_step)  # slow down inside the goal disc
        nxt = jnp.where(on_arc, jnp.clip(angle, 0.0, jnp.pi) + step, 0.0)
        sweep_target = jnp.stack([jnp.cos(nxt), jnp.sin(nxt)], -1)
        target = jnp.where(locked[:, None], best_pos, sweep_target)
        action = _towards(pos, target)
        return action, {"found": found, "locked": locked, "best_r": best_r, "best_pos": best_pos}

    return policy, init


# corners of a room relative to its entry cell (6i, 0), in search order: the nearest first, then
# round the room
_ROOM_CORNERS = np.array([[0, -1], [0, 1], [2, 1], [2, -1]], np.int32)


def make_rooms_search(meta):
    """Rooms-N: take the rooms in order; in a room whose goal is unknown, try its corners in a
    fixed order until one pays; once a room's goal has paid, go straight to it in every later
    sub-episode. On the last goal, stay (it pays every step).

    Needs the meta-episode's K, H and the room layout (``meta``: an ``envs.MetaEpisode`` of
    Rooms). It reads only what the agent sees: the position, the last reward and the time
    feature, from which it knows when a sub-episode restarts at (0, 0) (the start state is never
    observed, spec 3.2). Carry per meta-episode: goal [N, 2] (found goal cells), known [N],
    tried [N, 4] (corners that did not pay), stage (goals paid in this sub-episode).
    """
    env, K, H = meta.env, meta.K, meta.H
    n_rooms = env.num_rooms
    corners = jnp.asarray(_ROOM_CORNERS)

    def init(n):
        return {"goal": jnp.zeros((n, n_rooms, 2), jnp.int32),
                "known": jnp.zeros((n, n_rooms), bool),
                "tried": jnp.zeros((n, n_rooms, 4), bool),
                "stage": jnp.zeros((n,), jnp.int32)}

    def one(state, reward, time, c):
        t = jnp.round(time * (K * H)).astype(jnp.int32)
        xy = env.positions(state).astype(jnp.int32)
        room = xy[0] // 6
        in_room = (xy[0] % 6) < 3
        rel = xy - jnp.stack([6 * room, 0])
        at_corner = in_room & jnp.all(corners == rel, -1)  # [4]
        paid = reward > 0
        # bookkeeping for the cell just reached (before any restart)
        seeking = jnp.minimum(c["stage"], n_rooms - 1)
        here_is_goal = paid & in_room & (room == seeking)
        goal = c["goal"].at[seeking].set(jnp.where(here_is_goal, xy, c["goal"][seeking]))
        known = c["known"].at[seeking].set(c["known"][seeking] | here_is_goal)
        tried_row = c["tried"][seeking] | (at_corner & ~paid & in_room & (room == seeking))
        tried = c["tried"].at[seeking].set(tried_row)
        stage = jnp.where(here_is_goal, jnp.minimum(c["stage"] + 1, n_rooms), c["stage"])
        # a new sub-episode starts from (0, 0) with nothing reached
        restart = (t % H) == 0
        xy = jnp.where(restart, jnp.zeros(2, jnp.int32), xy)
        stage = jnp.where(restart, 0, stage)
        done_all = stage >= n_rooms  # standing on the last goal: stay
        target_room = jnp.minimum(stage, n_rooms - 1)
        untried = ~tried[target_room]
        next_corner = jnp.argmax(untried)  # first untried corner (all tried cannot happen)
        search = jnp.stack([6 * target_room, 0]) + corners[next_corner]
        target = jnp.where(known[target_room], goal[target_room], search)
        target = jnp.where(done_all, xy, target)
        # route: leave the room through the middle row, walk the corridor, then x, then y
        cur_room = xy[0] // 6
        same_room = ((xy[0] % 6) < 3) & (cur_room == target_room)
        dx, dy = jnp.sign(target[0] - xy[0]), jnp.sign(target[1] - xy[1])
        to_middle = jnp.where(xy[1] > 0, 3, 1)  # down / up towards y = 0
        across = jnp.where(dx > 0, 2, 4)
        action = jnp.where(
            same_room,
            jnp.where(dx != 0, across, jnp.where(dy > 0, 1, jnp.where(dy < 0, 3, 0))),
            jnp.where(xy[1] != 0, to_middle, across))
        carry = {"goal": goal, "known": known, "tried": tried, "stage": stage}
        return jax.nn.one_hot(action, 5, dtype=jnp.float32), carry

    def policy(obs, carry, key):
        del key
        return jax.vmap(one)(obs["state"], obs["reward"], obs["time_step"], carry)

    return policy, init


def make_escape_room_sweep(meta, lead: float = 0.35, back: float = 0.3):
    """Escape Room: walk to the wall, then push outwards while sweeping anticlockwise along it
    (the door lies in the upper half) until a push goes through; then stay outside. In later
    sub-episodes sweep again, but starting ``back`` radians before where the door was found.

    A push aims ``lead`` radians ahead on a circle outside the wall, so each blocked step still
    advances ~0.1 rad (a quarter of the door's width). The first sweep starts at angle 0 and covers
    the whole upper half; one cut off by the end of a sub-episode resumes where it stopped. On the
    first step of a sub-episode the start is not observed yet (spec 3.2): no move. Carry per
    meta-episode: found [], door [] (angle at the first exit), swept [] (sweep progress, angle).
    """
    K, H = meta.K, meta.H

    def init(n):
        return {"found": jnp.zeros((n,), bool), "door": jnp.zeros((n,)), "swept": jnp.zeros((n,))}

    def one(pos, time, c):
        t = jnp.round(time * (K * H)).astype(jnp.int32)
        restart = (t % H) == 0
        radius = jnp.linalg.norm(pos)
        angle = jnp.arctan2(pos[1], pos[0])
        a = jnp.clip(angle, 0.0, jnp.pi)
        outside = radius > 1.0
        door = jnp.where(outside & ~c["found"], a, c["door"])
        found = c["found"] | outside
        at_wall = radius >= 0.9
        on_track = at_wall & (jnp.abs(a - c["swept"]) < 0.15)  # at the wall where the sweep stands
        swept = jnp.where(on_track & ~outside, jnp.maximum(c["swept"], a), c["swept"])
        swept = jnp.where(restart & found, jnp.maximum(door - back, 0.0), swept)
        on_track = on_track & ~restart
        unit = lambda x: jnp.stack([jnp.cos(x), jnp.sin(x)])
        # back to the wall where the sweep stands, then push out and anticlockwise
        target = jnp.where(on_track, 1.2 * unit(a + lead), 0.95 * unit(swept))
        action = jnp.where(outside | restart, jnp.zeros(2), _straight_towards(pos, target))
        return action, {"found": found, "door": door, "swept": swept}

    def policy(obs, carry, key):
        del key
        return jax.vmap(one)(obs["state"], obs["time_step"], carry)

    return policy, init


SCRIPTED = {"point_robot": lambda meta: make_point_robot_sweep(),
            "escape_room": make_escape_room_sweep,
            "point_robot_wind": lambda meta: make_point_robot_sweep(),
            "rooms": make_rooms_search}


def scripted_for(env_name: str, meta):
    """(policy, init) for an environment, or None when no scripted policy exists.

    ``meta``: the ``envs.MetaEpisode`` it will run in (Rooms and Escape Room need K, H and the
    layout)."""
    make = SCRIPTED.get(env_name)
    return make(meta) if make else None
