"""Does the world model learn which way an action moves the reward? (point robot, a diagnostic)

    python -m experiments.probe_model_gradient [--config=experiments/configs/point_robot.py] \
        [--set=env_kwargs.goal_radius=10.0] [--updates=1000] [--every=100] \
        [--out=results/inspect/model_gradient_probe.json]

The actor of the point robot learns only through dG/da, the gradient of the model's one-step
return G = r_1 + c_1 v_1 with respect to the action (``experiments.probe_actor_gradient``). This
probe asks whether that gradient becomes right when the data cover the actions well: it fills a
replay buffer with meta-episodes of the uniform random policy (actions U[-1, 1]^2, a random walk
around the start), runs the world-model half of the agent's update (``Agent.wm_update``: the
actor and critic play no part in it) from a fresh initialisation on it, and every
``--every`` updates measures, on held-out random-policy meta-episodes: the cosine between dG/da
at the action actually taken (the critic keeps its zero-initialised output, so G = r_1 here) and
the direction to the goal (mean, fraction > 0), |dG/da|, and how well the model's r_1 predicts
the next reward. With the dense reward 1 - d (goal radius 10, the
default here) the true dr_1/da is 0.1 times the unit vector to the goal at every step.
With ``--set=sequence=window`` the world model trains on the training loop's 64-step chunks
(belief restarted at each), and is measured, like the other, on whole held-out meta-episodes.
"""
from __future__ import annotations

import argparse
import json
import os
import time

from mamba_jax import memory

memory.configure_process()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from experiments.inspect_run import reward_predictions  # noqa: E402
from experiments.probe_actor_gradient import (gradient_figures, one_step_return_gradient,  # noqa: E402
                                              reward_fit)
from experiments.probe_reward_head import load_config  # noqa: E402
from experiments.reproduce import apply_overrides  # noqa: E402
from mamba_jax import collect as collect_lib  # noqa: E402
from mamba_jax import replay as replay_lib  # noqa: E402
from mamba_jax import trainer  # noqa: E402


def probe(config, updates: int, every: int, episodes: int = 64, test_episodes: int = 8,
          seed: int = 0) -> list:
    """One row per ``every`` updates (and at 0): gradient-direction and reward-fit figures."""
    if not config.env_name.startswith("point_robot"):
        raise SystemExit(f"probe_model_gradient needs a point-robot config, got {config.env_name!r}")
    setup = trainer.make_setup(config)
    agent, policy = setup.agent, collect_lib.random_policy(setup.meta)
    run = trainer.init_run_state(setup, seed)

    def collect(stream, n):  # n random-policy meta-episodes on n tasks of their own stream
        tasks = trainer.sample_tasks(setup, seed * 1000 + stream, n)
        rollout, _ = jax.jit(lambda k: collect_lib.collect(setup.meta, policy, None, k, n,
                                                           tasks=tasks))(jax.random.PRNGKey(stream))
        return rollout, np.asarray(tasks["goal"])

    train_rollout, _ = collect(1, min(episodes, int(run.replay.capacity)))
    test_rollout, goal = collect(2, test_episodes)
    data = test_rollout.data
    e, t = data["reward"].shape
    buffer = replay_lib.add(run.replay, train_rollout.data)
    horizon = jnp.int32(setup.length)

    def wm_step(tr, k):  # the world-model half of the update only: actor and critic stay at init
        batch = replay_lib.sample(buffer, k, config.batch_size)
        if config.sequence == "window":  # the training loop's chunks (trainer.window_batch)
            batch = trainer.window_batch(batch, jax.random.fold_in(k, 1), config.window_length)
        out = agent.wm_update(tr, batch, k, horizon)
        return tr.replace(params=dict(tr.params, wm=out["params"]),
                          opt_state=dict(tr.opt_state, wm=out["opt_state"])), out["metrics"]

    step = jax.jit(wm_step)
    # the action taken at step t is the one that led to step t + 1; none after the last step
    taken = jnp.concatenate([data["action"][:, 1:], jnp.zeros_like(data["action"][:, :1])], 1)

    @jax.jit
    def measure(tr):
        _, _, post = reward_predictions(agent.wm, tr.params["wm"], data, jax.random.PRNGKey(0), 1)
        flat = lambda x: x.reshape((e * t,) + x.shape[2:])
        grad, r1 = one_step_return_gradient(agent, tr.params, jax.tree.map(flat, post),
                                            flat(taken), jax.random.PRNGKey(1))
        return grad.reshape(e, t, -1), r1.reshape(e, t)

    pos = np.asarray(setup.meta.env.positions(np.asarray(data["state"])))
    sub = np.asarray(collect_lib.observed_sub_idx(test_rollout))
    keep = np.ones((e, t), bool)
    keep[:, -1] = False  # no action after the last step
    train, key, rows = run.train, jax.random.PRNGKey(seed + 3), []
    for i in range(updates + 1):
        if i % every == 0:
            grad, r1 = (np.asarray(x) for x in measure(train))
            rows.append({"update": i, **gradient_figures(grad, goal[:, None, :] - pos, keep),
                         **reward_fit(r1, np.asarray(data["reward"]), sub)})
            print(json.dumps(rows[-1]), flush=True)
        if i < updates:
            key, k = jax.random.split(key)
            train, _ = step(train, k)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="experiments/configs/point_robot.py")
    p.add_argument("--set", action="append", default=None, metavar="FIELD=VALUE",
                   help="config override (repeatable); default env_kwargs.goal_radius=10.0")
    p.add_argument("--updates", type=int, default=1000)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--out", default="results/inspect/model_gradient_probe.json")
    args = p.parse_args()
    config = load_config(args.config)
    overrides = apply_overrides(config, args.set if args.set is not None
                                else ["env_kwargs.goal_radius=10.0"])
    t0 = time.time()
    rows = probe(config, args.updates, args.every)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"config": args.config, "overrides": overrides, "policy": "uniform random",
                   "rows": rows, "seconds": time.time() - t0}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
