"""Many seeds in one program, and the reproduction runner's outputs."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments import reproduce
from experiments.configs import tiny
from mamba_jax import run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_mean_ci():
    r = reproduce.mean_ci([1.0, 2.0, 3.0])
    assert r["mean"] == 2.0 and abs(r["ci95"] - 4.303 * 1.0 / np.sqrt(3)) < 1e-9
    assert reproduce.mean_ci([5.0])["ci95"] == 0.0


def test_set_overrides_parse_as_the_field_type_and_reject_bad_input():
    c = tiny.get_config()
    applied = reproduce.apply_overrides(c, ["train_ratio=0.1", "total_frames=1e4",
                                            "compute_dtype=bfloat16", "agent.actor_lr=1e-4"])
    assert (c.train_ratio, c.total_frames, c.compute_dtype) == (0.1, 10000, "bfloat16")
    assert isinstance(c.total_frames, int) and c.agent.actor_lr == 1e-4
    assert applied == {"train_ratio": 0.1, "total_frames": 10000, "compute_dtype": "bfloat16",
                       "agent.actor_lr": 1e-4}
    for bad, message in [("no_such_field=1", "one of the config's fields"),
                         ("agent.nope=1", "one of the config's fields"),
                         ("agent=1", "is a group"), ("num_seeds=2", "use --seeds"),
                         ("total_frames=0.5", "expects a int"), ("train_ratio", "FIELD=VALUE")]:
        try:
            reproduce.apply_overrides(c, [bad])
        except SystemExit as e:
            assert message in str(e), str(e)
        else:
            raise AssertionError(f"{bad} was accepted")


def test_seed_s_of_a_multi_seed_run_equals_the_single_seed_run(tmp_path):
    c2 = tiny.get_config()
    c2.wandb_mode = "disabled"
    c2.num_seeds = 2
    _, multi = run.train(c2, str(tmp_path / "multi"), progress=False)
    c1 = tiny.get_config()
    c1.wandb_mode = "disabled"
    c1.seed = 1  # seed index 1 of the 2-seed run is config.seed + 1
    _, single = run.train(c1, str(tmp_path / "single"), progress=False)
    a = jax.tree.leaves(jax.device_get(multi.train.params))
    b = jax.tree.leaves(jax.device_get(single.train.params))
    for x, y in zip(a, b):
        np.testing.assert_allclose(x[1], y, rtol=1e-5, atol=1e-6)
    rows = [json.loads(l) for l in open(tmp_path / "multi" / "metrics.jsonl")]
    assert len(rows[-1]["eval/return/per_seed"]) == 2


def test_multi_seed_init_compiles_once_and_matches_each_single_seed_init():
    from mamba_jax import trainer
    c = tiny.get_config()
    c.num_seeds = 3
    c.agent.dyn_deter = 40  # a setup no other test builds
    setup = trainer.make_setup(c)
    before = trainer._init_jit._cache_size()
    multi = trainer.init_run_state(setup, 7)
    assert trainer._init_jit._cache_size() == before + 1  # one executable for the three seeds
    assert multi.replay.size.shape == (3,) and multi.key.shape[0] == 3
    c1 = tiny.get_config()
    c1.agent.dyn_deter = 40
    c1.seed = 9
    one = trainer.init_run_state(trainer.make_setup(c1), 9)
    a = jax.tree.leaves(jax.tree.map(lambda x: x[2], (multi.train, multi.key)))
    b = jax.tree.leaves((one.train, one.key))
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)  # seed 7 + 2 of the 3-seed run is the 1-seed run's 9


def test_reproduce_writes_results(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.reproduce", "--task=tiny", "--seeds=2",
         "--variants=mamba,dreamer", "--final_eval_tasks=4", "--no_progress",
         "--set=compute_dtype=float32",
         f"--out={tmp_path}/results", f"--workdir={tmp_path}/runs"],
        cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.load(open(tmp_path / "results" / "tiny.json"))
    for v in ("mamba", "dreamer"):
        r = res["variants"][v]
        assert r["meta_episode_return"]["n"] == 2 and len(r["sub_episode_returns"]) == 2
        assert r["frames_real"] == 320 and r["frames_official_logger_units"] == 80 + 2 * 240
        b = r["behaviour"]  # per seed, on the same held-out tasks as the returns
        assert len(b["per_seed"]) == 2 and len(b["sub_episodes"]) == 2
        assert all(p["tasks"] == 4 for p in b["per_seed"])
        assert b["sub_episodes"][0]["found_rate"]["n"] == 2
    assert "scripted_reference" in res  # tiny runs the point robot
    assert len(res["scripted_reference"]["behaviour"]["sub_episodes"]) == 2
    assert res["overrides"] == {"compute_dtype": "float32"}
    assert os.path.getsize(tmp_path / "results" / "tiny.png") > 0


def test_behaviour_over_seeds_averages_what_each_seed_defines():
    sub = np.array([[0, 0, 1, 1]] * 2)
    found = reproduce.summarise_behaviour(np.array([[0, 1.0, 1.0, 0], [1.0, 0, 0, 1.0]]), sub, K=2)
    missed = reproduce.summarise_behaviour(np.zeros((2, 4)), sub, K=2)
    agg = reproduce.behaviour_over_seeds([found, missed])
    s0, s1 = agg["sub_episodes"]
    assert s0["found_rate"]["values"] == [1.0, 0.0] and s0["found_rate"]["n"] == 2
    # the seed that never found the reward has no first-hit step: left out, not counted as 0
    assert s0["first_hit_step"]["values"] == [1.5] and s0["first_hit_step"]["n"] == 1
    assert s1["found_rate_given_found_first"]["values"] == [1.0]  # only the first seed defines it
    assert s1["return_given_missed_first"]["values"] == [0.0]  # only the second does
    assert agg["first_hit_speedup_later_vs_first"]["values"] == [found[
        "first_hit_speedup_later_vs_first"]]
    assert agg["per_seed"] == [found, missed]
    assert reproduce.behaviour_line(agg["sub_episodes"]) == (
        "found rate 0.50 / 0.50; first hit at step 1.5 / 1.5 (per sub-episode, seed means)")
    assert "first hit at step - / -" in reproduce.behaviour_line(
        reproduce.behaviour_over_seeds([missed])["sub_episodes"])


def test_set_reaches_environment_options():
    from experiments.configs import point_robot

    c = point_robot.get_config()
    assert reproduce.apply_overrides(c, ["env_kwargs.goal_radius=0.5"]) == {
        "env_kwargs.goal_radius": 0.5}
    assert c.env_kwargs.goal_radius == 0.5
    with pytest.raises(SystemExit, match="one of the config's fields"):
        reproduce.apply_overrides(c, ["env_kwargs.wind_force=0.1"])  # not a point_robot option
