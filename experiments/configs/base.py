"""Shared run configuration. Task files import ``base_config`` and override fields.

Units: frames are REAL environment steps (the official logger counted collected frames twice;
set ``legacy_double_count=True`` to drive the wm-horizon schedule in those units, spec 7.4).
"""
import ml_collections

import envs

from mamba_jax.config import agent_config


def base_config(env_name: str, K: int, H: int, **agent_overrides) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.env_name = env_name
    # every constructor option of the environment with its default, so that any of them can be
    # set from the command line (--config.env_kwargs.goal_radius=0.5, reproduce --set=...)
    c.env_kwargs = ml_collections.ConfigDict(
        envs.options(env_name) if env_name in envs.registered_names() else {})
    c.K = K  # sub-episodes per meta-episode
    c.H = H  # steps per sub-episode
    c.variant = "mamba"  # see experiments/configs/variants.py
    c.seed = 0
    c.num_seeds = 1
    # collection / replay / schedule (spec 7 and 9)
    c.num_envs = 10  # parallel meta-episodes per round, each on a new task
    c.prefill = 25  # random-policy meta-episodes before training
    c.train_ratio = 0.03  # MAMBA's sense: train_ratio * num_envs * H updates per round
    c.batch_size = 16
    # training sequences: 'meta_episode' = MAMBA (whole meta-episodes from step 0);
    # 'window' = DreamerV3 (window_length-step chunks from random starts, RSSM restarted there)
    c.sequence = "meta_episode"
    c.window_length = 64
    c.replay_capacity = 0  # meta-episodes; 0 -> ceil(replay_capacity_steps / (K*H))
    c.replay_capacity_steps = 1_000_000
    c.total_frames = 1_000_000  # real env frames
    c.wm_horizon_initial = K * H
    c.wm_horizon_reach_frames = 0.0  # 0 -> no schedule; in (legacy or real) frames
    c.legacy_double_count = False
    # updates train on the first L >= wm_horizon steps, L rounded up to a multiple of this
    # (one compiled update per L; 0 -> always all K*H steps). Same results, less compute.
    c.wm_horizon_bucket = 64
    # evaluation
    c.eval_every_meta_episodes = 200
    c.eval_tasks = 20
    c.eval_seed = 12345  # fixed evaluation task set, independent of the training seed
    # checkpoints / robustness
    c.checkpoint_every_updates = 200
    c.keep_checkpoints = 3
    c.checkpoint_replay = True
    c.max_nonfinite_streak = 10
    # numerics
    # "auto": bfloat16 mixed precision (f32 params, accumulation and losses) on GPU/TPU and on
    # CPUs with bf16 instructions, float32 elsewhere (trainer.resolve_compute_dtype)
    c.compute_dtype = "auto"
    # logging
    c.wandb_mode = "offline"  # offline | online | disabled
    c.wandb_project = "mamba-jax"
    c.render_every_eval = 1
    c.agent = agent_config("official", **agent_overrides)
    return c
