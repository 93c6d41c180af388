"""The worked example of adding an environment (experiments/examples/new_env.py) keeps working."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

import envs
from experiments.examples import new_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_example_env_is_registered_and_pure():
    assert "hidden_target_1d" in envs.registered_names()
    env = envs.make("hidden_target_1d", radius=0.5)
    task = {"target": jnp.array([0.3], jnp.float32)}
    state = env.reset(jax.random.PRNGKey(0), task)
    step = jax.jit(env.step)
    for _ in range(3):  # walk right to x = 0.3, the target
        state = step(state, jnp.ones((1,), jnp.float32))
    np.testing.assert_allclose(state.obs, [0.3], atol=1e-6)
    np.testing.assert_allclose(state.reward, 1.0, atol=1e-5)
    state = step(state, jnp.array([jnp.nan], jnp.float32))  # NaN action: no move
    np.testing.assert_allclose(state.obs, [0.3], atol=1e-6)
    meta = envs.MetaEpisode(env, K=2, H=5)
    tasks = jax.vmap(env.sample_task)(jax.random.split(jax.random.PRNGKey(1), 64))
    assert tasks["target"].shape == (64, 1)
    assert float(tasks["target"].min()) >= -1 and float(tasks["target"].max()) <= 1
    assert meta.length == 10


def test_example_trains_a_couple_of_rounds(tmp_path):
    workdir = str(tmp_path / "run")
    env = dict(os.environ, WANDB_MODE="disabled")
    proc = subprocess.run([sys.executable, "-m", "experiments.examples.new_env", workdir], cwd=REPO,
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "eval return per sub-episode" in proc.stdout, proc.stdout
    summary = json.load(open(os.path.join(workdir, "summary.json")))
    assert summary["rounds"] == 2 and summary["updates"] == 4
    config = json.load(open(os.path.join(workdir, "config.json")))
    assert config["env_name"] == "hidden_target_1d" and config["env_kwargs"]["radius"] == 0.25
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert any("eval/return_sub1" in r for r in rows)
    assert os.listdir(os.path.join(workdir, "checkpoints"))
