"""How many updates does the world model's reward head need? (a diagnostic, not a test)

Fills a replay buffer with meta-episodes of the scripted explore-then-exploit policy (on Point
Robot ~88% of its steps are rewarded, so the data are as favourable as they get), then runs the
agent's full update from a fresh initialisation and reports, every ``--every`` updates, the
reward loss, the decoder's reconstruction of the (input) reward, and the reward head's mean
prediction at rewarded and unrewarded steps of held-out scripted meta-episodes. A head that has
learned the task separates the two; one that has learned only the marginal predicts the same
value at both.

    python -m experiments.probe_reward_head [--config=experiments/configs/point_robot.py] \
        [--updates=300] [--every=50] [--out=results/inspect/reward_head_probe.json]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time

from mamba_jax import memory

memory.configure_process()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from envs import scripted  # noqa: E402
from experiments.inspect_run import reward_predictions  # noqa: E402
from mamba_jax import collect as collect_lib  # noqa: E402
from mamba_jax import replay as replay_lib  # noqa: E402
from mamba_jax import trainer  # noqa: E402


def load_config(path: str):
    spec = importlib.util.spec_from_file_location("probe_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def probe(config, updates: int, every: int, episodes: int = 64, seed: int = 0) -> list:
    """Rows {'update', 'wm/reward', 'wm/decoder_reward', 'pred_at_reward', 'pred_at_zero',
    'true_at_reward'}, one per ``every`` updates (and at 0)."""
    setup = trainer.make_setup(config)
    made = scripted.scripted_for(config.env_name, setup.meta)
    if made is None:
        raise ValueError(f"no scripted policy for {config.env_name!r}")
    policy, init = made
    run = trainer.init_run_state(setup, seed)
    collect = jax.jit(lambda k: collect_lib.collect(setup.meta, policy, init(episodes), k,
                                                    episodes))
    train_data = collect(jax.random.PRNGKey(seed + 1))[0].data
    test_data = jax.tree.map(lambda x: x[:8], collect(jax.random.PRNGKey(seed + 2))[0].data)
    buffer = replay_lib.add(run.replay, train_data)
    horizon = jnp.int32(setup.length)
    step = jax.jit(lambda tr, k: setup.agent.train_step(
        tr, replay_lib.sample(buffer, k, config.batch_size), k, horizon))
    predict = jax.jit(lambda tr: reward_predictions(
        setup.agent.wm, tr.params["wm"], test_data, jax.random.PRNGKey(0), 1)[0])  # filtered
    reward = np.asarray(test_data["reward"])
    if not (reward > 0).any():
        raise ValueError(f"the scripted policy found no reward in {setup.length}-step meta-episodes "
                         "of this config: nothing to probe (use longer sub-episodes)")
    train, key, rows = run.train, jax.random.PRNGKey(seed + 3), []
    for i in range(updates + 1):
        key, k = jax.random.split(key)
        train, metrics = step(train, k)
        if i % every == 0:
            pred = np.asarray(predict(train))
            rows.append({"update": i + 1, "wm/reward": float(metrics["wm/reward"]),
                         "wm/decoder_reward": float(metrics.get("wm/decoder_reward", np.nan)),
                         "pred_at_reward": float(pred[reward > 0].mean()),
                         "pred_at_zero": float(pred[reward == 0].mean()),
                         "true_at_reward": float(reward[reward > 0].mean())})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="experiments/configs/point_robot.py")
    p.add_argument("--updates", type=int, default=300)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--out", default="results/inspect/reward_head_probe.json")
    args = p.parse_args()
    t = time.time()
    rows = probe(load_config(args.config), args.updates, args.every)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"config": args.config, "rows": rows, "seconds": time.time() - t}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
