"""How far MJX solver settings drift from native MuJoCo, over many random rollouts (not a test).

For HalfCheetah: N random-action rollouts of T env steps from the env's own random start states,
simulated with MJX (float32) under several solver settings and with native MuJoCo (float64) on the
untuned XML. Per rollout, the max absolute qpos error in the first 10 steps (before the feet land)
and over all T steps; the median and max over rollouts are printed and written as JSON.

    python -m experiments.probe_mjx_accuracy [--rollouts 16] [--steps 30] [--out PATH]
"""
from __future__ import annotations

import argparse
import json
import os

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from envs import mjx_tasks

SETTINGS = {
    "untuned MJX (Newton 100/50, all contacts)": dict(solver_iterations=100, ls_iterations=50,
                                                      contacts="all"),
    "feet contacts, Newton 4/8": dict(solver_iterations=4, ls_iterations=8),
    "feet contacts, Newton 3/2": dict(solver_iterations=3, ls_iterations=2),
    "feet contacts, Newton 3/1": dict(solver_iterations=3, ls_iterations=1),
    "feet contacts, Newton 2/2": dict(solver_iterations=2, ls_iterations=2),
}


def native_qpos(env, qpos, qvel, actions) -> np.ndarray:
    """qpos [T, nq] of native mj_step on the untuned reference model (float64)."""
    m = env.reference_mj_model
    d = mujoco.MjData(m)
    d.qpos[:], d.qvel[:] = qpos, qvel
    out = []
    for a in actions:
        d.ctrl[:] = a
        for _ in range(env.frame_skip):
            mujoco.mj_step(m, d)
        out.append(d.qpos.copy())
    return np.array(out)


def mjx_rollouts(env, keys, task, actions):
    """(start qpos [N, nq], start qvel [N, nv], qpos [T, N, nq]) of N MJX rollouts."""
    def run(keys, actions):
        s0 = jax.vmap(env.reset, in_axes=(0, None))(keys, task)
        _, traj = jax.lax.scan(lambda s, a: (lambda n: (n, n.inner.qpos))(jax.vmap(env.step)(s, a)),
                               s0, actions)
        return s0.inner.qpos, s0.inner.qvel, traj
    return [np.asarray(x) for x in jax.jit(run)(keys, actions)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rollouts", type=int, default=16)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--out", default="bench_out/mjx_accuracy_cheetah.json")
    args = p.parse_args(argv)
    n, t = args.rollouts, args.steps
    actions = np.random.default_rng(0).uniform(-1, 1, (t, n, 6)).astype(np.float32)
    keys = jax.random.split(jax.random.key(7), n)
    task = {"goal_vel": jnp.float32(1.5)}
    rows, reference = [], None
    for name, kw in SETTINGS.items():
        env = mjx_tasks.CheetahVel(**kw)
        q0, v0, q = mjx_rollouts(env, keys, task, actions)
        if reference is None:  # the same start states for every setting (same keys, same reset)
            reference = [native_qpos(env, q0[b].astype(np.float64), v0[b].astype(np.float64),
                                     actions[:, b]) for b in range(n)]
        early = np.array([np.abs(q[:10, b] - reference[b][:10]).max() for b in range(n)])
        full = np.array([np.abs(q[:, b] - reference[b]).max() for b in range(n)])
        row = {"setting": name, **kw,
               "qpos_err_first10_median": float(np.median(early)), "qpos_err_first10_max": float(early.max()),
               "qpos_err_all_median": float(np.median(full)), "qpos_err_all_max": float(full.max())}
        rows.append(row)
        print(f"{name:44s} first 10 steps: median {row['qpos_err_first10_median']:.1e} max "
              f"{row['qpos_err_first10_max']:.1e} | all {t}: median {row['qpos_err_all_median']:.1e} "
              f"max {row['qpos_err_all_max']:.1e}", flush=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"task": "cheetah_vel", "rollouts": n, "steps": t, "rows": rows}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
