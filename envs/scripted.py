"""Scripted explore-then-exploit reference policies (yardsticks for the learned agent).

Each ``make_*`` returns ``(policy, initial_carry(n))`` in the ``mamba_jax.collect.PolicyFn``
form: ``policy(obs, carry, key) -> (action [N, A], carry)``, batched over N meta-episodes. They
see only what the agent sees (position, last reward, time), and keep their memory across
sub-episodes like the agent's recurrent state.
"""
from __future__ import annotations

import jax.numpy as jnp


def _towards(pos, target, speed=0.1):
    """Largest clipped action moving ``pos`` towards ``target`` (stops on it)."""
    return jnp.clip((target - pos) / speed, -1.0, 1.0)


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


SCRIPTED = {"point_robot": make_point_robot_sweep, "point_robot_wind": make_point_robot_sweep}


def scripted_for(env_name: str):
    """(policy, init) for an environment, or None when no scripted policy exists."""
    make = SCRIPTED.get(env_name)
    return make() if make else None
