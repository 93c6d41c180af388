"""A seconds-long smoke configuration (tests, CI, the notebook): point robot with a tiny model,
short meta-episodes and a handful of updates. Not for results."""
from experiments.configs import variants
from experiments.configs.base import base_config


def get_config(variant: str = "mamba"):
    c = base_config("point_robot", K=2, H=10, imag_horizon=2)
    from mamba_jax.config import agent_config

    c.agent = agent_config("tiny", imag_horizon=2)
    c.num_envs = 4
    c.prefill = 4
    c.batch_size = 4
    c.train_ratio = 0.05  # 0.05 * 4 envs * 10 steps = 2 updates per round
    c.total_frames = 4 * 20 + 3 * 4 * 20  # prefill + 3 rounds
    c.eval_every_meta_episodes = 8
    c.eval_tasks = 4
    c.checkpoint_every_updates = 2
    c.replay_capacity = 32
    return variants.apply(c, variant)
