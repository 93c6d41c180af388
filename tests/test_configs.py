"""Every shipped config loads, validates and matches the official hyperparameters (spec 9.2)."""
import importlib

import pytest

from experiments.configs import variants
from mamba_jax import schedule, trainer

TASKS = ["point_robot", "point_robot_wind", "escape_room", "rooms", "reacher", "humanoid_dir",
         "tiny"]


@pytest.mark.parametrize("name", TASKS)
def test_config_validates(name):
    module = importlib.import_module(f"experiments.configs.{name}")
    c = module.get_config()
    if c.env_name in ("reacher_goal", "humanoid_dir"):
        pytest.importorskip("mujoco")
    trainer.validate_config(c)
    # env_kwargs lists every option of the task's environment (command-line settable)
    import envs

    assert set(envs.options(c.env_name)) <= set(c.env_kwargs.keys())


def test_environment_options_are_checked_and_name_env_kwargs():
    from experiments.configs import escape_room, point_robot

    c = point_robot.get_config()
    c.env_kwargs.goal_radius = -1.0
    with pytest.raises(trainer.ConfigError, match="config.env_kwargs: .*goal_radius"):
        trainer.make_setup(c)
    c = point_robot.get_config()
    c.env_name = "escape_room"  # the point robot's options do not apply to the new environment
    with pytest.raises(trainer.ConfigError, match=r"config.env_kwargs: 'escape_room' has no "
                                                  r"option\(s\) \['goal_radius', 'reward_offset'\].*door_width"):
        trainer.validate_config(c)
    trainer.validate_config(escape_room.get_config())


def test_official_numbers():
    from experiments.configs import escape_room, point_robot, point_robot_wind, rooms

    pr = point_robot.get_config()
    assert (pr.K, pr.H, pr.agent.imag_horizon, pr.agent.enc_mlp_layers) == (3, 100, 2, 4)
    assert schedule.updates_per_round(pr.train_ratio, pr.num_envs, pr.H) == 10
    assert pr.agent.dyn_deter == 512 and pr.agent.dyn_stoch * pr.agent.dyn_discrete == 256
    assert point_robot_wind.get_config().train_ratio == 0.2
    er = escape_room.get_config()
    assert (er.K, er.H, er.train_ratio) == (2, 60, 0.2)
    ro = rooms.get_config()
    assert ro.agent.actor_dist == "onehot" and ro.agent.imag_gradient == "reinforce"
    assert (ro.wm_horizon_initial, ro.wm_horizon_reach_frames, ro.eval_tasks) == (50, 5e6, 100)


def test_humanoid_dir_numbers():
    from experiments.configs import humanoid_dir

    c = humanoid_dir.get_config()
    assert (c.env_name, c.K, c.H, c.train_ratio) == ("humanoid_dir", 2, 200, 0.03)
    assert (c.agent.imag_horizon, c.agent.enc_mlp_layers, c.agent.dec_mlp_layers) == (10, 2, 2)
    assert c.agent.enc_mlp_units == c.agent.dec_mlp_units == 512
    assert (c.agent.model_lr, c.agent.actor_lr, c.agent.critic_lr) == (2e-4, 6e-5, 6e-5)
    assert (c.wm_horizon_initial, c.wm_horizon_reach_frames) == (50, 15e6)
    assert c.legacy_double_count  # the reach value is in logger units
    assert c.total_frames == 15_000_000  # 3e7 logger frames (double-counted units)


@pytest.mark.parametrize("variant", variants.VARIANTS)
def test_variants(variant):
    from experiments.configs import rooms

    c = rooms.get_config(variant)
    trainer.validate_config(c)
    assert c.variant == variant
    if variant == "dreamer":
        assert c.sequence == "window" and c.window_length == 64
        assert c.agent.reconstruction_window == 0
    if variant == "no_wm_schedule":
        assert c.wm_horizon_initial == c.K * c.H
    if variant == "mamba":
        assert c.sequence == "meta_episode" and c.wm_horizon_initial == 50


def test_unknown_variant_and_bad_values_name_the_field():
    from experiments.configs import point_robot

    with pytest.raises(ValueError, match="variant"):
        point_robot.get_config("nope")
    c = point_robot.get_config()
    c.compute_dtype = "float16"
    with pytest.raises(trainer.ConfigError, match="config.compute_dtype"):
        trainer.validate_config(c)
    c = point_robot.get_config()
    c.agent.scan_remat = "some"
    with pytest.raises(trainer.ConfigError, match="config.agent.scan_remat: must be"):
        trainer.validate_config(c)
    c = point_robot.get_config()
    c.train_ratio = 0.0001
    with pytest.raises(trainer.ConfigError, match="config.train_ratio"):
        trainer.validate_config(c)


def test_configs_saved_before_scan_remat_and_horizon_buckets_still_validate():
    """Run folders written before ``agent.scan_remat`` / ``agent.start_context`` /
    ``wm_horizon_bucket`` existed load with the behaviour they were trained with (no
    rematerialisation, starts from the training posteriors, whole-sequence updates)."""
    from experiments.configs import rooms
    from mamba_jax import config as config_lib

    c = rooms.get_config()
    del c.agent["scan_remat"]
    del c.agent["start_context"]
    del c.agent["obs_reward_shift"]
    del c.agent["reward_head_shift"]
    del c.agent["reward_head"]
    del c.agent["critic_head"]
    del c["wm_horizon_bucket"]
    trainer.validate_config(c)
    assert config_lib.scan_remat(c.agent) == "none" and trainer.wm_horizon_bucket(c) == 0
    assert config_lib.start_context(c.agent) == 0
    assert config_lib.obs_reward_shift(c.agent) == 0.0
    assert config_lib.reward_head_shift(c.agent) == 0.0
    assert config_lib.reward_head(c.agent) == config_lib.critic_head(c.agent) == "twohot"
    setup = trainer.make_setup(c)
    assert trainer.update_length(setup, 51) == setup.length


def test_auto_compute_dtype_resolves_by_hardware(tmp_path):
    """'auto' (the configs' default) is bfloat16 on accelerators and bf16-capable CPUs only."""
    with_bf16, without = tmp_path / "bf16", tmp_path / "plain"
    with_bf16.write_text("processor : 0\nflags : fpu sse avx2 avx512f avx512_bf16 amx_tile\n")
    without.write_text("processor : 0\nflags : fpu sse avx2 avx512f\n")
    resolve = trainer.resolve_compute_dtype
    assert resolve("auto", "cpu", str(with_bf16)) == "bfloat16"
    assert resolve("auto", "cpu", str(without)) == "float32"
    assert resolve("auto", "cpu", str(tmp_path / "missing")) == "float32"  # e.g. macOS
    assert resolve("auto", "gpu", str(without)) == "bfloat16"
    assert resolve("float32", "gpu") == "float32" and resolve("bfloat16", "cpu", str(without)) == "bfloat16"
    from experiments.configs import point_robot

    c = point_robot.get_config()
    assert c.compute_dtype == "auto"
    setup = trainer.make_setup(c)
    assert setup.config.compute_dtype == resolve("auto") and c.compute_dtype == "auto"
    assert setup.agent.config.compute_dtype == setup.config.compute_dtype
