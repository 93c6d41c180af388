"""Worked example: add a meta-RL task and train MAMBA on it.  python -m experiments.examples.new_env

The task: a point on a line starts at 0 in every sub-episode; a hidden target in [-1, 1] (the same
for all K sub-episodes of a meta-episode) pays ``1 - d/radius`` within ``radius`` of it.
"""
import dataclasses
import sys
import tempfile

import jax
import jax.numpy as jnp
import ml_collections

import envs
from envs.core import Env, EnvState
from experiments.configs import tiny
from mamba_jax import run


@dataclasses.dataclass(frozen=True)  # frozen: hashable, so it can be a static jit argument
class HiddenTarget1D(Env):
    radius: float = 0.2  # constructor options are dataclass fields (config.env_kwargs)

    name, obs_dim, action_dim, discrete, default_K, default_H = "hidden_target_1d", 1, 1, False, 2, 20

    def sample_task(self, key):  # pure: a pytree of arrays, fixed for one meta-episode
        return {"target": jax.random.uniform(key, (1,), jnp.float32, -1.0, 1.0)}

    def reset(self, key, task):
        return EnvState(obs=jnp.zeros((1,), jnp.float32), reward=jnp.zeros((), jnp.float32),
                        done=jnp.zeros((), jnp.bool_), task=task, inner=(), key=key)

    def step(self, state, action):  # static shapes, no Python control flow on values
        action = jnp.clip(jnp.nan_to_num(self.check_action(action)), -1.0, 1.0)
        x = jnp.clip(state.obs + 0.1 * action, -1.0, 1.0)
        d = jnp.abs(x - state.task["target"])[0]
        return state.replace(obs=x, reward=jnp.maximum(0.0, 1.0 - d / self.radius))


if HiddenTarget1D.name not in envs.registered_names():  # importing twice must not re-register
    envs.register(HiddenTarget1D.name, HiddenTarget1D)


def get_config():
    c = tiny.get_config()  # tiny model and budget; start from a task config for real runs
    c.env_name, c.K, c.H = HiddenTarget1D.name, 2, 20
    c.env_kwargs = ml_collections.ConfigDict({"radius": 0.25})  # the old task's options do not apply
    c.train_ratio = 0.025  # 0.025 * 4 envs * 20 steps = 2 updates per round
    c.total_frames = (c.prefill + 3 * c.num_envs) * c.K * c.H  # prefill + 3 rounds
    c.wandb_mode = "disabled"
    return c


if __name__ == "__main__":
    workdir = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="new_env_")
    summary, _ = run.train(get_config(), workdir, progress=False, max_rounds=2)
    ev = summary["final_eval"] or {}
    subs = [f"{ev[k]:.2f}" for k in sorted(ev) if k.startswith("eval/return_sub")]
    print(f"trained {summary['rounds']} rounds ({summary['frames']} frames) in {workdir}; "
          f"eval return per sub-episode: {', '.join(subs)}")
